"""Regularisation, for the MLP and the CNN: L1 vs L2 vs dropout vs augmentation.

Each setting starts from the model's config with every regulariser off (no L1, no L2, no
dropout, no augmentation) and turns on one kind:
- `l1_*`: optimizer.l1, the subgradient l1 * sign(w) added to the gradient of every weight
  matrix and kernel (biases free);
- `l2_*`: optimizer.weight_decay, wd * w added to the gradient (Adam + L2, biases free);
- `dropout`: MLP 0.2 after every hidden layer, CNN 0.5 before every dense layer;
- `shift`: random +-2 px translations; `affine_elastic`: rotation (+-10 deg), scale (+-10%),
  sub-pixel translation (+-2 px) and an elastic distortion (alpha 34, sigma 4; Simard et al.);
- `dropout_shift`: that dropout and +-2 px shifts together.
One `regularizer` axis sets all of those keys at once (study `Derived` entries).

Variants:
- '' (full): none, l1 1e-6 and 1e-5, l2 1e-5 and 1e-4, dropout, shift, affine_elastic,
  dropout_shift; configs/mlp.py (12 epochs) and configs/cnn.py (18 epochs),
  all the data, 3 seeds.
- 'reduced': none, l1 1e-5, l2 1e-4, dropout, shift; 10% of the training data, 2 epochs, one
  seed; the MLP narrowed to 784-256-256-10 and the CNN to conv8-pool-conv16-pool-dense128 so
  that the whole variant runs in a minute on a 2-core CPU (tests/test_studies.py expands it). In
  so short a run every regulariser mostly costs accuracy; the question needs the full variant.
"""

from mnist_jax.studies.study import Derived, Study, check_variant

# Every regularising key, off.
OFF = {
    "optimizer.l1": 0.0,
    "optimizer.weight_decay": 0.0,
    "mlp.dropout": 0.0,
    "cnn.dropout": 0.0,
    "data.augment_shift": 0,
    "data.augment_rotation": 0.0,
    "data.augment_scale": 0.0,
    "data.augment_shear": 0.0,
    "data.augment_translate": 0.0,
    "data.augment_elastic_alpha": 0.0,
}
DROPOUT = {"mlp.dropout": 0.2, "cnn.dropout": 0.5}  # the classic rates for these layers
SETTINGS = {
    "none": {},
    "l1_1e-6": {"optimizer.l1": 1e-6},
    "l1_1e-5": {"optimizer.l1": 1e-5},
    "l2_1e-5": {"optimizer.weight_decay": 1e-5},
    "l2_1e-4": {"optimizer.weight_decay": 1e-4},
    "dropout": DROPOUT,
    "shift": {"data.augment_shift": 2},
    "affine_elastic": {
        "data.augment_rotation": 10.0,
        "data.augment_scale": 0.1,
        "data.augment_translate": 2.0,
        "data.augment_elastic_alpha": 34.0,
    },
    "dropout_shift": {**DROPOUT, "data.augment_shift": 2},
}
FULL = list(SETTINGS)
REDUCED = ["none", "l1_1e-5", "l2_1e-4", "dropout", "shift"]


def _value(key: str):
    return lambda name: SETTINGS[name].get(key, OFF[key])


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    return Study(
        bases={"mlp": "mlp", "cnn": "cnn"},
        axes=[{"regularizer": REDUCED if reduced else FULL}],
        derived=[Derived(key, ("regularizer",), _value(key)) for key in OFF],
        seeds=[0] if reduced else [0, 1, 2],
        overrides=(
            {
                "data.train_fraction": 0.1,
                "num_epochs": 2,
                "cnn.channels": (8, 16),
                "mlp.hidden_sizes": (256, 256),
                "steps_per_chunk": 1_000_000,  # one compiled scan per epoch
            }
            if reduced
            else {}
        ),
    )
