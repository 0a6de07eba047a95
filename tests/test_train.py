"""The training loop on real MNIST (small slices of it): learning, checkpoints, resume, stopping."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_jax import models
from mnist_jax.core import configuration
from mnist_jax.core.errors import CheckpointError, ConfigError
from mnist_jax.data import load_dataset
from mnist_jax.evaluation import runner as evaluator_runner
from mnist_jax.evaluation import runs
from mnist_jax.training import memory, optim, rundir, train
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel
from mnist_jax.training.trainer import Keys, Trainer
from tests.conftest import run_module, small_config

# One worker runs this module (--dist loadgroup), and its trained runs are session fixtures, so
# they are built once even when tests of other modules run in between (docs/testing.md).
# `core` (also run on the oldest supported JAX, .ci/run): training, checkpoints and resumption
# across versions; the other tests here check options that older versions run the same way.
pytestmark = pytest.mark.xdist_group("train")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, mnist_dir):
    workdir = tmp_path_factory.mktemp("run") / "mlp"
    summary = train.train_and_evaluate(small_config(), str(workdir))
    return workdir, summary


def evaluate_checkpoint(workdir) -> dict:
    """Restores the run's best variables (verified) on this process's devices and tests them."""
    run = runs.open_run(workdir)
    model = runs.build_model(run.config)
    variables = runs.restore_best(run, model)
    par = Parallel("pmap")
    test = load_dataset(run.config.data).test
    metrics, _ = SplitEvaluator(par, model, test, 1000)(par.replicate(variables))
    return metrics


def checkpoint_steps(workdir) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.core
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


@pytest.mark.core
def test_checkpoint_restores_the_same_test_metrics(finished_run):
    workdir, summary = finished_run
    metrics = evaluate_checkpoint(workdir)
    assert metrics["count"] == 10_000
    assert metrics["accuracy"] == summary["test_accuracy"]
    assert metrics["loss"] == pytest.approx(summary["test_loss"], abs=1e-6)


@pytest.mark.core
def test_finished_run_is_not_trained_again(finished_run):
    workdir, summary = finished_run
    before = (workdir / "metrics.jsonl").read_text()
    assert train.train_and_evaluate(small_config(), str(workdir)) == summary
    assert (workdir / "metrics.jsonl").read_text() == before


def test_changed_config_in_an_existing_workdir_is_refused(finished_run):
    workdir, _ = finished_run
    with pytest.raises(CheckpointError, match=r"different config \(optimizer.learning_rate"):
        train.train_and_evaluate(small_config(**{"optimizer.learning_rate": 0.1}), str(workdir))


@pytest.mark.core
def test_resume_continues_exactly(finished_run, tmp_path):
    """Lose the last checkpoint and summary (a crash after epoch 3's metrics line): the rerun
    restarts from epoch 2 and writes the same numbers, each epoch once."""
    workdir, summary = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    shutil.rmtree(copy / "checkpoints" / str(checkpoint_steps(copy)[-1]))
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
    assert evaluate_checkpoint(tmp_path)["accuracy"] == summary["test_accuracy"]


def test_no_validation_split(tmp_path, mnist_dir):
    # 9% of all 60,000 images: small_config's 5,400, so its compiled programs are reused.
    config = small_config(**{"data.validation_fraction": 0.0, "data.train_fraction": 0.09})
    summary = train.train_and_evaluate(config, str(tmp_path))
    assert summary["best_epoch"] == 3 and summary["best_val_loss"] is None  # the last epoch
    assert "val_loss" not in rundir.RunDir(tmp_path).read_metrics()[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, r"batch_size=0 is not an integer in \[1, inf\)"),
        ({"batch_size": 100_000}, r"batch_size=100000 is larger than the \d+ training examples"),
        ({"optimizer.name": "lamb"}, "optimizer.name='lamb' is not one of adam, adamw, sgd"),
        ({"schedule.name": "step"}, "schedule.name='step' is not one of"),
        ({"parallel.mode": "pjit"}, "parallel.mode='pjit' is not one of pmap, shard_map"),
        ({"microbatches": 3}, r"microbatches=3 must be >= 1 and divide the per-device batch 128"),
        (
            {"parallel.reduction": "tree", "parallel.cpu_kernels": "fast"},
            "parallel.cpu_kernels='fast' with parallel.reduction='tree': only 'stable' kernels",
        ),
        ({"parallel.cpu_kernels": "quick"}, "parallel.cpu_kernels='quick' is not one of auto,"),
        ({"parallel.reduction": "tree", "parallel.tree_shards": 3}, "tree_shards=3 must be a"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, mnist_dir, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train.train_and_evaluate(small_config(**overrides), str(tmp_path / "run"))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.multidevice
def test_checkpoints_move_between_device_counts(tmp_path, mnist_dir):
    """Written on 8 devices: the evaluation binary's library call scores it on 1 to the same
    accuracy, on all 10,000 test images. Then the run, cut back to epoch 1, resumes on 1 device
    and finishes."""
    workdir = tmp_path / "run"
    args = ["--config=configs/mlp.py", f"--workdir={workdir}", "--config.num_epochs=2"]
    args += ["--config.mlp.hidden_sizes=256,256"]
    args += ["--config.data.train_fraction=0.1", "--config.parallel.mode=shard_map"]
    args += ["--config.steps_per_chunk=6"]  # as small_config: one train program
    out = run_module("mnist_jax.main", *args, devices=8)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == 8
    config = small_config(**{"num_epochs": 2, "parallel.mode": "shard_map"})
    options = evaluator_runner.Options(
        throughput_batch_size=256, throughput_min_seconds=0.05, latency_calls=5, corruptions="none"
    )
    result = evaluator_runner.evaluate([str(workdir)], str(tmp_path / "eval"), options)
    (record,) = result["models"]["mlp"]["runs"]
    assert record["eval_devices"] == jax.device_count() == 1
    assert record["test_count"] == 10_000
    assert record["accuracy"] == summary["test_accuracy"] and record["agrees_with_summary"]

    shutil.rmtree(workdir / "checkpoints" / str(checkpoint_steps(workdir)[-1]))
    (workdir / "summary.json").unlink()
    resumed = train.train_and_evaluate(config, str(workdir))
    assert resumed["num_devices"] == 1
    assert [r["epoch"] for r in rundir.RunDir(workdir).read_metrics()] == [1, 2]
    assert abs(resumed["test_accuracy"] - summary["test_accuracy"]) < 0.005


def test_microbatches_make_the_same_updates(mnist_dir):
    # Two microbatches of 64 (each with its own examples' dropout and shift keys) average to
    # the gradient of the batch of 128: after 3 steps the parameters agree to float rounding.
    # SGD, because Adam's g / sqrt(v) would magnify the rounding of near-zero gradients.
    params, start = [], None
    for k in (1, 2):
        state = run_steps(small_config(**{"microbatches": k, "optimizer.name": "sgd"}), 3)
        start = state["start"]
        params.append(state["end"])
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), params[0], start))
    apart = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), *params))
    assert all(d < 1e-3 * m for d, m in zip(apart, moved, strict=True)), (apart, moved)


def test_the_memory_check_bounds_what_xla_allocates_from_below(mnist_dir):
    # memory.check_fits refuses a run whose lower bound exceeds the device: the bound must stay
    # below XLA's own analysis of the compiled step (or it refuses runs that fit), and near it
    # where activations are most of the step's memory, as in the CNN (im2col patches on CPU).
    config = small_config(model="cnn", **{"parallel.mode": "shard_map"})
    par = Parallel(config.parallel.mode)
    data = load_dataset(config.data)
    trainer = Trainer.build(config, par, data)
    shapes = models.check_contract(trainer.model, "cnn")
    bound = memory.activations_kept(config, trainer.model, shapes, config.batch_size)
    train_data = par.replicate((data.train.images, data.train.labels))
    program, _ = trainer.train_program(1, par.replicate(trainer.init_state()), train_data)
    temp = program.memory_analysis().temp_size_in_bytes
    assert 0.3 * temp < bound < temp, (bound, temp)


def run_steps(config, num_steps: int) -> dict:
    """`num_steps` steps of the trainer's own program: the params before and after."""
    par = Parallel(config.parallel.mode)
    data = load_dataset(config.data)
    trainer = Trainer.build(config, par, data)
    train_data = par.replicate((data.train.images, data.train.labels))
    state = par.replicate(trainer.init_state())
    start = par.to_host(state.params)
    program, _ = trainer.train_program(num_steps, state, train_data)
    state, _ = program(state, *train_data, trainer.keys.shuffle, trainer.keys.dropout, np.int32(0))
    return {"start": start, "end": par.to_host(state.params)}


def test_params_ema_follows_its_recursion_and_leaves_the_updates_alone():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    grads = {"w": jnp.array([0.3, 0.1]), "b": jnp.array(-0.2)}
    plain, averaged = optax.sgd(0.1), optax.chain(optax.sgd(0.1), optim.track_params_ema(0.9))
    p_plain, p_avg = params, params
    s_plain, s_avg = plain.init(params), averaged.init(params)
    expected = params
    for t in range(5):
        u_plain, s_plain = plain.update(grads, s_plain, p_plain)
        u_avg, s_avg = averaged.update(grads, s_avg, p_avg)
        p_plain, p_avg = optax.apply_updates(p_plain, u_plain), optax.apply_updates(p_avg, u_avg)
        d = min(0.9, (1 + t) / (10 + t))
        expected = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, expected, p_avg)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), p_plain, p_avg))
    ema = optim.averaged_params(s_avg)
    for key in params:
        np.testing.assert_allclose(ema[key], expected[key], rtol=1e-6)
    assert optim.averaged_params(s_plain) is None


