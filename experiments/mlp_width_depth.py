"""MLP width and depth: is a wider or a deeper fully connected network better on MNIST?

Hidden layers of 64, 256 or 1024 units, one to three of them (`width` and `depth` are study
axes that set config.mlp.hidden_sizes = (width,) * depth).

Variants: '' (configs/mlp.py: 12 epochs, 3 seeds, depth 1-3) and 'reduced' (3 epochs, 2 seeds,
depth 1-2; minutes on a 2-core CPU).
"""

from mnist_jax.studies.study import Derived, Study, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    return Study(
        bases={"mlp": "mlp"},
        axes=[{"width": [64, 256, 1024], "depth": [1, 2] if reduced else [1, 2, 3]}],
        derived=[Derived("mlp.hidden_sizes", ("width", "depth"), lambda w, d: (w,) * d)],
        seeds=[0, 1] if reduced else [0, 1, 2],
        overrides={"num_epochs": 3} if reduced else {},
    )
