"""Export a trained run's best model as a `jax.export` artifact (StableHLO) that runs with JAX
alone: no Flax, no mnist_jax.

  python -m mnist_jax.export --workdir=runs/compare/cnn/seed_0 --output=cnn.jaxexport

The artifact maps uint8 images (B, 28, 28), white digit on black, to float32 probabilities
(B, 10), for any batch size B, on CPU, CUDA, ROCm or TPU. Load and run it with

  import jax
  exported = jax.export.deserialize(open("cnn.jaxexport", "rb").read())
  probs = exported.call(images)          # numpy uint8 (B, 28, 28)

(JAX reads the format with the `flatbuffers` package). --output.json describes the artifact:
the run, its checkpoint, input, output, platforms, JAX version and sha256.
"""

from absl import app, flags

from mnist_jax.core import cli, platform

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (from python -m mnist_jax.main) whose best model is exported."
)
_OUTPUT = flags.DEFINE_string("output", None, "The artifact file to write, e.g. cnn.jaxexport.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "MNIST directory, needed only by PCA-input runs (their projection is refit)."
)
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace --output (and its .json) if it exists; without it, refused."
)
flags.mark_flags_as_required(["workdir", "output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        platform.initialize()
        from mnist_jax.serving import exported  # deferred: --help needs no JAX tracing

        exported.export_run(_WORKDIR.value, _OUTPUT.value, _DATA_DIR.value, _OVERWRITE.value)


if __name__ == "__main__":
    cli.run(main)
