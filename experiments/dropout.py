"""Dropout rate, for the MLP and the CNN: how much regularisation does each want?

One `dropout` axis sets config.mlp.dropout for the MLP and config.cnn.dropout for the CNN
(each model ignores the other's key).

Variants:
- '' (full): rates 0, 0.2, 0.4, 0.6; configs/mlp.py (12 epochs) and configs/cnn.py (18 epochs),
  3 seeds, all the data. Hours on a 2-core CPU.
- 'reduced': rates 0, 0.25, 0.5; 10% of the training data, 2 epochs, 2 seeds; minutes on a
  2-core CPU. In so short a run both models underfit, so dropout can only cost accuracy there;
  the full variant answers the question.
"""

from mnist_jax.studies.study import Study, alias, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    return Study(
        bases={"mlp": "mlp", "cnn": "cnn"},
        axes=[{"dropout": [0.0, 0.25, 0.5] if reduced else [0.0, 0.2, 0.4, 0.6]}],
        derived=alias("dropout", "mlp.dropout", "cnn.dropout"),
        seeds=[0, 1] if reduced else [0, 1, 2],
        overrides=({"num_epochs": 2, "data.train_fraction": 0.1} if reduced else {}),
    )
