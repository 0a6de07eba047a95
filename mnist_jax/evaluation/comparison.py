"""From per-run evaluation records to comparison.json's `models`, `comparisons` and `ensembles`.

Runs whose configs differ only in the seed (or in keys that do not change results, such as
data.dir or parallel.mode) are one model; each measured quantity becomes mean, sample standard
deviation, a 95% t interval of the mean and the per-run values (stats.summarize). Pairs of
models are compared on the same images with the seed-aware test of stats.compare_accuracy
(McNemar per seed pair inside it) and with cost ratios; `score_set` does the same for any
other labelled set (a corruption, an external test set).
"""

import json
from typing import Any

import jax
import numpy as np

from mnist_jax import models
from mnist_jax.evaluation import inference, metrics, scores, stats
from mnist_jax.training import rundir


def _model_key(config_dict: dict[str, Any]) -> str:
    """Runs with equal keys are seeds of one model (neutral keys such as formulations ignored)."""
    return json.dumps(rundir.identity(config_dict, ignore=frozenset({"seed"})), sort_keys=True)


def _run_label(workdir: Any) -> str:
    """A run's directory name without its seed: the parent's for seed directories
    (runs/compare/mlp/seed_0), a study trial's name without its seed part
    (trials/change=base,seed=0 -> change=base)."""
    if rundir.is_seed_dir(workdir):
        return workdir.parent.name
    parts = [part for part in workdir.name.split(",") if not rundir.is_seed_dir(part)]
    return ",".join(parts) or workdir.name


def group_runs(runs: list[Any]) -> dict[str, list[int]]:
    """Model name -> indices of its runs; runs whose configs differ only in the seed share one.

    The name is config.model, with the first run's directory name added where two different
    configs use the same model.
    """
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(_model_key(run.config_dict), []).append(i)
    names = [runs[idx[0]].config.model for idx in groups.values()]
    return {
        name if names.count(name) == 1 else f"{name}-{_run_label(runs[idx[0]].workdir)}": idx
        for name, idx in zip(names, groups.values(), strict=True)
    }


def summarize_model(name: str, records: list[dict], outputs: list[Any], ece_bins: int) -> dict:
    """One model's entry: every metric of scores.METRICS over its runs (mean, std, interval),
    the pooled confusion matrix and calibration. `outputs`: the runs' runner.RunOutputs."""
    first = outputs[0]
    params = first.variables["params"]
    num_params = models.count_params(params)
    cm = np.sum([r["confusion_matrix"] for r in records], axis=0)
    probs = np.concatenate([o.predictions.probs for o in outputs])
    labels = np.concatenate([o.predictions.labels for o in outputs])
    test_counts = {r["test_count"] for r in records}
    return {
        "name": name,
        "model": records[0]["config"]["model"],
        "num_runs": len(records),
        "workdirs": [r["workdir"] for r in records],
        "seeds": [r["seed"] for r in records],
        "test_count": min(test_counts),
        "num_params": num_params,
        "params_bytes": int(sum(x.nbytes for x in jax.tree.leaves(params))),
        "flops_per_example": inference.flops_per_example(
            first.model, first.variables, conv_impl=first.conv_impl
        ),
        **{m.name: stats.summarize([r[m.name] for r in records]) for m in scores.METRICS},
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": metrics.per_class_report(cm) | _support_per_run(records),
        "calibration": metrics.calibration(probs, labels, ece_bins),
        "confident_mistakes": records[0]["confident_mistakes"],
        "config": records[0]["config"],
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in records],
    }


def _support_per_run(records: list[dict]) -> dict[str, Any]:
    """How many runs the pooled per-class numbers sum, and the test images of each class one
    run saw (None where the runs saw different test sets)."""
    supports = {tuple(np.sum(r["confusion_matrix"], axis=1).tolist()) for r in records}
    return {
        "runs_pooled": len(records),
        "support_per_run": list(supports.pop()) if len(supports) == 1 else None,
    }


def seed_names(seeds: list[int]) -> list[int] | None:
    """Row names for stats: the seeds where they are distinct, else None (rows by position)."""
    return seeds if len(set(seeds)) == len(seeds) else None


def compare_correct(
    a: str, b: str, correct: dict[str, np.ndarray], seeds: dict[str, list[int]]
) -> dict[str, Any]:
    """b against a on one set: stats.compare_accuracy of their (runs, images) correctness."""
    return {
        "a": a,
        "b": b,
        **stats.compare_accuracy(
            correct[a], correct[b], seed_names(seeds[a]), seed_names(seeds[b])
        ),
    }


def compare_models(a: dict, b: dict, correct: dict[str, np.ndarray]) -> dict:
    """b against a: the seed-aware accuracy test on the test set, cost ratios (b / a)."""
    seeds = {a["name"]: a["seeds"], b["name"]: b["seeds"]}
    test = compare_correct(a["name"], b["name"], correct, seeds)

    def ratio(key: str) -> float | None:
        va = a[key]["mean"] if isinstance(a[key], dict) else a[key]
        vb = b[key]["mean"] if isinstance(b[key], dict) else b[key]
        return None if va in (0, None) or vb is None else vb / va

    return {
        "a": a["name"],
        "b": b["name"],
        "accuracy_difference": test["difference"],
        "test": {k: v for k, v in test.items() if k not in ("a", "b")},
        "ratios": {
            k: ratio(k)
            for k in (
                "num_params",
                "flops_per_example",
                "train_seconds",
                "throughput_images_per_second",
                "latency_ms_median",
            )
        },
    }


def score_set(correct: dict[str, np.ndarray], seeds: dict[str, list[int]]) -> dict[str, Any]:
    """Accuracy of each model's runs on one labelled set, and every pair of models compared.

    `correct[m]` is (runs, images) booleans in the order of `seeds[m]`.
    """
    names = list(correct)
    return {
        "models": {
            m: {
                "accuracy": stats.summarize(correct[m].mean(axis=1).tolist()),
                "seeds": list(seeds[m]),
            }
            for m in names
        },
        "comparisons": [
            compare_correct(a, b, correct, seeds)
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ],
    }


ENSEMBLE_SELECTION = (
    "members selected on validation data only: each member is its run's best checkpoint by "
    "validation loss, all of the model's runs are members, and the average of their predicted "
    "probabilities is evaluated once on the test set; nothing was chosen by looking at the test set"
)


def ensemble(name: str, records: list[dict], probs: list[np.ndarray], labels: np.ndarray,
             ece_bins: int) -> dict[str, Any]:  # fmt: skip
    """One model's seeds as an ensemble: their predicted probabilities averaged, evaluated
    (every prediction metric of scores.py)."""
    predictions = scores.Predictions.from_probs(labels, np.mean(probs, axis=0), ece_bins)
    return {
        "name": f"{name} ensemble",
        "model": name,
        "members": len(records),
        "workdirs": [r["workdir"] for r in records],
        "seeds": [r["seed"] for r in records],
        "selection": ENSEMBLE_SELECTION,
        "test_count": len(labels),
        **scores.score(predictions),
        "errors": int(len(labels) - np.trace(predictions.confusion)),
        "members_accuracy": stats.summarize([r["accuracy"] for r in records]),
        "confusion_matrix": predictions.confusion.tolist(),
        "per_class": predictions.per_class,
        "calibration": predictions.calibration,
    }
