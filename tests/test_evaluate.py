"""End-to-end tests of the evaluation binary on tiny real trainings (real MNIST, 1-2 epochs).

Three runs are trained once per module (MLP seeds 0 and 1, a small CNN) and evaluated once, with
two corruptions, the real test split as an external .npz set, the ensemble and int8; the tests
then check the JSON, its agreement with scikit-learn, scipy and summary.json, each section
against an independent computation, the grouping of seeds, and the errors on bad input. The
multi-device test trains on 8 simulated devices in a subprocess and evaluates here, on 1.
"""

import dataclasses
import gzip
import hashlib
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
import scipy.special
import scipy.stats
from conftest import ROOT, run_module
from sklearn import metrics as skm

from mnist_jax.configs import default
from mnist_jax.core.errors import ConfigError, DataError, UserError
from mnist_jax.data import corruptions, external, load_dataset, normalize
from mnist_jax.evaluation import comparison as comparison_lib
from mnist_jax.evaluation import outputs as outdir
from mnist_jax.evaluation import plots, quantize, scores, stats
from mnist_jax.evaluation import report as report_lib
from mnist_jax.evaluation import runner as evaluate
from mnist_jax.evaluation import runs as runs_lib
from mnist_jax.models import layers
from mnist_jax.training import train
from tests import readme

# One worker runs this module (--dist loadgroup), and its trained runs are session fixtures, so
# they are built once even when tests of other modules run in between (docs/testing.md).
pytestmark = pytest.mark.xdist_group("evaluate")

TINY = {
    "data.train_fraction": 0.05,
    "num_epochs": 1,
    "mlp.hidden_sizes": (64,),
    "cnn.channels": (4, 8),
    "cnn.dense": (32,),
    "log_every_seconds": 1000.0,
}
FAST = evaluate.Options(
    throughput_batch_size=256, throughput_min_seconds=0.05, latency_calls=5, corruptions="none"
)
CORRUPTIONS = ("rotate", "gaussian_noise")  # cheap to generate; a model loses accuracy on both


def tiny_config(model: str, seed: int = 0, **overrides):
    config = default.get_config()
    config.model = model
    config.seed = seed
    for key, value in (TINY | overrides).items():
        default.set_key(config, key, value)
    return config


