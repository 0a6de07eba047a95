"""The comparison figures, one function per figure, drawn from what the evaluation binary computed.

Every function takes the comparison dict (the content of comparison.json) and a path, and writes
one PNG of a fixed pixel size (`figure_size` x `DPI`; no tight bounding box, so sizes are
predictable). Each model keeps one colour across all figures (`model_colors`).
"""

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

DPI = 100
DIGITS = list(range(10))


def model_colors(names: list[str]) -> dict[str, Any]:
    cycle = plt.get_cmap("tab10").colors
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


# Above this many models, a figure that tells models apart by colour puts one legend beside its
# axes (LEGEND_WIDTH more inches) instead of over the data, and names no point twice.
LEGEND_INSIDE_MAX = 3
LEGEND_WIDTH = 3.4
# A figure of one panel per model wraps after this many panels a row.
GRID_COLUMNS = 4


def _many(num_models: int) -> bool:
    """Whether a figure keeps its legend beside the axes rather than over the data."""
    return num_models > LEGEND_INSIDE_MAX


def figure_size(name: str, num_models: int, num_mistakes: int = 16) -> tuple[float, float]:
    """Size in inches of each figure; the PNG is this times DPI pixels."""
    n = max(num_models, 1)
    rows = max(math.ceil(num_mistakes / 8), 1)
    legend = LEGEND_WIDTH if _many(n) else 0.0
    return {
        "confusion_matrices": (5.6 * min(n, GRID_COLUMNS) + 0.8, 5.4 * math.ceil(n / GRID_COLUMNS)),
        "learning_curves": (13.0 + legend, 4.8),
        "per_class_f1": (11.0 + legend, 4.8),
        "accuracy_vs_cost": (15.0 + legend, 4.8),
        "misclassified": (12.0, 0.6 + n * (0.4 + 1.6 * rows)),
        "reliability": (4.8 * n, 6.4),
        "seeds": (2.2 + 2.0 * n, 4.8),
        "robustness": (15.0 + legend, 5.2),
        "corruption_gallery": (1.5 * min(n, 8) + 0.2, 0.7 + 1.7 * math.ceil(n / 8)),
    }[name]


def _label(m: dict[str, Any]) -> str:
    return m["name"] if m["num_runs"] == 1 else f"{m['name']} ({m['num_runs']} runs)"


def _pooled(m: dict[str, Any]) -> str:
    """' (3 runs pooled)' where a figure sums or concatenates a model's runs."""
    return f" ({m['num_runs']} runs pooled)" if m["num_runs"] > 1 else ""


def _over_runs(m: dict[str, Any]) -> str:
    """' (mean ± std over runs)' beside a per-run statistic of a model with several runs."""
    return " (mean ± std over runs)" if m["num_runs"] > 1 else ""


def _first_run(m: dict[str, Any]) -> str:
    """'CNN' or 'CNN, seed 0 (the first of 3 runs)': what a figure of one run shows."""
    if m["num_runs"] == 1:
        return m["name"]
    seed = m["seeds"][0]
    which = f"seed {seed}" if seed is not None else f"run {m['workdirs'][0]}"
    return f"{m['name']}, {which} (the first of {m['num_runs']} runs)"


def _pct(stat: dict[str, float]) -> str:
    if stat["std"]:
        return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}%"
    return f"{100 * stat['mean']:.2f}%"


def _legend(fig: plt.Figure, ax: plt.Axes, num_models: int, **inside: Any) -> None:
    """The models' legend: in `ax` where `inside` places it, or beside the axes for many models."""
    if _many(num_models):
        fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=9)
    else:
        ax.legend(**inside)


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def confusion_matrices(comparison: dict, path: Path) -> None:
    """Row-normalised confusion matrices side by side; each cell annotated with its count."""
    ms = list(comparison["models"].values())
    columns = min(len(ms), GRID_COLUMNS)
    fig, axes = plt.subplots(
        math.ceil(len(ms) / columns),
        columns,
        figsize=figure_size("confusion_matrices", len(ms)),
        layout="constrained",
        squeeze=False,
    )
    for ax in axes.ravel()[len(ms) :]:
        ax.axis("off")  # the last row's empty places
    image = None
    for ax, m in zip(axes.ravel(), ms, strict=False):
        cm = np.asarray(m["confusion_matrix"], float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        # A power norm keeps the rare confusions visible next to a ~99% diagonal.
        image = ax.imshow(norm, cmap="Blues", norm=matplotlib.colors.PowerNorm(0.3, 0, 1))
        for i, j in np.ndindex(cm.shape):
            if cm[i, j]:
                dark = norm[i, j] > 0.3
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if dark else "black",
                )
        ax.set(xticks=DIGITS, yticks=DIGITS, xlabel="predicted digit", ylabel="true digit")
        ax.set_title(
            f"{m['name']}: {int(cm.sum()):,} predictions{_pooled(m)}\n"
            f"accuracy {_pct(m['accuracy'])}{_over_runs(m)}",
            fontsize=10,
        )
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.85, label="fraction of the true class")
    fig.suptitle(
        "Confusion matrices on the test set (cells: counts, summed over a model's runs)",
        fontsize=12,
    )
    _save(fig, path)


