"""The model contract, the registry of model classes, and the one rule that builds a model.

The contract (README, "Add a model"):
- A model is a Flax `nn.Module` class applied to a whole batch of normalised images
  `(B, 28, 28, 1)` as `model(x, train=...)`, returning float32 logits `(B, 10)`.
- It may keep mutable collections besides 'params' (BatchNorm's 'batch_stats'): the train state
  carries them, checkpoints keep them, evaluation applies the model with them and `train=False`.
- It uses `layers.Dropout` / `layers.BatchNorm` / `layers.Conv` where it wants dropout, batch
  statistics or convolutions, so that results do not depend on the device count and the
  formulation suits the backend; it never mentions devices, data files or formulations.
- It is registered under a name with `@register("name")` and built from `config.<name>` by one
  rule: `Class(**config.<name>)` (plus `dtype=config.dtype` when the class has a `dtype` field).
  It checks its own fields in `__post_init__`, raising `ConfigError("field=value ...")`.
- Or it is a Flax NNX `nnx.Module` class with the same call and keyword-only constructor
  arguments (plus `rngs`), using nnx_layers.py's layers and checking its arguments in
  `__init__`. `create_model` wraps it in Flax's Linen bridge (`nnx.bridge.ToLinen`), here and
  nowhere else: everything downstream (training, checkpoints, evaluation, export) sees a Linen
  module whose variables hold the NNX module's state ('params', and its BatchStats as
  'batch_stats').
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx
from flax.core import FrozenDict

from mnist_jax.core.checks import check_choice, suggest
from mnist_jax.core.errors import ConfigError

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Collections a model may create that the trainer does not keep (Flax's own diagnostics).
_IGNORED_COLLECTIONS = frozenset({"intermediates"})

MODELS: dict[str, type[nn.Module] | type[nnx.Module]] = {}
M = TypeVar("M", bound=type[nn.Module] | type[nnx.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: `config.model = name` builds this class from `config.<name>`."""

    def add(cls: M) -> M:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered to {MODELS[name]}")
        MODELS[name] = cls
        return cls

    return add


def choice(field: str, value: Any, valid: Mapping[str, Any] | Sequence[str]) -> Any:
    """`valid[value]` (or `value` for a list of names); a ConfigError listing the valid names."""
    check_choice(field, value, sorted(valid))
    return valid[value] if isinstance(valid, Mapping) else value


def _fields(cls: type) -> set[str]:
    """The constructor arguments a config section may set."""
    if issubclass(cls, nnx.Module):
        params = inspect.signature(cls.__init__).parameters
        return {p for p in params if p not in ("self", "rngs")}
    return {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}


def _kwargs(name: str, cls: type, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The constructor arguments of `cls` from `config.<name>` (lists become tuples)."""
    fields = _fields(cls)
    section = config.get(name)
    if section is None:
        section = ml_collections.ConfigDict()
    elif not isinstance(section, ml_collections.ConfigDict):
        raise ConfigError(f"config.{name} must be a section of {cls.__name__}'s fields")
    kwargs = {}
    for key, value in section.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {name}.{key}{suggest(key, fields)}; {cls.__name__} has: "
                f"{', '.join(sorted(fields - {'dtype'}))}"
            )
        kwargs[key] = tuple(value) if isinstance(value, list | tuple) else value
    if "dtype" in fields:
        kwargs["dtype"] = choice("dtype", config.get("dtype", "float32"), DTYPES)
    return kwargs


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
    """The module named by `config.model`, built from `config.<model>`; every field checked."""
    name = config.model
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigError(
            f"unknown model {name!r}; valid: {', '.join(sorted(MODELS))}"
            + (suggest(name, MODELS) if isinstance(name, str) else "")
        )
    kwargs = _kwargs(name, cls, config)
    try:
        if issubclass(cls, nnx.Module):
            nnx.eval_shape(lambda: cls(**kwargs, rngs=nnx.Rngs(0)))  # checks, no arrays made
            return nnx.bridge.ToLinen(cls, kwargs=FrozenDict(kwargs), metadata_fn=None)
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{name}.{e}") from None
    except TypeError as e:  # a field of the wrong kind that the class does not check itself
        raise ConfigError(f"config.{name} does not fit {cls.__name__}: {e}") from None


def init_variables(model: nn.Module, rng: jax.Array) -> dict[str, Any]:
    """All variables ('params' and any model state) for a batch of MNIST-shaped inputs.

    Compiled as one program: op by op, a fresh process spent 1-3 s dispatching the initialisers
    (measured: the same bits for every shipped config, natively and under AVX2)."""

    def init(rng: jax.Array) -> Any:
        x = jnp.zeros((1, *INPUT_SHAPE), jnp.float32)
        return model.init({"params": rng, "dropout": rng}, x, train=False)

    variables = jax.jit(init)(rng)
    return {k: v for k, v in dict(variables).items() if k not in _IGNORED_COLLECTIONS}


def split_variables(variables: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(params, model state): what the optimizer updates, and the mutable rest."""
    return variables["params"], {k: v for k, v in variables.items() if k != "params"}


def apply_any(model: nn.Module, variables: Any, x: jax.Array, train: bool) -> Any:
    """`model.apply` for any model, with a fixed dropout key and its non-parameter collections
    mutable: for start-up checks that trace it on shapes; (logits, state) when it keeps state."""
    _, state = split_variables(variables)
    rngs = {"dropout": jax.random.key(0)}
    return model.apply(variables, x, train=train, rngs=rngs, mutable=list(state) or False)


def check_contract(model: nn.Module, name: str) -> Any:
    """Fails at start-up, naming the model, when it breaks the contract (shapes only, no FLOPs);
    returns its variables' shapes (jax.ShapeDtypeStruct), for what else start-up checks."""
    x = jax.ShapeDtypeStruct((2, *INPUT_SHAPE), jnp.float32)
    key = jax.random.key(0)
    try:
        variables = jax.eval_shape(lambda x: init_variables(model, key), x)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            f"model {name!r} cannot be initialised on (B, 28, 28, 1) inputs: {e}"
        ) from None
    if "params" not in variables:
        raise ConfigError(f"model {name!r} has no parameters")
    state = len(variables) > 1  # collections besides 'params' (batch_stats)
    for train in (True, False):
        out = jax.eval_shape(lambda v, x, t=train: apply_any(model, v, x, t), variables, x)
        logits = out[0] if state else out
        if getattr(logits, "shape", None) != (2, NUM_CLASSES):
            raise ConfigError(
                f"model {name!r} returns {getattr(logits, 'shape', type(logits).__name__)} for "
                f"a batch of 2 (train={train}); the contract is logits of shape (batch, 10)"
            )
    return variables


def uses_convolutions(model: nn.Module) -> bool:
    """Whether the model has a convolution kernel (a 4-D parameter): what the benchmark's
    'naive' formulation changes. Shapes only, no computation."""
    variables = jax.eval_shape(lambda: init_variables(model, jax.random.key(0)))
    return any(leaf.ndim == 4 for leaf in jax.tree.leaves(variables["params"]))


def count_params(params: Any) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
