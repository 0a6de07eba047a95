"""The per-device train and eval programs, written once for both `jax.pmap` and `jax.shard_map`.

Each function runs on one device, which holds a full copy of the (small) dataset, and finds its
own share of every global batch from `lax.axis_index(AXIS)`. Gradients are averaged and metrics
summed over the named axis, so the same code runs on 1 device, 8 devices or 8 hosts, and the
global batch sequence depends only on (seed, epoch).
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax import lax

from mnist_jax import input_pipeline

AXIS = "batch"


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any

    @classmethod
    def create(cls, params: Any, tx: optax.GradientTransformation) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a global batch is divided: `num_shards` devices of `local_batch` examples each."""

    global_batch: int
    num_shards: int

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.num_shards


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example cross-entropy against (optionally smoothed) one-hot labels."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def make_train_chunk(
    model: nn.Module,
    tx: optax.GradientTransformation,
    layout: Layout,
    num_train: int,
    num_steps: int,
    label_smoothing: float = 0.0,
    augment_shift: int = 0,
    microbatches: int = 1,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """`num_steps` optimizer steps as one `lax.scan`, starting at step `start` of the epoch.

    The epoch's permutation of the training set comes from `epoch_key` alone; step i takes
    examples [i*B, (i+1)*B) of it and this device the slice at `shard * local_batch`. Dropout keys
    are folded from the global position of each example, so masks do not depend on the device
    count either; so are the random translations of `augment_shift` (0 = none).

    `microbatches` > 1 splits this device's batch into that many equal parts whose gradients are
    averaged: the same update up to float rounding. The parts are independent programs, so
    XLA:CPU runs them concurrently on its threads, which small per-step matrices (the speedrun
    CNN's) otherwise leave idle. It is not a memory saver: the parts are unrolled in one program
    and XLA schedules them as it sees fit. (train.py checks the value before any work; the check
    here keeps other callers from silently dropping the remainder.)
    """
    local = layout.local_batch
    if microbatches < 1 or local % microbatches:
        raise ValueError(
            f"microbatches={microbatches} must be >= 1 and divide the per-device batch {local}"
        )
    part = local // microbatches

    def train_chunk(state, images, labels, epoch_key, dropout_key, start):
        perm = jax.random.permutation(epoch_key, num_train)
        shard_offset = lax.axis_index(AXIS) * local
        positions = shard_offset + jnp.arange(local)  # this device's places in the global batch

        def step(state, i):
            idx = lax.dynamic_slice_in_dim(perm, i * layout.global_batch + shard_offset, local)
            step_key = jax.random.fold_in(dropout_key, state.step)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(step_key, positions)
            shift_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)
            x = input_pipeline.random_shift(images[idx], shift_keys, augment_shift)
            x, y = input_pipeline.normalize(x), labels[idx]

            def loss_fn(params, x, y, keys):
                def apply_one(xi, key):
                    return model.apply(
                        {"params": params}, xi[None], train=True, rngs={"dropout": key}
                    )[0]

                logits = jax.vmap(apply_one)(x, keys)
                return cross_entropy(logits, y, label_smoothing).mean(), logits

            grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
            parts = [
                grad_fn(state.params, *(a[j * part : (j + 1) * part] for a in (x, y, keys)))
                for j in range(microbatches)
            ]
            loss = _mean([loss for (loss, _), _ in parts])
            logits = jnp.concatenate([logits for (_, logits), _ in parts])
            grads = jax.tree.map(lambda *g: _mean(g), *(g for _, g in parts))
            # A per-device gradient, averaged explicitly (parallel.py compiles shard_map with
            # check_vma=False so that no implicit psum is added, exactly as under pmap).
            grads = lax.pmean(grads, AXIS)
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            state = state.replace(
                step=state.step + 1,
                params=optax.apply_updates(state.params, updates),
                opt_state=opt_state,
            )
            return state, (loss * local, jnp.sum(jnp.argmax(logits, -1) == y))

        state, (losses, correct) = lax.scan(step, state, start + jnp.arange(num_steps))
        sums = lax.psum({"loss": losses.sum(), "correct": correct.sum()}, AXIS)
        sums["count"] = jnp.asarray(num_steps * layout.global_batch, jnp.int32)
        return state, sums

    return train_chunk


def _mean(xs: Sequence[jax.Array]) -> jax.Array:
    return xs[0] if len(xs) == 1 else sum(xs[1:], xs[0]) / len(xs)


def make_eval(
    model: nn.Module, layout: Layout, num_batches: int
) -> Callable[..., tuple[dict[str, jax.Array], jax.Array]]:
    """Loss/accuracy sums and logits over a padded split; padding is masked by `num_valid`.

    `images` holds `num_batches * global_batch` examples (the real ones first). Returns the
    summed metrics (identical on every device) and this device's logits, shaped
    (num_batches, local_batch, classes).
    """
    local = layout.local_batch

    def evaluate(params, images, labels, num_valid):
        shard_offset = lax.axis_index(AXIS) * local

        def body(_, b):
            start = b * layout.global_batch + shard_offset
            x = input_pipeline.normalize(lax.dynamic_slice_in_dim(images, start, local))
            y = lax.dynamic_slice_in_dim(labels, start, local)
            mask = (start + jnp.arange(local)) < num_valid
            logits = model.apply({"params": params}, x, train=False)
            loss = jnp.where(mask, cross_entropy(logits, y), 0.0).sum()
            correct = jnp.where(mask, jnp.argmax(logits, -1) == y, False).sum()
            return None, (loss, correct, mask.sum(), logits)

        _, (loss, correct, count, logits) = lax.scan(body, None, jnp.arange(num_batches))
        sums = {"loss": loss.sum(), "correct": correct.sum(), "count": count.sum()}
        return lax.psum(sums, AXIS), logits

    return evaluate