def learning_curves(comparison: dict, path: Path) -> None:
    """Train (dashed) and validation (solid) loss and accuracy per epoch, every run."""
    ms = list(comparison["models"].values())
    colors = model_colors([m["name"] for m in ms])
    fig, (ax_loss, ax_acc) = plt.subplots(
        1, 2, figsize=figure_size("learning_curves", len(ms)), layout="constrained"
    )
    for m in ms:
        for r, run in enumerate(m["runs"]):
            h = run["history"]
            epochs = [e["epoch"] for e in h]
            for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
                for split, style in (("train", "--"), ("val", "-")):
                    ys = [e.get(f"{split}_{key}") for e in h]
                    if any(y is None for y in ys) or not ys:
                        continue
                    ax.plot(
                        epochs,
                        ys,
                        style,
                        color=colors[m["name"]],
                        marker=".",
                        alpha=0.9,
                        label=_curve_label(m["name"], split, len(ms)) if r == 0 else None,
                    )
    ax_loss.set(yscale="log", xlabel="epoch", ylabel="cross-entropy loss (log scale)")
    ax_loss.set_title("Loss per epoch")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_acc.set_title("Accuracy per epoch")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _legend(fig, ax_loss, len(ms), fontsize=9)  # both axes draw the same curves: one legend
    fig.suptitle("Learning curves (dashed: train, solid: validation)", fontsize=12)
    _save(fig, path)


def per_class_f1(comparison: dict, path: Path) -> None:
    """F1 score of each digit, one bar per model, grouped by digit."""
    ms = list(comparison["models"].values())
    colors = model_colors([m["name"] for m in ms])
    fig, ax = plt.subplots(figsize=figure_size("per_class_f1", len(ms)), layout="constrained")
    width = 0.8 / len(ms)
    lowest = 1.0
    for i, m in enumerate(ms):
        f1 = np.asarray(m["per_class"]["f1"])
        lowest = min(lowest, float(f1.min()))
        x = np.arange(10) + (i - (len(ms) - 1) / 2) * width
        ax.bar(x, f1, width, color=colors[m["name"]], label=_label(m))
    ax.set(xticks=DIGITS, xlabel="digit", ylabel="F1 score")
    bottom = max(0.0, lowest - 0.02)
    ax.set_ylim(bottom, 1.0 + 0.25 * (1.0 - bottom))  # headroom above 1.0 for the legend
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_yticks([t for t in ax.get_yticks() if bottom <= t <= 1.0 + 1e-9])
    ax.grid(axis="y", alpha=0.3)
    _legend(fig, ax, len(ms), loc="upper left", ncol=len(ms))
    several = any(m["num_runs"] > 1 for m in ms)
    pooled = "each model's runs pooled; " if several else ""
    ax.set_title(f"Per-class F1 on the test set ({pooled}y-axis zoomed)")
    _save(fig, path)


def _curve_label(model: str, split: str, num_models: int) -> str | None:
    """'cnn train' per curve for a few models; for many, the model's name once (the title
    says which style is which split)."""
    if not _many(num_models):
        return f"{model} {split}"
    return model if split == "val" else None


