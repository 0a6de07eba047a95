"""PCA-reduced inputs for the MLP: how many principal components does MNIST need?

The MLP sees the scores of the top k principal components (k = 10, 20, 50, 100, 200) instead of
the 784 pixels (k = 0: no PCA, the raw-pixel baseline, plotted at x = 0). The projection is
fitted on the training split only, after the validation split is held out (data/pca.py).

Variants: '' (configs/mlp.py: 12 epochs, 3 seeds) and 'reduced' (3 epochs, 2 seeds; minutes on a
2-core CPU). The report also plots accuracy against parameters and FLOPs per image (the
projection included).
"""

from mnist_jax.studies.study import Study, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    return Study(
        bases={"mlp": "mlp"},
        axes=[{"data.pca_components": [0, 10, 20, 50, 100, 200]}],
        seeds=[0, 1] if reduced else [0, 1, 2],
        overrides={"num_epochs": 3} if reduced else {},
    )