def test_ema_run_trains_the_same_weights_and_keeps_their_average(finished_run, tmp_path):
    """The average changes what is evaluated and kept, never the training trajectory; the
    checkpoint holds the averaged weights; runs without it keep their earlier fingerprints."""
    plain_dir, plain_summary = finished_run  # small_config() without the average
    ema_summary = train.train_and_evaluate(
        small_config(**{"optimizer.ema_decay": 0.99}), str(tmp_path)
    )
    plain, ema = (rundir.RunDir(d).read_metrics() for d in (plain_dir, tmp_path))
    assert [r["train_loss"] for r in plain] == [r["train_loss"] for r in ema]
    assert all(p["val_loss"] != e["val_loss"] for p, e in zip(plain, ema, strict=True))
    assert evaluate_checkpoint(tmp_path)["accuracy"] == ema_summary["test_accuracy"]
    without_key = rundir.config_to_dict(small_config())
    del without_key["optimizer"]["ema_decay"]
    assert plain_summary["config_fingerprint"] == rundir.fingerprint(without_key)
    assert ema_summary["config_fingerprint"] != plain_summary["config_fingerprint"]


def test_identity_is_the_own_section_and_the_shared_keys_away_from_their_defaults():
    """A key added with its default, or another family's section, changes no fingerprint."""
    cnn = rundir.config_to_dict(configuration.load("configs/cnn.py"))
    identity = rundir.identity(cnn)
    assert identity["model"] == "cnn" and identity["cnn.kernel_sizes"] == [3, 3]
    assert identity["cnn.channels"] == [48, 96] and "cnn.convs_per_block" not in identity  # 1
    assert identity["optimizer.name"] == "adamw" and "optimizer.momentum" not in identity  # 0.9
    assert not any(k.startswith(("mlp.", "resnet.", "lenet5.", "hybrid.")) for k in identity)
    wide_mlp = json.loads(json.dumps(cnn))
    wide_mlp["mlp"]["hidden_sizes"] = [4096]  # the MLP's section: not the CNN's business
    assert rundir.fingerprint(wide_mlp) == rundir.fingerprint(cnn)
    later = json.loads(json.dumps(cnn))
    later["optimizer"]["a_later_key"] = 0.0  # absent from configs/default.py: it counts
    assert rundir.fingerprint(later) != rundir.fingerprint(cnn)
    del later["optimizer"]["a_later_key"], later["data"]["augment_shear"]  # at its default
    assert rundir.fingerprint(later) == rundir.fingerprint(cnn)
    other = json.loads(json.dumps(cnn))
    other["cnn"]["dropout"] = 0.3
    assert rundir.fingerprint(other) != rundir.fingerprint(cnn)


