"""Hyperparameter search for the MLP: how good can a fully connected network get when its
hyperparameters are chosen by search rather than by hand?

Random search with successive halving (mnist_jax/studies/search.py): configurations sampled
from the space below on top of configs/mlp.py, trained rung by rung; at each rung the best
1/eta by validation accuracy continue. The winner (chosen on the 6,000 validation images only)
is retrained on fresh seeds and reported as the mean ± std of their test accuracy.

Variants:
- '' (full): 27 configurations; rungs at 2, 6 and 20 epochs (27, 9, 3 trials; eta 3); learning
  rate, dropout, widths and depth, L2, L1, label smoothing and shift augmentation searched; the
  best retrained on 5 fresh seeds. 67 minutes on a 2-core CPU beside other trainings
  (experiments/README.md has the results).
- 'reduced': 4 configurations of a one-hidden-layer MLP on 10% of the training data; rungs at
  1 and 2 epochs (4, 2 trials; eta 2); the best retrained on 2 fresh seeds. A few minutes on a
  2-core CPU (tests/test_studies.py runs it).
"""

from mnist_jax.studies.search import Choice, LogUniform, Search, Uniform
from mnist_jax.studies.study import check_variant


def get_study(variant: str = "") -> Search:
    check_variant(variant, ("", "reduced"))
    if variant == "reduced":
        return Search(
            base="mlp",
            space={
                "optimizer.learning_rate": LogUniform(3e-4, 1e-2),
                "mlp.dropout": Uniform(0.0, 0.3),
                "mlp.hidden_sizes": Choice([(64,), (128,)]),
            },
            trials=4,
            rungs=(1, 2),
            eta=2,
            final_seeds=(1, 2),
            overrides={"data.train_fraction": 0.1, "steps_per_chunk": 1_000_000},
        )
    return Search(
        base="mlp",
        space={
            "optimizer.learning_rate": LogUniform(3e-4, 3e-3),
            "mlp.dropout": Uniform(0.0, 0.5),
            "mlp.hidden_sizes": Choice(
                [(512, 512), (1024, 1024), (2048, 2048), (1024, 1024, 1024)]
            ),
            "optimizer.weight_decay": Choice([0.0, 1e-5, 1e-4]),
            "optimizer.l1": Choice([0.0, 1e-6]),
            "label_smoothing": Uniform(0.0, 0.15),
            "data.augment_shift": Choice([0, 1, 2]),
        },
        trials=27,
        rungs=(2, 6, 20),
        eta=3,
        final_seeds=(1, 2, 3, 4, 5),
    )