@pytest.fixture(scope="session")
def runs(mnist_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    specs = {"mlp_s0": ("mlp", 0), "mlp_s1": ("mlp", 1), "cnn_s0": ("cnn", 0)}
    # The CNN trains on noisy images too: the robustness section names what it saw.
    noisy = {"data.augment_corruptions": "gaussian_noise", "data.augment_corruption_prob": 0.5}
    for name, (model, seed) in specs.items():
        overrides = noisy if model == "cnn" else {}
        train.train_and_evaluate(tiny_config(model, seed, **overrides), str(root / name))
    return {name: root / name for name in specs}


@pytest.fixture(scope="session")
def npz_test_set(mnist_dir, tmp_path_factory) -> Path:
    """The real test split written as an external .npz test set."""
    test = load_dataset(tiny_config("mlp").data).test
    path = tmp_path_factory.mktemp("sets") / "official_test.npz"
    np.savez(path, images=test.images, labels=test.labels)
    return path


WORKDIRS = ("mlp_s0", "mlp_s1", "cnn_s0")


def full_options(npz_test_set: Path) -> evaluate.Options:
    return dataclasses.replace(
        FAST,
        corruptions=",".join(CORRUPTIONS),
        test_sets=(f"official={npz_test_set}",),
        quantize="int8",
    )


@pytest.fixture(scope="session")
def comparison(runs, npz_test_set, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("eval")
    workdirs = [str(runs[n]) for n in WORKDIRS]
    return evaluate.evaluate(workdirs, str(out), full_options(npz_test_set)), out


@pytest.fixture(scope="session")
def plain(runs) -> dict[str, tuple]:
    """Run name -> (model, variables, test logits from a plain jitted model.apply), once."""
    test = load_dataset(tiny_config("mlp").data).test
    out = {}
    for name in WORKDIRS:
        model, variables = _model_and_variables(runs, name)
        out[name] = model, variables, _logits(model, variables, test.images)
    return out


def _model_and_variables(runs, name):
    run = runs_lib.open_run(str(runs[name]))
    model = runs_lib.build_model(run.config)
    return model, runs_lib.restore_best(run, model)


def _logits(model, variables, images, conv_impl="auto"):
    """A plain jitted model.apply: independent of the evaluation binary's programs."""

    def forward(v, x):
        with layers.context(conv_impl=conv_impl):
            return model.apply(v, normalize(x), train=False)

    return np.asarray(jax.jit(forward)(variables, images))


def test_robustness_names_what_each_model_saw_in_training(comparison):
    result, out = comparison
    mean = result["robustness"]["mean_over_corruptions"]
    assert mean["cnn"]["seen_in_training"] == ["gaussian_noise"]
    assert mean["mlp"]["seen_in_training"] == []
    rotate = next(c for c in result["robustness"]["corruptions"] if c["name"] == "rotate")
    held_out = mean["cnn"]["held_out_accuracy"]["values"]
    assert held_out == rotate["models"]["cnn"]["accuracy"]["values"]  # the one it never saw
    assert mean["mlp"]["held_out_accuracy"] == mean["mlp"]["accuracy"]
    report = (out / "report.md").read_text()
    assert "| gaussian_noise (seen in training by cnn) |" in report
    assert "| rotate |" in report and "never saw in training" in report


def test_json_schema(comparison):
    result, out = comparison
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["schema_version"] == evaluate.SCHEMA_VERSION == 4
    env = on_disk["environment"]
    for key, kind in {"versions": dict, "num_devices": int, "device_kind": str, "time": str,
                      "hostname": str, "cpu_count": int}.items():  # fmt: skip
        assert isinstance(env[key], kind), key
    assert set(on_disk["models"]) == {"mlp", "cnn"}
    for m in on_disk["models"].values():
        assert m["test_count"] == 10_000
        assert isinstance(m["num_params"], int) and m["num_params"] > 0
        assert isinstance(m["flops_per_example"], float) and m["flops_per_example"] > 0
        for key in (metric.name for metric in scores.METRICS):
            assert set(m[key]) == {"mean", "std", "n", "ci95", "values"}, key
            assert len(m[key]["values"]) == m[key]["n"] == m["num_runs"]
            assert (m[key]["ci95"] is None) == (m["num_runs"] == 1)
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
    assert pair["accuracy_difference"] == pair["test"]["difference"]
    assert pair["test"]["method"] == "seed_and_image_t"
    assert pair["test"]["seed_variance_estimated"] == [True, False]
    (test,) = pair["test"]["mcnemar"]["pairs"]
    assert test["seed_a"] == test["seed_b"] == 0 and test["n"] == 10_000
    assert 0 <= test["exact_p_value"] <= 1 and 0 <= test["chi2_p_value"] <= 1
    assert set(pair["ratios"]) >= {"num_params", "flops_per_example", "train_seconds",
                                   "throughput_images_per_second"}  # fmt: skip
    assert set(on_disk["figures"]) == set(plots.FIGURES) == {
        "confusion_matrices", "learning_curves", "per_class_f1", "accuracy_vs_cost",
        "misclassified", "reliability", "seeds", "robustness", "corruption_gallery",
    }  # fmt: skip
    for filename in on_disk["figures"].values():
        assert (out / filename).stat().st_size > 10_000
    assert set(on_disk) >= {"ensembles", "robustness", "test_sets", "quantization"}
    report = (out / "report.md").read_text()
    assert "| **mlp** | 2 |" in report and "| **cnn** | 1 |" in report
    assert all(f"]({f})" in report for f in on_disk["figures"].values())
    for title in ("## Ensembles of the seeds", "## Robustness to corruptions",
                  "## External test sets", "## Post-training int8 quantization"):  # fmt: skip
        assert title in report, title
    assert "On the test set, cnn minus mlp = " in report and "t test over seeds" in report


def test_a_comparison_is_reused_only_for_the_same_inputs_and_complete_files(runs, comparison):
    data, out = comparison
    digest = data["inputs_digest"]
    all_runs = [runs_lib.open_run(runs[n]) for n in WORKDIRS]
    env = data["environment"]  # what it was computed with
    assert outdir.inputs_digest(all_runs, full_options_of(data), env) == digest
    assert outdir.up_to_date(out, digest)["models"].keys() == data["models"].keys()
    other = dataclasses.replace(full_options_of(data), ece_bins=10)
    assert outdir.inputs_digest(all_runs, other, env) != digest
    assert outdir.inputs_digest(all_runs[:2], full_options_of(data), env) != digest
    figure = out / data["figures"]["seeds"]
    moved = figure.rename(figure.with_suffix(".moved"))
    try:
        assert outdir.up_to_date(out, digest) is None  # a file it names is missing
    finally:
        moved.rename(figure)


def full_options_of(data: dict) -> evaluate.Options:
    return evaluate.Options(**data["options"] | {"test_sets": tuple(data["options"]["test_sets"])})


def test_seeds_are_grouped_with_mean_std_and_interval(comparison):
    result, _ = comparison
    mlp = result["models"]["mlp"]
    assert mlp["num_runs"] == 2 and sorted(mlp["seeds"]) == [0, 1]
    values = [r["accuracy"] for r in mlp["runs"]]
    assert mlp["accuracy"]["values"] == values
    assert mlp["accuracy"]["mean"] == pytest.approx(np.mean(values))
    assert mlp["accuracy"]["std"] == pytest.approx(np.std(values, ddof=1))
    lo, hi = scipy.stats.t.interval(0.95, 1, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert mlp["accuracy"]["ci95"] == pytest.approx([lo, hi], rel=1e-9)
    assert values[0] != values[1]  # different seeds really are different runs
    pooled = np.sum([r["confusion_matrix"] for r in mlp["runs"]], axis=0)
    assert pooled.tolist() == mlp["confusion_matrix"]


def test_group_names_differ_when_configs_differ(runs):
    """Runs that differ in more than the seed are different models, even of the same kind."""
    opened = [runs_lib.open_run(str(runs[n])) for n in ("mlp_s0", "mlp_s1", "cnn_s0")]
    wide = runs_lib.open_run(str(runs["mlp_s0"]))
    wide.config_dict = json.loads(json.dumps(wide.config_dict))
    wide.config_dict["mlp"]["hidden_sizes"] = [32]
    wide.workdir = wide.workdir.with_name("width=32,seed=1")  # a study trial: named w/o seed
    # Keys that do not change the numbers (data.dir, parallel.mode, formulations) do not split
    # a group.
    moved = runs_lib.open_run(str(runs["mlp_s1"]))
    moved.config_dict = json.loads(json.dumps(moved.config_dict))
    moved.config_dict["parallel"]["mode"] = "shard_map"
    moved.config_dict["data"]["dir"] = "/elsewhere"
    moved.config_dict["layers"]["conv_impl"] = "xla"
    groups = comparison_lib.group_runs([*opened, wide, moved])
    assert groups == {"mlp-mlp_s0": [0, 1, 4], "cnn": [2], "mlp-width=32": [3]}


def test_metrics_match_sklearn_and_summary_on_real_outputs(runs, plain, comparison):
    """Predictions recomputed here with a plain model.apply; sklearn computes the metrics."""
    result, _ = comparison
    test = load_dataset(tiny_config("mlp").data).test
    for name, model_name in (("mlp_s0", "mlp"), ("cnn_s0", "cnn")):
        predictions = plain[name][2].argmax(-1)
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
    assert result.returncode == 1
    assert result.stderr == "error: unknown flag --fast (see --help for the valid flags)\n"
    result = _launch("compare", "--seed=2")
    assert result.returncode == 1 and "unknown flag --seed; did you mean --seeds?" in result.stderr


@pytest.mark.slow
def test_readme_metric_example_reaches_every_table(runs, plain, tmp_path, monkeypatch):
    """README's "Add a metric" entry, as written: recorded for every run, summarised per model,
    for the ensembles and the int8 models, and shown in report.md."""
    namespace = {"np": np, "Predictions": scores.Predictions, "Metric": scores.Metric,
                 "METRICS": scores.METRICS}  # fmt: skip
    exec(readme.block("Add a metric"), namespace)
    monkeypatch.setattr(scores, "METRICS", namespace["METRICS"])
    workdirs = [str(runs[n]) for n in WORKDIRS]
    options = dataclasses.replace(FAST, quantize="int8", reuse=False)
    result = evaluate.evaluate(workdirs, str(tmp_path), options)
    labels = load_dataset(tiny_config("mlp").data).test.labels
    mlp = result["models"]["mlp"]
    for run, name in zip(mlp["runs"], ("mlp_s0", "mlp_s1"), strict=True):
        top2 = np.argsort(plain[name][2], -1)[:, -2:]  # from a plain model.apply's logits
        assert run["top2_accuracy"] == np.mean((top2 == labels[:, None]).any(-1))
        assert run["top2_accuracy"] > run["accuracy"]
    assert mlp["top2_accuracy"]["values"] == [r["top2_accuracy"] for r in mlp["runs"]]
    assert result["ensembles"]["mlp"]["top2_accuracy"] > result["ensembles"]["mlp"]["accuracy"]
    int8 = result["quantization"]["models"]["cnn"]["int8"]["top2_accuracy"]
    assert 0.1 < int8["mean"] <= 1
    assert "top-2 accuracy (%)" in (tmp_path / "report.md").read_text()


# Slow: a training and an evaluation of its own (about 12 s in CI); test_sweep.py's PCA tests
# keep the projection and an MLP trained on it in the default set.
@pytest.mark.slow
def test_pca_run_is_evaluated_through_its_projection(mnist_dir, tmp_path):
    """A PCA-input MLP is rebuilt with the projection fitted on its training split."""
    config = tiny_config("mlp", **{"data.pca_components": 20})
    summary = train.train_and_evaluate(config, str(tmp_path / "pca"))
    result = evaluate.evaluate([str(tmp_path / "pca")], str(tmp_path / "out"), FAST)
    (record,) = result["models"].values()
    assert record["test_count"] == 10_000
    assert record["accuracy"]["mean"] == summary["test_accuracy"]


# ---- the seed-aware test, ensembles, robustness, external sets, int8 ----


def test_pairwise_test_matches_an_independent_recomputation(plain, comparison):
    """Predictions from a plain model.apply, fed to the stats functions by hand."""
    result, _ = comparison
    test = load_dataset(tiny_config("mlp").data).test
    correct = {}
    for name in WORKDIRS:
        correct[name] = plain[name][2].argmax(-1) == test.labels
    a = np.stack([correct["mlp_s0"], correct["mlp_s1"]])
    b = correct["cnn_s0"][None]
    expected = stats.t_test_difference(a, b)
    got = result["comparisons"][0]["test"]
    for key in ("difference", "std_error", "ci95", "p_value", "df", "variance"):
        assert got[key] == pytest.approx(expected[key], rel=1e-12), key
    # With one CNN seed the test is the paired image test: difference over its standard error.
    d = b.astype(float).mean(axis=0) - a.mean(axis=0)  # seed-averaged per-image difference
    assert got["difference"] == pytest.approx(d.mean())
    assert got["mcnemar"]["pooled"]["b_only_correct"] == int(np.sum(~a[0] & b[0]))


def test_ensemble_averages_the_seeds_probabilities(plain, comparison):
    result, _ = comparison
    (ensemble,) = result["ensembles"].values()
    assert ensemble["name"] == "mlp ensemble" and ensemble["members"] == 2
    assert "validation" in ensemble["selection"] and "test set" in ensemble["selection"]
    test = load_dataset(tiny_config("mlp").data).test
    probs = [
        scipy.special.softmax(plain[n][2].astype(np.float64), axis=-1) for n in ("mlp_s0", "mlp_s1")
    ]
    mean = (probs[0] + probs[1]) / 2
    assert ensemble["accuracy"] == pytest.approx(np.mean(mean.argmax(-1) == test.labels), abs=2e-4)
    nll = -np.log(mean[np.arange(len(test.labels)), test.labels]).mean()
    assert ensemble["loss"] == pytest.approx(nll, rel=1e-3)
    assert ensemble["members_accuracy"]["values"] == result["models"]["mlp"]["accuracy"]["values"]
    assert "cnn" not in result["ensembles"]  # one run: no ensemble


def test_robustness_section_matches_corruptions_applied_by_hand(plain, comparison):
    result, _ = comparison
    section = result["robustness"]
    assert [c["name"] for c in section["corruptions"]] == list(CORRUPTIONS)
    assert section["images_per_corruption"] == 10_000
    test = load_dataset(tiny_config("mlp").data).test
    model, variables, _ = plain["cnn_s0"]
    for entry in section["corruptions"]:
        assert entry["severity"] == corruptions.get(entry["name"]).default_severity
        assert entry["family"] == corruptions.get(entry["name"]).family
        assert entry["models"]["mlp"]["accuracy"]["n"] == 2
        (got,) = entry["models"]["cnn"]["accuracy"]["values"]
        assert got < result["models"]["cnn"]["accuracy"]["mean"]
        (pair,) = entry["comparisons"]
        assert (pair["a"], pair["b"]) == ("mlp", "cnn") and 0 <= pair["p_value"] <= 1
    # One corruption recomputed by hand: the whole split at once (not in chunks), plain apply.
    first = section["corruptions"][0]
    images = np.asarray(corruptions.corrupt(test.images, first["name"], seed=section["seed"]))
    accuracy = np.mean(_logits(model, variables, images).argmax(-1) == test.labels)
    assert first["models"]["cnn"]["accuracy"]["values"][0] == pytest.approx(accuracy, abs=2e-4)
    mean = section["mean_over_corruptions"]["mlp"]
    per_run = np.mean([e["models"]["mlp"]["accuracy"]["values"] for e in section["corruptions"]], 0)
    assert mean["accuracy"]["values"] == pytest.approx(per_run.tolist())


def test_robustness_numbers_are_identical_on_a_second_evaluation(runs, comparison, tmp_path):
    """Another evaluation (one run, one corruption) regenerates the same corrupted images."""
    result, _ = comparison
    options = dataclasses.replace(FAST, corruptions=CORRUPTIONS[0])
    again = evaluate.evaluate([str(runs["cnn_s0"])], str(tmp_path), options)
    (entry,) = again["robustness"]["corruptions"]
    first = result["robustness"]["corruptions"][0]
    assert entry["name"] == first["name"] and entry["severity"] == first["severity"]
    assert entry["models"]["cnn"] == first["models"]["cnn"]
    assert "quantization" not in again and "test_sets" not in again


def test_npz_of_the_real_test_split_gives_exactly_the_clean_accuracy(comparison, npz_test_set):
    result, _ = comparison
    entry = result["test_sets"]["official"]
    assert entry["count"] == 10_000
    (record,) = entry["files"]
    assert record["bytes"] == npz_test_set.stat().st_size
    assert record["sha256"] == hashlib.sha256(npz_test_set.read_bytes()).hexdigest()
    for name, model in result["models"].items():
        assert entry["models"][name]["accuracy"] == model["accuracy"]
    assert entry["comparisons"][0]["p_value"] == result["comparisons"][0]["test"]["p_value"]


def test_idx_test_sets_from_a_prefix_or_directory_gz_or_not(mnist_dir, tmp_path):
    official = load_dataset(tiny_config("mlp").data).test
    by_prefix = external.load("p", str(Path(mnist_dir) / "t10k"))
    assert np.array_equal(by_prefix.images, official.images)
    assert np.array_equal(by_prefix.labels, official.labels)
    plain = tmp_path / "plain"
    plain.mkdir()
    for kind in ("images-idx3", "labels-idx1"):
        raw = gzip.decompress((Path(mnist_dir) / f"t10k-{kind}-ubyte.gz").read_bytes())
        (plain / f"t10k-{kind}-ubyte").write_bytes(raw)
    by_dir = external.load("d", str(plain))
    assert np.array_equal(by_dir.images, official.images)
    assert [f["bytes"] for f in by_dir.files] == [7840016, 10008]
    with pytest.raises(
        DataError, match=r"exactly one IDX images file.*t10k-images-idx3-ubyte.gz, "
    ):
        external.load("x", str(mnist_dir))  # a directory with the train and the test files


def test_malformed_test_sets_are_one_line_errors_naming_the_file(tmp_path):
    good = {"images": np.zeros((4, 28, 28), np.uint8), "labels": np.array([0, 1, 2, 9])}
    cases = {
        "float_images": ({**good, "images": np.zeros((4, 28, 28), np.float32)}, "uint8"),
        "wrong_shape": ({**good, "images": np.zeros((4, 32, 32), np.uint8)}, "(4, 32, 32)"),
        "label_range": ({**good, "labels": np.array([0, 1, 2, 10])}, "0..10"),
        "count": ({**good, "labels": np.array([0, 1, 2])}, "4 images but 3 labels"),
        "missing": ({"images": good["images"]}, "needs arrays 'images' and 'labels'"),
    }
    for case, (arrays, message) in cases.items():
        path = tmp_path / f"{case}.npz"
        np.savez(path, **arrays)
        with pytest.raises(DataError) as error:
            external.load(case, str(path))
        text = str(error.value)
        assert message in text and str(path) in text and "\n" not in text, case
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        external.load("junk", str(tmp_path / "junk.npz"))
    for bad in ("noequals", "a=x.npz,a=y.npz", "bad name=x.npz"):
        with pytest.raises(UserError, match="--test_sets"):
            external.parse(bad)


def test_bad_options_fail_before_any_slow_work(runs, tmp_path):
    good = [str(runs["mlp_s0"])]
    bad = {
        "corruptions": ("rotate,blurr", ConfigError, "unknown corruption 'blurr'"),
        "quantize": ("int4", UserError, "--quantize='int4' is invalid; valid: none, int8"),
        "latency_calls": (0, UserError, "--latency_calls must be >= 1, got 0"),
        "throughput_min_seconds": (0.0, UserError, "--throughput_min_seconds must be > 0, got 0.0"),
        "test_sets": (("x=" + str(tmp_path / "nope.npz"),), DataError, "nope.npz does not exist"),
    }
    for key, (value, kind, message) in bad.items():
        with pytest.raises(kind, match=re.escape(message)):
            evaluate.evaluate(good, str(tmp_path / key), dataclasses.replace(FAST, **{key: value}))
        assert not (tmp_path / key / "comparison.json").exists()


SLACK = 2 * 128 * 2.0**-24  # float32 rounding of a quotient w/s with |w/s| <= 128, twice


def test_int8_scales_are_per_output_channel_and_sizes_a_quarter(plain):
    for name in ("mlp_s0", "cnn_s0"):
        model, variables, _ = plain[name]
        q = quantize.quantize(model, variables)
        kernels = quantize.kernels(q.variables)
        floats = {
            "/".join(str(k.key) for k in path[:-1]): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
            if path[-1].key == "kernel"
        }
        assert set(kernels) == set(floats) and len(floats) >= 2
        for layer, w in floats.items():
            qvalue, scale = kernels[layer]
            assert qvalue.dtype == np.int8 and qvalue.shape == w.shape
            absmax = np.abs(w).max(axis=tuple(range(w.ndim - 1)), keepdims=True)
            np.testing.assert_allclose(scale, absmax / quantize.SYMMETRIC_BOUND, rtol=1e-6)
            # Round to nearest gives |q - w/s| <= 1/2 exactly. The quantizer forms w/s (or
            # w * (1/s)) in float32: at most two roundings of half an ulp each, on quotients of
            # magnitude <= 128, move it by at most 2 * 128 * 2**-24 = SLACK. The test's own
            # arithmetic is float64, exact enough to add nothing at this scale.
            w64, s64 = w.astype(np.float64), scale.astype(np.float64)
            assert np.abs(qvalue - w64 / s64).max() <= 0.5 + SLACK
            channel_max = np.abs(qvalue.astype(int)).max(axis=tuple(range(w.ndim - 1)))
            assert set(channel_max.tolist()) <= {127, 128}
            # Hence each weight is restored to within its own channel's s * (1/2 + SLACK).
            assert (np.abs(qvalue * s64 - w64) <= s64 * (0.5 + SLACK)).all()
        size, float_size = quantize.size_bytes(q.variables), quantize.size_bytes(variables)
        weights = sum(w.size for w in floats.values())
        channels = sum(w.shape[-1] for w in floats.values())
        assert float_size["kernels"] == 4 * weights
        assert size["kernels"] == weights + 4 * channels  # int8 weights + float32 scales
        assert 0.25 < size["kernels"] / float_size["kernels"] < 0.26
        assert size["total"] - size["kernels"] == float_size["total"] - float_size["kernels"]


def test_int8_logits_are_close_to_float_and_per_image(plain):
    """Tolerance from measurement: on these runs (MLP 79%, CNN 33% after one epoch on 5% of the
    data) the largest logit difference over the 10,000 test images was 0.076 (MLP, logits up to
    10) and 0.027 (CNN, logits below 1); the bound is twice the larger. Predictions flip only
    where the float model's top two logits were that close."""
    images = load_dataset(tiny_config("mlp").data).test.images[:2000]
    for name in ("mlp_s0", "cnn_s0"):
        model, variables, logits = plain[name]
        q = quantize.quantize(model, variables)
        reference = logits[: len(images)]
        int8 = _logits(q.model, q.variables, images, quantize.CONV_IMPL)
        diff = np.abs(int8 - reference).max()
        assert 0 < diff < 0.15, name  # a different computation, and a close one
        top2 = np.sort(reference, axis=-1)[:, -2:]
        flipped = int8.argmax(-1) != reference.argmax(-1)
        assert np.all(top2[flipped, 1] - top2[flipped, 0] <= 2 * diff), name
        assert flipped.mean() < 0.02, name
        # Activation scales are per image: an image's logits do not depend on its batch.
        alone = _logits(q.model, q.variables, images[7:8], quantize.CONV_IMPL)
        np.testing.assert_allclose(alone[0], int8[7], atol=1e-5)


def test_int8_conv_on_cpu_gives_the_int32_convolutions_bits(plain):
    """The CPU path convolves int8 values as float32 (quantize._exact_int8_conv); the logits
    must be qwix's int32 path's to the bit, and a kernel too long to sum exactly must fall back."""
    import qwix
    from qwix._src.core import conv_general as qwix_conv
    from qwix._src.core import qarray

    model, variables, _ = plain["cnn_s0"]
    images = load_dataset(tiny_config("cnn").data).test.images[:500]
    q = quantize.quantize(model, variables)
    reference = qwix.quantize_model(model, qwix.PtqProvider(list(quantize.RULES)))
    assert np.array_equal(
        _logits(q.model, q.variables, images, quantize.CONV_IMPL),
        _logits(reference, q.variables, images, quantize.CONV_IMPL),
    )
    how = lambda axis: qarray.HowToQuantize(
        qtype=jax.numpy.int8, channelwise_axes=[axis], tiled_axes={}, calibration_method="absmax"
    )
    dn = {"dimension_numbers": ("NHWC", "HWIO", "NHWC")}
    for cin, operands in ((16, "xf32>"), (130, "xi8>")):  # 3 x 3 x 130 = 1,170 terms: int32
        keys = jax.random.split(jax.random.key(cin))
        lhs = qarray.quantize(jax.random.normal(keys[0], (2, 6, 6, cin)), how(0))
        rhs = qarray.quantize(jax.random.normal(keys[1], (3, 3, cin, 4)), how(3))
        exact = jax.jit(lambda a, b: quantize._exact_int8_conv(a, b, (1, 1), "SAME", **dn))
        ints = jax.jit(lambda a, b: qwix_conv.conv_general_dilated(a, b, (1, 1), "SAME", **dn))
        assert np.array_equal(exact(lhs, rhs), ints(lhs, rhs)), cin
        convs = [line for line in exact.lower(lhs, rhs).as_text().splitlines()
                 if "convolution" in line]  # fmt: skip
        assert convs and all(operands in line for line in convs), (cin, convs)


def test_int8_section_float_and_int8_side_by_side(comparison):
    result, _ = comparison
    section = result["quantization"]
    assert section["method"]["library"].startswith("qwix ")
    assert set(section["models"]) == {"mlp", "cnn"}
    for name, entry in section["models"].items():
        model = result["models"][name]
        assert entry["float"]["accuracy"]["values"] == model["accuracy"]["values"]
        assert entry["float"]["bytes"] == model["params_bytes"]  # no batch statistics here
        assert 0.25 < entry["kernel_size_ratio"] < 0.26 and entry["size_ratio"] < 0.26
        drops = entry["accuracy_drop"]["values"]
        assert all(abs(d) < 0.003 for d in drops), drops  # at most 30 of 10,000 images
        assert entry["int8"]["accuracy"]["n"] == model["num_runs"]
        assert entry["prediction_agreement"]["mean"] > 0.98
        pooled = entry["mcnemar"]["pooled"]
        assert pooled["n"] == 10_000 * model["num_runs"]
        assert set(entry["int8"]["robustness"]) == set(CORRUPTIONS)
        assert (
            entry["float"]["robustness_mean"]
            == (result["robustness"]["mean_over_corruptions"][name]["accuracy"])
        )
        for run in entry["runs"]:
            assert run["throughput_images_per_second"] > 0 and run["latency_ms_median"] > 0


def test_per_class_numbers_and_figures_say_what_they_pool(comparison, mnist_dir):
    result, out = comparison
    test = load_dataset(tiny_config("mlp").data).test
    counts = np.bincount(test.labels, minlength=10).tolist()
    mlp, cnn = result["models"]["mlp"], result["models"]["cnn"]
    assert (mlp["per_class"]["runs_pooled"], cnn["per_class"]["runs_pooled"]) == (2, 1)
    assert mlp["per_class"]["support_per_run"] == cnn["per_class"]["support_per_run"] == counts
    assert mlp["per_class"]["support"] == [2 * c for c in counts]  # the pooled matrix's rows
    report = (out / "report.md").read_text()
    table = report.split("## Per-class precision / recall / F1")[1]
    header = "| digit | test images per run | mlp P / R / F1 (2 runs pooled) | cnn P / R / F1 |"
    assert header in table
    assert f"\n| 0 | {counts[0]} | " in table and f"\n| 9 | {counts[9]} | " in table
    for figure in result["figures"]:  # each figure is said what it aggregates, beside it
        if figure in report_lib.FIGURE_CAPTIONS:
            assert report_lib.FIGURE_CAPTIONS[figure] in report
    assert {"confusion_matrices", "reliability", "accuracy_vs_cost"} <= set(result["figures"])


def test_run_predict_checks_the_input_form_and_brings_raw_digits_to_it(runs, mnist_dir):
    import mnist_jax

    run = mnist_jax.load_run(runs["cnn_s0"])
    test = load_dataset(tiny_config("mlp").data).test
    images = test.images[:40]
    with pytest.raises(UserError, match="image 0 is a dark digit on a light background"):
        run.predict(255 - images)  # a black-on-white array: refused, not misread
    with pytest.raises(UserError, match=r"uint8 of shape \(N, 28, 28\).*raw=True"):
        run.predict(images.astype(np.float32))
    raw = run.predict([255 - image for image in images], raw=True)
    assert np.array_equal(raw, run.predict(list(images), raw=True))  # either polarity
    assert np.array_equal(raw, run.predict(mnist_jax.api.to_mnist_form(images)))
    # In the form it was trained on: the accuracy its training measured on the whole test set.
    accuracy = np.mean(run.predict(test.images) == test.labels)
    assert accuracy == pytest.approx(run.summary["test_accuracy"], abs=2e-4)
