"""Tests of studies (mnist_jax.studies.study), the sweep runner and its aggregation.

The real sweep trains tiny MLPs (2% of the data, 1 epoch) on the real MNIST files; it is marked
slow (~30 s on a 2-core CPU). Everything else runs no training.
"""

import csv
import json
import os
import re
import statistics
import textwrap
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from conftest import ROOT, run_module

from mnist_jax import models
from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError, UserError, WorkdirBusyError
from mnist_jax.data import load_dataset, normalize, pca
from mnist_jax.studies import runner as sweep
from mnist_jax.studies import study as study_lib
from mnist_jax.studies import workers
from mnist_jax.training import rundir, train, validation
from tests import readme

MLP = str(ROOT / "configs" / "mlp.py")
CNN = str(ROOT / "configs" / "cnn.py")
ALL_STUDIES = configuration.shipped_names("study")


def write_study(tmp_path: Path, body: str, name: str = "s.py") -> str:
    path = tmp_path / name
    header = "from mnist_jax.studies.study import Derived, Study, Zip, alias, check_variant\n\n"
    path.write_text(header + textwrap.dedent(body))
    return str(path)


# --- Study parsing and validation -------------------------------------------------------------


def test_product_zip_bases_and_seeds(tmp_path):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(
                bases={{"mlp": {MLP!r}, "cnn": {CNN!r}}},
                axes=[
                    {{"optimizer.name": ["sgd", "adam"], "num_epochs": [1, 2]}},
                    Zip({{"optimizer.learning_rate": [0.1, 0.01], "batch_size": [64, 32]}}),
                ],
                seeds=[0, 3],
                overrides={{"data.train_fraction": 0.5}},
            )
        """,
    )
    study = sweep.load(spec)
    assert study.name == "s"
    trials = study_lib.expand(study)
    assert len(trials) == 2 * (2 * 2) * 2 * 2  # bases x product x zip x seeds
    first = trials[0]
    assert first.name == (
        "base=mlp,optimizer.name=sgd,num_epochs=1,optimizer.learning_rate=0.1,batch_size=64,seed=0"
    )
    assert first.setting == first.name.removesuffix(",seed=0")
    assert first.config.model == "mlp" and first.config.data.train_fraction == 0.5
    assert first.config.optimizer.learning_rate == 0.1 and first.config.batch_size == 64
    zipped = {(t.config.optimizer.learning_rate, t.config.batch_size) for t in trials}
    assert zipped == {(0.1, 64), (0.01, 32)}  # zipped, not crossed
    assert {t.seed for t in trials} == {0, 3} and all(t.config.seed == t.seed for t in trials)
    assert trials[-1].config.model == "cnn"
    assert len({t.name for t in trials}) == len(trials)
    # One figure per independent axis; a zipped group gets one, for its first key.
    assert study_lib.plot_axes(study) == {
        "optimizer.name": ["num_epochs", "optimizer.learning_rate", "batch_size"],
        "num_epochs": ["optimizer.name", "optimizer.learning_rate", "batch_size"],
        "optimizer.learning_rate": ["optimizer.name", "num_epochs"],
    }


def test_derived_axes_and_variants(tmp_path):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            check_variant(variant, ("", "small"))
            return Study(
                bases={{"mlp": {MLP!r}, "cnn": {CNN!r}}},
                axes=[{{"width": [8, 16], "depth": [1, 3] if variant == "" else [1]}}],
                derived=[Derived("mlp.hidden_sizes", ("width", "depth"), lambda w, d: (w,) * d),
                         *alias("depth", "cnn.convs_per_block")],
            )
        """,
    )
    trials = study_lib.expand(sweep.load(spec))
    assert trials[1].config.mlp.hidden_sizes == (8, 8, 8)
    assert trials[1].name == "base=mlp,width=8,depth=3,seed=0"
    small = sweep.load(spec + ":small")
    assert small.name == "s_small" and len(study_lib.expand(small)) == 4
    with pytest.raises(ConfigError, match="unknown study variant 'big'"):
        sweep.load(spec + ":big")


