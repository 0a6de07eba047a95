"""MLP vs CNN against the amount of training data: how much does the CNN's prior buy?

Both models train on 1, 5, 10, 25, 50 and 100% of the training split (a stratified subsample of
the 54,000 images left after the fixed 6,000-image validation split).

Variants:
- '' (full): configs/mlp.py (20 epochs) and configs/cnn.py (12 epochs) at every fraction, 3 seeds.
  The same number of epochs at every fraction, so smaller fractions also get fewer steps. Hours on
  a 2-core CPU; meant for a GPU.
- 'reduced': ~20-30 minutes on a shared 2-core CPU. 2 seeds, fractions 1, 5, 10 and 25%,
  zipped with 10, 4, 2 and 1 epochs so that even 1% gets 40 optimizer steps (and none more than
  105); convolutions as im2col matmuls (`layers.conv_impl`, the same math, ~30x faster than
  lax.conv on this CPU). The CNN's cost on a CPU is dominated by evaluating the 6,000 validation
  and 10,000 test images, which is why 50% and 100% are left to the full study.
Result (reduced, experiments/README.md): from 5% of the data on, the CNN is 1.6-1.8 points ahead
(93.7 vs 92.0% at 5%, 94.6 vs 93.0% at 25%); at 1% (40 steps) the two are level (87.2 vs 87.5%),
where the CNN is still under-trained rather than data-starved.
"""

from mnist_jax.studies.study import Study, Zip, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    if variant == "reduced":
        return Study(
            bases={"mlp": "configs/mlp.py", "cnn": "configs/cnn.py"},
            axes=[
                Zip(
                    {
                        "data.train_fraction": [0.01, 0.05, 0.1, 0.25],
                        "num_epochs": [10, 4, 2, 1],
                    }
                )
            ],
            seeds=[0, 1],
        )
    return Study(
        bases={"mlp": "configs/mlp.py", "cnn": "configs/cnn.py"},
        axes=[{"data.train_fraction": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]}],
        seeds=[0, 1, 2],
    )
