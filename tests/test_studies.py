"""The reduced variants of the robustness, hybrid and search studies, run end to end on the real
MNIST files exactly as `python -m mnist_jax.sweep --study=experiments/<x>.py:reduced` runs them
(the robustness study in the default set, the others slow: about 40 s each on a 2-core CPU), and
the regularisation study's trials as the runner expands them.
"""

import json

import jax
import pytest
from conftest import ROOT, run_module

from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError
from mnist_jax.models import registry
from mnist_jax.studies import runner
from mnist_jax.studies import search as search_lib
from mnist_jax.studies import study as study_lib
from mnist_jax.training import rundir, train


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the study files name their configs relative to the repository


def _trial_config(out, name) -> dict:
    return json.loads((out / "trials" / name / "config.json").read_text())


def test_robustness_trials_each_make_one_change(tmp_path):
    """All nine settings as the runner expands them: configs/cnn.py with exactly the keys of
    the setting's change, at the reduced size (no training)."""
    changes = configuration.import_file(ROOT / "experiments/robustness.py", "test").CHANGES
    statuses = runner.run_study("experiments/robustness.py:reduced", str(tmp_path), dry_run=True)
    trials = {t.name: rundir.flatten(rundir.config_to_dict(t.config)) for t, _ in statuses}
    assert list(trials) == [f"change={change},seed=0" for change in changes]
    base = trials["change=base,seed=0"]
    for change, keys in changes.items():
        config = trials[f"change={change},seed=0"]
        assert {k for k in base if config[k] != base[k]} == set(keys), change
        assert config["num_epochs"] == 2 and config["data.train_fraction"] == 0.1
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    some = runner.load("experiments/robustness.py:kernel_5,avg_pool")  # beside base, in order
    assert [t.name for t in study_lib.expand(some)] == [
        f"change={c},seed={s}" for s in (0, 1, 2) for c in ("base", "avg_pool", "kernel_5")
    ]
    with pytest.raises(ConfigError, match="unknown robustness setting 'kernel_7'; valid: "):
        runner.load("experiments/robustness.py:reduced,kernel_7")


