"""End-to-end tests of the evaluation binary on tiny real trainings (real MNIST, 1-2 epochs).

Three runs are trained once per module (MLP seeds 0 and 1, a small CNN) and evaluated once; the
tests then check the JSON, its agreement with scikit-learn and summary.json, the grouping of
seeds, and the errors on bad input. The multi-device test trains on 8 simulated devices in a
subprocess and evaluates here, on 1.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import ROOT, run_module
from mnist_jax.configs import default
from sklearn import metrics as skm

from mnist_jax.data import load_dataset, normalize
from mnist_jax.errors import UserError
from mnist_jax.evaluation import comparison as comparison_lib
from mnist_jax.evaluation import plots
from mnist_jax.evaluation import runner as evaluate
from mnist_jax.evaluation import runs as runs_lib
from mnist_jax.training import train
from tests import events

TINY = {
    "data.train_fraction": 0.05,
    "num_epochs": 1,
    "mlp.hidden_sizes": (64,),
    "cnn.channels": (4, 8),
    "cnn.dense": (32,),
    "log_every_seconds": 1000.0,
}
FAST = evaluate.Options(throughput_batch_size=256, throughput_min_seconds=0.05, latency_calls=5)


def tiny_config(model: str, seed: int = 0, **overrides):
    config = default.get_config()
    config.model = model
    config.seed = seed
    for key, value in (TINY | overrides).items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


@pytest.fixture(scope="module")
def runs(mnist_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    specs = {"mlp_s0": ("mlp", 0), "mlp_s1": ("mlp", 1), "cnn_s0": ("cnn", 0)}
    for name, (model, seed) in specs.items():
        train.train_and_evaluate(tiny_config(model, seed), str(root / name))
    return {name: root / name for name in specs}


@pytest.fixture(scope="module")
def comparison(runs, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    workdirs = [str(runs[n]) for n in ("mlp_s0", "mlp_s1", "cnn_s0")]
    return evaluate.evaluate(workdirs, str(out), FAST), out


def test_json_schema(comparison):
    result, out = comparison
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["schema_version"] == evaluate.SCHEMA_VERSION == 2
    env = on_disk["environment"]
    for key, kind in {"versions": dict, "num_devices": int, "device_kind": str, "time": str,
                      "hostname": str, "cpu_count": int}.items():  # fmt: skip
        assert isinstance(env[key], kind), key
    assert set(on_disk["models"]) == {"mlp", "cnn"}
    for m in on_disk["models"].values():
        assert m["test_count"] == 10_000
        assert isinstance(m["num_params"], int) and m["num_params"] > 0
        assert isinstance(m["flops_per_example"], float) and m["flops_per_example"] > 0
        for key in comparison_lib.STATS:
            assert set(m[key]) == {"mean", "std", "values"}, key
            assert len(m[key]["values"]) == m["num_runs"]
        assert np.array(m["confusion_matrix"]).shape == (10, 10)
        assert np.sum(m["confusion_matrix"]) == 10_000 * m["num_runs"]
        assert set(m["per_class"]) >= {"precision", "recall", "f1", "support", "macro_avg"}
        assert 0 <= m["calibration"]["ece"] <= 1
        assert len(m["calibration"]["bins"]["count"]) == FAST.ece_bins
        assert len(m["confident_mistakes"]) == FAST.num_mistakes
        for run in m["runs"]:
            assert run["test_count"] == 10_000 and run["eval_devices"] == jax.device_count()
            assert run["throughput_images_per_second"] > 0 and run["latency_ms_median"] > 0
            assert run["checkpoint_bytes"] > m["params_bytes"]
            assert run["finished"] and run["epochs_run"] == 1 and len(run["history"]) == 1
    (pair,) = on_disk["comparisons"]
    assert (pair["a"], pair["b"]) == ("mlp", "cnn")
    assert isinstance(pair["accuracy_difference"], float)
    test = pair["mcnemar"][0]
    assert test["seed_a"] == test["seed_b"] == 0 and test["n"] == 10_000
    assert 0 <= test["exact_p_value"] <= 1 and 0 <= test["chi2_p_value"] <= 1
    assert set(pair["ratios"]) >= {"num_params", "flops_per_example", "train_seconds",
                                   "throughput_images_per_second"}  # fmt: skip
    assert set(on_disk["figures"]) == set(plots.FIGURES) == {
        "confusion_matrices", "learning_curves", "per_class_f1", "accuracy_vs_cost",
        "misclassified", "reliability",
    }  # fmt: skip
    for filename in on_disk["figures"].values():
        assert (out / filename).stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "| **mlp** | 2 |" in report and "| **cnn** | 1 |" in report
    assert all(f"]({f})" in report for f in on_disk["figures"].values())


def test_seeds_are_grouped_with_mean_and_std(comparison):
    result, _ = comparison
    mlp = result["models"]["mlp"]
    assert mlp["num_runs"] == 2 and sorted(mlp["seeds"]) == [0, 1]
    values = [r["accuracy"] for r in mlp["runs"]]
    assert mlp["accuracy"]["values"] == values
    assert mlp["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert mlp["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert values[0] != values[1]  # different seeds really are different runs
    pooled = np.sum([r["confusion_matrix"] for r in mlp["runs"]], axis=0)
    assert pooled.tolist() == mlp["confusion_matrix"]


def test_group_names_differ_when_configs_differ(runs):
    """Runs that differ in more than the seed are different models, even of the same kind."""
    opened = [runs_lib.open_run(str(runs[n])) for n in ("mlp_s0", "mlp_s1", "cnn_s0")]
    wide = runs_lib.open_run(str(runs["mlp_s0"]))
    wide.config_dict = json.loads(json.dumps(wide.config_dict))
    wide.config_dict["mlp"]["hidden_sizes"] = [32]
    wide.workdir = wide.workdir.with_name("mlp_wide")
    # Keys that do not change the numbers (data.dir, parallel.mode, formulations) do not split
    # a group.
    moved = runs_lib.open_run(str(runs["mlp_s1"]))
    moved.config_dict = json.loads(json.dumps(moved.config_dict))
    moved.config_dict["parallel"]["mode"] = "shard_map"
    moved.config_dict["data"]["dir"] = "/elsewhere"
    moved.config_dict["layers"]["conv_impl"] = "xla"
    groups = comparison_lib.group_runs([*opened, wide, moved])
    assert groups == {"mlp-mlp_s0": [0, 1, 4], "cnn": [2], "mlp-mlp_wide": [3]}


def test_metrics_match_sklearn_and_summary_on_real_outputs(runs, comparison):
    """Predictions recomputed here with a plain model.apply; sklearn computes the metrics."""
    result, _ = comparison
    test = load_dataset(tiny_config("mlp").data).test
    for name, model_name in (("mlp_s0", "mlp"), ("cnn_s0", "cnn")):
        run = runs_lib.open_run(str(runs[name]))
        model = runs_lib.build_model(run.config)
        variables = runs_lib.restore_best(run, model)
        logits = jax.jit(lambda v, x, m=model: m.apply(v, x))(variables, normalize(test.images))
        predictions = np.asarray(logits).argmax(-1)
        record = next(r for r in result["models"][model_name]["runs"] if r["seed"] == 0)
        cm = skm.confusion_matrix(test.labels, predictions, labels=range(10))
        assert record["confusion_matrix"] == cm.tolist()
        report = skm.classification_report(
            test.labels, predictions, output_dict=True, zero_division=0
        )
        for d in range(10):
            assert record["per_class"]["f1"][d] == pytest.approx(report[str(d)]["f1-score"])
            assert record["per_class"]["precision"][d] == pytest.approx(report[str(d)]["precision"])
            assert record["per_class"]["recall"][d] == pytest.approx(report[str(d)]["recall"])
        assert record["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"])
        assert record["accuracy"] == pytest.approx(skm.accuracy_score(test.labels, predictions))
        summary = json.loads((runs[name] / "summary.json").read_text())
        assert record["accuracy"] == summary["test_accuracy"] and record["agrees_with_summary"]
        assert record["loss"] == pytest.approx(summary["test_loss"], rel=1e-4)


@pytest.mark.multidevice
def test_checkpoint_from_8_devices_evaluates_on_1(mnist_dir, tmp_path):
    workdir = tmp_path / "mlp8"
    flags = [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in TINY.items()]  # fmt: skip
    proc = run_module(
        "mnist_jax.main", "--config=configs/mlp.py", f"--workdir={workdir}", *flags, devices=8
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["num_devices"] == 8
    result = evaluate.evaluate([str(workdir)], str(tmp_path / "out"), FAST)
    (record,) = result["models"]["mlp"]["runs"]
    assert record["eval_devices"] == jax.device_count() == 1
    assert record["test_count"] == 10_000
    assert record["accuracy"] == summary["test_accuracy"] and record["agrees_with_summary"]


def _bad_inputs(runs: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str, str]]:
    """Case -> (workdirs, output_dir, expected message fragment)."""
    no_ckpt = tmp / "no_checkpoint"
    no_ckpt.mkdir()
    shutil.copy(runs["mlp_s0"] / "config.json", no_ckpt / "config.json")
    edited = tmp / "edited"
    shutil.copytree(runs["mlp_s0"], edited)
    config = json.loads((edited / "config.json").read_text())
    config["mlp"]["hidden_sizes"] = [128]
    (edited / "config.json").write_text(json.dumps(config))
    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    out = str(tmp / "out")
    good = str(runs["mlp_s0"])
    return {
        "missing": ([str(tmp / "nope")], out, "does not exist"),
        "no_checkpoint": ([str(no_ckpt)], out, "has no checkpoint"),
        "config_mismatch": ([str(edited)], out, "was written by a different config"),
        "unwritable_output": ([good], str(blocker / "out"), "cannot write to --output_dir"),
    }


def test_bad_input_raises_user_errors(runs, tmp_path):
    for case, (workdirs, out, message) in _bad_inputs(runs, tmp_path).items():
        with pytest.raises(UserError, match=message):
            evaluate.evaluate(workdirs, out, FAST)
        assert case


def test_binary_prints_one_line_errors_and_exits_1(runs, tmp_path):
    for case, (workdirs, out, message) in _bad_inputs(runs, tmp_path).items():
        proc = run_module(
            "mnist_jax.evaluate", f"--workdirs={','.join(workdirs)}", f"--output_dir={out}"
        )
        assert proc.returncode == 1, (case, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], (case, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, case


OUR_FILES = {p.name for p in (ROOT / "mnist_jax").rglob("*.py")}


def third_party_warnings(output: str) -> list[str]:
    """Lines that are warnings from a library: absl-format W/E lines from files not ours,
    Python warnings, `logging.basicConfig` lines, gloo's connection prints."""
    found = []
    for line in output.splitlines():
        absl = re.match(r"[WEF]\d{4} [\d:.]+ +\d+ (\S+?):\d+\]", line)
        if (absl and absl.group(1) not in OUR_FILES) or re.search(
            r"\w+Warning:|^WARNING:|^\[Gloo\]", line
        ):
            found.append(line)
    return found


