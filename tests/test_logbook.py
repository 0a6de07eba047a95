"""TensorBoard events of real runs, read back as TensorBoard reads them, against metrics.jsonl."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_jax.core.errors import ConfigError
from mnist_jax.training import logbook, rundir, train, validation
from tests import events
from tests.conftest import small_config

# One worker runs this module (--dist loadgroup), and its trained runs are session fixtures, so
# they are built once even when tests of other modules run in between (docs/testing.md).
pytestmark = pytest.mark.xdist_group("logbook")


def logged_config():
    """small_config (tests/conftest.py) with the default log_every_steps and test metrics every
    epoch (the default; configs/mlp.py turns them off)."""
    return small_config(test_every_epochs=1)


@pytest.fixture(scope="session")
def run(tmp_path_factory, mnist_dir):
    workdir = tmp_path_factory.mktemp("logbook") / "mlp"
    summary = train.train_and_evaluate(logged_config(), str(workdir))
    return workdir, summary, rundir.RunDir(workdir).read_metrics()


def _by_epoch(points, steps_per_epoch):
    """[(epoch, [(step, value), ...]), ...] of train/* points."""
    out: dict[int, list] = {}
    for step, value in points:
        out.setdefault((step - 1) // steps_per_epoch + 1, []).append((step, value))
    return sorted(out.items())


def test_epoch_scalars_equal_metrics_jsonl(run):
    workdir, summary, records = run
    scalars = events.scalars(workdir / logbook.SUBDIR)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key, tag in logbook.EPOCH_TAGS.items():
        assert [s for s, _ in scalars[tag]] == [r["step"] for r in records], tag
        # TensorBoard stores float32: equal to the JSON's float64 up to that rounding.
        np.testing.assert_allclose(
            [v for _, v in scalars[tag]], [r[key] for r in records], rtol=1e-6, err_msg=tag
        )
    last = records[-1]["step"]
    assert scalars["best/test_accuracy"] == [(last, pytest.approx(summary["test_accuracy"]))]
    assert scalars["best/test_loss"] == [(last, pytest.approx(summary["test_loss"], rel=1e-6))]


def test_train_points_come_from_inside_the_epoch_and_average_to_it(run):
    workdir, _, records = run
    scalars = events.scalars(workdir / logbook.SUBDIR)
    steps_per_epoch = records[0]["step"]
    per_epoch = events.points_per_epoch(scalars["train/loss"], steps_per_epoch)
    assert per_epoch == {1: 11, 2: 11, 3: 11}  # 42 steps: 10 windows of 4 steps and one of 2
    for key in ("loss", "accuracy"):
        for (epoch, points), record in zip(
            _by_epoch(scalars[f"train/{key}"], steps_per_epoch), records, strict=True
        ):
            steps = np.array([s for s, _ in points])
            lengths = np.diff(steps, prepend=(epoch - 1) * steps_per_epoch)
            assert lengths.max() == 4 and lengths.sum() == steps_per_epoch
            mean = np.average([v for _, v in points], weights=lengths)
            np.testing.assert_allclose(mean, record[f"train_{key}"], rtol=1e-6)
            # the points differ from each other: they are not the epoch's mean repeated
            assert np.ptp([v for _, v in points]) > 0.01
    lr = dict(scalars["train/learning_rate"])
    for record in records:
        assert lr[record["step"]] == pytest.approx(record["learning_rate"], rel=1e-5, abs=1e-9)


def test_hparams_are_the_config(run):
    workdir, _, _ = run
    accumulator = events.load(workdir / logbook.SUBDIR)
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    config = json.loads((workdir / "config.json").read_text())
    assert start.hparams["model"].string_value == config["model"] == "mlp"
    assert (
        start.hparams["optimizer.learning_rate"].number_value
        == config["optimizer"]["learning_rate"]
    )
    assert start.hparams["mlp.hidden_sizes"].string_value == "[256, 256]"
    assert "_hparams_/session_end_info" in accumulator.summary_metadata  # the run finished


def test_a_resumed_run_logs_no_step_twice(run, tmp_path):
    """A run killed after epoch 3's events but before its checkpoint resumes from epoch 2:
    TensorBoard then drops the first attempt's events after epoch 2 (purge_step)."""
    workdir, _, records = run
    copy = tmp_path / "mlp"
    shutil.copytree(workdir, copy)
    (copy / "summary.json").unlink()
    shutil.rmtree(copy / "checkpoints" / str(records[-1]["step"]))
    before = events.scalars(workdir / logbook.SUBDIR)
    train.train_and_evaluate(logged_config(), str(copy))
    assert len(list((copy / logbook.SUBDIR).glob("events.out.tfevents.*"))) == 2
    after = events.scalars(copy / logbook.SUBDIR)
    assert set(after) == set(before)
    for tag, points in after.items():
        steps = [s for s, _ in points]
        assert steps == [s for s, _ in before[tag]], tag  # each step once, none missing
        if tag.startswith("perf/"):  # timings differ between the two attempts
            continue
        np.testing.assert_allclose([v for _, v in points], [v for _, v in before[tag]],
                                   rtol=1e-5, err_msg=tag)  # fmt: skip


def test_figures_go_into_one_event_file(tmp_path):
    pngs = {}
    for name, size in (("a", (40, 30)), ("b", (64, 48))):
        pngs[name] = tmp_path / f"{name}.png"
        Image.new("RGB", size, (200, 10, 10)).save(pngs[name])
    logdir = tmp_path / "tensorboard"
    for _ in range(2):  # a second evaluation replaces the figures
        logbook.write_images(logdir, pngs)
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    accumulator = events.load(logdir)
    assert sorted(accumulator.Tags()["images"]) == ["a", "b"]
    (b,) = accumulator.Images("b")
    assert (b.width, b.height) == (64, 48)


@pytest.mark.parametrize("key", ["log_every_steps", "test_every_epochs"])
def test_bad_logging_keys_fail_early(key):
    config = logged_config()
    config[key] = -1
    with pytest.raises(ConfigError, match=key):
        validation.validate(config)