@pytest.mark.xdist_group("robustness_study")  # a long one: handed out first (conftest.py)
def test_robustness_reduced(tmp_path, mnist_dir):
    """One setting beside `base`, trained and evaluated in one comparison: per-image
    standardisation's effect shows even after 2 epochs on 10% of the data. (What a model saw in
    training, `noise_training`'s half, is checked by tests/test_evaluate.py's noisy CNN.)"""
    paths = runner.run_study("experiments/robustness.py:reduced,per_image_norm", str(tmp_path))
    result = json.loads(paths["comparison.json"].read_text())
    names = ["cnn-change=base", "cnn-change=per_image_norm"]
    assert list(result["models"]) == names
    clean = {n: m["accuracy"]["mean"] for n, m in result["models"].items()}
    assert min(clean.values()) > 0.9, clean  # measured: 95.9% and 96.0%
    section = result["robustness"]
    corruption = {c["name"]: c["models"] for c in section["corruptions"]}
    assert list(corruption) == ["gaussian_noise", "brightness"]
    assert not any(m["seen_in_training"] for m in section["mean_over_corruptions"].values())
    # Per-image standardisation removes a brightness shift (up to the pixels it saturates).
    # Measured: per_image_norm 95.5% under brightness (96.0% clean), base 18.6% (95.9% clean).
    bright = {n: corruption["brightness"][n]["accuracy"]["mean"] for n in names}
    assert bright["cnn-change=per_image_norm"] > clean["cnn-change=per_image_norm"] - 0.03
    assert bright["cnn-change=per_image_norm"] > bright["cnn-change=base"] + 0.3
    for name in ("report.md", "robustness.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_hybrid_reduced(tmp_path, mnist_dir):
    paths = runner.run_study("experiments/hybrid.py:reduced", str(tmp_path))
    results = json.loads(paths["json"].read_text())
    assert not results["missing_trials"]
    rows = {tuple(r["hybrid.channels"]): r for r in results["rows"]}
    assert list(rows) == [(), (4,), (4, 16)] and all(r["n_seeds"] == 2 for r in rows.values())
    head = 784 * 128 + 128 + 128 * 10 + 10  # 784 inputs to the head in every setting
    assert rows[()]["num_params_mean"] == head
    assert rows[(4,)]["num_params_mean"] == head + 5 * 5 * 4 + 4
    assert rows[(4, 16)]["num_params_mean"] == head + 104 + 5 * 5 * 4 * 16 + 16
    flops = [rows[k]["flops"] for k in rows]
    assert 2 * head < flops[0] < flops[1] < flops[2]  # each conv layer adds work per image
    assert all(r["test_accuracy_mean"] > 0.8 for r in rows.values())  # measured: 85-89%
    for figure in ("test_accuracy_vs_num_params", "test_accuracy_vs_flops"):
        assert paths[figure].stat().st_size > 1000
    assert "MFLOPs/image" in paths["report"].read_text()


def test_regularization_reduced_trials(tmp_path):
    """The study's definition, expanded as the runner expands it (no training: the runner, its
    resume and its reports are exercised end to end by the hybrid and search studies above and
    below and by tests/test_sweep.py, and each regulariser by the training tests)."""
    statuses = runner.run_study(
        "experiments/regularization.py:reduced", str(tmp_path), dry_run=True
    )
    trials = {t.name: t.config for t, status in statuses}
    assert len(trials) == 10 and {status for _, status in statuses} == {"pending"}
    for base, dropout_key, rate in (("mlp", "mlp", 0.2), ("cnn", "cnn", 0.5)):
        none = trials[f"base={base},regularizer=none,seed=0"]
        assert none.optimizer.l1 == none.optimizer.weight_decay == 0.0
        assert none[dropout_key].dropout == 0.0 and none.data.augment_shift == 0
        l1 = trials[f"base={base},regularizer=l1_1e-5,seed=0"]
        assert l1.optimizer.l1 == 1e-5 and l1[dropout_key].dropout == 0.0
        dropout = trials[f"base={base},regularizer=dropout,seed=0"]
        assert dropout[dropout_key].dropout == rate
        shift = trials[f"base={base},regularizer=shift,seed=0"]
        assert shift.data.augment_shift == 2 and shift[dropout_key].dropout == 0.0
        # Regularisers do not change the network that inference runs: the same parameters.
        shapes = set()
        for name, config in trials.items():
            if name.startswith(f"base={base},"):
                model = registry.create_model(config)
                variables = jax.eval_shape(
                    lambda key, m=model: registry.init_variables(m, key), jax.random.key(0)
                )
                shapes.add(str(jax.tree.map(lambda x: x.shape, variables["params"])))
        assert len(shapes) == 1, base
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


@pytest.mark.slow
def test_search_mlp_reduced(tmp_path, mnist_dir, monkeypatch):
    spec = "experiments/search_mlp.py:reduced"
    paths = runner.run_study(spec, str(tmp_path))
    results = json.loads(paths["json"].read_text())

    # The promotions, recomputed here from the trials' metrics.jsonl files.
    def kept_accuracy(name, epochs):
        records = rundir.RunDir(tmp_path / "trials" / name).read_metrics()
        best = min((r for r in records if r["epoch"] <= epochs), key=lambda r: r["val_loss"])
        return best["val_accuracy"]

    names = [f"trial={i:03d}" for i in range(4)]
    rung1 = sorted(names, key=lambda n: (-kept_accuracy(n, 1), n))[:2]
    best = sorted(rung1, key=lambda n: (-kept_accuracy(n, 2), n))[0]
    assert results["best_trial"] == best
    for name in names:
        epochs = len(rundir.RunDir(tmp_path / "trials" / name).read_metrics())
        assert epochs == (2 if name in rung1 else 1)
    final = results["final_test_accuracy"]
    assert final["n"] == 2 and final["mean"] > 0.8 and final["std"] is not None
    best_config = _trial_config(tmp_path, best)
    for seed in (1, 2):
        config = json.loads((tmp_path / "final" / f"seed={seed}" / "config.json").read_text())
        assert config == best_config | {"seed": seed}  # the winner, on a fresh seed
    assert "Test accuracy over 2 fresh seeds" in paths["report"].read_text()

    # Rerunning the command trains nothing and reproduces every decision.
    monkeypatch.setattr(train, "train_and_evaluate", _must_not_train)
    runner.run_study(spec, str(tmp_path))
    again = json.loads(paths["json"].read_text())
    for key in ("rung_results", "best_trial", "final_test_accuracy"):
        assert again[key] == results[key]
    assert search_lib.FAILED_FILE not in {p.name for p in tmp_path.rglob("*")}

    # Two worker processes (--jobs=2) share the trials and the rungs: every trial trained once,
    # to the same epochs, with the same validation losses, and the same decisions.
    two = tmp_path / "jobs2"
    result = run_module("mnist_jax.sweep", f"--study={spec}", f"--output_dir={two}", "--jobs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (two / "logs").iterdir()) == ["worker_0.log", "worker_1.log"]
    parallel = json.loads((two / "results.json").read_text())
    assert parallel["rung_results"] == results["rung_results"]
    assert parallel["best_trial"] == results["best_trial"]
    assert parallel["final_test_accuracy"]["values"] == results["final_test_accuracy"]["values"]
    for run in [*(tmp_path / "trials").iterdir(), *(tmp_path / "final").iterdir()]:
        relative = run.relative_to(tmp_path)
        losses = [r["val_loss"] for r in rundir.RunDir(run).read_metrics()]
        assert [r["val_loss"] for r in rundir.RunDir(two / relative).read_metrics()] == losses


def _must_not_train(config, workdir, **kwargs):
    raise AssertionError(f"trained {workdir}")
