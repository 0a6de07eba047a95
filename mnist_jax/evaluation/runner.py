"""Evaluate trained runs on all 10,000 test images and compare them: the library behind
`python -m mnist_jax.evaluate` (comparison.json, report.md and figures in an output directory).

Each run's model is rebuilt from config.json, its best variables (by validation loss) are
restored from the newest checkpoint (verified) onto whatever devices this machine has, and every
metric is recomputed from the model's outputs; summary.json is only cross-checked. Runs whose
configs differ only in `seed` (and keys that never change results) are grouped into one model.

Beyond the clean test set: every run on the corrupted test sets (robustness.py) and on external
test sets (data/external.py), each model's seeds as an ensemble, and each run's int8 model
(quantize.py). Inputs are all checked before the first slow step.
"""

import dataclasses
import itertools
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import ml_collections
import numpy as np
from absl import logging

from mnist_jax.core import errors, logs, provenance
from mnist_jax.core.errors import UserError
from mnist_jax.data import Dataset, Split, corruptions, external, load_dataset
from mnist_jax.evaluation import comparison as comparison_lib
from mnist_jax.evaluation import (
    inference,
    metrics,
    plots,
    quantize,
    report,
    robustness,
    runs,
    scores,
    scoring,
)
from mnist_jax.evaluation import outputs as outdir
from mnist_jax.training import logbook, rundir
from mnist_jax.training.parallel import Parallel

SCHEMA_VERSION = 4
GALLERY_INDEX = 0  # the test digit shown under every corruption


# The Options of a smoke test's speed figures: a tenth of the default timing (rougher numbers,
# the same fields), for the studies' quick and reduced variants.
QUICK_TIMING = {"throughput_min_seconds": 0.1, "latency_calls": 20}


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
    # the layers' default ('auto': XLA's convolution in every forward-only trace).
    benchmark_conv_impl: str = "xla"
    corruptions: str = robustness.DEFAULT_FLAG  # 'all', 'none' or names (data/corruptions.py)
    test_sets: tuple[str, ...] = ()  # NAME=PATH entries (data/external.py)
    ensemble: bool = True  # each model with >= 2 runs also evaluated as an ensemble
    quantize: str = "none"  # 'int8': also each run's int8 model (quantize.py)
    reuse: bool = True  # an output dir whose comparison.json has these inputs is left as it is

    def check(self) -> None:
        for name in ("eval_batch_size", "throughput_batch_size", "latency_calls", "ece_bins"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if not self.throughput_min_seconds > 0:
            raise UserError(
                f"--throughput_min_seconds must be > 0, got {self.throughput_min_seconds}"
            )
        if self.num_mistakes < 0:
            raise UserError(f"--num_mistakes must be >= 0, got {self.num_mistakes}")
        if self.quantize not in quantize.MODES:
            raise UserError(
                f"--quantize={self.quantize!r} is invalid; valid: {', '.join(quantize.MODES)}"
            )
        corruptions.parse_names(self.corruptions)
        external.parse(list(self.test_sets))


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


@dataclasses.dataclass
class RunOutputs:
    """What evaluating one run keeps beyond its JSON record, for grouping, the extra sets, the
    int8 model and the figures."""

    model: nn.Module
    variables: Any
    variables_dev: Any  # `variables` on the evaluation's devices
    par: Parallel
    test: Split
    predictions: scores.Predictions  # on the clean test set
    conv_impl: str  # the formulation whose FLOPs and speed are measured
    correct_on: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # extra sets
    int8: quantize.Int8Outputs | None = None


def evaluate_run(
    run: runs.Run, options: Options, scorer: scoring.Scorer | None = None
) -> tuple[dict[str, Any], RunOutputs]:
    """Everything measured on one run: its JSON record, and what later steps need."""
    scorer = scorer or scoring.Scorer(options.eval_batch_size)
    model = runs.build_model(run.config, options.data_dir)
    variables = runs.restore_best(run, model)  # verified: a corrupt checkpoint fails before data
    test = _dataset(run.config, options.data_dir).test
    par = Parallel.from_config(run.config.parallel)
    variables_dev = par.replicate(variables)
    device_metrics, logits = scorer.logits(par, model, variables_dev, "test", test)
    labels = test.labels
    predictions = scores.Predictions.from_logits(labels, logits, options.ece_bins)
    scored = scores.score(predictions)
    acc = scored["accuracy"]
    if round(acc * len(labels)) != round(device_metrics["accuracy"] * len(labels)):
        raise AssertionError(f"host and device accuracy differ: {acc} vs {device_metrics}")
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
        **scored,
        "errors": int(len(labels) - np.trace(predictions.confusion)),
        "agrees_with_summary": agrees,
        **{k: v for k, v in training.items() if k != "history"},
        "throughput_images_per_second": speed["images_per_second"],
        "latency_ms_median": wait["median_ms"],
        "latency_ms_p90": wait["p90_ms"],
        "checkpoint_bytes": _dir_bytes(run.workdir / "checkpoints" / str(run.step)),
        "eval_devices": par.num_devices,
        "confusion_matrix": predictions.confusion.tolist(),
        "per_class": predictions.per_class,
        "calibration": predictions.calibration,
        "confident_mistakes": metrics.confident_mistakes(
            predictions.probs, labels, options.num_mistakes
        ),
        "history": training["history"],
    }
    logging.info(
        "%s: accuracy %.4f, loss %.4f on %d test images (%d devices, %.0f img/s); inference "
        "%.0f img/s at batch %d, %.2f ms at batch 1",
        run.workdir, acc, record["loss"], len(labels), par.num_devices,
        len(labels) / device_metrics["seconds"], speed["images_per_second"],
        options.throughput_batch_size, wait["median_ms"],
    )  # fmt: skip
    outputs = RunOutputs(model, variables, variables_dev, par, test, predictions, impl)
    return record, outputs