def test_long_names_are_shortened_stably(tmp_path):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}},
                         axes=[{{"mlp.hidden_sizes": [(1000,) * 40, (1000,) * 41]}}])
        """,
    )
    a = study_lib.expand(sweep.load(spec))
    b = study_lib.expand(sweep.load(spec))
    assert [t.name for t in a] == [t.name for t in b]
    assert all(len(t.name) <= study_lib.MAX_NAME for t in a) and a[0].name != a[1].name


@pytest.mark.parametrize(
    "axes, overrides, message",
    [
        (
            '[{"optimizer.lerning_rate": [0.1]}]',
            "{}",
            "unknown config key 'optimizer.lerning_rate'",
        ),
        ('[{"num_epochs": [1]}]', '{"mlp.widths": 3}', "unknown config key 'mlp.widths'"),
        ('[{"mlp": [1]}]', "{}", "unknown config key 'mlp'"),  # a section, not a value
        ('[{"num_epochs": [1, 2], "mlp.dropout": []}]', "{}", "axis 'mlp.dropout' is empty"),
        ('[{"seed": [1, 2]}]', "{}", "'seed' is set by the study's seeds"),
        ('[{"num_epochs": [0.5]}]', "{}", "num_epochs=0.5 does not fit the config"),
        ('[Zip({"num_epochs": [1, 2], "batch_size": [8]})]', "{}", "different lengths"),
        ('[{"data.pca_components": [10]}]', '{"model": "cnn"}', "needs model='mlp'"),
        ('[{"model": ["mlp", "transformer"]}]', "{}", "unknown model 'transformer'"),
    ],
)
def test_bad_studies_are_rejected_before_anything_runs(
    tmp_path, monkeypatch, axes, overrides, message
):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}}, axes={axes}, overrides={overrides})
        """,
    )
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(message)):
        sweep.run_study(spec, str(out))
    assert not out.exists()


def test_cli_reports_a_bad_key_in_one_line(tmp_path):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}}, axes=[{{"data.trian_fraction": [0.1]}}])
        """,
    )
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "'data.trian_fraction'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_every_study_file_ships():
    files = {p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__"}
    assert set(ALL_STUDIES) == files


@pytest.mark.parametrize("name", ALL_STUDIES)
def test_shipped_studies_dry_run(name, tmp_path, monkeypatch, capsys):
    """Every study in experiments/ (grid or search), full and reduced, validates against
    today's configs and lists its plan (`--dry_run`) without running or writing anything; by
    its name, from a directory outside the repository."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    full = sweep.run_study(name, str(out / "full"), dry_run=True)
    reduced = sweep.run_study(f"{name}:reduced", str(out / "reduced"), dry_run=True)
    assert sweep.load(name).description  # every study states its question
    assert len(full) >= len(reduced) > 0
    assert all(status == "pending" for _, status in full + reduced)
    assert not any(tmp_path.iterdir())


