"""A finished study's trials -> results.csv, results.json, report.md and figures/.

One row per setting (a base and an axis point): the mean and sample standard deviation over its
seeds of what each trial's summary.json recorded, and the forward FLOPs per image of the
setting's model (computed from its config: XLA's cost analysis of the compiled forward pass, no
weights needed). Only summary.json files and configs are read, so the tables can be rebuilt at
any time from the run directories alone.
"""

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_jax import models
from mnist_jax.evaluation import inference, stats
from mnist_jax.studies import study as study_lib
from mnist_jax.training import rundir

METRICS = ("test_accuracy", "best_val_accuracy", "train_seconds", "num_params")
_LABELS = {
    "test_accuracy": "test accuracy",
    "best_val_accuracy": "best validation accuracy",
    "train_seconds": "training time (s)",
    "num_params": "parameters",
}


COSTS = {"num_params": "parameters", "flops": "forward FLOPs per image"}


@dataclasses.dataclass(frozen=True)
class _Projection:
    """Stands in for a fitted PCA projection: FLOPs depend on its shape, not its values."""

    mean: np.ndarray
    components: np.ndarray


def flops_per_example(config: ml_collections.ConfigDict) -> float | None:
    """XLA's FLOP count of one image's forward pass (normalisation and any PCA projection
    included) for the model `config` describes; abstract variables, nothing trained or run."""
    model = models.create_model(config)
    if k := config.data.get("pca_components", 0):
        model = models.project_inputs(
            model, _Projection(np.ones(784, np.float32), np.ones((784, k), np.float32))
        )
    variables = jax.eval_shape(lambda: models.init_variables(model, jax.random.key(0)))
    return inference.flops_per_example(model, variables)


def _model_key(config: ml_collections.ConfigDict) -> str:
    """What the forward pass depends on: the model, its section, dtype and PCA inputs."""
    section = config.get(config.model)
    parts = [
        config.model,
        section.to_json_best_effort() if section is not None else "",
        config.get("dtype", "float32"),
        config.data.get("pca_components", 0),
    ]
    return json.dumps(parts, default=str)


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std over seeds, as stats.summarize gives them (std None for one seed)."""
    if not values:
        return None, None
    summary = stats.summarize(values)
    return summary["mean"], summary["std"]


def aggregate(
    trials: Sequence[study_lib.Trial], summaries: dict[str, dict[str, Any]], axes: Sequence[str]
) -> list[dict[str, Any]]:
    """One dict per setting, in trial order; `summaries` maps trial name -> its summary.json."""
    rows: dict[str, dict[str, Any]] = {}
    for trial in trials:
        row = rows.setdefault(
            trial.setting,
            {
                "setting": trial.setting,
                "base": trial.base,
                "model": trial.config.model,
                **{k: trial.point[k] for k in axes},
                "seeds": [],
                "trials": [],
            },
        )
        if trial.name in summaries:
            row["seeds"].append(trial.seed)
            row["trials"].append(trial.name)
    for row in rows.values():
        row["n_seeds"] = len(row["seeds"])
        for metric in METRICS:
            values = [float(summaries[name][metric]) for name in row["trials"]]
            row[f"{metric}_mean"], row[f"{metric}_std"] = _mean_std(values)
    return list(rows.values())


def add_flops(rows: list[dict[str, Any]], trials: Sequence[study_lib.Trial]) -> None:
    """Sets each row's `flops` (one compile per distinct model; None where XLA gives none)."""
    configs = {t.setting: t.config for t in reversed(trials)}
    cache: dict[str, float | None] = {}
    for row in rows:
        config = configs[row["setting"]]
        key = _model_key(config)
        if key not in cache:
            cache[key] = flops_per_example(config)
        row["flops"] = cache[key]


def _columns(axes: Sequence[str]) -> list[str]:
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    return ["setting", "base", "model", *axes, "n_seeds", "seeds", *stats, "flops"]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return " ".join(map(str, value))  # seeds
    return study_lib.format_value(value) if isinstance(value, list | tuple) else str(value)


