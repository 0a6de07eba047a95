"""A Flax NNX model through the same contract (configs/cnn_nnx.py, models/cnn_nnx.py): built by
the registry rule, trained, killed and resumed to the same bits, evaluated, exported and served
like the Linen models. Its tree-reduction run on 1 and 8 devices is a case of
test_parallel.py's tree test (cnn_nnx_bn)."""

import hashlib
import http.client
import json
import threading

import jax
import numpy as np
import pytest
from conftest import run_module

from mnist_jax import api
from mnist_jax.configs import cnn, cnn_nnx
from mnist_jax.core.errors import ConfigError, UserError
from mnist_jax.data import load_mnist
from mnist_jax.evaluation import quantize
from mnist_jax.models import registry
from mnist_jax.serving import server as server_lib
from tests import loadtest

# BatchNorm and dropout, 2 epochs of 3 chunks of 7 steps on 5% of the data.
FLAGS = ("--config=configs/cnn_nnx.py", "--config.cnn_nnx.batch_norm=True",
         "--config.num_epochs=2", "--config.data.train_fraction=0.05",
         "--config.steps_per_chunk=7", "--config.test_every_epochs=1")  # fmt: skip


def test_the_nnx_cnn_is_built_by_the_registry_rule_with_the_linen_cnns_parameters():
    nnx_model = registry.create_model(cnn_nnx.get_config())
    linen = registry.create_model(cnn.get_config())
    count = [
        registry.count_params(registry.init_variables(m, jax.random.key(0))["params"])
        for m in (nnx_model, linen)
    ]
    assert count[0] == count[1] == 267_354  # tests/test_models.py counts them
    registry.check_contract(nnx_model, "cnn_nnx")
    # 'VALID' convolutions: 32-64 3x3 kernels and a dense 64 make 121,930 parameters
    # (conv 320 + 18,496 on 28 -> 26 -> 13 -> 11 -> 5, dense 5*5*64*64+64 = 102,464, out 650),
    # the same logits in both (each image standardised on its own first, too).
    valid = {"padding": "VALID", "channels": (32, 64), "kernel_sizes": (3, 3), "dense": (64,),
             "stem_patch": 1, "input_norm": "per_image"}  # fmt: skip
    pair = []
    for get_config, name in ((cnn_nnx.get_config, "cnn_nnx"), (cnn.get_config, "cnn")):
        config = get_config()
        config[name].update(valid)
        pair.append(registry.create_model(config))
    variables = [registry.init_variables(m, jax.random.key(0)) for m in pair]
    assert [registry.count_params(v["params"]) for v in variables] == [121_930] * 2
    x = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    names = {"conv0": "Conv_0", "conv1": "Conv_1", "dense0": "Dense_0", "out": "Dense_1"}
    as_linen = {"params": {names[k]: v for k, v in variables[0]["params"].items()}}
    np.testing.assert_allclose(
        pair[0].apply(variables[0], x), pair[1].apply(as_linen, x), rtol=1e-5, atol=1e-6
    )
    config = cnn.get_config()
    config.cnn.update(valid | {"kernel_sizes": (9, 11)})  # 28 -> 20 -> 10, and then 11x11
    with pytest.raises(ConfigError, match=r"kernel_sizes\[1\]=11 is larger than the 10x10 map"):
        registry.check_contract(registry.create_model(config), "cnn")
    config = cnn_nnx.get_config()
    config.cnn_nnx.update(valid | {"kernel_sizes": (9, 11)})  # the same check as the Linen CNN's
    with pytest.raises(ConfigError, match=r"kernel_sizes\[1\]=11 is larger than the 10x10 map"):
        registry.create_model(config)
    config = cnn_nnx.get_config()
    config.cnn_nnx.stem_patch = 3
    with pytest.raises(ConfigError, match=r"cnn_nnx.stem_patch=3 must divide 28"):
        registry.create_model(config)
    config = cnn_nnx.get_config()
    config.cnn_nnx.width = 3
    with pytest.raises(ConfigError, match=r"unknown key cnn_nnx.width; CNNNNX has: activation"):
        registry.create_model(config)


def _numbers(workdir) -> list:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    return [[row[k] for k in keys] for row in rows if "train_loss" in row]


def _digest(workdir) -> str:
    run = api.load_run(workdir)
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(run.variables):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def nnx_run(mnist_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nnx") / "run"
    result = run_module("mnist_jax.main", f"--workdir={workdir}", *FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_killed_with_sigkill_then_rerun_is_bitwise_the_uninterrupted_run(nnx_run, tmp_path):
    workdir = tmp_path / "run"
    killed = run_module("mnist_jax.main", f"--workdir={workdir}", *FLAGS,
                        MNIST_JAX_TEST_FAULT="kill@chunk:5")  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert len(_numbers(workdir)) == 1  # epoch 1 done, epoch 2 killed in its second chunk
    rerun = run_module("mnist_jax.main", f"--workdir={workdir}", *FLAGS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _numbers(workdir) == _numbers(nnx_run)
    assert _digest(workdir) == _digest(nnx_run)


# Slow, as the Linen models' export and predict tests are: three binaries end to end (about 20 s
# in CI); the default set keeps the NNX model's training, tree reduction and exact resume.
@pytest.mark.slow
def test_evaluates_exports_serves_and_refuses_int8_in_one_line(nnx_run, tmp_path, mnist_dir):
    summary = json.loads((nnx_run / "summary.json").read_text())
    out = tmp_path / "eval"
    result = run_module("mnist_jax.evaluate", f"--workdirs={nnx_run}", f"--output_dir={out}",
                        "--corruptions=none")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (model,) = json.loads((out / "comparison.json").read_text())["models"].values()
    assert model["accuracy"]["mean"] == summary["test_accuracy"] > 0.5

    artifact = tmp_path / "cnn_nnx.jaxexport"
    result = run_module("mnist_jax.export", f"--workdir={nnx_run}", f"--output={artifact}")
    assert result.returncode == 0 and artifact.stat().st_size > 100_000, result.stderr[-2000:]

    run = api.load_run(nnx_run)
    _, test = load_mnist(mnist_dir)
    server = server_lib.make_server(server_lib.ModelsPredictor([run]), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
        connection.request("POST", "/predict", loadtest.drawing_body(test.images[0]),
                           {"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        assert response.status == 200
        reply = json.loads(response.read())
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    seen = np.array(reply["image"], dtype=np.uint8)
    expected = run.predict_proba(seen[None])[0]
    np.testing.assert_allclose(reply["models"][0]["probabilities"], expected, atol=1e-6)

    # --quantize=int8 refuses it with this one line (a UserError: cli.py prints it, exit 1)
    with pytest.raises(UserError) as refused:
        quantize.quantize(run.model, run.variables)
    assert str(refused.value) == (
        "--quantize=int8 quantizes Linen models; CNNNNX is a Flax NNX model (qwix's "
        "Linen interception does not reach into it); evaluate it without --quantize"
    )