def test_dry_run_lists_trials_and_writes_nothing(tmp_path, capsys, monkeypatch):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}}, axes=[{{"num_epochs": [1, 2, 3]}}], seeds=[0, 1])
        """,
    )
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    (tmp_path / "out" / "trials" / "num_epochs=2,seed=1").mkdir(parents=True)
    (tmp_path / "out" / "trials" / "num_epochs=2,seed=1" / "summary.json").write_text("{}")
    statuses = sweep.run_study(spec, str(tmp_path / "out"), dry_run=True)
    printed = capsys.readouterr().out
    assert len(statuses) == 6 and "6 trials, 1 done" in printed
    assert "   5/6  done     trials/num_epochs=2,seed=1" in printed  # seed by seed
    assert "   1/6  pending  trials/num_epochs=1,seed=0" in printed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["trials"]


def test_workers_start_at_their_share_and_are_checked(tmp_path):
    assert workers.rotated([0, 1, 2, 3, 4], 0, 2) == [0, 1, 2, 3, 4]
    assert workers.rotated([0, 1, 2, 3, 4], 1, 2) == [2, 3, 4, 0, 1]
    assert workers.rotated([], 1, 2) == []
    study = str(ROOT / "experiments" / "dropout.py")
    with pytest.raises(UserError, match=r"jobs=2, worker=2: need jobs >= 1 and 0 <= worker"):
        sweep.run_study(study, str(tmp_path), jobs=2, worker=2)
    assert not any(tmp_path.iterdir())


def _must_not_train(config, workdir, **kwargs):
    raise AssertionError(f"trained {workdir}")


# --- A real sweep: aggregation and resumption ---------------------------------------------------


@pytest.mark.slow
def test_real_sweep_aggregates_and_resumes(tmp_path, mnist_dir, monkeypatch):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(
                bases={{"mlp": {MLP!r}}},
                axes=[{{"mlp.hidden_sizes": [(32,), (64,)]}}],
                seeds=[0, 1],
                overrides={{"num_epochs": 1, "data.train_fraction": 0.02, "batch_size": 64,
                            "mlp.dropout": 0.0, "log_every_seconds": 1000.0}},
            )
        """,
    )
    out = tmp_path / "out"
    paths = sweep.run_study(spec, str(out))
    for key in ("csv", "json", "report"):
        assert paths[key].exists()
    assert (out / "figures" / "test_accuracy_vs_mlp.hidden_sizes.png").stat().st_size > 1000

    # Every aggregate row agrees with the summary.json files of its trials.
    results = json.loads((out / "results.json").read_text())
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(results["rows"]) == len(csv_rows) == 2 and not results["missing_trials"]
    for row, csv_row in zip(results["rows"], csv_rows, strict=True):
        assert row["n_seeds"] == 2 and row["seeds"] == [0, 1]
        summaries = [
            json.loads((out / "trials" / name / "summary.json").read_text())
            for name in row["trials"]
        ]
        assert [s["seed"] for s in summaries] == [0, 1]
        for metric in ("test_accuracy", "best_val_accuracy", "train_seconds", "num_params"):
            values = [s[metric] for s in summaries]
            assert row[f"{metric}_mean"] == pytest.approx(statistics.fmean(values))
            assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(values))
            assert float(csv_row[f"{metric}_mean"]) == pytest.approx(statistics.fmean(values))
    assert results["rows"][0]["num_params_mean"] == 784 * 32 + 32 + 32 * 10 + 10
    assert "| mlp | 32 | 2 |" in (out / "report.md").read_text()

    # Finished trials are skipped; an interrupted one (no summary.json yet) resumes from its
    # checkpoint instead of training again.
    interrupted = out / "trials" / results["rows"][1]["trials"][0]
    before = json.loads((interrupted / "summary.json").read_text())
    (interrupted / "summary.json").unlink()
    calls = []
    real_train = train.train_and_evaluate
    monkeypatch.setattr(
        train, "train_and_evaluate", lambda c, w: calls.append(w) or real_train(c, w)
    )
    sweep.run_study(spec, str(out))
    assert calls == [str(interrupted)]
    after = json.loads((interrupted / "summary.json").read_text())
    assert after["test_accuracy"] == before["test_accuracy"]
    assert after["train_seconds"] == before["train_seconds"]  # restored, not retrained
    assert len((interrupted / "metrics.jsonl").read_text().splitlines()) == 1

    # A worker (--jobs) skips a trial that another process holds and trains the others ...
    two = tmp_path / "jobs2"
    held_name = results["rows"][0]["trials"][0]
    held = rundir.RunDir(two / "trials" / held_name)
    held.lock()
    calls.clear()
    assert sweep.run_study(spec, str(two), jobs=2, worker=1) == {}  # a worker writes no results
    assert sorted(Path(w).name for w in calls) == sorted(p.name for p in (out / "trials").iterdir())
    assert not held.summary_path.exists() and not (two / "results.json").exists()
    assert len(list((two / "trials").glob("*/summary.json"))) == 3
    held.release()
    # ... and `--jobs=2` finishes what is left and writes the same results as one process.
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={two}", "--jobs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    parallel = json.loads((two / "results.json").read_text())
    for row, other in zip(results["rows"], parallel["rows"], strict=True):
        assert other["test_accuracy_mean"] == row["test_accuracy_mean"]
        assert other["best_val_accuracy_mean"] == row["best_val_accuracy_mean"]


# --- PCA inputs -----------------------------------------------------------------------------------


def test_pca_fit_recovers_principal_axes():
    rng = np.random.default_rng(0)
    # Images whose variation lies mostly along two pixel directions.
    base = rng.integers(100, 150, size=(1, 28, 28))
    a, b = np.zeros((28, 28)), np.zeros((28, 28))
    a[5, 5], b[10, 10] = 1, 1
    coef = rng.normal(size=(500, 2)) * [40, 15]
    images = np.clip(base + coef[:, :1, None] * a + coef[:, 1:, None] * b, 0, 255).astype(np.uint8)
    proj = pca.fit(images, 3)
    assert proj.components.shape == (784, 3) and proj.mean.shape == (784,)
    np.testing.assert_allclose(proj.components.T @ proj.components, np.eye(3), atol=1e-5)
    assert abs(proj.components[5 * 28 + 5, 0]) == pytest.approx(1, abs=1e-3)
    assert abs(proj.components[10 * 28 + 10, 1]) == pytest.approx(1, abs=1e-3)
    assert proj.explained_variance_ratio[0] > proj.explained_variance_ratio[1] > 0
    assert pca.fit(images, 3).components.tobytes() == proj.components.tobytes()  # deterministic
    for bad in (-1, 785, 2.5):
        with pytest.raises(ConfigError, match=r"data\.pca_components"):
            pca.check_components(bad)
    config = ml_collections.ConfigDict(
        {"source": "idx", "dir": "/nonexistent", "validation_fraction": 0.1, "split_seed": 0}
    )
    config.pca_components = 900
    with pytest.raises(ConfigError, match="pca_components=900"):  # before any loading
        load_dataset(config)


