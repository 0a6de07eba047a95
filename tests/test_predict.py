"""`python -m mnist_jax.predict` on real test digits saved as image files, in a fresh process."""

import re

import numpy as np
import pytest
from PIL import Image

from mnist_jax.data import load_mnist
from tests.conftest import run_module

pytestmark = pytest.mark.slow  # trains the session's strong runs (about a minute)

CELL = re.compile(r"(\d)\s+(\d+\.\d)%")


@pytest.fixture(scope="module")
def test_split(mnist_dir):
    return load_mnist(mnist_dir)[1]


def predict(strong_runs, *paths):
    workdirs = f"--workdirs={strong_runs['mlp']},{strong_runs['cnn']}"
    return run_module("mnist_jax.predict", workdirs, *map(str, paths))


def parse(stdout: str) -> tuple[list[str], dict[str, list[list[tuple[int, float]]]]]:
    """(header, file -> per model, its top 3 as (class, probability in %))."""
    header, *rows = stdout.strip().splitlines()
    table = {}
    for row in rows:
        name, rest = row.split(maxsplit=1)
        cells = [(int(c), float(p)) for c, p in CELL.findall(rest)]
        assert len(cells) == 6, row
        table[name] = [cells[:3], cells[3:]]
    return header.split(), table


def test_classifies_real_test_digits_saved_as_png(strong_runs, test_split, tmp_path):
    paths = []
    for i in range(100):
        paths.append(tmp_path / f"digit_{i:03d}.png")
        Image.fromarray(test_split.images[i]).save(paths[-1])
    result = predict(strong_runs, *paths)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # the table is the whole output: no log lines, no warnings
    header, table = parse(result.stdout)
    assert header == ["image", "mlp", "cnn"]
    assert list(table) == [str(p) for p in paths]
    for m, model in enumerate(("mlp", "cnn")):
        tops = [table[str(p)][m] for p in paths]
        correct = sum(top[0][0] == label for top, label in zip(tops, test_split.labels[:100]))
        assert correct >= 98, (model, correct)
        for top in tops:  # three distinct classes, most probable first
            assert len({c for c, _ in top}) == 3 and top[0][1] >= top[1][1] >= top[2][1]
            assert sum(p for _, p in top) <= 100.15


def _on_paper(digit: np.ndarray, ink: tuple, paper: tuple, scale: int = 6) -> Image.Image:
    """The MNIST digit drawn large with `ink` on `paper` (RGB), with a margin: a scan."""
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    alpha = np.asarray(big, np.float64)[..., None] / 255.0
    rgb = (1 - alpha) * np.array(paper) + alpha * np.array(ink)
    canvas = np.empty((40 * scale, 36 * scale, 3))
    canvas[:] = paper
    canvas[5 * scale : 33 * scale, 4 * scale : 32 * scale] = rgb
    return Image.fromarray(np.rint(canvas).astype(np.uint8))


def test_inverted_and_colour_images(strong_runs, test_split, tmp_path):
    """Black on white (grayscale PNG) and blue ink on yellow paper (colour JPEG)."""
    paths, labels = [], []
    for i in (0, 1, 2, 3):
        digit, label = test_split.images[i], int(test_split.labels[i])
        inverted = tmp_path / f"inverted_{i}.png"
        _on_paper(digit, (0, 0, 0), (255, 255, 255)).convert("L").save(inverted)
        colour = tmp_path / f"colour_{i}.jpg"
        _on_paper(digit, (20, 40, 160), (250, 235, 120)).save(colour, quality=90)
        paths += [inverted, colour]
        labels += [label, label]
    result = predict(strong_runs, *paths)
    assert result.returncode == 0, result.stderr[-2000:]
    _, table = parse(result.stdout)
    for path, label in zip(paths, labels, strict=True):
        for top in table[str(path)]:  # both models
            assert top[0][0] == label, (path.name, top)


def test_unreadable_or_empty_image_is_a_one_line_error(strong_runs, test_split, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(test_split.images[0]).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    for bad in (broken, blank, tmp_path / "missing.png"):
        result = predict(strong_runs, good, bad)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and str(bad) in line, line
