"""report.md: the comparison as tables a person reads, with the figures embedded.

A pure function of the comparison dict (the content of comparison.json).
"""

from typing import Any


def _stat(stat: dict[str, float], fmt: str, scale: float = 1.0) -> str:
    text = format(scale * stat["mean"], fmt)
    return f"{text} ± {format(scale * stat['std'], fmt)}" if stat["std"] else text


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
    """The headline table: one row per model."""
    header = [
        "model",
        "runs",
        "test accuracy (%)",
        "test loss",
        "ECE (%)",
        "macro F1",
        "parameters",
        "FLOPs / image",
        "training time (s)",
        "epochs",
        "throughput (img/s)",
        "latency (ms)",
        "checkpoint (MB)",
    ]
    rows = []
    for m in comparison["models"].values():
        rows.append(
            [
                f"**{m['name']}**",
                str(m["num_runs"]),
                _stat(m["accuracy"], ".2f", 100),
                _stat(m["loss"], ".4f"),
                _stat(m["ece"], ".2f", 100),
                _stat(m["macro_f1"], ".4f"),
                f"{m['num_params']:,}",
                _si(m["flops_per_example"]),
                _stat(m["train_seconds"], ".0f"),
                _stat(m["epochs_run"], ".0f"),
                _stat(m["throughput_images_per_second"], ",.0f"),
                _stat(m["latency_ms_median"], ".2f"),
                _stat(m["checkpoint_bytes"], ".2f", 1e-6),
            ]
        )
    return _table(header, rows)


def pairwise_table(comparison: dict[str, Any]) -> list[str]:
    header = [
        "b vs a",
        "accuracy b - a (pp)",
        "discordant (a only / b only)",
        "McNemar exact p",
        "McNemar χ² (corrected), p",
        "params b/a",
        "FLOPs b/a",
        "train time b/a",
        "throughput b/a",
    ]
    rows = []
    for c in comparison["comparisons"]:
        t = c["mcnemar"][0]
        more = (
            f" (+{len(c['mcnemar']) - 1} more seed pairs in JSON)" if len(c["mcnemar"]) > 1 else ""
        )
        r = c["ratios"]
        rows.append(
            [
                f"{c['b']} vs {c['a']}",
                f"{100 * c['accuracy_difference']:+.2f}",
                f"{t['a_only_correct']} / {t['b_only_correct']}",
                f"{t['exact_p_value']:.3g}{more}",
                f"{t['chi2_corrected']:.2f}, {t['chi2_p_value']:.3g}",
                _ratio(r["num_params"]),
                _ratio(r["flops_per_example"]),
                _ratio(r["train_seconds"]),
                _ratio(r["throughput_images_per_second"]),
            ]
        )
    return _table(header, rows)


def per_class_table(comparison: dict[str, Any]) -> list[str]:
    ms = list(comparison["models"].values())
    header = ["digit", "support"] + [f"{m['name']} P / R / F1" for m in ms]
    rows = []
    for d in range(10):
        cells = [
            f"{m['per_class']['precision'][d]:.3f} / {m['per_class']['recall'][d]:.3f} / "
            f"{m['per_class']['f1'][d]:.3f}"
            for m in ms
        ]
        rows.append([str(d), str(ms[0]["per_class"]["support"][d]), *cells])
    return _table(header, rows)


def markdown(comparison: dict[str, Any]) -> str:
    env = comparison["environment"]
    machine = env["cpu_model"]
    counts = ", ".join(f"{m['name']}: {m['test_count']:,}" for m in comparison["models"].values())
    lines = [
        "# MNIST model comparison",
        "",
        f"Evaluated {env['time']} on {env['hostname']} ({machine}, "
        f"{env['cpu_count']} CPU cores; {env['num_devices']} x {env['device_kind']}), JAX "
        f"{env['versions'].get('jax')}. Test images evaluated per model: {counts}.",
        "",
        "## Summary",
        "",
        *main_table(comparison),
        "",
        "Mean ± standard deviation over runs where a model has several. Accuracy, loss and ECE "
        "are recomputed from the best checkpoint (by validation loss). Throughput: one device, "
        f"batch {comparison['options']['throughput_batch_size']}, inputs on the device. Latency: "
        "median of batch-1 calls, host to host. FLOPs: XLA's count for the compiled forward pass.",
        "",
        "## Pairwise comparison",
        "",
        *pairwise_table(comparison),
        "",
        "McNemar's test uses only the test images on which exactly one of the two models is right; "
        "p < 0.05 means the accuracy difference is unlikely to be chance on this test set.",
        "",
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
    }
    for name, filename in comparison.get("figures", {}).items():
        lines += [
            f"### {titles.get(name, name)}",
            "",
            f"![{titles.get(name, name)}]({filename})",
            "",
        ]
    return "\n".join(lines)