def test_pca_is_fitted_on_the_training_split_only(mnist_dir):
    config = ml_collections.ConfigDict(
        {
            "source": "idx",
            "dir": "",
            "validation_fraction": 0.1,
            "split_seed": 0,
            "train_fraction": 0.05,
            "pca_components": 16,
        }
    )
    data = load_dataset(config)
    proj = data.projection
    assert proj.components.shape == (784, 16)

    def pixel_mean(images):
        return np.asarray(normalize(images)).reshape(len(images), -1).mean(0)

    np.testing.assert_allclose(proj.mean, pixel_mean(data.train.images), atol=1e-4)
    # Neither the validation nor the test images (nor the unused 95% of the training split) count.
    both = np.concatenate([data.train.images, data.validation.images])
    assert np.abs(proj.mean - pixel_mean(both)).max() > 1e-3
    assert np.abs(proj.mean - pixel_mean(data.test.images)).max() > 1e-3
    config.pca_components = 0
    assert load_dataset(config).projection is None


def test_mlp_on_pca_inputs():
    config = configuration.load(MLP)
    config.data.pca_components = 12
    config.mlp.hidden_sizes = (32,)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
    model = models.project_inputs(models.create_model(config), pca.fit(images, 12))
    variables = models.init_variables(model, jax.random.key(0))
    params = variables["params"]
    assert params["inner"]["Dense_0"]["kernel"].shape == (12, 32)
    assert models.count_params(params) == 12 * 32 + 32 + 32 * 10 + 10  # the projection is fixed
    logits = model.apply(variables, normalize(images[:5]))
    assert logits.shape == (5, 10)
    for name in ("cnn", "lenet5"):
        config.model = name
        with pytest.raises(ConfigError, match=f"data.pca_components=12 needs model='mlp'.*{name}"):
            validation.validate(config)


def test_launch_sh_has_a_sweep_command():
    text = (ROOT / "launch.sh").read_text()
    assert "sweep)" in text and "./launch.sh sweep STUDY OUTDIR" in text
    assert os.access(ROOT / "launch.sh", os.X_OK)


def test_readme_study_example_defines_its_trials(tmp_path, monkeypatch):
    """README.md's "Add a study" file, as written: 3 dropout values x 3 seeds of configs/mlp.py."""
    study_file = tmp_path / "dropout_small.py"
    study_file.write_text(readme.block("Add a study"))
    monkeypatch.chdir(ROOT)  # the study names its config relative to the repository
    trials = sweep.run_study(str(study_file), str(tmp_path / "out"), dry_run=True)
    assert [(t.point["mlp.dropout"], t.seed) for t, _ in trials] == [
        (d, s) for s in (0, 1, 2) for d in (0.0, 0.1, 0.3)
    ]
    assert {status for _, status in trials} == {"pending"}
    assert all(t.config.mlp.dropout == t.point["mlp.dropout"] for t, _ in trials)


# --- The command line over a study: --seeds, --config.KEY=VALUE, run_dir, evaluate -----------


