"""An MLP trained on MNIST with nothing but jax.numpy: backpropagation and SGD written out.

  python -m mnist_jax.scratch                      # 784-256-10, 10 epochs, ~98% test accuracy
  python -m mnist_jax.scratch --hidden=64 --epochs=3

What it shows: a network is two matrix products and a ReLU; its gradient is three more matrix
products, derived below by the chain rule; training is "subtract learning rate x gradient" in
a loop. `backward` is checked against jax.grad in tests/test_scratch.py.

What the framework version (python -m mnist_jax.main) adds on top: automatic differentiation
(any model, not one hand-derived one), Flax modules and a model registry (MLP, CNN, LeNet-5),
Optax optimizers and schedules, a validation split and augmentation, data parallelism over
devices and hosts (pmap / shard_map), checkpoints and exact resumption, and the evaluation and
comparison tools. Nothing here is used by the rest of the package.
"""

import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from mnist_jax.core.errors import ConfigError, UserError
from mnist_jax.data import Split, load_mnist

Params = dict[str, jax.Array]  # w1 (784, H), b1 (H,), w2 (H, 10), b2 (10,)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # pixel statistics of the training set, on [0, 1]


def init_params(key: jax.Array, hidden: int) -> Params:
    """He initialisation (variance 2 / fan_in) keeps ReLU activations at a constant scale."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (784, hidden)) * math.sqrt(2 / 784),
        "b1": jnp.zeros(hidden),
        "w2": jax.random.normal(k2, (hidden, 10)) * math.sqrt(1 / hidden),
        "b2": jnp.zeros(10),
    }


def preprocess(images: jax.Array) -> jax.Array:
    """uint8 (B, 28, 28) -> float32 (B, 784), standardised: pixels of mean 0 and std 1."""
    x = images.reshape(images.shape[0], 784).astype(jnp.float32) / 255.0
    return (x - MNIST_MEAN) / MNIST_STD


def forward(params: Params, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """logits = relu(x W1 + b1) W2 + b2, and the intermediates `backward` needs."""
    z1 = x @ params["w1"] + params["b1"]  # (B, H) pre-activations
    h = jnp.maximum(z1, 0.0)  # (B, H) hidden activations
    logits = h @ params["w2"] + params["b2"]  # (B, 10)
    return logits, (x, z1, h)


def loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy, -log softmax(logits)[label], with the max subtracted for stability."""
    log_probs = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))


def backward(
    params: Params, cache: tuple[jax.Array, ...], logits: jax.Array, labels: jax.Array
) -> Params:
    """d loss / d params by the chain rule, from the output back to the input; B = batch size.

    Cross-entropy of a softmax:  dL/dlogits = (softmax(logits) - onehot(labels)) / B
    logits = h W2 + b2:          dL/dW2 = h^T dlogits,  dL/db2 = sum over the batch of dlogits,
                                 dL/dh  = dlogits W2^T
    h = relu(z1):                dL/dz1 = dL/dh * [z1 > 0]  (the ReLU passes gradient or not)
    z1 = x W1 + b1:              dL/dW1 = x^T dz1,      dL/db1 = sum over the batch of dz1
    """
    x, z1, h = cache
    dlogits = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, 10)) / logits.shape[0]
    dh = dlogits @ params["w2"].T
    dz1 = dh * (z1 > 0)
    return {
        "w1": x.T @ dz1,
        "b1": dz1.sum(axis=0),
        "w2": h.T @ dlogits,
        "b2": dlogits.sum(axis=0),
    }


def accuracy(params: Params, images: jax.Array, labels: jax.Array) -> float:
    """Fraction right over all the given images (one batch: 10,000 x 784 fits easily)."""
    logits, _ = forward(params, preprocess(images))
    return float(jnp.mean(jnp.argmax(logits, axis=1) == labels))


def train(
    train: Split,
    test: Split,
    hidden: int = 256,
    epochs: int = 10,
    batch_size: int = 128,
    learning_rate: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
) -> dict[str, Any]:
    """SGD with momentum and a cosine learning-rate decay; returns params, history, accuracy.

    Each epoch is one compiled `lax.scan` over shuffled batches of the device-resident uint8
    images (the last partial batch of an epoch is dropped); the test set is scored in full.
    """
    for name, value, ok, valid in (
        ("hidden", hidden, hidden >= 1, ">= 1"),
        ("epochs", epochs, epochs >= 1, ">= 1"),
        ("batch_size", batch_size, 1 <= batch_size <= len(train), f"1 to {len(train)} images"),
        ("learning_rate", learning_rate, learning_rate > 0, "> 0"),
        ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
    ):
        if not ok:
            raise ConfigError(f"{name}={value} is invalid; valid: {valid}")
    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    test_images, test_labels = jnp.asarray(test.images), jnp.asarray(test.labels)
    steps_per_epoch = len(train) // batch_size
    total_steps = steps_per_epoch * epochs

    def step(carry, batch_indices):
        params, velocity, t = carry
        x, y = preprocess(images[batch_indices]), labels[batch_indices]
        logits, cache = forward(params, x)
        grads = backward(params, cache, logits, y)
        lr = learning_rate * 0.5 * (1 + jnp.cos(jnp.pi * t / total_steps))
        velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
        return (params, velocity, t + 1), loss(logits, y)

    @jax.jit
    def run_epoch(params, velocity, t, key):
        order = jax.random.permutation(key, len(train))[: steps_per_epoch * batch_size]
        (params, velocity, t), losses = jax.lax.scan(
            step, (params, velocity, t), order.reshape(steps_per_epoch, batch_size)
        )
        return params, velocity, t, losses.mean()

    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    params = init_params(init_key, hidden)
    velocity = jax.tree.map(jnp.zeros_like, params)
    t, history, start = jnp.zeros((), jnp.int32), [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        params, velocity, t, epoch_loss = run_epoch(
            params, velocity, t, jax.random.fold_in(shuffle_key, epoch)
        )
        test_accuracy = accuracy(params, test_images, test_labels)
        seconds = time.perf_counter() - start
        history.append(
            {"epoch": epoch, "loss": float(epoch_loss), "test_accuracy": test_accuracy,
             "seconds": seconds}
        )  # fmt: skip
        logging.info(
            "epoch %d: loss %.4f, test accuracy %.2f%%, %.1f s",
            epoch, float(epoch_loss), 100 * test_accuracy, seconds,
        )  # fmt: skip
    return {
        "params": params,
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "test_count": len(test),
        "seconds": history[-1]["seconds"],
    }


_HIDDEN = flags.DEFINE_integer("hidden", 256, "Units in the hidden layer (784 -> hidden -> 10).")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Passes over the 60,000 training images.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Images per SGD step.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", 0.05, "Initial SGD step size; decays to 0 along a cosine over the run."
)
_MOMENTUM = flags.DEFINE_float("momentum", 0.9, "SGD momentum in [0, 1); 0 is plain SGD.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the initial weights and the batch order.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "Directory of the four MNIST .gz files; empty: $MNIST_DIR, else download."
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        train_split, test_split = load_mnist(_DATA_DIR.value)
        result = train(
            train_split, test_split, _HIDDEN.value, _EPOCHS.value, _BATCH_SIZE.value,
            _LEARNING_RATE.value, _MOMENTUM.value, _SEED.value,
        )  # fmt: skip
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    logging.info(
        "Test accuracy %.2f%% on all %d test images after %.1f s",
        100 * result["test_accuracy"], result["test_count"], result["seconds"],
    )  # fmt: skip


if __name__ == "__main__":
    app.run(main)
