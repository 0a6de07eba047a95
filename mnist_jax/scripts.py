"""Console scripts (pyproject.toml, [project.scripts]): `mnist-jax-train ...` runs exactly what
`python -m mnist_jax.main ...` runs, and so on for every binary."""

import os
import runpy
import sys
from collections.abc import Callable


def _binary(module: str) -> Callable[[], None]:
    def run() -> None:
        os.environ.setdefault("MNIST_JAX_PROG", os.path.basename(sys.argv[0]))  # for --help
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    run.__doc__ = f"python -m {module}"
    return run


train = _binary("mnist_jax.main")
evaluate = _binary("mnist_jax.evaluate")
launch = _binary("mnist_jax.launch")
sweep = _binary("mnist_jax.sweep")
benchmark = _binary("mnist_jax.benchmark")
export = _binary("mnist_jax.export")
predict = _binary("mnist_jax.predict")
serve = _binary("mnist_jax.serve")
