"""Robustness: the 10,000 test images under MNIST-C style corruptions (data/corruptions.py).

Each corruption's images are generated once per evaluation, on the device, deterministically
from SEED and each image's index (the same images on any machine and batch size), and every
run is then evaluated on all of them at once: the corrupted copies are concatenated into one
set, so each model compiles one program for the whole robustness section.

DEFAULT covers every kind of shift MNIST-C and issue 13 name (noise, impulse noise, blur,
motion blur, rotation, shear, scale, translation, brightness, elastic deformation, stripe,
fog) with the cheapest corruption of each kind to generate: Gaussian noise rather than shot
noise and stripe rather than zigzag or dotted line, whose random patterns take several times
as long. `--corruptions=all` adds the other nine.
"""

import dataclasses
from typing import Any

import numpy as np

from mnist_jax.data import Split, augment, corruptions
from mnist_jax.evaluation import comparison, stats

SEED = 0
CHUNK = 2000  # images corrupted per call: one compiled program, bounded device memory
DEFAULT = (
    "gaussian_noise",
    "impulse_noise",
    "gaussian_blur",
    "motion_blur",
    "rotate",
    "shear",
    "scale",
    "translate",
    "brightness",
    "elastic",
    "stripe",
    "fog",
)
DEFAULT_FLAG = ",".join(DEFAULT)


@dataclasses.dataclass(frozen=True)
class CorruptedTestSet:
    """Every corruption of one test split, concatenated in `names` order."""

    names: tuple[str, ...]
    split: Split  # len(names) * count images, labels repeated
    count: int  # images per corruption
    seed: int

    def part(self, values: np.ndarray, i: int) -> np.ndarray:
        """Corruption i's slice of any per-image array over `split`."""
        return values[i * self.count : (i + 1) * self.count]

    def images(self, name: str) -> np.ndarray:
        return self.part(self.split.images, self.names.index(name))

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "severity": corruptions.get(n).default_severity,
                "unit": corruptions.get(n).unit,
                "family": corruptions.get(n).family,
            }
            for n in self.names
        ]


def corrupt_test_set(test: Split, names: list[str], seed: int = SEED) -> CorruptedTestSet:
    """All `names` applied to `test` at their default severities, in chunks of one shape.

    The last chunk is padded to the common shape (each image's randomness comes from its own
    index, so padding changes nothing) and the padding dropped.
    """
    n, chunk = len(test), min(CHUNK, len(test))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, n, chunk):
        block = test.images[start : start + chunk]
        real = len(block)
        if real < chunk:
            block = np.concatenate([block, np.zeros((chunk - real, 28, 28), np.uint8)])
        out = corruptions.corrupt_many(block, names, seed=seed, start=start)
        for name in names:
            parts[name].append(np.asarray(out[name])[:real])
    images = np.concatenate([np.concatenate(parts[name]) for name in names])
    labels = np.tile(test.labels, len(names))
    return CorruptedTestSet(tuple(names), Split(images, labels), n, seed)


def gallery(corrupted: CorruptedTestSet, test: Split, index: int) -> dict[str, np.ndarray]:
    """Test image `index` clean and under every corruption (what `corruptions.grid` gives)."""
    return {"clean": test.images[index]} | {
        name: corrupted.images(name)[index] for name in corrupted.names
    }


def section(
    corrupted: CorruptedTestSet,
    correct: dict[str, np.ndarray],
    seeds: dict[str, list[int]],
    models: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """comparison.json's `robustness`: each corruption's accuracies and pairwise tests per model.

    `correct[m]` is (runs, corruptions * images) per-image correctness over `corrupted.split`;
    `models` the comparison's model entries (for the clean accuracy of the same runs).
    """
    entries = []
    for i, info in enumerate(corrupted.describe()):
        part = {m: corrupted.part(c.T, i).T for m, c in correct.items()}
        entries.append(info | comparison.score_set(part, seeds))
    mean = {}
    for m in correct:
        seen = [e["name"] for e in entries if e["name"] in training_corruptions(models[m])]
        per_run = _mean_of_runs(entries, m)
        held_out = _mean_of_runs([e for e in entries if e["name"] not in seen], m)
        clean = np.asarray(models[m]["accuracy"]["values"])
        mean[m] = {
            "accuracy": stats.summarize(per_run.tolist()),
            "clean_accuracy": models[m]["accuracy"],
            "drop": stats.summarize((clean - per_run).tolist()),
            "seen_in_training": seen,
            "held_out_accuracy": None if held_out is None else stats.summarize(held_out.tolist()),
        }
    return {
        "seed": corrupted.seed,
        "images_per_corruption": corrupted.count,
        "corruptions": entries,
        "mean_over_corruptions": mean,
    }


def training_corruptions(model: dict[str, Any]) -> list[str]:
    """The corruptions a model's runs were trained on (config.data.augment_corruptions)."""
    spec = augment.AugmentSpec.from_config(model["config"].get("data", {}))
    return list(spec.corruptions) if spec.corrupts else []


def _mean_of_runs(entries: list[dict[str, Any]], model: str) -> np.ndarray | None:
    """Each run's accuracy averaged over `entries` (None for none)."""
    if not entries:
        return None
    return np.mean([e["models"][model]["accuracy"]["values"] for e in entries], axis=0)
