"""From per-run evaluation records to comparison.json's `models` and `comparisons` entries.

Runs whose configs differ only in the seed (or in keys that do not change results, such as
data.dir or parallel.mode) are one model; each measured quantity becomes mean, sample standard
deviation and the per-run values. Pairs of models are compared with McNemar's test on the same
test images and with cost ratios.
"""

import json
import re
from typing import Any

import jax
import numpy as np

from mnist_jax import models
from mnist_jax.evaluation import inference, metrics
from mnist_jax.training import rundir

_SEED_DIR = re.compile(r"seed[_-]?\d+")


def _model_key(config_dict: dict[str, Any]) -> str:
    """Runs with equal keys are seeds of one model (neutral keys such as formulations ignored)."""
    return json.dumps(rundir.identity(config_dict, ignore=frozenset({"seed"})), sort_keys=True)


def _run_label(workdir: Any) -> str:
    """A run's directory name, or its parent's for seed directories (runs/compare/mlp/seed_0)."""
    return workdir.parent.name if _SEED_DIR.fullmatch(workdir.name) else workdir.name


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


STATS = (
    "accuracy",
    "loss",
    "ece",
    "macro_f1",
    "train_seconds",
    "epochs_run",
    "throughput_images_per_second",
    "latency_ms_median",
    "checkpoint_bytes",
)


def summarize_model(name: str, records: list[dict], arrays: list[dict], ece_bins: int) -> dict:
    """One model's entry: mean/std over its runs, pooled confusion matrix and calibration."""
    first = arrays[0]
    params = first["variables"]["params"]
    num_params = models.count_params(params)
    cm = np.sum([r["confusion_matrix"] for r in records], axis=0)
    probs = np.concatenate([a["probs"] for a in arrays])
    labels = np.concatenate([a["labels"] for a in arrays])
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
            first["model"], first["variables"], conv_impl=first["conv_impl"]
        ),
        **{k: metrics.mean_std([r[k] for r in records]) for k in STATS},
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": metrics.per_class_report(cm),
        "calibration": metrics.calibration(probs, labels, ece_bins),
        "confident_mistakes": records[0]["confident_mistakes"],
        "config": records[0]["config"],
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in records],
    }


def compare_models(a: dict, b: dict, correct: dict[str, dict[int, np.ndarray]]) -> dict:
    """b against a: accuracy difference, McNemar's test on paired runs, cost ratios (b / a)."""
    seeds_a, seeds_b = a["seeds"], b["seeds"]
    common = sorted(set(seeds_a) & set(seeds_b))
    pairs = [(s, s) for s in common] or list(zip(seeds_a, seeds_b, strict=False))
    tests = [
        {
            "seed_a": sa,
            "seed_b": sb,
            **metrics.mcnemar(correct[a["name"]][sa], correct[b["name"]][sb]),
        }
        for sa, sb in pairs
    ]

    def ratio(key: str) -> float | None:
        va = a[key]["mean"] if isinstance(a[key], dict) else a[key]
        vb = b[key]["mean"] if isinstance(b[key], dict) else b[key]
        return None if va in (0, None) or vb is None else vb / va

    return {
        "a": a["name"],
        "b": b["name"],
        "accuracy_difference": b["accuracy"]["mean"] - a["accuracy"]["mean"],
        "mcnemar": tests,
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
