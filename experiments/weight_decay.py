"""L2 weight decay: does penalising the weights help beyond dropout?

Adam with L2 added to the gradients (config.optimizer.weight_decay; biases are not decayed) at
0, 1e-5, 1e-4, 1e-3 and 1e-2, on top of each config's dropout.

Variants: '' (MLP and CNN, configs' epochs, 3 seeds) and 'reduced' (MLP only, 3 epochs, 2 seeds;
minutes on a 2-core CPU). experiments/regularization.py sets L2 against L1, dropout and
augmentation, each alone.
"""

from mnist_jax.studies.study import Study, check_variant


def get_study(variant: str = "") -> Study:
    check_variant(variant, ("", "reduced"))
    reduced = variant == "reduced"
    bases = {"mlp": "mlp"} if reduced else {"mlp": "mlp", "cnn": "cnn"}
    return Study(
        bases=bases,
        axes=[{"optimizer.weight_decay": [0.0, 1e-5, 1e-4, 1e-3, 1e-2]}],
        seeds=[0, 1] if reduced else [0, 1, 2],
        overrides={"num_epochs": 3} if reduced else {},
    )
