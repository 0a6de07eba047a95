"""Ablation studies as data: what an experiments/ file defines, and the trials it expands to.

A study file is plain Python with `get_study(variant: str) -> Study` (the part of
`--study=experiments/x.py:variant` after the colon, '' if none):

    Study(
        bases={"mlp": "configs/mlp.py", "cnn": "configs/cnn.py"},   # name -> config file
        axes=[{"data.train_fraction": [0.01, 0.1, 1.0]}],           # product of groups
        seeds=[0, 1, 2],
        overrides={"num_epochs": 5},                                 # fixed for every trial
    )

Each element of `axes` is a group: a dict is the product of its keys' values, `Zip({...})` pairs
them up element by element, and the groups themselves are crossed. An axis key is a config key
(`optimizer.learning_rate`), or a name that only `derived` entries read, e.g. `width` and `depth`
turned into `mlp.hidden_sizes`. The trials are bases x axis points x seeds; everything is checked
against the base configs (`validate`) before anything runs.
"""

import dataclasses
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections

from mnist_jax.configs import default
from mnist_jax.core import configuration
from mnist_jax.core.checks import suggest
from mnist_jax.core.errors import ConfigError
from mnist_jax.training import rundir, validation

MAX_NAME = 120  # characters of a trial directory name before it is shortened with a hash
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


class Zip(dict):
    """An axis group whose keys change together: the i-th values of every key form one point."""


@dataclasses.dataclass(frozen=True)
class Derived:
    """Config key `key` set to `fn(*values of inputs)` for every trial, e.g. hidden sizes from
    `width` and `depth` axes, or one `dropout` axis feeding both `mlp.dropout` and `cnn.dropout`.
    """

    key: str
    inputs: tuple[str, ...]
    fn: Callable[..., Any]


def alias(name: str, *keys: str) -> list[Derived]:
    """One axis `name` that sets each of `keys` to its value."""
    return [Derived(key, (name,), lambda v: v) for key in keys]


@dataclasses.dataclass(frozen=True)
class Study:
    bases: Mapping[str, str]
    axes: Sequence[Mapping[str, Sequence[Any]]]
    seeds: Sequence[int] = (0,)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    derived: Sequence[Derived] = ()
    metric: str = "test_accuracy"  # the summary.json value the figures plot
    name: str = ""  # filled from the file name when empty
    description: str = ""  # filled from the module docstring when empty
    # Each trial's directory under the output directory, formatted with {base}, {seed} and
    # {name} (the trial's overrides); e.g. "{base}/seed_{seed}".
    run_dir: str = "trials/{name}"
    # Options of one evaluation of every trial (evaluation.runner.Options fields, e.g.
    # {"quantize": "int8"}), written to the output directory in place of the grid's report.md;
    # None: no evaluation.
    evaluate: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str  # its overrides as a directory name
    run_dir: str  # its run directory, relative to the study's output directory
    setting: str  # the name without the seed: trials of one setting are averaged
    base: str
    point: dict[str, Any]  # axis key -> value
    seed: int
    config: ml_collections.ConfigDict


def _has_key(config: ml_collections.ConfigDict, key: str) -> bool:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return not isinstance(node, ml_collections.ConfigDict)


def _set(config: ml_collections.ConfigDict, key: str, value: Any, where: str) -> None:
    try:
        default.set_key(config, key, value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {key}={value!r} does not fit the config ({e})") from None


def _points(axes: Sequence[Mapping[str, Sequence[Any]]]) -> list[dict[str, Any]]:
    """Every combination of the axis groups, in order; each group checked for empty values."""
    groups = []
    for group in axes:
        if not group:
            raise ConfigError("study has an empty axis group {}; remove it")
        for key, values in group.items():
            if isinstance(values, str) or not isinstance(values, Sequence):
                raise ConfigError(f"axis {key!r}: values must be a list, got {values!r}")
            if not values:
                raise ConfigError(f"axis {key!r} is empty; give it at least one value")
        keys = list(group)
        if isinstance(group, Zip):
            lengths = {k: len(v) for k, v in group.items()}
            if len(set(lengths.values())) > 1:
                raise ConfigError(f"zipped axes have different lengths: {lengths}")
            rows = list(zip(*group.values(), strict=True))
        else:
            rows = list(itertools.product(*group.values()))
        groups.append([dict(zip(keys, row, strict=True)) for row in rows])
    return [
        {k: v for part in combo for k, v in part.items()} for combo in itertools.product(*groups)
    ]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(format_value(v) for v in value) or "none"
    return str(value)


def _dir_name(parts: list[tuple[str, Any]]) -> str:
    name = ",".join(f"{k}={format_value(v)}" for k, v in parts)
    name = _UNSAFE.sub("_", name)
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 11]}~{digest}"
    return name


def check_keys(
    base_config: ml_collections.ConfigDict, keys: Sequence[str], derived: Sequence[Derived],
    where: str,
) -> None:  # fmt: skip
    """Every key a config key of the base (or an input that only `derived` entries read)."""
    inputs = {i for d in derived for i in d.inputs}
    for key in [*keys, *(d.key for d in derived)]:
        if not _has_key(base_config, key) and key not in inputs:
            leaves = rundir.flatten(base_config.to_dict())
            raise ConfigError(
                f"{where}: unknown config key {key!r}{suggest(key, leaves)}; every key is "
                "listed in configs/default.py"
            )