def score_run(
    outputs: RunOutputs, sets: dict[str, Split], scorer: scoring.Scorer, int8: bool = False
) -> dict[str, np.ndarray]:
    """Set name -> per-image correctness of one run (its float or int8 model) on extra sets."""
    model, variables_dev, conv_impl = outputs.model, outputs.variables_dev, "auto"
    if int8:
        assert outputs.int8 is not None
        model, variables_dev = outputs.int8.quantized.model, outputs.int8.variables_dev
        conv_impl = quantize.CONV_IMPL
    return {
        name: np.asarray(
            scorer.logits(outputs.par, model, variables_dev, name, split, conv_impl)[1]
        ).argmax(-1)
        == split.labels
        for name, split in sets.items()
    }


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
    out = outdir.check_output_dir(output_dir)
    env = provenance.collect()
    digest = outdir.inputs_digest(all_runs, options, env)
    reusable = options.reuse and not options.test_sets
    if reusable and (done := outdir.up_to_date(out, digest)) is not None:
        done_at = out / "comparison.json"
        logging.info(
            "%s already holds the comparison of these runs with these options (inputs %s); "
            "nothing to do (--noreuse recomputes it)",
            done_at,
            digest,
        )
        return done
    test_sets = external.load_all(list(options.test_sets))
    for run in all_runs if options.quantize == "int8" else ():
        if run.config.get("dtype", "float32") != "float32":
            raise UserError(
                f"--quantize=int8 needs float32 runs; {run.workdir} has dtype={run.config.dtype}"
            )
    groups = comparison_lib.group_runs(all_runs)
    scorer = scoring.Scorer(options.eval_batch_size)
    results = []
    for k, run in enumerate(all_runs, 1):
        logging.info("Evaluating run %d/%d: %s (test split)", k, len(all_runs), run.workdir)
        with logs.heartbeat(f"Evaluating {run.workdir}"):
            results.append(evaluate_run(run, options, scorer))
    for run, (record, _) in zip(all_runs, results, strict=True):
        record["config"] = run.config_dict
    test = results[0][1].test
    names = corruptions.parse_names(options.corruptions)
    corrupted = robustness.corrupt_test_set(test, names) if names else None
    sets = {f"set:{t.name}": Split(t.images, t.labels) for t in test_sets}
    if corrupted:
        sets["corrupted"] = corrupted.split
    int8_records = []
    for record, outputs in results:
        outputs.correct_on = score_run(outputs, sets, scorer)
        if options.quantize == "int8":
            outputs.int8 = quantize.evaluate_int8(outputs, options, scorer)
            int8_records.append(quantize.int8_record(record, outputs))
            int8_sets = {"corrupted": corrupted.split} if corrupted else {}
            outputs.int8.correct_on = score_run(outputs, int8_sets, scorer, int8=True)
    models_out, gallery, seeds, correct = {}, {}, {}, {}
    for name, idx in groups.items():
        records, outs = [results[i][0] for i in idx], [results[i][1] for i in idx]
        models_out[name] = comparison_lib.summarize_model(name, records, outs, options.ece_bins)
        seeds[name] = models_out[name]["seeds"]
        correct[name] = np.stack([o.predictions.correct for o in outs])
        mistakes = [m["index"] for m in records[0]["confident_mistakes"]]
        gallery[name] = outs[0].test.images[mistakes]
    comparisons = [
        comparison_lib.compare_models(models_out[x], models_out[y], correct)
        for x, y in itertools.combinations(models_out, 2)
    ]
    comparison = {
        "schema_version": SCHEMA_VERSION,
        "environment": env | {"sgemm_gflops": provenance.sgemm_gflops()},
        "options": dataclasses.asdict(options),
        "inputs_digest": digest,
        "models": models_out,
        "comparisons": comparisons,
    }
    if options.ensemble:
        comparison["ensembles"] = {
            n: comparison_lib.ensemble(
                n,
                [results[i][0] for i in idx],
                [results[i][1].predictions.probs for i in idx],
                test.labels,
                options.ece_bins,
            )
            for n, idx in groups.items()
            if len(idx) >= 2
        }

    def on(set_name: str, int8: bool = False) -> dict[str, np.ndarray]:
        return _stack(groups, results, lambda o: (o.int8 if int8 else o).correct_on[set_name])

    if corrupted:
        comparison["robustness"] = robustness.section(corrupted, on("corrupted"), seeds, models_out)
    if test_sets:
        comparison["test_sets"] = {
            t.name: t.describe() | comparison_lib.score_set(on(f"set:{t.name}"), seeds)
            for t in test_sets
        }
    if options.quantize == "int8":
        comparison["quantization"] = quantize.section(
            {n: [int8_records[i] for i in idx] for n, idx in groups.items()},
            correct,
            _stack(groups, results, lambda o: o.int8.predictions.correct),
            seeds,
            corrupted,
            on("corrupted", int8=True) if corrupted else None,
        )
        for name, entry in comparison["quantization"]["models"].items() if corrupted else ():
            mean = comparison["robustness"]["mean_over_corruptions"][name]["accuracy"]
            entry["float"]["robustness_mean"] = mean
    pictures = {"mistakes": gallery}
    if corrupted:
        pictures["corruptions"] = robustness.gallery(corrupted, test, GALLERY_INDEX)
    # Written complete into a staging directory, then put in place as one unit (outdir).
    with errors.writing_into(out), outdir.staging(out) as stage:
        with logs.heartbeat("Drawing the figures"):
            comparison["figures"] = plots.write_all(comparison, pictures, stage)
        figures = {name: stage / file for name, file in comparison["figures"].items()}
        logbook.write_images(stage / logbook.SUBDIR, figures)  # TensorBoard's IMAGES tab
        rundir.write_atomic(stage / "report.md", report.markdown(comparison))
        rundir.write_atomic(stage / "comparison.json", rundir.to_json(comparison, indent=1) + "\n")
    logging.info(
        "Wrote %s, %s and %d figures", out / "comparison.json", out / "report.md",
        len(comparison["figures"]),
    )  # fmt: skip
    return comparison


def _stack(groups: dict[str, list[int]], results: list, get) -> dict[str, np.ndarray]:
    """Model name -> get(run outputs) of each of its runs, stacked (runs, ...)."""
    return {n: np.stack([get(results[i][1]) for i in idx]) for n, idx in groups.items()}
