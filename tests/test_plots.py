"""plots.py: every figure is written, non-empty, of the expected pixel size (fast: no JAX)."""

import itertools
import math
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from mnist_jax.evaluation import metrics, plots, stats


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header (IHDR chunk)."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def fake_model(name: str, num_runs: int, skill: float, seed: int) -> tuple[dict, np.ndarray]:
    """A model entry shaped like evaluate.summarize_model's, from synthetic outputs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 1000)
    logits = rng.normal(size=(1000, 10))
    logits[np.arange(1000), labels] += skill
    probs = metrics.softmax(logits)
    cm = metrics.confusion_matrix(labels, probs.argmax(-1))
    acc = [metrics.accuracy(labels, probs.argmax(-1)) + 0.001 * i for i in range(num_runs)]
    history = [
        {"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.1 / e,
         "val_loss": 1.2 / e, "val_accuracy": 1 - 0.12 / e}
        for e in range(1, 6)
    ]  # fmt: skip
    mistakes = metrics.confident_mistakes(probs, labels, 16)
    model = {
        "name": name,
        "num_runs": num_runs,
        "seeds": list(range(num_runs)),
        "workdirs": [f"runs/{name}/seed_{i}" for i in range(num_runs)],
        "accuracy": stats.summarize(acc),
        "ece": stats.summarize([0.01 + 0.001 * i for i in range(num_runs)]),
        "num_params": 100_000 * (seed + 1),
        "flops_per_example": 1e6 * (seed + 1),
        "train_seconds": stats.summarize([60.0 * (seed + 1) + i for i in range(num_runs)]),
        "confusion_matrix": cm.tolist(),
        "per_class": metrics.per_class_report(cm),
        "calibration": metrics.calibration(probs, labels),
        "confident_mistakes": mistakes,
        "runs": [{"history": history} for _ in range(num_runs)],
    }
    images = rng.integers(0, 256, (len(mistakes), 28, 28), dtype=np.uint8)
    return model, images


@pytest.fixture(scope="module")
def comparison():
    mlp, mlp_images = fake_model("mlp", 2, 2.5, 0)
    cnn, cnn_images = fake_model("cnn", 1, 4.0, 1)
    mistakes = {"mlp": mlp_images, "cnn": cnn_images}
    return {"models": {"mlp": mlp, "cnn": cnn}}, {"mistakes": mistakes}


@pytest.fixture(scope="module")
def written(comparison, tmp_path_factory):
    """Every figure of the two-model comparison, written once for the tests below."""
    data, images = comparison
    out = tmp_path_factory.mktemp("figures")
    return out, plots.write_all(data, images, out)


def test_write_all_writes_every_figure_at_its_size(written):
    out, files = written
    assert set(files) == {name for name in plots.FIGURES if name not in plots.NEEDS}
    for name, filename in files.items():
        path = out / filename
        assert path.stat().st_size > 10_000, f"{name} looks empty"
        w, h = plots.figure_size(name, num_models=2)
        assert png_size(path) == (round(w * plots.DPI), round(h * plots.DPI)), name


def test_expected_pixel_sizes_for_two_models():
    """The sizes the README and report are laid out for (pixels at 100 dpi)."""
    sizes = {name: plots.figure_size(name, 2) for name in plots.FIGURES}
    assert sizes["confusion_matrices"] == pytest.approx((12.0, 5.4))
    assert sizes["reliability"] == pytest.approx((9.6, 6.4))


def test_figures_are_not_blank(written):
    """A figure with content has many distinct colours, not just the background."""
    import matplotlib.image

    out, files = written
    for path in (out / f for f in files.values()):
        pixels = matplotlib.image.imread(path)
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50, path.name


def test_one_model_and_no_mistakes_still_draw(tmp_path):
    model, _ = fake_model("mlp", 1, 2.0, 0)
    model["confident_mistakes"] = []
    files = plots.write_all(
        {"models": {"mlp": model}}, {"mistakes": {"mlp": np.zeros((0, 28, 28))}}, tmp_path
    )
    w, h = plots.figure_size("misclassified", 1, 0)
    assert png_size(tmp_path / files["misclassified"]) == (round(w * 100), round(h * 100))


def test_model_colors_are_stable_and_distinct():
    colors = plots.model_colors(["mlp", "cnn", "lenet5"])
    assert len(set(colors.values())) == 3
    assert colors["mlp"] == plots.model_colors(["mlp"])["mlp"]


def _drawn(comparison, figure: str, monkeypatch):
    """The figure `figure` as plots draws it, before it is saved and closed."""
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    getattr(plots, figure)(comparison[0], Path("unused.png"))
    (fig,) = drawn
    fig.canvas.draw()
    return fig


def test_confusion_matrices_say_they_sum_a_models_runs(comparison, monkeypatch):
    fig = _drawn(comparison, "confusion_matrices", monkeypatch)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    mlp = comparison[0]["models"]["mlp"]
    pooled = int(np.sum(mlp["confusion_matrix"]))
    assert titles[0].startswith(f"mlp: {pooled:,} predictions (2 runs pooled)\naccuracy ")
    assert titles[0].endswith("(mean ± std over runs)")
    assert titles[1].startswith("cnn: 1,000 predictions\naccuracy ")  # one run: nothing pooled
    assert "summed over a model's runs" in fig._suptitle.get_text()


def test_reliability_titles_give_the_pooled_and_the_mean_ece(comparison, monkeypatch):
    fig = _drawn(comparison, "reliability", monkeypatch)
    mlp = comparison[0]["models"]["mlp"]
    title = next(ax.get_title() for ax in fig.axes if ax.get_title().startswith("mlp"))
    pooled, mean = 100 * mlp["calibration"]["ece"], 100 * mlp["ece"]["mean"]
    assert title.startswith(f"mlp: ECE {pooled:.2f}% (2 runs pooled)\nmean over runs {mean:.2f}")


def test_accuracy_vs_cost_names_its_error_bars_and_keeps_tick_labels_apart(comparison, monkeypatch):
    models = comparison[0]["models"]
    # Every point within one decade of FLOPs: the case whose minor tick labels overlapped.
    flops = dict(zip(models, (3.73e6, 3.76e6), strict=True))
    close = {n: m | {"flops_per_example": flops[n]} for n, m in models.items()}
    fig = _drawn(({"models": close}, None), "accuracy_vs_cost", monkeypatch)
    assert "error bars: ±1 standard deviation over runs" in fig._suptitle.get_text()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
        boxes = [t.get_window_extent(renderer) for t in labels]
        boxes = [b for b in boxes if ax.bbox.x0 - 1 <= b.x0 and b.x1 <= ax.bbox.x1 + 1]
        assert boxes, ax.get_xlabel()
        apart = all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))
        assert apart, [t.get_text() for t in labels]


def test_many_models_get_one_legend_beside_the_axes_and_labels_that_do_not_overlap(monkeypatch):
    """Nine models with a study's long names (the robustness study's case): each legend lies
    outside every axes, the layout holds (no warning), and the seeds' tick labels stay apart."""
    names = [f"cnn-change=setting_number_{i}" for i in range(9)]
    models = {n: fake_model(n, 3, 2.0 + 0.2 * i, i)[0] for i, n in enumerate(names)}
    for figure in ("learning_curves", "per_class_f1", "accuracy_vs_cost", "seeds"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "constrained_layout not applied" fails the test
            fig = _drawn(({"models": models}, None), figure, monkeypatch)
        renderer = fig.canvas.get_renderer()
        if figure == "seeds":  # slanted parallel labels: apart by more than a line's height
            labels = fig.axes[0].get_xticklabels()
            ends = [t.get_window_extent(renderer).x1 for t in labels]
            gap = min(b - a for a, b in itertools.pairwise(ends))
            line = labels[0].get_fontsize() * fig.dpi / 72
            assert gap * math.sin(math.radians(labels[0].get_rotation())) > 1.5 * line
            continue
        (legend,) = fig.legends
        assert not any(ax.get_legend() for ax in fig.axes), figure
        assert len(legend.get_texts()) == 9, figure
        box = legend.get_window_extent(renderer)
        assert all(box.x0 >= ax.bbox.x1 for ax in fig.axes), figure
        assert not any(a.texts for a in fig.axes), figure  # no point named beside the legend


def test_robustness_groups_corruptions_by_family_and_names_each_family_once(monkeypatch):
    """Corruptions listed out of family order are drawn family by family (first use first),
    each family named once above its bars; a comparison without families draws them as listed."""
    models = {n: fake_model(n, 1, 3.0, i)[0] for i, n in enumerate(("mlp", "cnn"))}
    listed = [("gaussian_noise", "noise"), ("rotate", "geometry"), ("brightness", "intensity"),
              ("elastic", "geometry"), ("impulse_noise", "noise")]  # fmt: skip
    scores = {n: {"accuracy": m["accuracy"]} for n, m in models.items()}
    section = {"images_per_corruption": 1000, "corruptions": [
        {"name": name, "family": family, "models": scores} for name, family in listed
    ]}  # fmt: skip
    fig = _drawn(({"models": models, "robustness": section}, None), "robustness", monkeypatch)
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    assert names == ["clean", "gaussian_noise", "impulse_noise", "rotate", "elastic", "brightness"]
    (top,) = ax.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == ["noise", "geometry", "intensity"]
    for entry in section["corruptions"]:
        del entry["family"]
    fig = _drawn(({"models": models, "robustness": section}, None), "robustness", monkeypatch)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][1:] == [n for n, _ in listed]
    assert not fig.axes[0].child_axes
