"""Evaluate trained runs on all 10,000 test images and compare them: comparison.json, report.md
and figures (PNG) in --output_dir.

  python -m mnist_jax.evaluate --workdirs=runs/compare/mlp,runs/compare/cnn \\
      --output_dir=runs/compare

Each --workdirs entry is a run directory written by `python -m mnist_jax.main` (config.json,
metrics.jsonl, checkpoints/). The model is rebuilt from config.json, the best parameters (by
validation loss) are restored from the latest checkpoint onto whatever devices this machine has,
and every metric is recomputed from the model's outputs; summary.json is only cross-checked.
Runs whose configs differ only in `seed` are grouped into one model and reported as mean and
standard deviation (e.g. --workdirs=runs/mlp_s0,runs/mlp_s1,runs/cnn_s0,runs/cnn_s1).
The data comes from --data_dir, else the run's config.data.dir, else $MNIST_DIR, else the
download cache. The format of comparison.json is documented in README.md.
"""

import dataclasses
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from mnist_jax import (
    checkpoint,
    cli,
    inference,
    input_pipeline,
    metrics,
    models,
    platform,
    plots,
    report,
    rundir,
)
from mnist_jax import comparison as comparison_lib
from mnist_jax.errors import CheckpointError, UserError
from mnist_jax.evaluator import SplitEvaluator
from mnist_jax.parallel import Parallel

SCHEMA_VERSION = 1


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
    # Convolutions of the FLOPs/throughput/latency model. The test-set metrics always use the
    # run's own config; training-speed choices (im2col on CPU) say nothing about inference.
    benchmark_conv_impl: str = "xla"


@dataclasses.dataclass
class Run:
    workdir: Path
    config: ml_collections.ConfigDict
    config_dict: dict[str, Any]
    checkpointer: checkpoint.Checkpointer
    epoch: int  # the latest checkpoint, whose best_params are evaluated


