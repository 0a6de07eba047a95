"""Hybrid models: accuracy, parameters and FLOPs as the first layers turn from fully connected
to convolutional.

configs/hybrid.py puts k = 0, 1 or 2 conv-relu-maxpool layers (5x5, 'SAME') in front of the
MLP's head (512-512-10 and dropout) with the MLP's training recipe, both from configs/mlp.py.
k = 0 is exactly the MLP. With 4 channels after one pooling (14x14x4) or 16 after two (7x7x16)
the head still sees 784 values, so its size is the MLP's and only the input it sees changes;
32 and 32-64 channels (the classic 5x5 CNN's widths) give the head 6,272 and 3,136 inputs. The
report plots test accuracy against the conv layers, the parameter count and the forward FLOPs
per image.

Variants:
- '' (full): channels none, 4, 4-16, 32, 32-64; configs/hybrid.py (12 epochs, all the data),
  3 seeds; about 40 minutes on a 2-core CPU, two thirds of it the 32-64 setting.
- 'narrow': channels none, 4, 4-16 (the head sees 784 values in each), otherwise as the full
  study; about 10 minutes on a 2-core CPU.
- 'reduced': channels none, 4, 4-16 with a 128-unit head, 10% of the training data, 2 epochs,
  2 seeds; a few minutes on a 2-core CPU (tests/test_studies.py runs it).
"""

from mnist_jax.studies.study import Study, check_variant

CHANNELS = [(), (4,), (4, 16), (32,), (32, 64)]


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "narrow", "reduced"))
    if variant == "reduced":
        return Study(
            bases={"hybrid": "hybrid"},
            axes=[{"hybrid.channels": CHANNELS[:3]}],
            seeds=[0, 1],
            overrides={
                "hybrid.hidden_sizes": (128,),
                "data.train_fraction": 0.1,
                "num_epochs": 2,
                "steps_per_chunk": 1_000_000,  # one compiled scan per epoch
            },
        )
    return Study(
        bases={"hybrid": "hybrid"},
        axes=[{"hybrid.channels": CHANNELS[:3] if variant == "narrow" else CHANNELS}],
        seeds=[0, 1, 2],
    )
