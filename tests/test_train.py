"""The training loop on real MNIST (small slices of it): learning, checkpoints, resume, stopping."""

import json
import shutil

import jax
import numpy as np
import pytest

from configs import mlp
from mnist_jax import benchmark, checkpoint, input_pipeline, models, rundir, train
from mnist_jax.errors import CheckpointError, ConfigError
from mnist_jax.evaluator import SplitEvaluator
from mnist_jax.parallel import Parallel
from tests.conftest import run_module


def small_config(**overrides):
    """The MLP on 10% of the training split: a couple of seconds an epoch on a laptop CPU."""
    config = mlp.get_config()
    config.data.train_fraction = 0.1
    config.num_epochs = 3
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        setattr(config[section] if section else config, name, value)
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist_dir):
    workdir = tmp_path_factory.mktemp("run") / "mlp"
    summary = train.train_and_evaluate(small_config(), str(workdir))
    return workdir, summary


def evaluate_checkpoint(workdir, config) -> dict:
    """Restores the run's best parameters on this process's devices and tests them."""
    model = models.create_model(config)
    template = jax.device_get(models.init_params(model, jax.random.key(0)))
    ckpt = checkpoint.Checkpointer(workdir / "checkpoints", read_only=True)
    params = ckpt.restore_best_params(ckpt.latest_epoch(), template)
    par = Parallel("pmap")
    test = input_pipeline.load_dataset(config.data).test
    metrics, _ = SplitEvaluator(par, model, test, 1000)(par.replicate(params))
    return metrics


def test_loss_falls_and_accuracy_is_reached(finished_run):
    workdir, summary = finished_run
    records = rundir.RunDir(workdir).read_metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    losses = [r["train_loss"] for r in records]
    assert losses[0] > losses[1] > losses[2]
    assert summary["test_count"] == 10_000
    assert summary["test_accuracy"] > 0.92  # 5,400 training images, 3 epochs (measured: 0.936)
    for key in ("val_loss", "val_accuracy", "learning_rate", "train_samples_per_second"):
        assert all(np.isfinite(r[key]) for r in records), key
    assert summary["versions"]["jax"] == jax.__version__
    assert json.loads((workdir / "config.json").read_text())["model"] == "mlp"


def test_checkpoint_restores_the_same_test_metrics(finished_run):
    workdir, summary = finished_run
    metrics = evaluate_checkpoint(workdir, small_config())
    assert metrics["count"] == 10_000
    assert metrics["accuracy"] == summary["test_accuracy"]
    assert metrics["loss"] == pytest.approx(summary["test_loss"], abs=1e-6)


def test_finished_run_is_not_trained_again(finished_run):
    workdir, summary = finished_run
    before = (workdir / "metrics.jsonl").read_text()
    assert train.train_and_evaluate(small_config(), str(workdir)) == summary
    assert (workdir / "metrics.jsonl").read_text() == before


def test_changed_config_in_an_existing_workdir_is_refused(finished_run):
    workdir, _ = finished_run
    with pytest.raises(CheckpointError, match=r"different config \(optimizer.learning_rate"):
        train.train_and_evaluate(small_config(**{"optimizer.learning_rate": 0.1}), str(workdir))


def test_resume_continues_exactly(finished_run, tmp_path):
    """Lose the last checkpoint and summary (a crash after epoch 3's metrics line): the rerun
    restarts from epoch 2 and writes the same numbers, each epoch once."""
    workdir, summary = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / "3")
    (copy / "summary.json").unlink()
    resumed = train.train_and_evaluate(small_config(), str(copy))
    original, again = rundir.RunDir(workdir).read_metrics(), rundir.RunDir(copy).read_metrics()
    assert [r["epoch"] for r in again] == [1, 2, 3]
    for a, b in zip(original, again, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert resumed["test_accuracy"] == summary["test_accuracy"]


def test_early_stopping_tests_the_best_epoch(tmp_path, mnist_dir):
    # min_delta larger than any gain: epoch 1 stays best, patience 1 stops after epoch 2.
    config = small_config(**{"early_stopping.patience": 1, "early_stopping.min_delta": 10.0})
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary["stopped_early"] and summary["epochs_run"] == 2 and summary["best_epoch"] == 1
    records = rundir.RunDir(tmp_path).read_metrics()
    assert summary["best_val_loss"] == records[0]["val_loss"]
    assert evaluate_checkpoint(tmp_path, config)["accuracy"] == summary["test_accuracy"]


def test_no_validation_split(tmp_path, mnist_dir):
    config = small_config(**{"data.validation_fraction": 0.0, "num_epochs": 1})
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary["best_epoch"] == 1 and summary["best_val_loss"] is None
    assert "val_loss" not in rundir.RunDir(tmp_path).read_metrics()[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "batch_size=0 cannot be split evenly over 1 devices"),
        ({"batch_size": 100_000}, r"batch_size=100000 is larger than the \d+ training examples"),
        ({"optimizer.name": "lamb"}, "unknown optimizer.name 'lamb'; valid: adam, adamw, sgd"),
        ({"schedule.name": "step"}, "unknown schedule.name 'step'"),
        ({"parallel.mode": "pjit"}, "unknown parallel.mode 'pjit'; valid: pmap, shard_map"),
        ({"microbatches": 3}, r"microbatches=3 must be >= 1 and divide the per-device batch 128"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, mnist_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(small_config(**overrides), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.multidevice
def test_checkpoints_move_between_device_counts(tmp_path, mnist_dir):
    """Written on 8 devices: evaluates on 1 to the same accuracy. Then the run, cut back to
    epoch 1, resumes on 1 device and finishes."""
    workdir = tmp_path / "run"
    args = ["--config=configs/mlp.py", f"--workdir={workdir}", "--config.num_epochs=2"]
    args += ["--config.data.train_fraction=0.1", "--config.parallel.mode=shard_map"]
    out = run_module("mnist_jax.main", *args, devices=8)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == 8
    config = small_config(**{"num_epochs": 2, "parallel.mode": "shard_map"})
    assert evaluate_checkpoint(workdir, config)["accuracy"] == summary["test_accuracy"]

    shutil.rmtree(workdir / "checkpoints" / "2")
    (workdir / "summary.json").unlink()
    resumed = train.train_and_evaluate(config, str(workdir))
    assert resumed["num_devices"] == 1
    assert [r["epoch"] for r in rundir.RunDir(workdir).read_metrics()] == [1, 2]
    assert abs(resumed["test_accuracy"] - summary["test_accuracy"]) < 0.005


def test_microbatches_make_the_same_updates(mnist_dir):
    # Two microbatches of 64 (each with its own examples' dropout and shift keys) average to
    # the gradient of the batch of 128: after 3 steps the parameters agree to float rounding.
    # SGD, because Adam's g / sqrt(v) would magnify the rounding of near-zero gradients.
    par = Parallel("pmap")
    data = input_pipeline.load_dataset(small_config().data)
    train_data = par.replicate((data.train.images, data.train.labels))
    params = []
    for k in (1, 2):
        program = benchmark.TrainProgram(
            small_config(**{"microbatches": k, "optimizer.name": "sgd"}),
            par,
            train_data,
            len(data.train),
            3,
        )
        start = par.to_host(program.state.params)
        program.run(0)
        params.append(par.to_host(program.state.params))
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), params[0], start))
    apart = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), *params))
    assert all(d < 1e-3 * m for d, m in zip(apart, moved, strict=True)), (apart, moved)
