"""The main comparison: the MLP and the CNN over seeds 0-2, then one evaluation of all the runs.

What `./launch.sh compare` runs (`--seeds=K`, `--configs=A,B`, `--quick` and `--config.KEY=VALUE`
become this study's command line). Each run is `<output_dir>/<config>/seed_<s>/`, trained seed by
seed; the evaluation writes comparison.json, report.md and the figures into `<output_dir>`, with
the seed ensembles, the 12 default corruptions and each run's int8 model.

Variant: comma-separated shipped config names in place of `mlp,cnn`, and/or `quick` (or
`reduced`, the name of every study's small variant) for the configs' one-minute smoke variant,
scored under 2 of the 12 corruptions (QUICK_CORRUPTIONS) with a tenth of the speed timing
(evaluation.runner.QUICK_TIMING), e.g. `compare:lenet,cnn,quick`.
"""

from mnist_jax.core import configuration
from mnist_jax.core.errors import ConfigError
from mnist_jax.evaluation import runner as eval_runner
from mnist_jax.studies.study import Study

DEFAULT_CONFIGS = ("mlp", "cnn")
# The smoke test's robustness section: two of the 12 (noise and a geometric one), a sixth of
# the evaluation's work; the full comparison scores all 12.
QUICK_CORRUPTIONS = "gaussian_noise,rotate"


def get_study(variant: str = "") -> Study:
    names = [name for name in variant.split(",") if name]
    quick = bool({"quick", "reduced"} & set(names))
    names = [name for name in names if name not in ("quick", "reduced")] or list(DEFAULT_CONFIGS)
    valid = configuration.shipped_names()
    if bad := [name for name in names if name not in valid]:
        raise ConfigError(f"{bad[0]!r} is not a shipped config; valid: {', '.join(valid)} "
                          "(configs/NAME.py), and 'quick'")  # fmt: skip
    if len(set(names)) != len(names):
        raise ConfigError(f"variant {variant!r} names a config twice")
    return Study(
        bases={name: name + (":quick" if quick else "") for name in names},
        axes=[],
        seeds=[0, 1, 2],
        run_dir="{base}/seed_{seed}",
        evaluate={"quantize": "int8"}
        | ({"corruptions": QUICK_CORRUPTIONS} | eval_runner.QUICK_TIMING if quick else {}),
        name="compare" + ("_quick" if quick else ""),
    )
