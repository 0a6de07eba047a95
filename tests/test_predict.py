"""`python -m mnist_jax.predict` on real test digits saved as image files, in a fresh process."""

import re

import numpy as np
import pytest
from PIL import Image

from mnist_jax.core.errors import DataError
from mnist_jax.data import load_mnist
from mnist_jax.serving import classify
from tests.conftest import run_module

# The session's strong runs (conftest.py): one worker runs this module and test_export.py
# (--dist loadgroup), so they are trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("strong_runs")]

CELL = re.compile(r"(\d)\s+(\d+\.\d)%")


@pytest.fixture(scope="session")
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


def _on_paper(digit: np.ndarray, ink: tuple, paper: tuple, scale: int = 6) -> Image.Image:
    """The MNIST digit drawn large with `ink` on `paper` (RGB), with a margin: a scan."""
    big = Image.fromarray(digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    alpha = np.asarray(big, np.float64)[..., None] / 255.0
    rgb = (1 - alpha) * np.array(paper) + alpha * np.array(ink)
    canvas = np.empty((40 * scale, 36 * scale, 3))
    canvas[:] = paper
    canvas[5 * scale : 33 * scale, 4 * scale : 32 * scale] = rgb
    return Image.fromarray(np.rint(canvas).astype(np.uint8))


@pytest.fixture(scope="session")
def predicted(strong_runs, test_split, tmp_path_factory):
    """One run of the binary over 100 test digits as PNG, and 4 of them twice more: black on
    white paper (grayscale PNG) and blue ink on yellow paper (colour JPEG)."""
    out = tmp_path_factory.mktemp("digits")
    plain = []
    for i in range(100):
        plain.append(out / f"digit_{i:03d}.png")
        Image.fromarray(test_split.images[i]).save(plain[-1])
    scans = []
    for i in range(4):
        scans.append(out / f"inverted_{i}.png")
        _on_paper(test_split.images[i], (0, 0, 0), (255, 255, 255)).convert("L").save(scans[-1])
        scans.append(out / f"colour_{i}.jpg")
        _on_paper(test_split.images[i], (20, 40, 160), (250, 235, 120)).save(scans[-1], quality=90)
    result = predict(strong_runs, *plain, *scans)
    assert result.returncode == 0, result.stderr[-2000:]
    return result, plain, scans


def test_classifies_real_test_digits_saved_as_png(predicted, test_split):
    result, plain, scans = predicted
    assert result.stderr == ""  # the table is the whole output: no log lines, no warnings
    header, table = parse(result.stdout)
    assert header == ["image", "mlp", "cnn"]
    assert list(table) == [str(p) for p in plain + scans]
    for m, model in enumerate(("mlp", "cnn")):
        tops = [table[str(p)][m] for p in plain]
        labels = test_split.labels[:100]
        correct = sum(top[0][0] == label for top, label in zip(tops, labels, strict=True))
        assert correct >= 98, (model, correct)
        for top in tops:  # three distinct classes, most probable first
            assert len({c for c, _ in top}) == 3 and top[0][1] >= top[1][1] >= top[2][1]
            assert sum(p for _, p in top) <= 100.15


def test_inverted_and_colour_images(predicted, test_split):
    result, _, scans = predicted
    _, table = parse(result.stdout)
    for path in scans:
        label = test_split.labels[int(path.stem.split("_")[1])]
        for top in table[str(path)]:  # both models
            assert top[0][0] == label, (path.name, top)


def test_unreadable_or_empty_image_is_a_one_line_error(strong_runs, test_split, tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(test_split.images[0]).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    for bad in (broken, blank, tmp_path / "missing.png"):  # checked before any model is loaded
        with pytest.raises(DataError, match=re.escape(str(bad))):
            classify.predict_files([tmp_path / "no_run"], [good, bad])
    result = predict(strong_runs, good, blank)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and str(blank) in line, line