def accuracy_vs_cost(comparison: dict, path: Path) -> None:
    """Test accuracy against parameters, FLOPs per example and training time (log x-axes)."""
    ms = list(comparison["models"].values())
    colors = model_colors([m["name"] for m in ms])
    fig, axes = plt.subplots(
        1, 3, figsize=figure_size("accuracy_vs_cost", len(ms)), layout="constrained", sharey=True
    )
    costs = (
        ("num_params", "parameters"),
        ("flops_per_example", "FLOPs per example (forward)"),
        ("train_seconds", "training time (s)"),
    )
    for ax, (key, label) in zip(axes, costs, strict=True):
        for m in ms:
            value = m[key]
            x, xerr = (value["mean"], value["std"]) if isinstance(value, dict) else (value, 0)
            if x is None:
                continue
            acc = m["accuracy"]
            ax.errorbar(
                x,
                100 * acc["mean"],
                yerr=100 * (acc["std"] or 0),
                xerr=xerr or None,
                fmt="o",
                ms=9,
                capsize=4,
                color=colors[m["name"]],
                label=_label(m),
            )
            if _many(len(ms)):
                continue  # the legend beside the axes names them; labels here would overlap
            ax.annotate(
                m["name"],
                (x, 100 * acc["mean"]),
                textcoords="offset points",
                xytext=(8, 6),
                fontsize=10,
            )
        ax.set_xscale("log")
        # 1-2-5 steps in SI units (200k, 500k, 1M): tick labels that do not overlap, even
        # where every point lies within one decade (the minor ticks keep no labels).
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        seconds = key == "train_seconds"
        ax.xaxis.set_major_formatter(
            ticker.FuncFormatter(lambda v, _: f"{v:g}") if seconds else ticker.EngFormatter(sep="")
        )
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.margins(x=0.3)
        ax.set(xlabel=label + " (log scale)")
        ax.grid(alpha=0.3, which="both")
    accs = [100 * m["accuracy"]["mean"] for m in ms]
    stds = [100 * (m["accuracy"]["std"] or 0) for m in ms]
    pad = max(0.3 * (max(accs) - min(accs)), 0.3, 1.5 * max(stds))
    axes[0].set_ylim(min(accs) - pad, min(max(accs) + pad, 100.0))
    axes[0].set_ylabel("test accuracy (%)")
    _legend(fig, axes[0], len(ms), loc="lower right", fontsize=9)
    several = any(m["num_runs"] > 1 for m in ms)
    fig.suptitle(
        "Accuracy against cost"
        + (" (mean over runs; error bars: ±1 standard deviation over runs)" if several else ""),
        fontsize=12,
    )
    _save(fig, path)


# The mistakes' mosaic: 8 digits a row, each in a cell with a band above it for its caption
# and a gap beside it (pixels).
MOSAIC_COLUMNS, MOSAIC_GAP, MOSAIC_CAPTION = 8, 4, 10
CELL_W, CELL_H = 28 + MOSAIC_GAP, 28 + MOSAIC_CAPTION


def _cell(i: int) -> tuple[int, int]:
    """(top, left) of the i-th cell of the mosaic, in pixels."""
    r, c = divmod(i, MOSAIC_COLUMNS)
    return r * CELL_H, c * CELL_W


def _mosaic(images: np.ndarray, rows: int) -> np.ndarray:
    """The 28x28 digits side by side on a blank (0) canvas, `MOSAIC_COLUMNS` a row: one image
    per model instead of an axes per digit, which is what made this figure slow to draw."""
    canvas = np.zeros((rows * CELL_H, MOSAIC_COLUMNS * CELL_W), np.uint8)
    for i, image in enumerate(images):
        top, left = _cell(i)
        top, left = top + MOSAIC_CAPTION, left + MOSAIC_GAP // 2
        canvas[top : top + 28, left : left + 28] = image
    return canvas


def misclassified(comparison: dict, images: dict[str, np.ndarray], path: Path) -> None:
    """The most confident mistakes of each model: the digit, true -> predicted, confidence."""
    ms = list(comparison["models"].values())
    colors = model_colors([m["name"] for m in ms])
    k = max((len(m["confident_mistakes"]) for m in ms), default=0)
    rows_per_model = max(math.ceil(k / MOSAIC_COLUMNS), 1)
    fig, axes = plt.subplots(
        len(ms), 1, figsize=figure_size("misclassified", len(ms), k), layout="constrained",
        squeeze=False,
    )  # fmt: skip
    for ax, m in zip(axes[:, 0], ms, strict=True):
        ax.set_title(
            f"{_first_run(m)}: most confident mistakes (true → predicted, confidence)",
            color=colors[m["name"]],
            fontsize=11,
            fontweight="bold",
        )
        ax.imshow(_mosaic(images[m["name"]], rows_per_model), cmap="gray_r", vmin=0, vmax=255)
        ax.axis("off")
        for i, mistake in enumerate(m["confident_mistakes"]):
            top, left = _cell(i)
            ax.text(  # centred over the digit, at the foot of its caption band
                left + CELL_W / 2 - 0.5,
                top + MOSAIC_CAPTION - 1.5,
                f"{mistake['label']} → {mistake['predicted']}  {100 * mistake['confidence']:.1f}%",
                fontsize=9,
                ha="center",
                va="bottom",
            )
    fig.suptitle("Misclassified test digits", fontsize=12)
    _save(fig, path)


