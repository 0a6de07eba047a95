"""mnist_jax: MLP vs CNN on MNIST in JAX.

The public Python API (README, "Python API"); importing the package itself stays cheap (no JAX)
until one of these is used:

  mnist_jax.__version__
  mnist_jax.train(config_or_spec, workdir, variant="") -> summary dict
  mnist_jax.load_run(workdir) -> Run (.name, .config, .summary, .logits, .predict_proba,
                                      .predict, .predict_files)
  mnist_jax.load_digits(paths) -> uint8 (N, 28, 28) in MNIST's form
  mnist_jax.log_to_stderr(level="info")   log lines from Python ('warning': quiet)
"""

from typing import Any

__all__ = ["Run", "__version__", "load_digits", "load_run", "log_to_stderr", "train"]


def _version() -> str:
    """The installed distribution's version; from a source tree, pyproject.toml's."""
    from importlib import metadata

    try:
        return metadata.version("mnist_jax")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "0+unknown"


__version__ = _version()


def __getattr__(name: str) -> Any:
    """The API's functions, imported on first use (they need JAX; `--help` does not)."""
    if name in ("Run", "load_digits", "load_run", "train"):
        from mnist_jax import api

        return getattr(api, name)
    if name == "log_to_stderr":
        from mnist_jax.core import logs

        return logs.log_to_stderr
    raise AttributeError(f"module 'mnist_jax' has no attribute {name!r}")