def configure(
    base_config: ml_collections.ConfigDict, overrides: Mapping[str, Any], point: Mapping[str, Any],
    derived: Sequence[Derived], where: str,
) -> ml_collections.ConfigDict:  # fmt: skip
    """A copy of `base_config` with the overrides, the point and the derived keys set, validated
    as training would validate it."""
    inputs = {i for d in derived for i in d.inputs}
    config = base_config.copy_and_resolve_references()
    for key, value in overrides.items():
        _set(config, key, value, where)
    for key, value in point.items():
        if key not in inputs or _has_key(config, key):
            _set(config, key, value, where)
    for d in derived:
        _set(config, d.key, d.fn(*(point[i] for i in d.inputs)), where)
    validation.validate(config)  # every value, as training would check it
    return config


def expand(study: Study) -> list[Trial]:
    """Checks the study against its base configs and returns its trials; runs nothing.

    Every key is looked up and every value assigned (type-checked by ml_collections) and every
    trial's model built, so a typo fails here, naming the key, not an hour into the sweep.
    """
    if not study.bases:
        raise ConfigError("study has no bases; give at least one, e.g. {'mlp': 'configs/mlp.py'}")
    seeds = list(study.seeds)
    if not seeds:
        raise ConfigError("study has no seeds; give at least one, e.g. seeds=[0]")
    if len(set(seeds)) != len(seeds) or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds
    ):
        raise ConfigError(f"seeds must be distinct non-negative integers, got {seeds}")
    keys = [k for group in study.axes for k in group]
    if dupes := sorted({k for k in keys if keys.count(k) > 1}):
        raise ConfigError(f"axis {dupes[0]!r} appears in more than one group")
    if "seed" in keys or "seed" in study.overrides:
        raise ConfigError("'seed' is set by the study's seeds, not by an axis or override")
    derived_inputs = {i for d in study.derived for i in d.inputs}
    if missing := [i for i in sorted(derived_inputs) if i not in keys]:
        raise ConfigError(f"derived value reads {missing[0]!r}, which is not an axis")
    points = _points(study.axes)

    settings = []  # (base, point, parts, config) in the order bases x points
    for base, path in study.bases.items():
        base_config = configuration.load(path)
        where = f"study {study.name!r}, base {base!r} ({path})"
        check_keys(base_config, [*study.overrides, *keys], study.derived, where)
        for point in points:
            config = configure(base_config, study.overrides, point, study.derived, where)
            parts = ([("base", base)] if len(study.bases) > 1 else []) + list(point.items())
            settings.append((base, point, parts, config))
    trials = []
    for seed in seeds:  # seed by seed: an interrupted study already holds every setting
        for base, point, parts, config in settings:
            trial_config = config.copy_and_resolve_references()
            trial_config.seed = seed
            name = _dir_name([*parts, ("seed", seed)])
            trials.append(
                Trial(
                    name=name,
                    run_dir=_run_dir(study.run_dir, name=name, base=base, seed=seed),
                    setting=_dir_name(parts) or "base",
                    base=base,
                    point=dict(point),
                    seed=seed,
                    config=trial_config,
                )
            )
    dirs = [t.run_dir for t in trials]
    if len(set(dirs)) != len(dirs):
        raise ConfigError("two trials would share a run directory; make the axis values distinct")
    return trials


def _run_dir(template: str, **fields: Any) -> str:
    try:
        path = template.format(**fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(
            f"run_dir={template!r} cannot be formatted ({e}); it may use {{base}}, {{seed}} and "
            "{name}"
        ) from None
    if not path or Path(path).is_absolute() or ".." in Path(path).parts:
        raise ConfigError(f"run_dir={template!r} must give a relative path inside the study")
    return path


def axis_keys(study: Study) -> list[str]:
    return [k for group in study.axes for k in group]


def plot_axes(study: Study) -> dict[str, list[str]]:
    """Axis -> the axes that vary independently of it (one figure per entry).

    A zipped group moves together, so only its first key gets a figure, and its other keys do not
    split that figure into separate lines.
    """
    result = {}
    for i, group in enumerate(study.axes):
        outside = [k for j, g in enumerate(study.axes) if j != i for k in g]
        keys = list(group)[:1] if isinstance(group, Zip) else list(group)
        for key in keys:
            inside = [] if isinstance(group, Zip) else [k for k in group if k != key]
            result[key] = inside + outside
    return result


def is_numeric_axis(values: Sequence[Any]) -> bool:
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def check_variant(spec_variant: str, valid: Sequence[str]) -> str:
    """For study files: the variant after ':' must be one they define ('' = the full study)."""
    if spec_variant not in valid:
        names = ", ".join(repr(v) for v in valid)
        raise ConfigError(f"unknown study variant {spec_variant!r}; valid: {names}")
    return spec_variant