def test_third_party_warnings_are_recognised():
    orbax = ("W1122 04:49:43.149659 140599097314176 checkpoint_manager.py:849] Given directory is "
             "read only=/tmp/runs/mlp/seed_0/checkpoints")  # fmt: skip
    ours = "W1122 04:49:43.149659 140599097314176 runner.py:99] config.data.dir=x does not exist"
    gloo = (
        "[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1"
    )
    others = ["WARNING:absl:Variant folder /x/mnist/3.0.1 has no dataset_info.json",
              "/x/y.py:3: DeprecationWarning: old", gloo]  # fmt: skip
    assert third_party_warnings(
        "\n".join([orbax, ours, "I1122 04:49:43 1 x.py:1] fine", *others])
    ) == [orbax, *others]


def _launch(*args: str, **env: str):
    environ = dict(os.environ, SKIP_SETUP="1", VENV=sys.prefix, **env)
    return subprocess.run(
        ["./launch.sh", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=1800
    )


def test_launch_compare_help_and_bad_option():
    result = _launch("compare", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: ./launch.sh compare")
    result = _launch("compare", "--fast")
    assert result.returncode == 1 and "unknown flag --fast; valid: --seeds" in result.stderr


@pytest.mark.slow
def test_launch_compare_quick_end_to_end_and_rerun(mnist_dir, tmp_path):
    """The README's first command, shortened: trains both models, evaluates; a rerun reuses."""
    out = tmp_path / "compare"
    short = ("--seeds=1", "--quick")
    result = _launch("compare", str(out), *short)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "comparison.json").read_text())
    assert {m: v["test_count"] for m, v in data["models"].items()} == {"mlp": 10_000, "cnn": 10_000}
    assert all((out / f).stat().st_size > 10_000 for f in data["figures"].values())
    assert (out / "report.md").exists()
    # TensorBoard: >= 10 train-loss points an epoch in every run; the figures as images.
    for model in ("mlp", "cnn"):
        run = out / model / "seed_0"
        steps_per_epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"]
        points = events.scalars(run / "tensorboard")["train/loss"]
        assert min(events.points_per_epoch(points, steps_per_epoch).values()) >= 10
    assert sorted(events.load(out / "tensorboard").Tags()["images"]) == sorted(data["figures"])
    assert not third_party_warnings(result.stdout + result.stderr)
    result = _launch("compare", str(out), *short)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("already holds a finished run") == 2


def test_pca_run_is_evaluated_through_its_projection(mnist_dir, tmp_path):
    """A PCA-input MLP is rebuilt with the projection fitted on its training split."""
    config = tiny_config("mlp", **{"data.pca_components": 20})
    summary = train.train_and_evaluate(config, str(tmp_path / "pca"))
    result = evaluate.evaluate([str(tmp_path / "pca")], str(tmp_path / "out"), FAST)
    (record,) = result["models"].values()
    assert record["test_count"] == 10_000
    assert record["accuracy"]["mean"] == summary["test_accuracy"]
