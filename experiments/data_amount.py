"""MLP vs CNN against the amount of training data: how much does the CNN's prior buy?

Both models train on 1, 5, 10, 25, 50 and 100% of the training split (a stratified subsample of
the 54,000 images left after the fixed 6,000-image validation split).

Variants:
- '' (full): configs/mlp.py (20 epochs) and configs/cnn.py (12 epochs) at every fraction, 3 seeds.
  The same number of epochs at every fraction, so smaller fractions also get fewer steps. Hours on
  a 2-core CPU; meant for a GPU.
- 'reduced': minutes on a 2-core CPU. 2 seeds, fractions 1, 5, 10, 25 and 100%, zipped with
  10, 4, 2, 1 and 1 epochs so that even 1% gets ~40 optimizer steps (and no setting more than
  ~420); convolutions as im2col matmuls (`layers.conv_impl`, the same math, ~30x faster than
  lax.conv on this CPU).
Result (reduced, experiments/README.md): the CNN is ahead at every fraction; see the table there.
"""

from mnist_jax.study import Study, Zip, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    if variant == "reduced":
        return Study(
            bases={"mlp": "configs/mlp.py", "cnn": "configs/cnn.py"},
            axes=[
                Zip(
                    {
                        "data.train_fraction": [0.01, 0.05, 0.1, 0.25, 1.0],
                        "num_epochs": [10, 4, 2, 1, 1],
                    }
                )
            ],
            seeds=[0, 1],
            overrides={"layers.conv_impl": "im2col"},
        )
    return Study(
        bases={"mlp": "configs/mlp.py", "cnn": "configs/cnn.py"},
        axes=[{"data.train_fraction": [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]}],
        seeds=[0, 1, 2],
    )
