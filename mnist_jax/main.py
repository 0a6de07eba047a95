"""Train one model on MNIST on every local device (and every host, when launched on several).

  python -m mnist_jax.main --config=cnn --workdir=runs/cnn
  python -m mnist_jax.main --config=mlp:quick --workdir=runs/mlp \\
      --config.num_epochs=5 --config.optimizer.learning_rate=3e-4
  python -m mnist_jax.main --config=path/to/my_config.py --workdir=runs/mine

--config is a shipped config's name (configs/NAME.py in the repository: mlp, cnn, lenet, resnet,
cnn_best, ...) or the path of a config file of your own, either with an optional variant after a
colon.


Running the same command again resumes from the latest checkpoint in --workdir, or does
nothing if the run has finished. SIGTERM or SIGINT (preemption, Ctrl-C) saves a checkpoint at
the next chunk boundary and exits with status 75; rerun the same command to resume.
Results: <workdir>/{config.json,metrics.jsonl,summary.json}. Every config key, with its
meaning, is in configs/default.py (`python -c "import mnist_jax.configs.default as d;
print(d.__file__)"` finds it in an installed package).
"""

from absl import app, flags
from ml_collections import config_flags

from mnist_jax.core import cli, platform
from mnist_jax.training import guards, train, validation

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "A shipped config's name (mlp, cnn, lenet, resnet, ...) or a Python config file, optionally "
    "with a variant: cnn:quick, path/to/config.py:quick. Override any key with "
    "--config.<key>=<value>, e.g. --config.num_epochs=3.",
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
