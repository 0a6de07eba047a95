"""The worked example of docs/architecture.md ("Add a model"), run as written.

README's "Add a study" and "Add a metric" run in test_sweep.py and test_evaluate.py, beside the
tests of what they extend.
"""

from mnist_jax.core import configuration


def test_add_a_model_example_trains_evaluates_and_keeps_other_fingerprints(
    mnist_dir, tmp_path, monkeypatch
):
    """docs/architecture.md's "Add a model", as written: the class registers itself, the config
    file builds it, it trains and evaluates like any model; its section is part of its own
    runs' identity and of no other family's."""
    import ml_collections

    from mnist_jax.evaluation import runner as evaluate
    from mnist_jax.models import registry
    from mnist_jax.training import rundir, train
    from tests import readme

    page = "docs/architecture.md"
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))  # the registration is undone
    exec(readme.block("Add a model", page=page, index=0), {"__name__": "tiny"})
    (tmp_path / "tiny.py").write_text(readme.block("Add a model", page=page, index=1))
    config = configuration.load(f"{tmp_path / 'tiny.py'}:quick")
    config.data.train_fraction = 0.05
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["test_accuracy"] > 0.5
    options = evaluate.Options(
        corruptions="none", throughput_batch_size=256, throughput_min_seconds=0.05, latency_calls=5
    )
    result = evaluate.evaluate([str(tmp_path / "run")], str(tmp_path / "eval"), options)
    assert result["models"]["tiny"]["accuracy"]["mean"] == summary["test_accuracy"]
    assert rundir.identity(config.to_dict())["tiny.features"] == 16
    shipped = configuration.load("cnn")
    before = rundir.fingerprint(shipped.to_dict())
    shipped.tiny = ml_collections.ConfigDict({"features": 16})  # as if default.py gained it
    assert rundir.fingerprint(shipped.to_dict()) == before


def test_add_a_model_nnx_example_trains_like_the_linen_one(mnist_dir, tmp_path, monkeypatch):
    """docs/architecture.md's NNX form of the example, as written, with the tiny config file
    pointed at it: the registry bridges it, it trains, its BatchNorm statistics are kept, and
    README's short form of it is the same class."""
    import numpy as np

    from mnist_jax.models import registry
    from mnist_jax.training import train
    from tests import readme

    page = "docs/architecture.md"
    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    exec(readme.block("Add a model", page=page, index=2), {"__name__": "tiny_nnx"})
    (tmp_path / "tiny.py").write_text(readme.block("Add a model", page=page, index=1))
    config = configuration.load(f"{tmp_path / 'tiny.py'}:quick")
    config.model = "tiny_nnx"
    config.tiny_nnx = config.tiny
    config.data.train_fraction = 0.05
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["test_accuracy"] > 0.5
    from mnist_jax import api

    run = api.load_run(tmp_path / "run")
    stats = run.variables["batch_stats"]["norm"]
    assert stats["mean"].shape == (16,) and not np.allclose(stats["mean"], 0)  # trained
    short = readme.block("Add a model", index=1)
    assert "class TinyNNX(nnx.Module):" in short and "nnx_layers.BatchNorm(features)" in short
