"""The exported artifact: StableHLO that runs with JAX alone and agrees with the project."""

import json

import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.data import load_mnist
from mnist_jax.evaluation import runner, runs
from tests.conftest import run_code, run_module

pytestmark = pytest.mark.slow  # trains the session's strong runs (about a minute)

# A fresh process that imports only jax and numpy (PYTHONPATH would allow more: it checks).
CALL_ARTIFACT = """
import sys
import jax
import numpy as np
exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(exported.call(images)))
np.save(sys.argv[4], np.asarray(exported.call(images[:7])))  # another batch size, same program
project = sorted({m.split(".")[0] for m in sys.modules} & {"flax", "mnist_jax", "optax", "orbax"})
assert not project, project
print(exported.in_avals, exported.out_avals, ",".join(exported.platforms))
"""


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    return load_mnist(mnist_dir)[1]


@pytest.fixture(scope="module")
def artifacts(strong_runs, test_images, tmp_path_factory):
    """name -> (probabilities of all test images, of the first 7), from the artifact alone."""
    out = tmp_path_factory.mktemp("export")
    np.save(out / "images.npy", test_images.images)
    results = {}
    for name, workdir in strong_runs.items():
        artifact = out / f"{name}.jaxexport"
        done = run_module("mnist_jax.export", f"--workdir={workdir}", f"--output={artifact}")
        assert done.returncode == 0, done.stderr[-2000:]
        sidecar = json.loads((out / f"{name}.jaxexport.json").read_text())
        assert sidecar["model"] == name and set(sidecar["platforms"]) >= {"cpu", "cuda", "tpu"}
        called = run_code(CALL_ARTIFACT, str(artifact), str(out / "images.npy"),
                          str(out / f"{name}.npy"), str(out / f"{name}_7.npy"))  # fmt: skip
        assert called.returncode == 0, called.stderr[-2000:]
        assert "uint8[B,28,28]" in called.stdout and "float32[B,10]" in called.stdout
        results[name] = np.load(out / f"{name}.npy"), np.load(out / f"{name}_7.npy")
    return results


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_artifact_matches_the_project_probabilities(name, strong_runs, artifacts, test_images):
    probs, probs_7 = artifacts[name]
    run = api.load_run(strong_runs[name])
    ours = run.predict_proba(test_images.images)
    assert probs.shape == (10_000, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, ours, atol=1e-5, rtol=0)
    np.testing.assert_allclose(probs_7, probs[:7], atol=1e-6, rtol=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    accuracy = (probs.argmax(-1) == test_images.labels).mean()
    assert accuracy == pytest.approx(run.summary["test_accuracy"], abs=2e-4)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_artifact_predicts_what_evaluate_predicts(name, strong_runs, artifacts):
    fast = runner.Options(throughput_min_seconds=0.0, latency_calls=1, num_mistakes=1)
    record, arrays = runner.evaluate_run(runs.open_run(strong_runs[name]), fast)
    predictions = artifacts[name][0].argmax(-1)
    assert np.array_equal(predictions, arrays["probs"].argmax(-1))  # all 10,000 test images
    assert (predictions == arrays["labels"]).mean() == record["accuracy"]


def test_export_errors_are_one_line(strong_runs, tmp_path):
    missing = run_module("mnist_jax.export", f"--workdir={tmp_path}/nope", f"--output={tmp_path}/m")
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith(
        f"error: workdir {tmp_path}/nope does not exist"
    )
    to_dir = run_module("mnist_jax.export", f"--workdir={strong_runs['mlp']}", f"--output={tmp_path}")
    assert to_dir.returncode == 1 and "is a directory" in to_dir.stderr