def open_run(workdir: str) -> Run:
    """Checks that `workdir` is a run directory with a checkpoint; reads its config."""
    path = Path(workdir)
    if not path.is_dir():
        raise UserError(f"workdir {workdir} does not exist (or is not a directory)")
    run = rundir.RunDir(path)
    if not run.config_path.is_file():
        raise UserError(
            f"{workdir} is not a run directory: it has no config.json; pass directories written "
            "by python -m mnist_jax.main --workdir=..."
        )
    try:
        config_dict = json.loads(run.config_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{run.config_path} is not valid JSON ({e})") from None
    ckpt, epoch = None, None
    if run.checkpoint_dir.is_dir():
        ckpt = checkpoint.Checkpointer(run.checkpoint_dir, read_only=True)
        epoch = ckpt.latest_epoch()
    if ckpt is None or epoch is None:
        raise CheckpointError(
            f"{workdir} has no checkpoint in {run.checkpoint_dir}; train it first (running "
            f"python -m mnist_jax.main again with --workdir={workdir} resumes an interrupted run)"
        )
    return Run(path, ml_collections.ConfigDict(config_dict), config_dict, ckpt, epoch)


def restore_params(run: Run, model: Any) -> Any:
    """The best parameters saved in the run's latest checkpoint, checked against `model`."""
    template = jax.device_get(models.init_params(model, jax.random.key(0)))
    mismatch = (
        f"{run.workdir}: its config.json (model {run.config.model!r}) does not match its "
        "checkpoint, or the checkpoint is corrupt"
    )
    try:
        params = run.checkpointer.restore_best_params(run.epoch, template)
    except CheckpointError as e:
        cause = str(e.__cause__ or e).strip().splitlines()[0][:200]
        raise CheckpointError(f"{mismatch} ({cause})") from None
    want = jax.tree.map(lambda x: tuple(np.shape(x)), template)
    got = jax.tree.map(lambda x: tuple(np.shape(x)), params)
    if want != got:  # Orbax restores the saved shapes without complaint; the model would not
        raise CheckpointError(f"{mismatch}: parameter shapes differ; was config.json edited?")
    return params


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


_datasets: dict[tuple[str, ...], input_pipeline.Dataset] = {}


def _dataset(config: ml_collections.ConfigDict, data_dir: str) -> input_pipeline.Dataset:
    """The run's data (test split, and the PCA projection it trained with), loaded once."""
    run_dir = config.data.dir
    if not data_dir and run_dir and not Path(run_dir).is_dir():
        logging.warning("config.data.dir=%s does not exist here; using MNIST_DIR/cache", run_dir)
        run_dir = ""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.dir = data_dir or run_dir
    key = tuple(sorted((k, str(v)) for k, v in data.items()))
    if key not in _datasets:
        _datasets[key] = input_pipeline.load_dataset(data)
    return _datasets[key]


def _model(config: ml_collections.ConfigDict, dataset: input_pipeline.Dataset) -> Any:
    return models.project_inputs(models.create_model(config), dataset.projection)


def _training(run: Run) -> dict[str, Any]:
    """How the run was trained, from summary.json (or metrics.jsonl if it did not finish)."""
    files = rundir.RunDir(run.workdir)
    history = [
        {k: r.get(k) for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")}
        for r in files.read_metrics()
    ]
    summary = files.read_summary()
    if summary is None:
        last = files.read_metrics()[-1:] or [{}]
        return {
            "finished": False,
            "train_seconds": last[0].get("elapsed_seconds", 0.0),
            "epochs_run": last[0].get("epoch", run.epoch),
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


def _benchmark_model(
    run: Run, options: Options, params: Any, images: np.ndarray, logits: np.ndarray
) -> Any:
    """The run's model with `options.benchmark_conv_impl`, checked to compute the same logits."""
    config = ml_collections.ConfigDict(run.config_dict)
    if options.benchmark_conv_impl:
        config.layers.conv_impl = options.benchmark_conv_impl
    model = _model(config, _dataset(config, options.data_dir))
    x = input_pipeline.normalize(images)
    got = np.asarray(jax.jit(lambda p: model.apply({"params": p}, x))(params))
    if not np.allclose(got, logits, rtol=1e-3, atol=1e-3):
        raise AssertionError(f"{run.workdir}: benchmark model's logits differ from the evaluated")
    return model


def evaluate_run(run: Run, options: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything measured on one run: (JSON record, arrays kept for grouping and plots)."""
    dataset = _dataset(run.config, options.data_dir)
    model = _model(run.config, dataset)
    params = restore_params(run, model)
    test = dataset.test
    par = Parallel(run.config.parallel.mode)
    evaluator = SplitEvaluator(par, model, test, options.eval_batch_size)
    device_metrics, device_logits = evaluator(par.replicate(params))
    logits = evaluator.logits(device_logits)
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
    bench_model = _benchmark_model(run, options, params, test.images[:64], logits[:64])
    speed = inference.throughput(
        bench_model,
        params,
        test.images,
        options.throughput_batch_size,
        options.throughput_min_seconds,
    )
    wait = inference.latency(bench_model, params, test.images, options.latency_calls)
    record = {
        "workdir": str(run.workdir),
        "seed": run.config.seed,
        "checkpoint_epoch": run.epoch,
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
        "checkpoint_bytes": _dir_bytes(run.workdir / "checkpoints" / str(run.epoch)),
        "eval_devices": par.num_devices,
        "confusion_matrix": cm.tolist(),
        "per_class": per_class,
        "calibration": calibration,
        "confident_mistakes": metrics.confident_mistakes(probs, labels, options.num_mistakes),
        "history": training["history"],
    }
    logging.info(
        "%s: accuracy %.4f, loss %.4f on %d test images (%d devices)",
        run.workdir,
        acc,
        record["loss"],
        len(labels),
        par.num_devices,
    )
    arrays = {
        "model": bench_model,
        "params": params,
        "probs": probs,
        "labels": labels,
        "test": test,
    }
    return record, arrays


def evaluate(workdirs: list[str], output_dir: str, options: Options | None = None) -> dict:
    """The whole binary as a function: evaluates, compares, writes the outputs; returns the JSON."""
    options = options or Options()
    if not workdirs:
        raise UserError("--workdirs is empty; pass run directories, e.g. runs/mlp,runs/cnn")
    if len(set(map(os.path.abspath, workdirs))) != len(workdirs):
        raise UserError(f"--workdirs lists a directory twice: {','.join(workdirs)}")
    runs = [open_run(w) for w in workdirs]  # every input checked before the slow part
    out = check_output_dir(output_dir)
    groups = comparison_lib.group_runs(runs)
    results = [evaluate_run(run, options) for run in runs]
    for run, (record, _) in zip(runs, results, strict=True):
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
    environment = rundir.provenance()
    comparison = {
        "schema_version": SCHEMA_VERSION,
        "environment": environment,
        "options": dataclasses.asdict(options),
        "models": models_out,
        "comparisons": comparisons,
    }
    comparison["figures"] = plots.write_all(comparison, gallery, out)
    rundir._write_atomic(out / "comparison.json", json.dumps(comparison, indent=1) + "\n")
    (out / "report.md").write_text(report.markdown(comparison))
    logging.info(
        "Wrote %s, %s and %d figures",
        out / "comparison.json",
        out / "report.md",
        len(comparison["figures"]),
    )
    return comparison


# Flags exist only when this module runs as the program, so that tests and the other
# binaries can import it as a library without defining (or requiring) its flags.
if __name__ == "__main__":
    _WORKDIRS = flags.DEFINE_list(
        "workdirs", None, "Comma-separated run directories (from python -m mnist_jax.main)."
    )
    _OUTPUT_DIR = flags.DEFINE_string(
        "output_dir", None, "Where comparison.json, report.md and the PNG figures are written."
    )
    _DATA_DIR = flags.DEFINE_string(
        "data_dir", "", "MNIST directory; '' = the run's config.data.dir, else $MNIST_DIR/cache."
    )
    _EVAL_BATCH = flags.DEFINE_integer("eval_batch_size", 1000, "Global batch of the test pass.")
    _TP_BATCH = flags.DEFINE_integer(
        "throughput_batch_size", 4096, "Batch size of the throughput measurement (one device)."
    )
    _LAT_CALLS = flags.DEFINE_integer("latency_calls", 200, "Batch-1 calls timed for the latency.")
    _ECE_BINS = flags.DEFINE_integer("ece_bins", 15, "Equal-width confidence bins for ECE.")
    _MISTAKES = flags.DEFINE_integer(
        "num_mistakes", 16, "Most confident mistakes listed and shown per model."
    )
    _BENCH_CONV = flags.DEFINE_enum(
        "benchmark_conv_impl",
        "xla",
        ["xla", "im2col", ""],
        "Convolutions of the model timed for throughput/latency and counted for FLOPs ('' = as in "
        "the run's config). Test metrics always use the run's config.",
    )
    flags.mark_flags_as_required(["workdirs", "output_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        platform.initialize()
        options = Options(
            eval_batch_size=_EVAL_BATCH.value,
            throughput_batch_size=_TP_BATCH.value,
            latency_calls=_LAT_CALLS.value,
            ece_bins=_ECE_BINS.value,
            num_mistakes=_MISTAKES.value,
            data_dir=_DATA_DIR.value,
            benchmark_conv_impl=_BENCH_CONV.value,
        )
        for name in ("eval_batch_size", "throughput_batch_size", "latency_calls", "ece_bins"):
            if getattr(options, name) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(options, name)}")
        evaluate(_WORKDIRS.value, _OUTPUT_DIR.value, options)


if __name__ == "__main__":
    cli.run(main)
