"""Evaluate trained runs on all 10,000 test images and compare them: the library behind
`python -m mnist_jax.evaluate` (comparison.json, report.md and figures in an output directory).

Each run's model is rebuilt from config.json, its best variables (by validation loss) are
restored from the newest checkpoint (verified) onto whatever devices this machine has, and every
metric is recomputed from the model's outputs; summary.json is only cross-checked. Runs whose
configs differ only in `seed` (and keys that never change results) are grouped into one model.
"""

import dataclasses
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from mnist_jax import logs, provenance
from mnist_jax.data import Dataset, load_dataset
from mnist_jax.errors import UserError
from mnist_jax.evaluation import comparison as comparison_lib
from mnist_jax.evaluation import inference, metrics, plots, report, runs
from mnist_jax.training import logbook, rundir
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel

SCHEMA_VERSION = 2


@dataclasses.dataclass
class Options:
    """Evaluation settings (the flags of the binary); recorded in comparison.json."""

    eval_batch_size: int = 1000
    throughput_batch_size: int = 4096
    throughput_min_seconds: float = 1.0
    latency_calls: int = 200
    ece_bins: int = 15
    num_mistakes: int = 16
    data_dir: str = ""
    # Formulation of the convolutions whose speed and FLOPs are measured. The test metrics use
    # the backend's default ('auto'); training-speed choices (im2col on CPU) say nothing about
    # inference, where XLA's convolution is fastest.
    benchmark_conv_impl: str = "xla"

    def check(self) -> None:
        for name in ("eval_batch_size", "throughput_batch_size", "latency_calls", "ece_bins"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.num_mistakes < 0:
            raise UserError(f"--num_mistakes must be >= 0, got {self.num_mistakes}")


def check_output_dir(output_dir: str) -> Path:
    """Creates `output_dir` and proves it writable before any slow work."""
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write to --output_dir={output_dir}: {e.strerror or e}") from None
    return path


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


_datasets: dict[str, Dataset] = {}


def _dataset(config: ml_collections.ConfigDict, data_dir: str) -> Dataset:
    """The run's data (test split, and the PCA projection it trained with), loaded once."""
    run_dir = config.data.dir
    if not data_dir and run_dir and not Path(run_dir).is_dir():
        logging.warning("config.data.dir=%s does not exist here; using MNIST_DIR/cache", run_dir)
        run_dir = ""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.dir = data_dir or run_dir
    key = json.dumps(data.to_dict(), sort_keys=True, default=str)
    if key not in _datasets:
        _datasets[key] = load_dataset(data)
    return _datasets[key]


def _training(run: runs.Run) -> dict[str, Any]:
    """How the run was trained, from summary.json (or metrics.jsonl if it did not finish)."""
    history = [
        {k: r.get(k) for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")}
        for r in run.metrics
    ]
    summary = run.summary
    if summary is None:
        last = run.metrics[-1:] or [{}]
        return {
            "finished": False,
            "train_seconds": last[0].get("elapsed_seconds", 0.0),
            "epochs_run": last[0].get("epoch", 0),
            "best_epoch": None,
            "summary_test_accuracy": None,
            "history": history,
        }
    return {
        "finished": True,
        "train_seconds": summary["train_seconds"],
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "summary_test_accuracy": summary["test_accuracy"],
        "history": history,
    }


def evaluate_run(run: runs.Run, options: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything measured on one run: (JSON record, arrays kept for grouping and plots)."""
    dataset = _dataset(run.config, options.data_dir)
    model = runs.build_model(run.config, options.data_dir)
    variables = runs.restore_best(run, model)
    test = dataset.test
    par = Parallel(run.config.parallel.mode, run.config.parallel.get("cpu_kernels", "stable"))
    evaluator = SplitEvaluator(par, model, test, options.eval_batch_size)
    device_metrics, logits = evaluator(par.replicate(variables))
    labels = test.labels
    probs = metrics.softmax(logits)
    predictions = probs.argmax(-1)
    cm = metrics.confusion_matrix(labels, predictions)
    acc = metrics.accuracy(labels, predictions)
    if round(acc * len(labels)) != round(device_metrics["accuracy"] * len(labels)):
        raise AssertionError(f"host and device accuracy differ: {acc} vs {device_metrics}")
    per_class = metrics.per_class_report(cm)
    calibration = metrics.calibration(probs, labels, options.ece_bins)
    training = _training(run)
    summary_acc = training["summary_test_accuracy"]
    agrees = None if summary_acc is None else bool(abs(summary_acc - acc) < 0.5 / len(labels))
    if agrees is False:
        logging.warning(
            "%s: recomputed accuracy %.4f, summary.json says %.4f", run.workdir, acc, summary_acc
        )
    impl = options.benchmark_conv_impl
    with logs.heartbeat(f"{run.workdir}: timing inference (throughput, latency)"):
        speed = inference.throughput(
            model, variables, test.images, options.throughput_batch_size,
            options.throughput_min_seconds, conv_impl=impl,
        )  # fmt: skip
        wait = inference.latency(
            model, variables, test.images, options.latency_calls, conv_impl=impl
        )
    record = {
        "workdir": str(run.workdir),
        "seed": run.config.seed,
        "checkpoint_step": run.step,
        "test_count": len(labels),
        "accuracy": acc,
        "loss": metrics.cross_entropy(labels, logits),
        "errors": int(len(labels) - np.trace(cm)),
        "ece": calibration["ece"],
        "macro_f1": per_class["macro_avg"]["f1"],
        "agrees_with_summary": agrees,
        **{k: v for k, v in training.items() if k != "history"},
        "throughput_images_per_second": speed["images_per_second"],
        "latency_ms_median": wait["median_ms"],
        "latency_ms_p90": wait["p90_ms"],
        "checkpoint_bytes": _dir_bytes(run.workdir / "checkpoints" / str(run.step)),
        "eval_devices": par.num_devices,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "calibration": calibration,
        "confident_mistakes": metrics.confident_mistakes(probs, labels, options.num_mistakes),
        "history": training["history"],
    }
    logging.info(
        "%s: accuracy %.4f, loss %.4f on %d test images (%d devices, %.0f img/s); inference "
        "%.0f img/s at batch %d, %.2f ms at batch 1",
        run.workdir, acc, record["loss"], len(labels), par.num_devices,
        len(labels) / device_metrics["seconds"], speed["images_per_second"],
        options.throughput_batch_size, wait["median_ms"],
    )  # fmt: skip
    arrays = {
        "model": model,
        "variables": variables,
        "probs": probs,
        "labels": labels,
        "test": test,
        "conv_impl": impl,
    }
    return record, arrays


def evaluate(workdirs: list[str], output_dir: str, options: Options | None = None) -> dict:
    """Evaluates, compares and writes comparison.json, report.md and figures; returns the JSON."""
    logs.default_to_info()  # called from Python: show progress (mnist_jax.log_to_stderr)
    options = options or Options()
    options.check()
    if not workdirs:
        raise UserError("--workdirs is empty; pass run directories, e.g. runs/mlp,runs/cnn")
    if len(set(map(os.path.abspath, workdirs))) != len(workdirs):
        raise UserError(f"--workdirs lists a directory twice: {','.join(workdirs)}")
    all_runs = [runs.open_run(w) for w in workdirs]  # every input checked before the slow part
    out = check_output_dir(output_dir)
    groups = comparison_lib.group_runs(all_runs)
    results = []
    for k, run in enumerate(all_runs, 1):
        logging.info("Evaluating run %d/%d: %s (test split)", k, len(all_runs), run.workdir)
        with logs.heartbeat(f"Evaluating {run.workdir}"):
            results.append(evaluate_run(run, options))
    for run, (record, _) in zip(all_runs, results, strict=True):
        record["config"] = run.config_dict
    models_out, correct, gallery = {}, {}, {}
    for name, idx in groups.items():
        records, arrays = [results[i][0] for i in idx], [results[i][1] for i in idx]
        models_out[name] = comparison_lib.summarize_model(name, records, arrays, options.ece_bins)
        correct[name] = {}
        for r, a in zip(records, arrays, strict=True):  # per seed; the first run of a seed wins
            correct[name].setdefault(r["seed"], a["probs"].argmax(-1) == a["labels"])
        mistakes = [m["index"] for m in records[0]["confident_mistakes"]]
        gallery[name] = arrays[0]["test"].images[mistakes]
    comparisons = [
        comparison_lib.compare_models(models_out[x], models_out[y], correct)
        for x, y in itertools.combinations(models_out, 2)
    ]
    comparison = {
        "schema_version": SCHEMA_VERSION,
        "environment": provenance.collect(),
        "options": dataclasses.asdict(options),
        "models": models_out,
        "comparisons": comparisons,
    }
    with logs.heartbeat("Drawing the figures"):
        comparison["figures"] = plots.write_all(comparison, gallery, out)
    figures = {name: out / file for name, file in comparison["figures"].items()}
    logbook.write_images(out / logbook.SUBDIR, figures)  # TensorBoard's IMAGES tab
    rundir.write_atomic(out / "comparison.json", rundir.to_json(comparison, indent=1) + "\n")
    rundir.write_atomic(out / "report.md", report.markdown(comparison))
    logging.info(
        "Wrote %s, %s and %d figures", out / "comparison.json", out / "report.md",
        len(comparison["figures"]),
    )  # fmt: skip
    return comparison