def test_command_line_seeds_and_overrides_reach_every_trial_and_the_workers(tmp_path, capsys):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}}, axes=[{{"num_epochs": [1, 2]}}],
                         overrides={{"batch_size": 64}}, run_dir="{{base}}/e{{name}}")
        """,
    )
    line = sweep.CommandLine(seeds=2, overrides={"batch_size": 32, "mlp.dropout": 0.3},
                             args=("--config.batch_size=32", "--seeds=2"))  # fmt: skip
    trials = [t for t, _ in sweep.run_study(spec, str(tmp_path / "o"), dry_run=True,
                                            command_line=line)]  # fmt: skip
    assert [(t.seed, t.config.num_epochs) for t in trials] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert {(t.config.batch_size, t.config.mlp.dropout) for t in trials} == {(32, 0.3)}
    assert trials[0].run_dir == "mlp/enum_epochs=1,seed=0"
    assert line.command(spec, "o") == (
        f"python -m mnist_jax.sweep --study={spec} --output_dir=o --config.batch_size=32 --seeds=2"
    )  # the reports' command
    (worker,) = workers.commands(spec, "o", 1, line.args)
    assert worker.argv[3:] == (f"--study={spec}", "--output_dir=o", "--config.batch_size=32",
                               "--seeds=2", "--jobs=1", "--worker=0")  # fmt: skip


def test_sweep_binary_parses_seeds_and_config_flags(tmp_path):
    compare = f"{ROOT}/experiments/compare.py:mlp,quick"
    out = run_module("mnist_jax.sweep", f"--study={compare}", f"--output_dir={tmp_path / 'o'}",
                     "--seeds=2", "--config.num_epochs=3", "--dry_run")  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert [line.split()[-1] for line in out.stdout.splitlines()[:-1]] == [
        "mlp/seed_0", "mlp/seed_1"
    ]  # fmt: skip
    bad = run_module("mnist_jax.sweep", f"--study={compare}", f"--output_dir={tmp_path / 'o'}",
                     "--config.num_epoch=3", "--dry_run")  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "num_epoch" in bad.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "field, message",
    [
        ('run_dir="{base}/{nope}"', "run_dir='{base}/{nope}' cannot be formatted"),
        ('run_dir="../{name}"', "must give a relative path inside the study"),
        ('run_dir="{base}"', "two trials would share a run directory"),
        ('evaluate={"quantise": "int8"}', "evaluate option 'quantise' does not exist; valid: "),
    ],
)
def test_bad_run_dir_or_evaluate_is_one_line_before_anything_runs(tmp_path, field, message):
    spec = write_study(
        tmp_path,
        f"""
        def get_study(variant):
            return Study(bases={{"mlp": {MLP!r}}}, axes=[], seeds=[0, 1], {field})
        """,
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        sweep.run_study(spec, str(tmp_path / "o"), dry_run=True)
    assert not (tmp_path / "o").exists()


def test_a_study_that_ends_with_a_trial_missing_does_not_succeed(tmp_path, monkeypatch, mnist_dir):
    """A trial another process holds (a worker of a killed sweep, say) is skipped by a worker;
    the study then writes its partial tables and fails, naming what is missing."""
    spec = write_study(tmp_path, """
        def get_study(variant=""):
            return Study(bases={"mlp": "mlp"}, axes=[{"mlp.dropout": [0.0, 0.1]}], seeds=[0],
                         overrides={"num_epochs": 1, "data.train_fraction": 0.02,
                                    "mlp.hidden_sizes": (16,)})
    """)  # fmt: skip
    real = train.train_and_evaluate

    def busy_second(config, workdir):
        if "dropout=0.1" in workdir:
            raise WorkdirBusyError(f"workdir {workdir} is in use by pid 1")
        return real(config, workdir)

    monkeypatch.setattr(train, "train_and_evaluate", busy_second)
    # The workers, in this process: worker 0 of 1 trains what it can and skips the busy one.
    monkeypatch.setattr(sweep, "_run_workers", lambda spec, out, jobs, args: sweep.run_study(
        spec, out, worker=0, jobs=1))  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"1 of 2 trials have no result \(first: .*dropout=0\.1"):
        sweep.run_study(spec, str(out), jobs=2)
    assert json.loads((out / "results.json").read_text())["missing_trials"]


def test_one_study_per_output_directory(tmp_path):
    """A second sweep or compare into a directory in use fails at once, naming the holder
    (two compares each took one trial's lock from the other, and both failed)."""
    spec = write_study(tmp_path, """
        def get_study(variant=""):
            return Study(bases={"mlp": "mlp"}, axes=[], seeds=[0])
    """)  # fmt: skip
    out = tmp_path / "out"
    holder = rundir.RunDir(out, what="study output directory")
    holder.lock()
    try:
        with pytest.raises(WorkdirBusyError, match=rf"study output directory {out} is in use by "
                           rf"pid {os.getpid()}"):  # fmt: skip
            sweep.run_study(spec, str(out))
    finally:
        holder.release()
    assert not (out / "trials").exists()


def test_an_output_directory_that_is_a_file_is_one_error(tmp_path):
    spec = write_study(tmp_path, """
        def get_study(variant=""):
            return Study(bases={"mlp": "mlp"}, axes=[], seeds=[0])
    """)  # fmt: skip
    taken = tmp_path / "results.txt"
    taken.write_text("mine")
    for dry_run in (True, False):
        with pytest.raises(UserError, match=r"results\.txt is a file; name a directory"):
            sweep.run_study(spec, str(taken), dry_run=dry_run)
    assert taken.read_text() == "mine"
