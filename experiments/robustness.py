"""Why is the CNN fragile to pixel noise? One change at a time from configs/cnn.py, scored under
the comparison's 12 corruptions.

Each setting of the `change` axis alters configs/cnn.py in one respect:
- `base`: as it ships;
- `no_stem`: no space-to-depth stem (full-resolution 28x28 maps: 4x the FLOPs);
- `avg_pool`: average instead of max pooling;
- `kernel_5`: 5x5 instead of 3x3 kernels;
- `batch_norm`: BatchNorm after every convolution;
- `no_weight_average`: the raw weights instead of their moving average (optimizer.ema_decay 0);
- `per_image_norm`: each image standardised on its own (cnn.input_norm='per_image');
- `no_augmentation`: no shifts, rotations or scaling;
- `noise_training`: half the training images get gaussian noise, impulse noise, gaussian blur or
  a contrast loss (data.augment_corruption*), which the comparison then reports as seen.
The evaluation (comparison.json, report.md, figures in the output directory) gives every
setting's accuracy per corruption with the seed-aware test against every other.

Variant: comma-separated, any of
- change names: only those settings, beside `base` (which every setting is compared against),
  e.g. `robustness:per_image_norm,noise_training`; none: all nine;
- 'reduced': seed 0, 2 epochs on 10% of the data, scored under gaussian noise (seen by
  `noise_training`) and brightness (seen by none), with short speed measurements: about two
  minutes on 2 cores for all nine settings. In so short a run the CNN is far from trained, so
  only the full variant answers the question.
The full study (no 'reduced'): 3 seeds, 18 epochs, all the data: hours on a 2-core CPU.
"""

import functools
from typing import Any

from mnist_jax.configs import cnn
from mnist_jax.configs.cnn_robust import TRAINING_CORRUPTIONS
from mnist_jax.core.errors import ConfigError
from mnist_jax.evaluation import runner as eval_runner
from mnist_jax.studies.study import Derived, Study
from mnist_jax.training import rundir

CHANGES: dict[str, dict[str, Any]] = {
    "base": {},
    "no_stem": {"cnn.stem_patch": 1},
    "avg_pool": {"cnn.pool": "avg"},
    "kernel_5": {"cnn.kernel_sizes": (5, 5)},
    "batch_norm": {"cnn.batch_norm": True},
    "no_weight_average": {"optimizer.ema_decay": 0.0},
    "per_image_norm": {"cnn.input_norm": "per_image"},
    "no_augmentation": {
        "data.augment_shift": 0,
        "data.augment_rotation": 0.0,
        "data.augment_scale": 0.0,
    },
    "noise_training": {
        "data.augment_corruptions": ",".join(TRAINING_CORRUPTIONS),
        "data.augment_corruption_prob": 0.5,
    },
}


# The reduced variant's evaluation: one corruption a setting trains on and one none does, and
# speed measured briefly (the full variant keeps every default).
REDUCED_EVALUATION = {"corruptions": "gaussian_noise,brightness"} | eval_runner.QUICK_TIMING


def _derived() -> list[Derived]:
    """Every key some change sets: the change's value, else configs/cnn.py's own."""
    base = rundir.flatten(rundir.config_to_dict(cnn.get_config()))
    keys = sorted({k for change in CHANGES.values() for k in change})
    return [Derived(k, ("change",), functools.partial(_value, k, base[k])) for k in keys]


def _value(key: str, default: Any, change: str) -> Any:
    return CHANGES[change].get(key, default)


def get_study(variant: str = "") -> Study:
    words = [w for w in variant.split(",") if w]
    reduced = "reduced" in words
    chosen = [w for w in words if w != "reduced"]
    if bad := [w for w in chosen if w not in CHANGES]:
        raise ConfigError(f"unknown robustness setting {bad[0]!r}; valid: 'reduced' and the "
                          f"changes {', '.join(CHANGES)}")  # fmt: skip
    if len(set(words)) != len(words):
        raise ConfigError(f"variant {variant!r} names a setting twice")
    changes = [c for c in CHANGES if not chosen or c == "base" or c in chosen]
    return Study(
        bases={"cnn": "cnn"},
        axes=[{"change": changes}],
        derived=_derived(),
        seeds=[0] if reduced else [0, 1, 2],
        overrides={"num_epochs": 2, "data.train_fraction": 0.1} if reduced else {},
        evaluate=REDUCED_EVALUATION if reduced else {},
        name="_".join(["robustness", *(["reduced"] if reduced else []), *chosen]),
    )