@pytest.mark.core
def test_checkpoints_of_the_earlier_identity_still_resume(finished_run, tmp_path):
    """A run directory written when the fingerprint covered every key resumes and evaluates:
    its checkpoints carry the earlier fingerprint, which `accepted_fingerprints` names."""
    workdir, summary = finished_run
    old = tmp_path / "old"
    shutil.copytree(workdir, old)
    config_dict = json.loads((old / "config.json").read_text())
    new, legacy = rundir.accepted_fingerprints(config_dict)
    assert new == summary["config_fingerprint"] and legacy != new
    for meta_file in (old / "checkpoints").glob("*/meta/metadata"):
        meta = json.loads(meta_file.read_text())
        assert meta["fingerprint"] == new
        del meta["checksums"]["meta"]  # written then: no sum of the meta item itself yet
        meta_file.write_text(json.dumps(meta | {"fingerprint": legacy}))
    (old / "summary.json").unlink()
    assert evaluate_checkpoint(old)["accuracy"] == summary["test_accuracy"]
    resumed = train.train_and_evaluate(small_config(), str(old))  # nothing left but the test
    assert resumed["test_accuracy"] == summary["test_accuracy"]
    for meta_file in (old / "checkpoints").glob("*/meta/metadata"):
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps(meta | {"fingerprint": "0123456789abcdef"}))
    with pytest.raises(CheckpointError, match="different config"):
        evaluate_checkpoint(old)


def test_prng_impl_draws_every_stream_and_is_part_of_the_identity():
    """config.prng_impl is the PRNG of the init, shuffle and dropout keys (and so of everything
    drawn from them); another PRNG gives other numbers, so another fingerprint."""
    keys = Keys.from_seed(0, "unsafe_rbg")
    for key in (keys.init, keys.shuffle, keys.dropout):
        assert str(jax.random.key_impl(key)) == "unsafe_rbg"
    assert str(jax.random.key_impl(Keys.from_seed(0).dropout)) == "threefry2x32"
    plain = rundir.fingerprint(rundir.config_to_dict(small_config()))
    rbg = rundir.fingerprint(rundir.config_to_dict(small_config(prng_impl="rbg")))
    assert plain != rbg
    with pytest.raises(ConfigError, match="prng_impl='philox' is not one of threefry2x32, rbg"):
        train.train_and_evaluate(small_config(prng_impl="philox"), "/nonexistent/never_made")