def reliability(comparison: dict, path: Path) -> None:
    """Reliability diagram per model: accuracy against confidence per bin, with bin counts."""
    ms = list(comparison["models"].values())
    colors = model_colors([m["name"] for m in ms])
    fig, axes = plt.subplots(
        2,
        len(ms),
        figsize=figure_size("reliability", len(ms)),
        layout="constrained",
        squeeze=False,
        height_ratios=(3, 1),
        sharex=True,
    )
    for col, m in enumerate(ms):
        cal = m["calibration"]
        bins = cal["bins"]
        lower, upper = np.asarray(bins["lower"]), np.asarray(bins["upper"])
        count = np.asarray(bins["count"])
        centers, width = (lower + upper) / 2, upper - lower
        shown = count > 0
        top, bottom = axes[0, col], axes[1, col]
        top.bar(
            centers[shown],
            np.asarray(bins["accuracy"])[shown],
            width[shown] * 0.95,
            color=colors[m["name"]],
            edgecolor="black",
            label="accuracy in bin",
        )
        top.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
        title = f"{m['name']}: ECE {100 * cal['ece']:.2f}%{_pooled(m)}"
        if m["num_runs"] > 1:  # the summary table's ECE is the mean of the runs' own
            title += f"\nmean over runs {_pct(m['ece'])}"
        top.set_title(title, fontsize=10)
        top.legend(loc="upper left", fontsize=9)
        top.grid(alpha=0.3)
        bottom.bar(centers, np.maximum(count, 0), width * 0.95, color=colors[m["name"]])
        bottom.set(yscale="log", xlabel="confidence (top-class probability)", ylabel="images (log)")
        bottom.grid(alpha=0.3)
    fig.suptitle("Reliability diagrams (test set; a model's runs pooled)", fontsize=12)
    _save(fig, path)


def seeds(comparison: dict, path: Path) -> None:
    """Test accuracy of every seed, the mean with its 95% interval, and the ensemble if any."""
    ms = list(comparison["models"].values())
    ensembles = comparison.get("ensembles", {})
    colors = model_colors([m["name"] for m in ms])
    fig, ax = plt.subplots(figsize=figure_size("seeds", len(ms)), layout="constrained")
    for x, m in enumerate(ms):
        acc, color = m["accuracy"], colors[m["name"]]
        values = 100 * np.asarray(acc["values"])
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(x + np.asarray(offsets), values, color=color, alpha=0.7, zorder=3,
                   label="one seed" if x == 0 else None)  # fmt: skip
        if acc["ci95"]:
            lo, hi = 100 * np.asarray(acc["ci95"])
            yerr = [[100 * acc["mean"] - lo], [hi - 100 * acc["mean"]]]
            ax.errorbar(x + 0.3, 100 * acc["mean"], yerr=yerr, fmt="s", color=color, capsize=6,
                        label="mean, 95% interval" if x == 0 else None)  # fmt: skip
        if m["name"] in ensembles:
            ax.scatter(x + 0.45, 100 * ensembles[m["name"]]["accuracy"], marker="*", s=180,
                       color=color, edgecolor="black", zorder=4,
                       label="ensemble of the seeds" if x == 0 else None)  # fmt: skip
    # Many long names side by side: slanted so that they do not overlap.
    slant = {"rotation": 25, "ha": "right", "rotation_mode": "anchor"} if _many(len(ms)) else {}
    ax.set_xticks(range(len(ms)), [_label(m) for m in ms], **slant)
    ax.set_xlim(-0.6, len(ms) - 0.2)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title("Test accuracy over seeds", fontsize=12)
    _save(fig, path)


