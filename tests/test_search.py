"""Hyperparameter search (mnist_jax.studies.search): sampling, successive halving, resumption.

The rung logic is tested with a stand-in trainer that writes the files a run writes (metrics.jsonl
records, summary.json) with scores computed from the trial's config, so that which trials must
be promoted is known in advance. One test pauses and continues a real (tiny) run;
tests/test_studies.py runs the shipped reduced search for real.
"""

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_module

from mnist_jax.core.errors import ConfigError
from mnist_jax.studies import runner
from mnist_jax.studies import search as search_lib
from mnist_jax.training import guards, rundir, train

MLP = str(ROOT / "configs" / "mlp.py")
HEADER = (
    "from mnist_jax.studies.search import Choice, IntUniform, LogUniform, Search, Uniform\n"
    "from mnist_jax.studies.study import alias\n\n"
)


def write_search(tmp_path: Path, body: str, name: str = "s.py") -> str:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return str(path)


def small_search(**fields) -> search_lib.Search:
    spec = {
        "base": MLP,
        "space": {
            "optimizer.learning_rate": search_lib.LogUniform(1e-4, 1e-1),
            "mlp.dropout": search_lib.Uniform(0.0, 0.5),
            "mlp.hidden_sizes": search_lib.Choice([(16,), (32, 32)]),
            "data.augment_shift": search_lib.IntUniform(0, 2),
        },
        "trials": 9,
        "rungs": (1, 2, 4),
        "eta": 3,
        "final_seeds": (5, 6),
        "name": "small",
    }
    return search_lib.Search(**(spec | fields))


# --- Sampling ---------------------------------------------------------------------------------


def test_sampling_is_reproducible_in_range_and_extends():
    search = small_search(trials=200)
    points = search_lib.sample(search)
    assert points == search_lib.sample(small_search(trials=200))
    assert search_lib.sample(small_search(trials=5)) == points[:5]  # more trials keep the first
    assert search_lib.sample(small_search(trials=5, seed=1)) != points[:5]
    lrs = np.array([p["optimizer.learning_rate"] for p in points])
    assert lrs.min() >= 1e-4 and lrs.max() < 1e-1
    decades = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert decades.min() > 40  # log-uniform: each decade about a third of 200
    assert all(0.0 <= p["mlp.dropout"] < 0.5 for p in points)
    assert {p["mlp.hidden_sizes"] for p in points} == {(16,), (32, 32)}
    assert {p["data.augment_shift"] for p in points} == {0, 1, 2}  # both ends included


def test_expand_validates_every_sampled_config_and_names_trials():
    search = small_search(overrides={"data.train_fraction": 0.05})
    trials = search_lib.expand(search)
    assert [t.name for t in trials] == [f"trial={i:03d}" for i in range(9)]
    for t, point in zip(trials, search_lib.sample(search), strict=True):
        assert t.point == point
        assert t.config.optimizer.learning_rate == point["optimizer.learning_rate"]
        assert t.config.mlp.hidden_sizes == point["mlp.hidden_sizes"]
        assert t.config.num_epochs == 4 and t.config.seed == 0  # the full budget, trial_seed
        assert t.config.data.train_fraction == 0.05


# --- Successive halving, unit level -----------------------------------------------------------


def test_rung_score_is_the_kept_epoch_up_to_the_rung():
    records = [
        {"epoch": 1, "val_loss": 0.50, "val_accuracy": 0.80},
        {"epoch": 2, "val_loss": 0.40, "val_accuracy": 0.85},
        {"epoch": 3, "val_loss": 0.45, "val_accuracy": 0.90},  # higher accuracy, worse loss
        {"epoch": 4, "val_loss": 0.30, "val_accuracy": 0.88},
    ]
    score = search_lib.rung_score
    assert score(records, 1, "val_accuracy") == 0.80
    assert score(records, 3, "val_accuracy") == 0.85  # the epoch the run keeps (lowest loss)
    assert score(records, 4, "val_accuracy") == 0.88
    assert score(records, 3, "val_loss") == 0.40
    assert score(records, 2, "val_accuracy", min_delta=0.2) == 0.80  # 0.1 is no improvement
    assert score([{"epoch": 1, "val_loss": None, "val_accuracy": 0.1}], 1, "val_accuracy") is None


