"""report.md: the comparison as tables a person reads, with the figures embedded.

A pure function of the comparison dict (the content of comparison.json).
"""

from pathlib import Path
from typing import Any

from mnist_jax.core import provenance
from mnist_jax.evaluation import scores


def _stat(stat: dict[str, float], fmt: str, scale: float = 1.0) -> str:
    if stat["mean"] is None:
        return "n/a"
    text = format(scale * stat["mean"], fmt)
    return f"{text} ± {format(scale * stat['std'], fmt)}" if stat["std"] else text


def _interval(stat: dict[str, Any], fmt: str = ".2f", scale: float = 100.0) -> str:
    ci = stat.get("ci95")
    return "n/a" if not ci else f"[{format(scale * ci[0], fmt)}, {format(scale * ci[1], fmt)}]"


def _p(p: float) -> str:
    if p < 1e-15:
        return "< 1e-15"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def _eq(p_text: str) -> str:
    return p_text if p_text.startswith("<") else f"= {p_text}"


def _signed(stat: dict[str, Any], scale: float = 100.0) -> str:
    """A difference: signed mean, unsigned std."""
    if stat["mean"] is None:
        return "n/a"
    text = f"{scale * stat['mean']:+.2f}"
    return f"{text} ± {scale * stat['std']:.2f}" if stat["std"] else text


def _mb(x: float) -> str:
    return f"{x / 1e6:.3f} MB"