def _by_family(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The corruption entries with each family's together, families in order of first use."""
    order = list(dict.fromkeys(c.get("family") for c in entries))
    return sorted(entries, key=lambda c: order.index(c.get("family")))


def _family_axis(ax: plt.Axes, families: list[str | None]) -> None:
    """Each family's name above its corruptions (bar rows 1.. after 'clean' at 0), and a line
    between families; nothing for a comparison written before corruptions had families."""
    if None in families:
        return
    starts = [i for i, f in enumerate(families) if i == 0 or f != families[i - 1]]
    ends = [*starts[1:], len(families)]
    top = ax.secondary_xaxis("top")
    top.set_xticks([1 + (a + b - 1) / 2 for a, b in zip(starts, ends, strict=True)],
                   [families[a] for a in starts])  # fmt: skip
    top.tick_params(length=0)
    for a in starts:
        ax.axvline(a + 0.5, color="gray", lw=0.8, alpha=0.6)


def robustness(comparison: dict, path: Path) -> None:
    """Accuracy per corruption, one bar per model: the mean over seeds, error bars one std; the
    corruptions grouped by family (named above the bars) where the comparison records them."""
    section = comparison["robustness"]
    ms = list(comparison["models"])
    colors = model_colors(ms)
    entries = _by_family(section["corruptions"])
    rows = [("clean", {m: comparison["models"][m]["accuracy"] for m in ms})] + [
        (c["name"], {m: c["models"][m]["accuracy"] for m in ms}) for c in entries
    ]
    fig, ax = plt.subplots(figsize=figure_size("robustness", len(ms)), layout="constrained")
    _family_axis(ax, [c.get("family") for c in entries])
    width = 0.8 / len(ms)
    for i, m in enumerate(ms):
        x = np.arange(len(rows)) + (i - (len(ms) - 1) / 2) * width
        mean = [100 * r[m]["mean"] for _, r in rows]
        std = [100 * (r[m]["std"] or 0) for _, r in rows]
        ax.bar(x, mean, width, yerr=std, capsize=2, color=colors[m], label=m)
    ax.set_xticks(range(len(rows)), [name for name, _ in rows], rotation=35, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    _legend(fig, ax, len(ms), loc="lower left")
    ax.set_title(
        f"Accuracy under corruptions ({section['images_per_corruption']:,} test images each; "
        "bars: mean over seeds, error bars: one standard deviation)",
        fontsize=11,
    )
    _save(fig, path)


def corruption_gallery(comparison: dict, tiles: dict[str, np.ndarray], path: Path) -> None:
    """One test digit clean and under every corruption, with the severity of each."""
    severity = {c["name"]: c["severity"] for c in comparison["robustness"]["corruptions"]}
    cols = min(8, len(tiles))
    size = figure_size("corruption_gallery", len(tiles))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=size, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, image) in zip(axes.ravel(), tiles.items(), strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(name if name == "clean" else f"{name}\n{severity[name]:g}", fontsize=9)
    fig.suptitle("One test digit under every corruption (name, severity)", fontsize=12)
    _save(fig, path)


FIGURES = {
    "confusion_matrices": confusion_matrices,
    "learning_curves": learning_curves,
    "per_class_f1": per_class_f1,
    "accuracy_vs_cost": accuracy_vs_cost,
    "misclassified": misclassified,
    "reliability": reliability,
    "seeds": seeds,
    "robustness": robustness,
    "corruption_gallery": corruption_gallery,
}
NEEDS = {"robustness": "robustness", "corruption_gallery": "robustness"}  # figure -> section
PICTURES = {"misclassified": "mistakes", "corruption_gallery": "corruptions"}  # -> images


def write_all(comparison: dict, images: dict[str, Any], out: Path) -> dict[str, str]:
    """Every figure whose data the comparison has into `out`; name -> file name (in `out`).

    `images`: "mistakes" (model -> the confident mistakes' images) and, with a robustness
    section, "corruptions" (tile name -> image) for the gallery.
    """
    files = {}
    for name, draw in FIGURES.items():
        if NEEDS.get(name, "models") not in comparison:
            continue
        filename = f"{name}.png"
        if name in PICTURES:
            draw(comparison, images[PICTURES[name]], out / filename)
        else:
            draw(comparison, out / filename)
        files[name] = filename
    return files