def write_csv(path: Path, rows: list[dict[str, Any]], axes: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = _columns(axes)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    path.write_text(buf.getvalue())


def _pm(mean: float | None, std: float | None, metric: str) -> str:
    if mean is None:
        return "-"
    if metric.endswith("accuracy"):
        return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")
    if metric == "num_params":
        return f"{mean:,.0f}"
    return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")


def markdown_table(rows: list[dict[str, Any]], axes: Sequence[str]) -> str:
    """Accuracies in percent, mean ± std over seeds."""
    head = ["model", *axes, "seeds", "test acc (%)", "best val acc (%)", "train s", "params"]
    head.append("MFLOPs/image")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["base"], *(study_lib.format_value(r[k]) for k in axes), str(r["n_seeds"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"], m) for m in METRICS]
        cells.append("-" if r.get("flops") is None else f"{r['flops'] / 1e6:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(
    rows: list[dict[str, Any]], axes: dict[str, list[str]], metric: str, directory: Path
) -> list[Path]:
    """For each axis with more than one value: `metric` against it, one line per model (and per
    value of the other axes), error bars one standard deviation over seeds. `axes` maps each
    plotted axis to the other axes that vary independently of it (study.plot_axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    for axis, others in axes.items():
        values = list(dict.fromkeys(_key(r[axis]) for r in rows))
        if len(values) < 2:
            continue
        numeric = study_lib.is_numeric_axis(values)
        lines: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            label = ", ".join([r["base"], *(f"{a}={study_lib.format_value(r[a])}" for a in others)])
            lines.setdefault(label, []).append(r)
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, members in lines.items():
            members = [m for m in members if m[f"{metric}_mean"] is not None]
            if numeric:
                members.sort(key=lambda m: m[axis])
                xs = [m[axis] for m in members]
            else:
                xs = [values.index(_key(m[axis])) for m in members]
            ys = [scale * m[f"{metric}_mean"] for m in members]
            errs = [scale * (m[f"{metric}_std"] or 0.0) for m in members]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=label)
        if numeric:
            positive = [v for v in values if v > 0]
            if len(positive) == len(values) and max(values) / min(values) >= 20:
                ax.set_xscale("log")
            elif positive and len(positive) < len(values) and max(positive) / min(positive) >= 20:
                ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xticks(range(len(values)), [study_lib.format_value(v) for v in values])
        ax.set_xlabel(axis)
        unit = " (%)" if scale == 100 else ""
        ax.set_ylabel(_LABELS.get(metric, metric).replace(" (s)", "") + unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = directory / f"{metric}_vs_{_safe(axis)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_costs(
    rows: list[dict[str, Any]], axes: Sequence[str], metric: str, directory: Path
) -> list[Path]:
    """`metric` against parameters and against forward FLOPs (log scale), one series per base,
    each point labelled with its axis values; only for a cost that varies within a base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    paths = []
    for cost, label in COSTS.items():
        column = "num_params_mean" if cost == "num_params" else cost
        done = [r for r in rows if r.get(column) is not None and r[f"{metric}_mean"] is not None]
        bases = list(dict.fromkeys(r["base"] for r in done))
        if all(len({r[column] for r in done if r["base"] == b}) < 2 for b in bases):
            continue  # the cost does not vary within any model: nothing to plot against
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for base in bases:
            members = sorted((r for r in done if r["base"] == base), key=lambda r: r[column])
            xs = [r[column] for r in members]
            ys = [scale * r[f"{metric}_mean"] for r in members]
            errs = [scale * (r[f"{metric}_std"] or 0.0) for r in members]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, linestyle="none", label=base)
            for r, x, y in zip(members, xs, ys, strict=True):
                text = ",".join(study_lib.format_value(r[a]) for a in axes)
                ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4),
                            fontsize="x-small")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(label)
        unit = " (%)" if scale == 100 else ""
        ax.set_ylabel(_LABELS.get(metric, metric).replace(" (s)", "") + unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        path = directory / f"{metric}_vs_{cost}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _safe(text: str) -> str:
    return study_lib._UNSAFE.sub("_", text)


def write_all(
    output_dir: Path,
    study: study_lib.Study,
    trials: Sequence[study_lib.Trial],
    summaries: dict[str, dict[str, Any]],
    command: str,
) -> dict[str, Path]:
    """results.csv, results.json, report.md and figures/ in `output_dir`; returns their paths."""
    axes = study_lib.axis_keys(study)
    rows = aggregate(trials, summaries, axes)
    add_flops(rows, trials)
    figures = plot(rows, study_lib.plot_axes(study), study.metric, output_dir / "figures")
    figures += plot_costs(rows, axes, study.metric, output_dir / "figures")
    write_csv(output_dir / "results.csv", rows, axes)
    missing = [t.name for t in trials if t.name not in summaries]
    results = {
        "study": study.name,
        "description": study.description,
        "metric": study.metric,
        "axes": axes,
        "bases": dict(study.bases),
        "seeds": list(study.seeds),
        "overrides": dict(study.overrides),
        "num_trials": len(trials),
        "missing_trials": missing,
        "rows": rows,
        "trials": {
            t.name: {"setting": t.setting, "seed": t.seed}
            | {m: summaries[t.name][m] for m in METRICS if t.name in summaries}
            for t in trials
        },
    }
    # Strict JSON: a value that is not finite (a trial's summary from an older version) is null.
    text = rundir.to_json(rundir.finite_tree(results), indent=2, default=json_default)
    rundir.write_atomic(output_dir / "results.json", text + "\n")
    report = [
        f"# Study `{study.name}`\n",
        study.description + "\n" if study.description else "",
        f"Command: `{command}`\n",
        f"Fixed overrides: `{json.dumps(dict(study.overrides), default=json_default)}`; "
        f"seeds {list(study.seeds)}; {len(trials) - len(missing)} of {len(trials)} trials "
        "finished. Mean ± sample standard deviation over seeds; MFLOPs/image: XLA's count for "
        "one image's forward pass.\n",
        markdown_table(rows, axes),
        *(f"![{p.stem}](figures/{p.name})\n" for p in figures),
    ]
    (output_dir / "report.md").write_text("\n".join(part for part in report if part))
    return {
        "csv": output_dir / "results.csv",
        "json": output_dir / "results.json",
        "report": output_dir / "report.md",
        **{p.stem: p for p in figures},
    }


def json_default(value: Any) -> Any:
    """json.dumps' `default` for study values: tuples as lists, anything else as its text."""
    if isinstance(value, tuple):
        return list(value)
    return str(value)
