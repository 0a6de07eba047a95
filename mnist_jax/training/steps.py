"""The per-device train and eval programs, written once for both `jax.pmap` and `jax.shard_map`.

Each function runs on one device, which holds a full copy of the (small) dataset, and finds its
own share of every global batch from `lax.axis_index(AXIS)`. The model is applied to that whole
share at once; per-example randomness (augmentation, dropout masks) comes from each example's
position in the global batch, and BatchNorm statistics are averaged over AXIS, so the same
global batches, masks and statistics arise on 1 device, 8 devices or 8 hosts.

Gradients are combined in one of two ways (`StepOptions.reduction`):
- 'mean': this device's gradient (the mean over its examples), then `lax.pmean` over AXIS.
  The float sums then run in an order that depends on the device count, so 1 and 8 devices agree
  to rounding (~1e-6 relative per step), not bitwise.
- 'tree': the global batch is cut into `tree_shards` fixed shards; every device runs one
  compiled shard body (`shard_loop`) over each of its shards in turn, and the shard gradients of
  all devices are gathered and summed in one fixed pairwise tree. Every kernel then sees the same
  shapes and every sum runs in the same order on any number of devices, so 1, 2, 4 or 8 devices
  (and N processes) give bitwise-identical results, whatever blocking the CPU's kernels choose
  for those shapes. BatchNorm normalises over each shard ("ghost" batches of
  global_batch / tree_shards). Evaluation uses the same fixed shards (`make_eval`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax

from mnist_jax.data import augment as augment_lib
from mnist_jax.data import corruption_augment, preprocess
from mnist_jax.models import layers
from mnist_jax.training import optim

AXIS = "batch"
REDUCTIONS = ("mean", "tree")


class TrainState(flax.struct.PyTreeNode):
    """Optimizer step, parameters, the model's mutable collections and the optimizer state."""

    step: jax.Array
    params: Any
    model_state: Any  # e.g. {'batch_stats': ...}; {} for models without mutable collections
    opt_state: Any

    @classmethod
    def create(
        cls, params: Any, model_state: Any, tx: optax.GradientTransformation
    ) -> "TrainState":
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=model_state,
            opt_state=tx.init(params),
        )

    @property
    def variables(self) -> dict[str, Any]:
        """What is evaluated, selected and kept as the model: the parameters, or their moving
        average where the optimizer keeps one (`optimizer.ema_decay`), with the collections."""
        averaged = optim.averaged_params(self.opt_state)
        return {"params": self.params if averaged is None else averaged, **self.model_state}


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """Everything a train step computes besides the model and the optimizer."""

    global_batch: int
    num_devices: int
    num_train: int
    label_smoothing: float = 0.0
    augment: augment_lib.AugmentSpec = dataclasses.field(default_factory=augment_lib.AugmentSpec)
    microbatches: int = 1  # 'mean' reduction: parts of each device's batch (CPU concurrency)
    reduction: str = "mean"
    tree_shards: int = 8
    conv_impl: str = "auto"
    pool_impl: str = "auto"

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.num_devices

    @property
    def parts(self) -> int:
        """Separately computed parts of each device's batch."""
        return (
            self.tree_shards // self.num_devices if self.reduction == "tree" else self.microbatches
        )

    def check(self) -> None:
        """Shape errors that would otherwise drop examples silently (train.py checks earlier)."""
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction={self.reduction!r}; valid: {', '.join(REDUCTIONS)}")
        if self.global_batch % self.num_devices:
            raise ValueError(f"batch {self.global_batch} does not split over {self.num_devices}")
        if self.reduction == "tree" and self.tree_shards % self.num_devices:
            raise ValueError(f"tree_shards={self.tree_shards} over {self.num_devices} devices")
        if self.parts < 1 or self.local_batch % self.parts:
            raise ValueError(f"{self.parts} parts do not divide the batch {self.local_batch}")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example cross-entropy against (optionally smoothed) one-hot labels."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def tree_sum(x: jax.Array) -> jax.Array:
    """Sum over the leading axis in a fixed pairwise tree (the same order for any caller)."""
    while x.shape[0] > 1:
        pairs = x[: x.shape[0] // 2 * 2]
        summed = pairs[0::2] + pairs[1::2]
        x = jnp.concatenate([summed, x[-1:]]) if x.shape[0] % 2 else summed
    return x[0]


def shard_loop(fn: Callable[[jax.Array], Any], count: int) -> Any:
    """`fn(j)` for j in 0..count-1, stacked on a new leading axis, as one while loop.

    The loop body is one compiled computation whose shapes do not depend on `count`, so a device
    running 8 shards and a device running 1 execute the same code per shard. The trip count
    passes through an optimization barrier: XLA cannot see it, so it neither unrolls the loop
    nor inlines a single iteration into (and fuses it with) the surrounding program.
    """
    shapes = jax.eval_shape(fn, jnp.int32(0))
    out = jax.tree.map(lambda s: jnp.zeros((count, *s.shape), s.dtype), shapes)

    def body(j: jax.Array, out: Any) -> Any:
        return jax.tree.map(lambda o, v: o.at[j].set(v), out, fn(j))

    return lax.fori_loop(0, lax.optimization_barrier(jnp.int32(count)), body, out)


def _mean_over_parts(stacked: Any) -> Any:
    """Mean over the leading (parts) axis, added up in order."""

    def mean(x: jax.Array) -> jax.Array:
        return x[0] if x.shape[0] == 1 else sum(x[1:], x[0]) / x.shape[0]

    return jax.tree.map(mean, stacked)


def make_train_chunk(
    model: nn.Module, tx: optax.GradientTransformation, opts: StepOptions, num_steps: int
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """`num_steps` optimizer steps as one `lax.scan`, starting at step `start` of the epoch.

    The epoch's permutation of the training set comes from `epoch_key` alone; step i takes
    examples [i*B, (i+1)*B) of it and this device the slice at `device * local_batch`. Each
    example's augmentation key is folded from its global position, and so is its dropout mask
    (layers.Dropout), so neither depends on the device count.

    Returns the new state and this device's per-step, per-part sums: {'loss', 'correct'} of
    shape (num_steps, parts), and 'params_finite' (1,): whether every parameter is finite at the
    end of the chunk. The host adds the sums up (in float64), which keeps device-side metric
    reductions out of the step.

    With the 'mean' reduction, `microbatches` > 1 splits this device's batch into that many parts
    whose gradients are averaged: the same update up to float rounding. The parts are independent
    programs, so XLA:CPU runs them concurrently on its threads, which small per-step matrices
    otherwise leave idle. It is not a memory saver: the parts are unrolled in one program.
    """
    opts.check()
    local, parts = opts.local_batch, opts.parts
    part = local // parts
    tree = opts.reduction == "tree"
    # Tree: each shard is normalised on its own (ghost batches), identically on any device count.
    bn_axis = None if tree else AXIS

    def loss_fn(params, model_state, x, y, positions, rng):
        variables = {"params": params, **model_state}
        with layers.context(
            axis_name=bn_axis, positions=positions, conv_impl=opts.conv_impl,
            pool_impl=opts.pool_impl, deterministic=tree, differentiated=True,
        ):  # fmt: skip
            if model_state:
                logits, new_state = model.apply(
                    variables, x, train=True, rngs={"dropout": rng}, mutable=list(model_state)
                )
            else:
                logits = model.apply(variables, x, train=True, rngs={"dropout": rng})
                new_state = model_state
        losses = cross_entropy(logits, y, opts.label_smoothing)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return losses.mean(), (losses.sum(), correct, new_state)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_chunk(state, images, labels, epoch_key, dropout_key, start):
        perm = jax.random.permutation(epoch_key, opts.num_train)
        offset = lax.axis_index(AXIS) * local

        def part_inputs(i, j, augment_key):
            """Part j of this device's share of step i: images, labels, global positions."""
            pos = offset + j * part + jnp.arange(part)
            idx = lax.dynamic_slice_in_dim(perm, i * opts.global_batch + pos[0], part)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(augment_key, pos)
            x = augment_lib.augment(images[idx], keys, opts.augment)
            x = preprocess.normalize(corruption_augment.augment(x, keys, opts.augment))
            return x, labels[idx], pos

        def step(state, i):
            step_key = jax.random.fold_in(dropout_key, state.step)
            augment_key, model_key = jax.random.split(step_key)

            def part_grads(j):
                x, y, pos = part_inputs(i, j, augment_key)
                (_, (loss_sum, correct, new_state)), grads = grad_fn(
                    state.params, state.model_state, x, y, pos, model_key
                )
                return {"loss": loss_sum, "correct": correct, "grads": grads, "state": new_state}

            if tree:  # one shard body, looped: the same code on any device count
                results = shard_loop(part_grads, parts)
            else:  # unrolled parts: independent programs that XLA:CPU runs concurrently
                results = jax.tree.map(lambda *v: jnp.stack(v), *map(part_grads, range(parts)))
            loss_sums, correct = results["loss"], results["correct"]
            if tree:
                grads = _tree_mean_over_shards(results["grads"], opts.tree_shards)
                model_state = _tree_mean_over_shards(results["state"], opts.tree_shards)
            else:
                # A per-device gradient, averaged explicitly (parallel.py compiles shard_map
                # with check_vma=False so that no implicit psum is added, exactly as under pmap).
                grads = lax.pmean(_mean_over_parts(results["grads"]), AXIS)
                # BatchNorm statistics are already averaged over AXIS (one part: trainer.py).
                model_state = jax.tree.map(lambda v: v[0], results["state"])
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            state = state.replace(
                step=state.step + 1,
                params=optax.apply_updates(state.params, updates),
                model_state=model_state,
                opt_state=opt_state,
            )
            return state, {"loss": loss_sums, "correct": correct}

        state, per_step = lax.scan(step, state, start + jnp.arange(num_steps))
        leaves = jax.tree.leaves(state.params)
        per_step["params_finite"] = jnp.stack([jnp.isfinite(x).all() for x in leaves]).all()[None]
        return state, per_step

    return train_chunk


def _tree_mean_over_shards(stacked: Any, num_shards: int) -> Any:
    """The mean over all shards of every device, summed in one fixed tree: the device's parts are
    gathered from every device (in global shard order) and reduced identically everywhere."""
    gathered = lax.all_gather(stacked, AXIS, axis=0, tiled=True)
    return jax.tree.map(lambda x: tree_sum(x) / num_shards, gathered)


def make_eval(
    model: nn.Module, global_batch: int, num_devices: int, num_batches: int,
    conv_impl: str = "auto", pool_impl: str = "auto", shards: int | None = None,
) -> Callable[..., jax.Array]:  # fmt: skip
    """This device's logits over a padded split, shaped (num_batches, local_batch, classes).

    `images` holds `num_batches * global_batch` examples (the real ones first). The model runs
    with train=False: running averages of any batch statistics, no dropout. Metrics are computed
    on the host from the logits (evaluator.py), in one order for any device count.

    `shards` (the 'tree' reduction's): every global batch is cut into that many fixed shards and
    each device applies the model to its shards one at a time (`shard_loop`), so the logits are
    the same bits on any device count. None: each device applies it to its whole share at once.
    """
    local = global_batch // num_devices
    parts = 1 if shards is None else shards // num_devices
    size = local // parts

    def evaluate(variables, images):
        offset = lax.axis_index(AXIS) * local

        def logits(start):
            x = preprocess.normalize(lax.dynamic_slice_in_dim(images, start, size))
            with layers.context(conv_impl=conv_impl, pool_impl=pool_impl):
                return model.apply(variables, x, train=False)

        def body(_, b):
            start = b * global_batch + offset
            if shards is None:
                return None, logits(start)
            out = shard_loop(lambda j: logits(start + j * size), parts)
            return None, out.reshape(local, *out.shape[2:])

        return lax.scan(body, None, jnp.arange(num_batches))[1]

    return evaluate
