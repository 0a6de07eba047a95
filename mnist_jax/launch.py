"""Launch training: on this machine, in N local processes, on a SLURM cluster, on a Cloud TPU
pod; or train the MLP and the CNN over several seeds and compare them.

  python -m mnist_jax.launch SUBCOMMAND [ARGS] [--options] [--config.key=value ...]
  python -m mnist_jax.launch SUBCOMMAND --help     # that subcommand's arguments and options

Every subcommand takes --dry_run (print the commands, run nothing) and trailing
--config.key=value overrides, which go to every `python -m mnist_jax.main` it starts.
docs/multihost.md explains multi-host runs. ./launch.sh passes these subcommands through.

Exit status: 0 success (and --help); 1 bad input (command line, config); 130 interrupted;
otherwise the exit status of the command that failed (in a multi-process launch, of the first
process to fail).
"""

from mnist_jax.core import cli
from mnist_jax.launcher import run, subcommands


def main(inv: subcommands.Invocation) -> int:
    return run.run(inv)


def parse_command_line(argv: list[str]) -> subcommands.Invocation:
    return subcommands.parse_command_line(argv, __doc__ or "")


if __name__ == "__main__":
    cli.run(main, flags_parser=parse_command_line)
