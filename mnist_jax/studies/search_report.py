"""A search's trials, rungs and final retraining -> results.csv, results.json, report.md, figures/.

Only the files of the run directories are read (metrics.jsonl for the rung scores, summary.json
of the final runs), so the report can be rebuilt at any time. The search trials' test numbers
are not read: the configuration is selected on validation data, and tested only through the
retraining on fresh seeds.
"""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_jax.evaluation import stats
from mnist_jax.studies import search as search_lib
from mnist_jax.studies.report import json_default
from mnist_jax.studies.study import format_value
from mnist_jax.training import rundir


def _score(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f}" if metric.endswith("accuracy") else f"{value:.4f}"


def _metric_label(metric: str) -> str:
    return "val acc (%)" if metric == "val_accuracy" else "val loss"


def trial_rows(
    search: search_lib.Search,
    trials: Sequence[search_lib.SearchTrial],
    rungs: Sequence[Mapping[str, Any]],
    trials_dir: Path,
) -> list[dict[str, Any]]:
    """One row per trial: its values, how far it went, and its score at every rung it was in."""
    rows = []
    for t in trials:
        state = search_lib.TrialState.read(trials_dir / t.name)
        row = {"trial": t.name, **t.point, "status": state.status(), "epochs": state.epochs}
        row["rungs"] = sum(t.index in r["trials"] for r in rungs)
        for r in rungs:
            row[f"score_rung{r['rung']}"] = r["scores"].get(t.index)
        row["curve"] = [(rec["epoch"], rec.get(search.metric)) for rec in state.records]
        rows.append(row)
    return rows