def _si(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= size:
            return f"{x / size:.2f} {unit}"
    return f"{x:.0f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main_table(comparison: dict[str, Any]) -> list[str]:
    """The headline table: one row per model, a column per metric of scores.METRICS (the
    prediction metrics, the model's size, then what was measured on the runs)."""
    header = ["model", "runs"]
    for m in scores.of_predictions():
        header += [m.header, "95% interval (%)"] if m.interval else [m.header]
    header += ["parameters", "FLOPs / image", *(m.header for m in scores.of_runs())]
    rows = []
    for entry in comparison["models"].values():
        row = [f"**{entry['name']}**", str(entry["num_runs"])]
        for m in scores.of_predictions():
            row.append(_stat(entry[m.name], m.fmt, m.scale))
            if m.interval:
                row.append(_interval(entry[m.name], m.fmt, m.scale))
        row += [f"{entry['num_params']:,}", _si(entry["flops_per_example"])]
        row += [_stat(entry[m.name], m.fmt, m.scale) for m in scores.of_runs()]
        rows.append(row)
    return _table(header, rows)


def pairwise_table(comparison: dict[str, Any]) -> list[str]:
    header = [
        "b vs a",
        "accuracy b - a (pp)",
        "95% interval (pp)",
        "t test p (df)",
        "McNemar pooled: a only / b only, exact p",
        "params b/a",
        "FLOPs b/a",
        "train time b/a",
        "throughput b/a",
    ]
    rows = []
    for c in comparison["comparisons"]:
        t, pooled, r = c["test"], c["test"]["mcnemar"]["pooled"], c["ratios"]
        df = "" if t["df"] is None else f" ({t['df']:.1f})"
        rows.append(
            [
                f"{c['b']} vs {c['a']}",
                f"{100 * t['difference']:+.2f}",
                _interval(t, "+.2f"),
                f"{_p(t['p_value'])}{df}",
                f"{pooled['a_only_correct']} / {pooled['b_only_correct']}, "
                f"{_p(pooled['exact_p_value'])}",
                _ratio(r["num_params"]),
                _ratio(r["flops_per_example"]),
                _ratio(r["train_seconds"]),
                _ratio(r["throughput_images_per_second"]),
            ]
        )
    return _table(header, rows)


def verdict(a: str, b: str, t: dict[str, Any], where: str = "the test set") -> str:
    """One sentence: the difference, its interval and what the seed-aware test says."""
    k_a, k_b, d = t["n_seeds_a"], t["n_seeds_b"], 100 * t["difference"]
    lo, hi = (100 * x for x in t["ci95"])
    seeds = f"{k_a} and {k_b} seeds" if k_a != k_b else f"{k_a} seed{'s' * (k_a > 1)} each"
    df = "" if t["df"] is None else f", {t['df']:.1f} degrees of freedom"
    better = b if d > 0 else a
    if t["p_value"] < 0.05:
        meaning = f"{better} is more accurate, beyond what seeds and test images explain"
    else:
        meaning = "the difference is within what seeds and test images explain"
    caveat = "" if all(t["seed_variance_estimated"]) else (
        " With one seed a model's seed-to-seed spread cannot be estimated, so this is a "
        "statement about these trained networks, not the architectures."
    )  # fmt: skip
    return (
        f"On {where}, {b} minus {a} = {d:+.2f} points ({seeds}; 95% interval {lo:+.2f} to "
        f"{hi:+.2f}; t test over seeds and test images{df}, p {_eq(_p(t['p_value']))}): "
        f"{meaning} (5% level).{caveat}"
    )


TEST_TEXT = (
    "The test of an accuracy difference counts both sources of variation: retraining with "
    "another seed moves a model's accuracy, and so would another 10,000 digits. Its variance is "
    "the seed-to-seed variance of each model's accuracy over its number of seeds plus the "
    "variance of the seed-averaged per-image difference over the number of images, referred "
    "to Student's t with Welch-Satterthwaite degrees of freedom (`stats.t_test_difference`). "
    "McNemar's test, per seed pair and pooled (shown), sees only the test images: it says "
    "whether these trained networks differ on these images, not whether the architectures do. "
    "comparison.json also holds a two-level bootstrap (seeds and images) as a cross-check. "
    "95% intervals of a mean over seeds are t intervals (n - 1 degrees of freedom)."
)


def ensemble_lines(comparison: dict[str, Any]) -> list[str]:
    ensembles = comparison.get("ensembles") or {}
    if not ensembles:
        return []
    metrics = scores.of_predictions()
    header = ["ensemble", "members", *(m.header for m in metrics), "members' accuracy (%)"]
    rows = [
        [f"**{e['name']}**", str(e["members"]), *(m.show(e[m.name]) for m in metrics),
         _stat(e["members_accuracy"], ".2f", 100)]
        for e in ensembles.values()
    ]  # fmt: skip
    return [
        "## Ensembles of the seeds",
        "",
        *_table(header, rows),
        "",
        "Each ensemble averages the predicted probabilities of all of a model's runs. Selected "
        "on validation data only: every member is its run's best checkpoint by validation loss, "
        "and nothing was chosen by looking at the test set.",
        "",
    ]


def _set_table(entry: dict[str, Any], first: list[str], models: list[str]) -> list[str]:
    """Cells per model (accuracy mean ± std) and per pair (difference, p) of one set."""
    cells = [_stat(entry["models"][m]["accuracy"], ".2f", 100) for m in models]
    for c in entry["comparisons"]:
        cells.append(f"{100 * c['difference']:+.2f} ({_p(c['p_value'])})")
    return first + cells


def _set_header(comparison: dict[str, Any], first: list[str]) -> list[str]:
    ms = list(comparison["models"])
    pairs = [f"{c['b']} - {c['a']} pp (p)" for c in comparison["comparisons"]]
    return first + [f"{m} accuracy (%)" for m in ms] + pairs


def robustness_lines(comparison: dict[str, Any]) -> list[str]:
    section = comparison.get("robustness")
    if not section:
        return []
    ms = list(comparison["models"])
    mean = section["mean_over_corruptions"]
    seen_by = {
        c["name"]: [m for m in ms if c["name"] in mean[m].get("seen_in_training", ())]
        for c in section["corruptions"]
    }

    def label(name: str) -> str:
        return f"{name} (seen in training by {', '.join(seen_by[name])})" if seen_by[name] else name

    rows = [
        _set_table(c, [label(c["name"]), f"{c['severity']:g}", c["unit"]], ms)
        for c in section["corruptions"]
    ]
    rows.append(
        ["**mean over corruptions**", "", ""]
        + [_stat(mean[m]["accuracy"], ".2f", 100) for m in ms]
        + ["" for _ in comparison["comparisons"]]
    )
    if any(seen_by.values()):
        rows.append(
            ["**mean over the corruptions each model never saw in training**", "", ""]
            + [
                _stat(mean[m]["held_out_accuracy"], ".2f", 100)
                if mean[m].get("held_out_accuracy")
                else "n/a"
                for m in ms
            ]
            + ["" for _ in comparison["comparisons"]]
        )
    drops = ", ".join(
        f"{m} {_stat(mean[m]['drop'], '.2f', 100)} points below its clean accuracy" for m in ms
    )
    lines = [
        "## Robustness to corruptions",
        "",
        f"Every run on the {section['images_per_corruption']:,} test images under each "
        f"corruption (MNIST-C style, generated on the device from seed {section['seed']}; the "
        "same images for every run). Accuracy mean ± std over seeds; each pair's difference "
        "with the seed-aware t test's p-value.",
        "",
        *_table(_set_header(comparison, ["corruption", "severity", "unit"]), rows),
        "",
        f"Averaged over the corruptions: {drops}.",
        "",
    ]
    return lines


def test_set_lines(comparison: dict[str, Any]) -> list[str]:
    sets = comparison.get("test_sets")
    if not sets:
        return []
    ms = list(comparison["models"])
    rows = [
        _set_table(t, [name, f"{t['count']:,}", ", ".join(
            f"`{Path(f['path']).name}` sha256 {f['sha256'][:12]}…" for f in t["files"])], ms)
        for name, t in sets.items()
    ]  # fmt: skip
    return [
        "## External test sets",
        "",
        *_table(_set_header(comparison, ["set", "images", "files"]), rows),
        "",
        "Full sha256 sums and sizes in comparison.json (`test_sets`).",
        "",
    ]


def quantization_lines(comparison: dict[str, Any]) -> list[str]:
    q = comparison.get("quantization")
    if not q:
        return []
    header = ["model", "float acc (%)", "int8 acc (%)", "drop (pp)", "float size", "int8 size",
              "size int8/float", "kernels int8/float", "latency float / int8 (ms)",
              "throughput float / int8 (img/s)", "corrupted acc float / int8 (%)"]  # fmt: skip
    rows = []
    for name, e in q["models"].items():
        f, i = e["float"], e["int8"]
        robust = (
            f"{_stat(f['robustness_mean'], '.2f', 100)} / {_stat(i['robustness_mean'], '.2f', 100)}"
            if "robustness_mean" in i else "n/a"
        )  # fmt: skip
        rows.append([
            f"**{name}**", _stat(f["accuracy"], ".2f", 100), _stat(i["accuracy"], ".2f", 100),
            _signed(e["accuracy_drop"]), _mb(f["bytes"]), _mb(i["bytes"]),
            f"{e['size_ratio']:.3f}", f"{e['kernel_size_ratio']:.3f}",
            f"{_stat(f['latency_ms_median'], '.3f')} / {_stat(i['latency_ms_median'], '.3f')}",
            f"{_stat(f['throughput_images_per_second'], ',.0f')} / "
            f"{_stat(i['throughput_images_per_second'], ',.0f')}",
            robust,
        ])  # fmt: skip
    m = q["method"]
    return [
        "## Post-training int8 quantization",
        "",
        *_table(header, rows),
        "",
        f"{m['library']}: weights {m['weights']}; activations {m['activations']}; "
        f"{m['accumulation']}. Sizes count what inference needs (int8 kernels with their "
        "scales, float biases); latency and throughput as in the summary, convolutions as "
        f"`{m['conv_impl']}`. Float vs int8 per run: McNemar's test in comparison.json.",
        "",
    ]


def _code(env: dict[str, Any]) -> str:
    """'mnist_jax 0.1.0 at commit 1a2b3c4d5e' (the commit where it ran from a checkout)."""
    version = env["versions"].get("mnist_jax", "(version not recorded)")
    commit = env.get("git_commit")
    return f"mnist_jax {version}" + (f" at commit {commit[:10]}" if commit else "")


def per_class_table(comparison: dict[str, Any]) -> list[str]:
    """Precision / recall / F1 per digit from each model's confusion matrix summed over its
    runs, beside the test images of that digit in one run (per model where they differ)."""
    ms = list(comparison["models"].values())
    supports = [m["per_class"].get("support_per_run") for m in ms]
    shared = all(s == supports[0] for s in supports)
    header = ["digit", "test images per run" if shared else "test images per run, per model"]
    header += [f"{m['name']} P / R / F1{_runs_pooled(m)}" for m in ms]
    rows = []
    for d in range(10):
        cells = [
            f"{m['per_class']['precision'][d]:.3f} / {m['per_class']['recall'][d]:.3f} / "
            f"{m['per_class']['f1'][d]:.3f}"
            for m in ms
        ]
        counts = [str(s[d]) if s else "?" for s in supports]
        rows.append([str(d), counts[0] if shared else " / ".join(counts), *cells])
    return _table(header, rows)


def _runs_pooled(m: dict[str, Any]) -> str:
    return f" ({m['num_runs']} runs pooled)" if m["num_runs"] > 1 else ""


# What each figure aggregates, said beside it (the figures' titles say it too).
FIGURE_CAPTIONS = {
    "confusion_matrices": "Counts summed over each model's runs (a row of one run sums to that "
    "digit's test images); colour: the fraction of the true digit.",
    "learning_curves": "Every run of every model, one line each.",
    "per_class_f1": "F1 of each digit from the confusion matrix summed over a model's runs, as "
    "in the per-class table.",
    "accuracy_vs_cost": "A point per model: the mean over its runs; error bars: ±1 standard "
    "deviation over runs (the summary table's ±), not the 95% interval of the seeds figure.",
    "misclassified": "The most confident mistakes of each model's first run.",
    "reliability": "Every run's test predictions pooled; each title gives the pooled ECE and, "
    "beneath it, the mean of the runs' own ECE that the summary table shows.",
    "seeds": "Each seed's test accuracy; the mean with its 95% t interval over seeds; the "
    "ensemble of the seeds.",
    "robustness": "Bars: the mean over a model's runs; error bars: ±1 standard deviation.",
}


def markdown(comparison: dict[str, Any]) -> str:
    env = comparison["environment"]
    # comparison.json files from before the CPU kind was recorded name the model only.
    kind = env.get("cpu") or {"model": env["cpu_model"], "cores": env["cpu_count"]}
    machine = (
        provenance.describe_cpu(kind, env.get("sgemm_gflops"))
        if "avx512" in kind
        else f"{kind['model']}, {kind['cores']} CPU cores"
    )
    counts = ", ".join(f"{m['name']}: {m['test_count']:,}" for m in comparison["models"].values())
    lines = [
        "# MNIST model comparison",
        "",
        f"Evaluated {env['time']} on {env['hostname']} ({machine}; {env['num_devices']} x "
        f"{env['device_kind']}), JAX {env['versions'].get('jax')}, {_code(env)}. Test images "
        "evaluated per "
        f"model: {counts}. Bits are the same on the same CPU kind and JAX version; on other "
        "kinds the last digits, and so the trained models, differ (docs/determinism.md).",
        "",
        "## Summary",
        "",
        *main_table(comparison),
        "",
        "Mean ± standard deviation over runs where a model has several; the 95% interval is "
        "the t interval of the mean accuracy over runs. Accuracy, loss and ECE "
        "are recomputed from the best checkpoint (by validation loss). Throughput: one device, "
        f"batch {comparison['options']['throughput_batch_size']}, inputs on the device. Latency: "
        "median of batch-1 calls, host to host. FLOPs: XLA's count for the compiled forward pass.",
        "",
        *ensemble_lines(comparison),
        "## Pairwise comparison",
        "",
        *pairwise_table(comparison),
        "",
        *[verdict(c["a"], c["b"], c["test"]) + "\n" for c in comparison["comparisons"]],
        TEST_TEXT,
        "",
        *robustness_lines(comparison),
        *test_set_lines(comparison),
        *quantization_lines(comparison),
        "## Per-class precision / recall / F1",
        "",
        *per_class_table(comparison),
        "",
        "## Figures",
        "",
    ]
    titles = {
        "confusion_matrices": "Confusion matrices",
        "learning_curves": "Learning curves",
        "per_class_f1": "Per-class F1",
        "accuracy_vs_cost": "Accuracy against cost",
        "misclassified": "Most confident mistakes",
        "reliability": "Reliability diagrams",
        "seeds": "Accuracy over seeds",
        "robustness": "Accuracy under corruptions",
        "corruption_gallery": "The corruptions",
    }
    for name, filename in comparison.get("figures", {}).items():
        lines += [f"### {titles.get(name, name)}", ""]
        lines += [FIGURE_CAPTIONS[name], ""] if name in FIGURE_CAPTIONS else []
        lines += [f"![{titles.get(name, name)}]({filename})", ""]
    return "\n".join(lines)