def test_promote_keeps_the_best_ties_to_lower_trials_failures_last():
    scores = {0: 0.90, 1: 0.95, 2: None, 3: 0.95, 4: 0.80, 5: 0.97}
    assert search_lib.promote(scores, 3, "val_accuracy") == [1, 3, 5]
    assert search_lib.promote(scores, 2, "val_accuracy") == [1, 5]  # 1 beats 3 on the tie
    assert search_lib.promote({0: 0.3, 1: 0.2, 2: None}, 2, "val_loss") == [0, 1]
    assert search_lib.promote({0: None, 1: 0.5}, 1, "val_loss") == [1]
    assert search_lib.rung_sizes(9, 3, 3) == [9, 3, 1]
    assert search_lib.rung_sizes(10, 3, 4) == [10, 3, 1, 1]
    assert search_lib.rung_sizes(4, 2, 1) == [4]


def fake_score(config, epoch: int) -> float:
    """Validation accuracy of the stand-in runs: at epoch 1 the learning rate closest to 1e-2
    wins; from epoch 2 on, the dropout rate decides (so the rungs disagree)."""
    if epoch == 1:
        return 0.9 - 0.1 * abs(math.log10(config.optimizer.learning_rate) + 2)
    return 0.95 - 0.05 * config.mlp.dropout + 0.001 * epoch  # above every epoch-1 score


class FakeTrainer:
    """Writes what train.train_and_evaluate writes: an epoch record per epoch trained, and at the
    end a summary whose test accuracy runs opposite to validation (selection must not see it)."""

    def __init__(self, fail_after: int | None = None, diverge: str = ""):
        self.calls: list[tuple[str, int | None]] = []
        self.fail_after = fail_after
        self.diverge = diverge  # this trial's loss turns NaN in its second epoch

    def __call__(self, config, workdir, *, pause_after=None):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt("killed")
        path = Path(workdir)
        self.calls.append((f"{path.parent.name}/{path.name}", pause_after))
        run = rundir.RunDir(path)
        path.mkdir(parents=True, exist_ok=True)
        run.write_config(config)
        done = max((r["epoch"] for r in run.read_metrics()), default=0)
        until = min(pause_after or config.num_epochs, config.num_epochs)
        for epoch in range(done + 1, until + 1):
            if path.name == self.diverge and epoch == 2:
                raise guards.Diverged("non-finite loss nan at epoch 2")
            acc = fake_score(config, epoch)
            run.append_metrics({"epoch": epoch, "val_loss": 1 - acc, "val_accuracy": acc})
        if until < config.num_epochs:
            return None
        summary = {
            "test_accuracy": 1.5 - fake_score(config, until) + 0.001 * config.seed,
            "best_val_accuracy": fake_score(config, until),
            "train_seconds": 1.0,
            "num_params": 1,
            "seed": config.seed,
        }
        run.write_summary(summary)
        return summary


def _write_spec(tmp_path: Path) -> str:
    return write_search(
        tmp_path,
        f"""
        def get_study(variant):
            return Search(
                base={MLP!r},
                space={{"optimizer.learning_rate": LogUniform(1e-4, 1e-1),
                        "dropout": Uniform(0.0, 0.5)}},
                derived=alias("dropout", "mlp.dropout"),
                trials=9, rungs=(1, 2, 4), eta=3, final_seeds=(5, 6),
            )
        """,
    )


