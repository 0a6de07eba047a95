"""A finished study's trials -> results.csv, results.json, report.md and figures/.

One row per setting (a base and an axis point): the mean and sample standard deviation over its
seeds of what each trial's summary.json recorded. Only summary.json files are read, so the
tables can be rebuilt at any time from the run directories alone.
"""

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnist_jax.studies import study as study_lib
from mnist_jax.training import rundir

METRICS = ("test_accuracy", "best_val_accuracy", "train_seconds", "num_params")
_LABELS = {
    "test_accuracy": "test accuracy",
    "best_val_accuracy": "best validation accuracy",
    "train_seconds": "training time (s)",
    "num_params": "parameters",
}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (n-1); std is None for a single seed: there is no spread to report."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


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


def _columns(axes: Sequence[str]) -> list[str]:
    stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    return ["setting", "base", "model", *axes, "n_seeds", "seeds", *stats]


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
        writer.writerow([_cell(row[c]) for c in columns])
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
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["base"], *(study_lib.format_value(r[k]) for k in axes), str(r["n_seeds"])]
        cells += [_pm(r[f"{m}_mean"], r[f"{m}_std"], m) for m in METRICS]
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
    figures = plot(rows, study_lib.plot_axes(study), study.metric, output_dir / "figures")
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
    text = rundir.to_json(rundir.finite_tree(results), indent=2, default=_json)
    rundir.write_atomic(output_dir / "results.json", text + "\n")
    report = [
        f"# Study `{study.name}`\n",
        study.description + "\n" if study.description else "",
        f"Command: `{command}`\n",
        f"Fixed overrides: `{json.dumps(dict(study.overrides), default=_json)}`; "
        f"seeds {list(study.seeds)}; {len(trials) - len(missing)} of {len(trials)} trials "
        "finished. Mean ± sample standard deviation over seeds.\n",
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


def _json(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
