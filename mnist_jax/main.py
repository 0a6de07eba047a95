"""Train one model on MNIST on every local device (and every host, when launched on several).

  python -m mnist_jax.main --config=configs/cnn.py --workdir=runs/cnn
  python -m mnist_jax.main --config=configs/mlp.py --workdir=runs/mlp \\
      --config.num_epochs=5 --config.optimizer.learning_rate=3e-4

Running the same command again resumes from the latest checkpoint in --workdir, or does
nothing if the run has finished. SIGTERM or SIGINT (preemption, Ctrl-C) saves a checkpoint at
the next chunk boundary and exits with status 75; rerun the same command to resume.
Results: <workdir>/{config.json,metrics.jsonl,summary.json}. Every config key, with its
meaning, is in configs/default.py.
"""

from absl import app, flags
from ml_collections import config_flags

from mnist_jax.core import cli, platform
from mnist_jax.training import guards, train, validation

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Python config file (configs/mlp.py, configs/cnn.py, configs/resnet.py, ...), optionally "
    "with a variant: configs/cnn.py:quick. Override any key with --config.<key>=<value>, e.g. "
    "--config.num_epochs=3.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory: config.json, metrics.jsonl, summary.json, checkpoints/."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        validation.validate(_CONFIG.value)  # a bad value: one line, before any set-up
        platform.initialize()
        try:
            train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
        except guards.Preempted as e:
            cli.exit_with(f"preempted: {e}", e.exit_status)


if __name__ == "__main__":
    cli.run(main)
