"""Speed benchmark: training throughput, compile time, time to accuracy, FLOP/s and inference.

  python -m mnist_jax.benchmark                # everything (~5 minutes on a quiet 2-core CPU)
  python -m mnist_jax.benchmark --seeds=5 --output_dir=benchmarks/latest
  python -m mnist_jax.benchmark --tiny         # a smoke test, ~30 s (what the tests run)

Writes <output_dir>/benchmark.json (every number) and <output_dir>/benchmark.md (the tables).
What each section measures, and how timings on a shared CPU are made comparable (a matrix-product
ceiling measured in the same process, interleaved rounds), is described in
mnist_jax/benchmarks/speed.py and benchmarks/RESULTS.md.
"""

from pathlib import Path

from absl import app, flags

from mnist_jax.benchmarks import markdown, speed
from mnist_jax.core import cli, platform
from mnist_jax.training import rundir

_DEFAULTS = speed.Options()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "benchmarks/latest", "Where the JSON/markdown go.")
_THROUGHPUT_CONFIGS = flags.DEFINE_list(
    "throughput_configs",
    list(_DEFAULTS.throughput_configs),
    "Configs whose training throughput, compile time and inference speed are measured.",
)
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", [str(b) for b in _DEFAULTS.batch_sizes], "Throughput batches."
)
_NAIVE = flags.DEFINE_bool(
    "naive", True, "Also time conv models with conv_impl=xla, pool_impl=reduce_window (before)."
)
_NAIVE_BATCH_SIZES = flags.DEFINE_list(
    "naive_batch_sizes", ["128"], "Batch sizes of the naive variants (they are very slow)."
)
_IMAGES = flags.DEFINE_integer("images_per_timing", 8192, "Images per timed chunk.")
_NAIVE_IMAGES = flags.DEFINE_integer("naive_images_per_timing", 512, "Same, naive variants.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds; medians are reported.")
_SPEEDRUN_CONFIGS = flags.DEFINE_list(
    "speedrun_configs",
    list(_DEFAULTS.speedrun_configs),
    "Configs timed to accuracy (whole training runs); empty to skip.",
)
_SEEDS = flags.DEFINE_integer("seeds", 5, "Seeds 0..N-1 of each speedrun config.")
_MATMUL = flags.DEFINE_integer("matmul_size", 2048, "n of the n x n x n calibration matmul.")
_TINY = flags.DEFINE_bool(
    "tiny",
    False,
    "Smoke test: 2% of the data, 1 epoch, batch 32, tiny timings, 2 seeds (unless "
    "--batch_sizes, --naive_batch_sizes or --seeds are given); targets not judged.",
)


_TINY_VALUES = {"batch_sizes": ["32"], "naive_batch_sizes": ["32"], "seeds": 2}


def _tiny_or_given(holder: flags.FlagHolder) -> object:
    """--tiny's value of a flag (one batch of 32, 2 seeds), unless the flag was given."""
    return holder.value if holder.present else _TINY_VALUES[holder.name]


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        platform.initialize()
        value = _tiny_or_given if _TINY.value else lambda holder: holder.value
        options = speed.Options(
            throughput_configs=tuple(_THROUGHPUT_CONFIGS.value),
            batch_sizes=tuple(int(b) for b in value(_BATCH_SIZES)),
            naive=_NAIVE.value,
            naive_batch_sizes=tuple(int(b) for b in value(_NAIVE_BATCH_SIZES)),
            images_per_timing=_IMAGES.value,
            naive_images_per_timing=_NAIVE_IMAGES.value,
            rounds=_ROUNDS.value,
            speedrun_configs=tuple(_SPEEDRUN_CONFIGS.value),
            seeds=value(_SEEDS),
            matmul_size=_MATMUL.value,
            tiny=_TINY.value,
        )
        report = speed.run_benchmark(options)
        out = Path(_OUTPUT_DIR.value)
        out.mkdir(parents=True, exist_ok=True)
        rundir.write_atomic(out / "benchmark.json", rundir.to_json(report, indent=1, default=str))
        rundir.write_atomic(out / "benchmark.md", markdown.markdown(report))
        print(markdown.markdown(report))


if __name__ == "__main__":
    cli.run(main)
