"""MLP vs CNN against the amount of training data: how much does the CNN's prior buy?

Both models train on 1, 5, 10, 25, 50 and 100% of the training split (a stratified subsample of
the 54,000 images left after the fixed 6,000-image validation split).

Variants:
- '' (full): configs/mlp.py (12 epochs) and configs/cnn.py (18 epochs) at every fraction, 3 seeds.
  The same number of epochs at every fraction, so smaller fractions also get fewer steps. About
  13 minutes on a 2-core CPU (experiments/README.md has the results).
- 'reduced': 2 seeds, fractions 1, 5, 10 and 25%, zipped with 10, 4, 2 and 1 epochs so that even
  1% gets 40 optimizer steps (and none more than 105); 50% and 100% are left to the full study.
  Minutes on a 2-core CPU.
"""

from mnist_jax.studies.study import Study, Zip, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    if variant == "reduced":
        return Study(
            bases={"mlp": "mlp", "cnn": "cnn"},
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
        bases={"mlp": "mlp", "cnn": "cnn"},
        axes=[{"data.train_fraction": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]}],
        seeds=[0, 1, 2],
    )
