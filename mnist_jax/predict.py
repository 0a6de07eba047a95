"""Classify digit images (PNG, JPEG; any size, grayscale or colour, either polarity) with one
or more trained runs; prints each model's top-3 classes with probabilities, side by side.

  python -m mnist_jax.predict --workdirs=runs/compare/mlp/seed_0,runs/compare/cnn/seed_0 \\
      digit.png photo.jpg

Each image is brought to MNIST's form first, the way MNIST's digits were made: grayscale, white
digit on black (inverted if the background is light), the digit's bounding box scaled into 20x20
and centred by its centre of mass in 28x28 (mnist_jax/data/images.py). An unreadable file or an
image with no digit (no contrast) stops it with a one-line error naming the file (exit status 1).
"""

from absl import flags

from mnist_jax.core import cli, platform

_WORKDIRS = flags.DEFINE_list(
    "workdirs", None, "Comma-separated run directories (from python -m mnist_jax.main)."
)
_TOP = flags.DEFINE_integer("top", 3, "Classes shown per model and image, most probable first.")
flags.mark_flags_as_required(["workdirs"])


def main(argv: list[str]) -> None:
    with platform.user_errors_exit():
        from mnist_jax.core import logs
        from mnist_jax.serving import classify

        logs.log_to_stderr("warning")  # the table is the output; loading needs no commentary
        print(classify.predict_files(_WORKDIRS.value, argv[1:], _TOP.value), flush=True)


if __name__ == "__main__":
    cli.run(main)
