"""Optimizer and learning rate: how sensitive is each optimizer to its step size?

SGD with momentum 0.9 and Adam, each at peak learning rates 1e-4 ... 1e-1 (the product of the two
axes), with the configs' cosine decay.

Variants: '' (MLP and CNN, configs' epochs, 3 seeds) and 'reduced' (MLP only, 3 epochs, 2 seeds;
minutes on a 2-core CPU).
"""

from mnist_jax.studies.study import Study, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    bases = {"mlp": "mlp"} if reduced else {"mlp": "mlp", "cnn": "cnn"}
    return Study(
        bases=bases,
        axes=[
            {"optimizer.name": ["sgd", "adam"], "optimizer.learning_rate": [1e-4, 1e-3, 1e-2, 1e-1]}
        ],
        seeds=[0, 1] if reduced else [0, 1, 2],
        overrides={"num_epochs": 3} if reduced else {},
    )
