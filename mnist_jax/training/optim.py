"""Optax optimizers and learning-rate schedules named in the config."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from mnist_jax.core.checks import check_choice, check_range
from mnist_jax.core.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "onecycle")


def create_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
    """Learning rate per optimizer step; decays reach their end at the last step of the run."""
    c, lr = config.schedule, config.optimizer.learning_rate
    total = max(config.num_epochs * steps_per_epoch, 1)
    if c.name == "constant":
        return optax.constant_schedule(lr)
    if c.name == "cosine":
        return optax.cosine_decay_schedule(lr, total, alpha=c.final_fraction)
    if c.name == "warmup_cosine":
        warmup = min(int(c.warmup_epochs * steps_per_epoch), total - 1)
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup, total, end_value=lr * c.final_fraction
        )
    if c.name == "onecycle":
        return optax.cosine_onecycle_schedule(total, lr, pct_start=c.onecycle_pct_start)
    raise ConfigError(f"unknown schedule.name {c.name!r}; valid: {', '.join(SCHEDULES)}")


def validate(config: ml_collections.ConfigDict) -> None:
    """The optimizer and schedule keys (names and ranges), before any work."""
    c, s = config.optimizer, config.schedule
    check_choice("optimizer.name", c.name, OPTIMIZERS)
    check_range("optimizer.learning_rate", c.learning_rate, 0, lo_open=True)
    check_range("optimizer.momentum", c.momentum, 0, 1, hi_open=True)
    check_range("optimizer.b1", c.b1, 0, 1, hi_open=True)
    check_range("optimizer.b2", c.b2, 0, 1, hi_open=True)
    check_range("optimizer.weight_decay", c.weight_decay, 0)
    check_range("optimizer.l1", c.l1, 0)
    check_range("optimizer.grad_clip_norm", c.grad_clip_norm, 0)
    check_range("optimizer.ema_decay", c.get("ema_decay", 0.0), 0, 1, hi_open=True)
    check_choice("schedule.name", s.name, SCHEDULES)
    check_range("schedule.warmup_epochs", s.warmup_epochs, 0)
    check_range("schedule.final_fraction", s.final_fraction, 0, 1)
    check_range("schedule.onecycle_pct_start", s.onecycle_pct_start, 0, 1, lo_open=True,
                hi_open=True)  # fmt: skip


def _decay_mask(params):
    """Decay weight matrices and kernels, not biases: the usual convention for L2 and AdamW."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def add_l1_subgradient(l1: float, mask: Any = _decay_mask) -> optax.GradientTransformation:
    """Adds `l1 * sign(w)` to the gradient of every masked parameter: a subgradient of the
    penalty `l1 * sum(|w|)` (0 at w = 0), i.e. L1 regularisation coupled to the loss like the
    L2 of `add_decayed_weights`. Through Adam it is normalised with the data gradient, so weights
    shrink towards 0 and hover there (within about a step size) rather than landing on exact
    zeros, which would need a proximal (soft-thresholding) step.
    """

    def update(updates: Any, state: optax.EmptyState, params: Any = None) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("add_l1_subgradient needs the parameters: tx.update(g, s, params)")
        return jax.tree.map(
            lambda g, w: g + l1 * jnp.sign(w).astype(g.dtype), updates, params
        ), state

    return optax.masked(optax.GradientTransformation(lambda _: optax.EmptyState(), update), mask)


class ParamsEmaState(NamedTuple):
    """The optimizer steps taken and the moving average of the parameters after each."""

    count: jax.Array
    ema: Any


def track_params_ema(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the parameters in the optimizer state (Polyak
    averaging); the updates pass through unchanged, so it must be the last link of a chain.

    The average of the weights along the last few thousand steps is often a better model than
    the last weights, at the cost of one extra copy of them. The decay warms up as
    min(decay, (1 + t) / (10 + t)) at step t, so that the random initialisation is forgotten
    within the first steps. Kept in the optimizer state, it is checkpointed and resumed exactly.
    """

    def init(params: Any) -> ParamsEmaState:
        return ParamsEmaState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.asarray, params))

    def update(updates: Any, state: ParamsEmaState, params: Any = None) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("track_params_ema needs the parameters: tx.update(g, s, params)")
        t = state.count.astype(jnp.float32)
        d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
        new = optax.apply_updates(params, updates)
        ema = optax.incremental_update(new, state.ema, step_size=1.0 - d)
        return updates, ParamsEmaState(state.count + 1, ema)

    return optax.GradientTransformation(init, update)


def averaged_params(opt_state: Any) -> Any | None:
    """The moving average kept by `track_params_ema` in `opt_state`, or None without one."""
    found = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, ParamsEmaState))
    found = [s for s in found if isinstance(s, ParamsEmaState)]
    return found[0].ema if found else None


def create_optimizer(
    config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    c = config.optimizer
    if c.name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer.name {c.name!r}; valid: {', '.join(OPTIMIZERS)}")
    if c.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate must be > 0, got {c.learning_rate}")
    if c.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay must be >= 0, got {c.weight_decay}")
    chain = []
    if c.grad_clip_norm > 0:
        chain.append(optax.clip_by_global_norm(c.grad_clip_norm))
    if c.l1 > 0:  # after clipping: the penalty is not scaled by the clip
        chain.append(add_l1_subgradient(c.l1))
    if c.name == "adamw":
        chain.append(
            optax.adamw(schedule, c.b1, c.b2, weight_decay=c.weight_decay, mask=_decay_mask)
        )
    else:
        if c.weight_decay > 0:  # classic L2: add wd * w to the gradient
            chain.append(optax.add_decayed_weights(c.weight_decay, mask=_decay_mask))
        if c.name == "adam":
            chain.append(optax.adam(schedule, c.b1, c.b2))
        else:
            chain.append(optax.sgd(schedule, c.momentum or None, nesterov=c.nesterov))
    if c.get("ema_decay", 0.0) > 0:  # last: it averages the parameters after the update
        chain.append(track_params_ema(c.ema_decay))
    return optax.chain(*chain)
