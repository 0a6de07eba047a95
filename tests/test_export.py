"""The exported artifact: StableHLO that runs with JAX alone and agrees with the project."""

import json

import numpy as np
import pytest

from mnist_jax import api
from mnist_jax.core.errors import UserError
from mnist_jax.data import load_mnist
from mnist_jax.serving import exported
from mnist_jax.training.evaluator import SplitEvaluator
from mnist_jax.training.parallel import Parallel
from tests.conftest import run_code, run_module

# The session's strong runs (conftest.py): one worker runs this module and test_predict.py
# (--dist loadgroup), so they are trained once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("strong_runs")]

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


@pytest.fixture(scope="session")
def test_images(mnist_dir):
    return load_mnist(mnist_dir)[1]


@pytest.fixture(scope="session")
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
        called = run_code(
            CALL_ARTIFACT,
            str(artifact),
            str(out / "images.npy"),
            str(out / f"{name}.npy"),
            str(out / f"{name}_7.npy"),
            fresh=True,
        )  # fmt: skip  (a fresh interpreter: it imports no Flax)
        assert called.returncode == 0, called.stderr[-2000:]
        assert "uint8[B,28,28]" in called.stdout and "float32[B,10]" in called.stdout
        results[name] = np.load(out / f"{name}.npy"), np.load(out / f"{name}_7.npy")
    return results


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_artifact_matches_the_project_probabilities(name, strong_runs, artifacts, test_images):
    """The first 2,000 test images: the artifact against `Run.predict_proba` (the project's
    CPU formulation of the convolutions), to 1e-5."""
    probs, probs_7 = artifacts[name]
    assert probs.shape == (10_000, 10) and probs.dtype == np.float32
    run = api.load_run(strong_runs[name])
    np.testing.assert_allclose(probs[:2000], run.predict_proba(test_images.images[:2000]),
                               atol=1e-5, rtol=0)  # fmt: skip
    np.testing.assert_allclose(probs_7, probs[:7], atol=1e-6, rtol=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_artifact_predicts_what_evaluate_predicts(name, strong_runs, artifacts, test_images):
    """All 10,000 test images: the same class as evaluate's pass over the test split (the
    padded, masked SplitEvaluator that mnist_jax.evaluate and training use)."""
    run = api.load_run(strong_runs[name])
    par = Parallel("pmap")
    _, logits = SplitEvaluator(par, run.model, test_images, 1000)(par.replicate(run.variables))
    predictions = artifacts[name][0].argmax(-1)
    assert np.array_equal(predictions, logits.argmax(-1))
    accuracy = (predictions == test_images.labels).mean()
    assert accuracy == run.summary["test_accuracy"]


def test_export_errors_are_one_line(strong_runs, tmp_path):
    missing = run_module("mnist_jax.export", f"--workdir={tmp_path}/nope", f"--output={tmp_path}/m")
    assert missing.returncode == 1
    line = missing.stderr.strip().splitlines()[-1]  # after the binary's start-up log line
    assert line == f"error: workdir {tmp_path}/nope does not exist (or is not a directory)"
    with pytest.raises(UserError, match="is a directory"):
        exported.export_run(strong_runs["mlp"], tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        exported.export_run(strong_runs["mlp"], tmp_path / "no" / "m.jaxexport")
    mine = tmp_path / "mine.jaxexport"
    mine.write_text("someone's file")
    with pytest.raises(UserError, match=r"mine\.jaxexport exists; pass --overwrite to replace"):
        exported.export_run(strong_runs["mlp"], mine)
    assert mine.read_text() == "someone's file"