def test_successive_halving_promotes_by_validation_and_retrains_the_winner(tmp_path, monkeypatch):
    spec = _write_spec(tmp_path)
    fake = FakeTrainer()
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    out = tmp_path / "out"
    paths = runner.run_study(spec, str(out))

    trials = search_lib.expand(runner.load(spec))
    rung1 = {t.index: fake_score(t.config, 1) for t in trials}
    top3 = sorted(sorted(rung1, key=lambda i: -rung1[i])[:3])
    # At rung 2 a trial scores its better epoch of the two (the lower validation loss).
    rung2 = {i: max(fake_score(trials[i].config, e) for e in (1, 2)) for i in top3}
    winner = max(rung2, key=lambda i: rung2[i])
    assert sorted(rung1, key=lambda i: -rung1[i])[0] != winner  # the rungs disagree
    # Rung 1: every trial, paused after 1 epoch; rung 2: the best 3 to 2 epochs; rung 3: one.
    expected = [(f"trials/trial={i:03d}", 1) for i in range(9)]
    expected += [(f"trials/trial={i:03d}", 2) for i in top3]
    expected += [(f"trials/trial={winner:03d}", 4)]
    expected += [("final/seed=5", None), ("final/seed=6", None)]
    assert fake.calls == expected
    for i in range(9):  # every trial trained exactly as far as its last rung
        records = rundir.RunDir(out / "trials" / trials[i].name).read_metrics()
        assert len(records) == (4 if i == winner else 2 if i in top3 else 1)
    for seed in (5, 6):
        config = json.loads((out / "final" / f"seed={seed}" / "config.json").read_text())
        assert config["seed"] == seed
        assert config["mlp"]["dropout"] == trials[winner].point["dropout"]

    results = json.loads(paths["json"].read_text())
    assert results["best_trial"] == trials[winner].name
    assert [r["trials"] for r in results["rung_results"]] == [list(range(9)), top3, [winner]]
    assert results["rung_results"][0]["promoted"] == top3
    tests = [1.5 - fake_score(trials[winner].config, 4) + 0.001 * s for s in (5, 6)]
    assert results["final_test_accuracy"]["mean"] == pytest.approx(np.mean(tests))
    assert results["final_test_accuracy"]["std"] == pytest.approx(np.std(tests, ddof=1))
    report = paths["report"].read_text()
    assert f"{trials[winner].name}: `optimizer.learning_rate=" in report
    assert "Test accuracy over 2 fresh seeds" in report
    assert (out / "figures" / "search_curves.png").stat().st_size > 1000
    assert (out / "figures" / "score_vs_dropout.png").exists()
    with open(paths["csv"]) as f:
        assert len(f.read().splitlines()) == 1 + 9


def test_search_resumes_without_retraining(tmp_path, monkeypatch):
    spec = _write_spec(tmp_path)
    whole = FakeTrainer()
    monkeypatch.setattr(train, "train_and_evaluate", whole)
    runner.run_study(spec, str(tmp_path / "whole"))
    reference = json.loads((tmp_path / "whole" / "results.json").read_text())

    # Killed after 10 runs (in rung 2), then the same command twice.
    out = str(tmp_path / "out")
    killed = FakeTrainer(fail_after=10)
    monkeypatch.setattr(train, "train_and_evaluate", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(spec, out)
    resumed = FakeTrainer()
    monkeypatch.setattr(train, "train_and_evaluate", resumed)
    runner.run_study(spec, out)
    assert killed.calls + resumed.calls == whole.calls  # nothing trained twice, nothing skipped
    again = FakeTrainer()
    monkeypatch.setattr(train, "train_and_evaluate", again)
    runner.run_study(spec, out)
    assert again.calls == []
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for key in ("rung_results", "best_trial", "final_test_accuracy"):
        assert results[key] == reference[key]  # the same decisions, reproduced from the files

    # A lost final run is the only thing retrained.
    (tmp_path / "out" / "final" / "seed=6" / "summary.json").unlink()
    runner.run_study(spec, out)
    assert again.calls == [("final/seed=6", None)]


def test_a_diverged_trial_ranks_last_and_is_not_retrained(tmp_path, monkeypatch):
    spec = _write_spec(tmp_path)
    trials = search_lib.expand(runner.load(spec))
    rung1 = {t.index: fake_score(t.config, 1) for t in trials}
    first = max(rung1, key=lambda i: rung1[i])  # promoted at rung 1, diverges in epoch 2
    fake = FakeTrainer(diverge=trials[first].name)
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    out = tmp_path / "out"
    runner.run_study(spec, str(out))
    results = json.loads((out / "results.json").read_text())
    second = results["rung_results"][1]
    assert first in second["trials"] and second["scores"][str(first)] is None
    assert first not in results["rung_results"][2]["trials"]
    assert results["best_trial"] != trials[first].name
    assert (out / "trials" / trials[first].name / search_lib.FAILED_FILE).exists()
    assert "| diverged |" in (out / "report.md").read_text()
    again = FakeTrainer()
    monkeypatch.setattr(train, "train_and_evaluate", again)
    runner.run_study(spec, str(out))
    assert again.calls == []


def test_dry_run_lists_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    spec = _write_spec(tmp_path)
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    statuses = runner.run_study(spec, str(tmp_path / "out"), dry_run=True)
    printed = capsys.readouterr().out
    assert (
        len(statuses) == 9 and "   1/9  pending    trial=000  optimizer.learning_rate=" in printed
    )
    assert "final  pending    seed=5" in printed
    assert "rungs at 1, 2, 4 epochs with 9, 3, 1 trials" in printed
    assert not (tmp_path / "out").exists()


def _must_not_train(config, workdir, **kwargs):
    raise AssertionError(f"trained {workdir}")


# --- Bad searches -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('space={"optimizer.learning_rate": LogUniform(0.0, 1e-2)}', "must be positive numbers"),
        ('space={"mlp.dropout": Uniform(0.5, 0.1)}', "bounds (0.5, 0.1)"),
        ('space={"mlp.hidden_sizes": Choice([])}', "Choice needs a non-empty list"),
        ('space={"mlp.dropout": [0.1, 0.2]}', "is not a distribution"),
        ('space={"optimizer.lerning_rate": LogUniform(1e-4, 1e-2)}', "unknown config key"),
        ('space={"num_epochs": IntUniform(1, 3)}', "'num_epochs' is set by the search"),
        ('space={"mlp.dropout": Uniform(1.0, 2.0)}', "mlp.dropout=1."),  # every sample invalid
        ("space={}", "search has an empty space"),
        ('rungs=(3, 1), space={"mlp.dropout": Uniform(0, 0.5)}', "rungs=[3, 1] must be increasing"),
        ('eta=1, space={"mlp.dropout": Uniform(0, 0.5)}', "eta=1 must be an integer >= 2"),
        ('final_seeds=(0, 1), space={"mlp.dropout": Uniform(0, 0.5)}', "must be fresh"),
        ('metric="test_accuracy", space={"mlp.dropout": Uniform(0, 0.5)}', "metric="),
        (
            'overrides={"data.validation_fraction": 0.0}, space={"mlp.dropout": Uniform(0, .5)}',
            "a search selects on validation data",
        ),
    ],
)
def test_bad_searches_are_rejected_before_anything_runs(tmp_path, monkeypatch, fields, message):
    spec = write_search(
        tmp_path,
        f"""
        def get_study(variant):
            return Search(**({{"base": {MLP!r}, "trials": 3, "rungs": (1, 2)}} | dict({fields})))
        """,
    )
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape(message)):
        runner.run_study(spec, str(out))
    assert not out.exists()


