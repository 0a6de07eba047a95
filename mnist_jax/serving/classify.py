"""Classify image files with trained runs: the library behind `python -m mnist_jax.predict`.

Every file is brought to MNIST's form first (mnist_jax.data.images: grayscale, white digit on
black, 20x20 box centred by mass in 28x28), so photos, scans and drawings in either polarity
and in colour go through the steps MNIST's own digits went through.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnist_jax.core.errors import UserError


def top_k(probs: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per row: the k most probable (class, probability), most probable first."""
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [[(int(c), float(row[c])) for c in top] for row, top in zip(probs, order, strict=True)]


def table(files: Sequence[str], names: Sequence[str], probs: Sequence[np.ndarray], k: int) -> str:
    """One line per file: each model's top-k classes with probabilities, side by side."""
    width = k * 10 - 2  # "7  99.8%" per class, two spaces apart
    tops = [top_k(p, k) for p in probs]
    first = max(len("image"), *(len(f) for f in files))
    lines = ["   ".join([f"{'image':{first}s}", *(f"{n[:width]:{width}s}" for n in names)])]
    for i, name in enumerate(files):
        cells = ["  ".join(f"{c} {100 * p:5.1f}%" for c, p in top[i]) for top in tops]
        lines.append("   ".join([f"{name:{first}s}", *(f"{c:{width}s}" for c in cells)]))
    return "\n".join(line.rstrip() for line in lines)


def predict_files(
    workdirs: Sequence[str | os.PathLike], paths: Sequence[str | os.PathLike], k: int = 3
) -> str:
    """The table for `paths` under every run of `workdirs`; files are checked before models
    are loaded, so a bad file fails in a second with its name."""
    from mnist_jax import api  # deferred: loading models needs JAX

    if not paths:
        raise UserError("no image files given; e.g. python -m mnist_jax.predict --workdirs=W a.png")
    if not workdirs:
        raise UserError("--workdirs is required, e.g. --workdirs=runs/compare/mlp/seed_0")
    if not 1 <= k <= 10:
        raise UserError(f"--top={k}: must be in 1..10 (there are 10 classes)")
    digits = api.load_digits(paths)
    runs = [api.load_run(w) for w in workdirs]
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        names = [str(Path(w)) for w in workdirs]  # same directory names: show the paths
    return table([str(p) for p in paths], names, [run.predict_proba(digits) for run in runs], k)
