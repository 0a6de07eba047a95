"""Evaluate trained runs on all 10,000 test images and compare them: comparison.json, report.md
and figures (PNG) in --output_dir.

  python -m mnist_jax.evaluate --workdirs=runs/compare/mlp,runs/compare/cnn \\
      --output_dir=runs/compare

Each --workdirs entry is a run directory written by `python -m mnist_jax.main` (config.json,
metrics.jsonl, checkpoints/). The model is rebuilt from config.json, the best variables (by
validation loss) are restored from the newest checkpoint (verified against its checksums) onto
whatever devices this machine has, and every metric is recomputed from the model's outputs;
summary.json is only cross-checked. Runs whose configs differ only in `seed` are grouped into
one model and reported as mean, standard deviation and a 95% interval, and pairs of models
are compared with a test that counts both seeds and test images as sources of variation.

Beyond the clean test set: --corruptions (robustness under MNIST-C style corruptions, generated
on the device from a fixed seed), --test_sets (extra labelled sets from IDX or .npz files),
--ensemble (each model's seeds averaged) and --quantize=int8 (each run's post-training int8
model next to the float one). The data comes from --data_dir, else the run's config.data.dir,
else $MNIST_DIR, else the download cache. The format of comparison.json is documented in
README.md.

  python -m mnist_jax.evaluate --workdirs=runs/compare/mlp/seed_0,runs/compare/cnn/seed_0 \\
      --output_dir=runs/eval --corruptions=all --quantize=int8 \\
      --test_sets=mine=digits.npz,official=/data/mnist/t10k
"""

from absl import app, flags

from mnist_jax.core import cli, platform
from mnist_jax.evaluation import robustness, runner

_WORKDIRS = flags.DEFINE_list(
    "workdirs", None, "Comma-separated run directories (from python -m mnist_jax.main)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where comparison.json, report.md and the PNG figures are written."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "MNIST directory; '' = the run's config.data.dir, else $MNIST_DIR/cache."
)
_EVAL_BATCH = flags.DEFINE_integer("eval_batch_size", 1000, "Global batch of the test pass.")
_TP_BATCH = flags.DEFINE_integer(
    "throughput_batch_size", 4096, "Batch size of the throughput measurement (one device)."
)
_TP_SECONDS = flags.DEFINE_float(
    "throughput_min_seconds", 1.0, "Least seconds of timed batches behind each throughput figure."
)
_LAT_CALLS = flags.DEFINE_integer("latency_calls", 200, "Batch-1 calls timed for the latency.")
_ECE_BINS = flags.DEFINE_integer("ece_bins", 15, "Equal-width confidence bins for ECE.")
_MISTAKES = flags.DEFINE_integer(
    "num_mistakes", 16, "Most confident mistakes listed and shown per model."
)
_BENCH_CONV = flags.DEFINE_enum(
    "benchmark_conv_impl",
    "xla",
    ["xla", "im2col", "auto"],
    "Convolution formulation timed for throughput/latency and counted for FLOPs. Test metrics "
    "always use the backend's default ('auto').",
)
_CORRUPTIONS = flags.DEFINE_string(
    "corruptions",
    robustness.DEFAULT_FLAG,
    "Corruptions of the test set for the robustness section: 'all', 'none', or a comma-separated "
    "list of names from mnist_jax/data/corruptions.py (each at its documented default severity, "
    "10,000 images each, generated once from a fixed seed). The default is 12 fast ones covering "
    "noise, blur, geometry, intensity, occlusion and fog.",
)
_TEST_SETS = flags.DEFINE_list(
    "test_sets",
    [],
    "Extra labelled test sets, NAME=PATH[,NAME=PATH...]. PATH: an .npz with 'images' (N, 28, 28) "
    "uint8 and 'labels' (N,) in 0..9, or a directory or path prefix of one IDX images file "
    "(*idx3*) and one IDX labels file (*idx1*), gzip-compressed or not.",
)
_ENSEMBLE = flags.DEFINE_boolean(
    "ensemble",
    True,
    "Also evaluate each model with >= 2 runs as an ensemble (its runs' probabilities averaged); "
    "--noensemble skips it.",
)
_QUANTIZE = flags.DEFINE_enum(
    "quantize",
    "none",
    ["none", "int8"],
    "'int8': also evaluate each run's post-training int8 model (per-channel int8 weights, "
    "dynamic int8 activations; accuracy, robustness, size, latency, throughput).",
)
_REUSE = flags.DEFINE_boolean(
    "reuse",
    True,
    "Leave --output_dir as it is when its comparison.json was computed from the same runs "
    "(config, checkpoint, metrics, summary), code, devices and options, without --test_sets; "
    "--noreuse recomputes it.",
)
flags.mark_flags_as_required(["workdirs", "output_dir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        platform.initialize()
        options = runner.Options(
            eval_batch_size=_EVAL_BATCH.value,
            throughput_batch_size=_TP_BATCH.value,
            throughput_min_seconds=_TP_SECONDS.value,
            latency_calls=_LAT_CALLS.value,
            ece_bins=_ECE_BINS.value,
            num_mistakes=_MISTAKES.value,
            data_dir=_DATA_DIR.value,
            benchmark_conv_impl=_BENCH_CONV.value,
            corruptions=_CORRUPTIONS.value,
            test_sets=tuple(_TEST_SETS.value),
            ensemble=_ENSEMBLE.value,
            quantize=_QUANTIZE.value,
            reuse=_REUSE.value,
        )
        runner.evaluate(_WORKDIRS.value, _OUTPUT_DIR.value, options)


if __name__ == "__main__":
    cli.run(main)