def test_cli_reports_a_bad_search_in_one_line(tmp_path):
    spec = write_search(
        tmp_path,
        f"""
        def get_study(variant):
            return Search(base={MLP!r}, trials=3, rungs=(1, 2),
                          space={{"optimizer.learning_rate": LogUniform(-1.0, 1e-2)}})
        """,
    )
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={tmp_path / 'o'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: search space 'optimizer.learning_rate': bounds (-1.0, 0.01)")
    assert not (tmp_path / "o").exists()


# --- Pausing a real run -------------------------------------------------------------------------


def test_a_paused_and_continued_run_equals_an_uninterrupted_one(tmp_path, mnist_dir):
    config = search_lib.expand(
        small_search(
            trials=1,
            rungs=(1, 2),
            space={"mlp.hidden_sizes": search_lib.Choice([(16,)])},
            overrides={"data.train_fraction": 0.02, "log_every_seconds": 1000.0},
        )
    )[0].config
    whole = train.train_and_evaluate(config, str(tmp_path / "whole"))
    paused = str(tmp_path / "paused")
    assert train.train_and_evaluate(config, paused, pause_after=1) is None
    assert not (tmp_path / "paused" / "summary.json").exists()
    assert train.train_and_evaluate(config, paused, pause_after=1) is None  # nothing to do
    assert len(rundir.RunDir(paused).read_metrics()) == 1
    summary = train.train_and_evaluate(config, paused, pause_after=2)
    for key in ("test_accuracy", "test_loss", "best_val_loss", "best_epoch", "final_train_loss"):
        assert summary[key] == whole[key], key
    strip = lambda records: [{k: v for k, v in r.items() if "second" not in k} for r in records]
    assert strip(rundir.RunDir(paused).read_metrics()) == strip(
        rundir.RunDir(tmp_path / "whole").read_metrics()
    )
