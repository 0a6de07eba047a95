"""A trained run as a `jax.export` artifact: StableHLO that needs only JAX to run.

The artifact is the whole classifier as one function, the best variables baked in as constants:

  uint8 images (B, 28, 28), white digit on black  ->  float32 probabilities (B, 10)

with a symbolic batch dimension B, so any batch size runs without re-exporting. It is lowered
for every platform JAX serves (CPU, CUDA, ROCm, TPU) with XLA's own convolution and
reduce_window pooling (the CPU-fast im2col and reshape forms are training choices). To use it:

  import jax, numpy as np
  exported = jax.export.deserialize(open("model.jaxexport", "rb").read())
  probs = exported.call(images_uint8)

A JSON sidecar (`<output>.json`) records what it is: the run, its checkpoint, the input and
output, the platforms and the JAX version that wrote it.
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging

from mnist_jax.core import errors, logs
from mnist_jax.core.errors import UserError
from mnist_jax.data import preprocess
from mnist_jax.models import layers

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
INPUT = "uint8 (B, 28, 28), white digit on black (MNIST form: mnist_jax.data.images)"
OUTPUT = "float32 (B, 10): class probabilities, classes 0..9"


def export_model(model: Any, variables: Any, platforms: tuple[str, ...] = PLATFORMS):
    """The `jax.export.Exported` of uint8 images (B, 28, 28) -> probabilities (B, 10)."""

    def probabilities(images: jax.Array) -> jax.Array:
        with layers.context(conv_impl="xla", pool_impl="reduce_window"):
            logits = model.apply(variables, preprocess.normalize(images), train=False)
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    (batch,) = jax.export.symbolic_shape("B")
    spec = jax.ShapeDtypeStruct((batch, *preprocess.IMAGE_SHAPE), jnp.uint8)
    return jax.export.export(jax.jit(probabilities), platforms=platforms)(spec)


def export_run(
    workdir: str | os.PathLike, output: str | os.PathLike, data_dir: str = "",
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Writes the run's best model to `output` (and `output`.json); returns the output path.
    An existing `output` is replaced only with `overwrite`."""
    from mnist_jax import api  # deferred: api imports this package's siblings

    out = Path(output)
    if out.is_dir():
        raise UserError(f"--output={output} is a directory; name a file: {out}/model.jaxexport")
    if not out.parent.is_dir():
        raise UserError(f"--output={output}: directory {out.parent} does not exist")
    if out.exists() and not overwrite:
        raise UserError(f"--output={output} exists; pass --overwrite to replace it")
    run = api.load_run(workdir, data_dir)
    with logs.heartbeat(f"Exporting {run.name} for {', '.join(PLATFORMS)}", done=True):
        exported = export_model(run.model, run.variables)
        data = exported.serialize()
    with errors.writing_into(out):
        out.write_bytes(data)
    sidecar = {
        "run": str(run.workdir),
        "model": run.config.model,
        "checkpoint_step": run.checkpoint_step,
        "test_accuracy": (run.summary or {}).get("test_accuracy"),
        "input": INPUT,
        "output": OUTPUT,
        "platforms": list(exported.platforms),
        "jax_version": jax.__version__,
        "sha256": hashlib.sha256(data).hexdigest(),
        "load": "jax.export.deserialize(open(path, 'rb').read()).call(images)",
    }
    with errors.writing_into(f"{out}.json"):
        Path(f"{out}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    logging.info("Wrote %s (%d bytes) and %s.json", out, len(data), out)
    return out