def _ranked(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Furthest rung first, then by the score at that rung."""
    sign = -1 if search_lib.METRICS[metric] else 1

    def key(row: dict[str, Any]) -> tuple:
        score = row.get(f"score_rung{row['rungs']}")
        return (-row["rungs"], score is None, 0.0 if score is None else sign * score, row["trial"])

    return sorted(rows, key=key)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else format_value(row[c]) for c in columns])
    path.write_text(buf.getvalue())


def plot(
    search: search_lib.Search, rows: list[dict[str, Any]], best: str | None, directory: Path
) -> list[Path]:
    """Every trial's validation curve (the rungs marked), and the first rung's score against each
    searched value (colour: how many rungs the trial reached)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    directory.mkdir(parents=True, exist_ok=True)
    scale = 100.0 if search.metric == "val_accuracy" else 1.0
    label = _metric_label(search.metric)
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for row in rows:
        points = [(e, scale * v) for e, v in row["curve"] if v is not None]
        if points:
            is_best = row["trial"] == best
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3,
                    linewidth=2.5 if is_best else 0.8, alpha=1.0 if is_best else 0.6,
                    label=f"{row['trial']} (best)" if is_best else None)  # fmt: skip
    for epochs in search.rungs:
        ax.axvline(epochs, color="grey", linestyle="--", linewidth=0.8)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (dashed: rungs)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if best is not None:
        ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(directory / "search_curves.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    cmap = plt.get_cmap("viridis", max(len(search.rungs), 2))
    for key, dist in search.space.items():
        scored = [r for r in rows if r.get("score_rung1") is not None]
        if not scored:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        if isinstance(dist, search_lib.Choice):
            names = [format_value(v) for v in dist.values]
            xs = [names.index(format_value(r[key])) for r in scored]
            ax.set_xticks(range(len(names)), names)
        else:
            xs = [r[key] for r in scored]
            if isinstance(dist, search_lib.LogUniform):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ys = [scale * r["score_rung1"] for r in scored]
        dots = ax.scatter(xs, ys, c=[r["rungs"] for r in scored], cmap=cmap,
                          vmin=0.5, vmax=max(len(search.rungs), 2) + 0.5)  # fmt: skip
        fig.colorbar(dots, ax=ax, label="rungs reached", ticks=range(1, len(search.rungs) + 1))
        ax.set_xlabel(key)
        ax.set_ylabel(f"{label} after {search.rungs[0]} epoch(s)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        paths.append(directory / f"score_vs_{key.replace('/', '_')}.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_all(
    output_dir: Path,
    search: search_lib.Search,
    trials: Sequence[search_lib.SearchTrial],
    rungs: Sequence[Mapping[str, Any]],
    best: int | None,
    finals: Mapping[int, Mapping[str, Any]],
    command: str,
) -> dict[str, Path]:
    """results.csv (one row per trial), results.json, report.md and figures/; their paths."""
    keys = list(search.space)
    metric = search.metric
    rows = _ranked(trial_rows(search, trials, rungs, output_dir / "trials"), metric)
    best_name = trials[best].name if best is not None else None
    figures = plot(search, rows, best_name, output_dir / "figures")
    score_cols = [f"score_rung{r}" for r in range(1, len(search.rungs) + 1)]
    write_csv(output_dir / "results.csv", rows, ["trial", *keys, "status", "epochs", "rungs",
                                                 *score_cols])  # fmt: skip
    tests = [finals[s]["test_accuracy"] for s in search.final_seeds if s in finals]
    test = stats.summarize(tests) if tests else None
    sizes = search_lib.rung_sizes(search.trials, search.eta, len(search.rungs))
    results = {
        "search": search.name,
        "description": search.description,
        "base": search.base,
        "space": {k: repr(v) for k, v in search.space.items()},
        "overrides": dict(search.overrides),
        "trials": search.trials,
        "sampling_seed": search.seed,
        "trial_seed": search.trial_seed,
        "rungs": list(search.rungs),
        "rung_sizes": sizes,
        "eta": search.eta,
        "metric": metric,
        "rung_results": [dict(r) for r in rungs],
        "trial_results": [{k: v for k, v in r.items() if k != "curve"} for r in rows],
        "best_trial": best_name,
        "best_values": trials[best].point if best is not None else None,
        "best_score": rungs[-1]["scores"][best] if best is not None else None,
        "final_seeds": list(search.final_seeds),
        "final": {str(s): finals[s] for s in search.final_seeds if s in finals},
        "final_test_accuracy": test,
    }
    text = rundir.to_json(rundir.finite_tree(results), indent=2, default=json_default)
    rundir.write_atomic(output_dir / "results.json", text + "\n")  # strict JSON, like a grid's

    lines = [f"# Search `{search.name}`\n"]
    if search.description:
        lines.append(search.description + "\n")
    overrides = json.dumps(dict(search.overrides), default=json_default)
    lines += [
        f"Command: `{command}`\n",
        f"Base `{search.base}`, overrides `{overrides}`; "
        f"{search.trials} configurations sampled at random (sampling seed {search.seed}), "
        f"trained with seed {search.trial_seed}; successive halving (eta {search.eta}) at "
        f"{', '.join(map(str, search.rungs))} epochs with {', '.join(map(str, sizes))} trials; "
        f"ranked by {metric} of the epoch each run keeps (lowest validation loss). Selection "
        "uses validation data only.\n",
        "| key | distribution |\n|---|---|",
        *(f"| `{k}` | `{v!r}` |" for k, v in search.space.items()),
        "",
        "## Rungs\n",
        f"| rung | epochs | trials | best {_metric_label(metric)} | promoted |",
        "|---|---|---|---|---|",
    ]
    for r in rungs:
        scored = [s for s in r["scores"].values() if s is not None]
        top = (max if search_lib.METRICS[metric] else min)(scored) if scored else None
        promoted = ", ".join(trials[i].name for i in r["promoted"] or [])
        status = "" if r["complete"] else " (incomplete)"
        lines.append(f"| {r['rung']}{status} | {r['epochs']} | {len(r['trials'])} | "
                     f"{_score(top, metric)} | {promoted or '-'} |")  # fmt: skip
    head = ["trial", *keys, "status", *(f"@{e} ep" for e in search.rungs)]
    lines += ["", "## Trials\n", f"Scores: {_metric_label(metric)} at each rung.\n",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for row in rows:
        cells = [row["trial"], *(format_value(row[k]) for k in keys), row["status"]]
        cells += [_score(row.get(c), metric) for c in score_cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("\n## Best configuration (selected on validation)\n")
    if best is None:
        lines.append("Not decided yet: the last rung has not finished.\n")
    else:
        values = ", ".join(f"`{k}={format_value(v)}`" for k, v in trials[best].point.items())
        lines.append(f"{best_name}: {values}; {metric} {_score(results['best_score'], metric)} "
                     f"after {search.rungs[-1]} epochs.\n")  # fmt: skip
        lines += [
            f"Retrained on fresh seeds {list(search.final_seeds)} "
            f"({len(finals)} of {len(search.final_seeds)} finished):\n",
            "| seed | test acc (%) | best val acc (%) | train s |",
            "|---|---|---|---|",
        ]
        for seed, s in finals.items():
            lines.append(f"| {seed} | {100 * s['test_accuracy']:.2f} | "
                         f"{_score(s.get('best_val_accuracy'), 'val_accuracy')} | "
                         f"{s['train_seconds']:.1f} |")  # fmt: skip
        if test is not None and test["mean"] is not None:
            ci = test["ci95"]
            ci_text = f"; 95% t interval {100 * ci[0]:.2f}-{100 * ci[1]:.2f}%" if ci else ""
            lines.append(f"\nTest accuracy over {test['n']} fresh seeds: "
                         f"**{100 * test['mean']:.2f} ± {100 * test['std']:.2f}%** (mean ± "
                         f"sample std){ci_text}; all 10,000 test images each.\n")  # fmt: skip
    lines += [f"![{p.stem}](figures/{p.name})\n" for p in figures]
    (output_dir / "report.md").write_text("\n".join(lines) + "\n")
    return {
        "csv": output_dir / "results.csv",
        "json": output_dir / "results.json",
        "report": output_dir / "report.md",
        **{p.stem: p for p in figures},
    }
