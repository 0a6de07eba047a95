"""Post-training int8 quantization of a trained run (`evaluate --quantize=int8`), with qwix.

The method is qwix's post-training quantization (PTQ) in its dynamic-range form:
- weights: every kernel of a Dense or Conv layer (2-D (in, out) or 4-D HWIO) becomes int8 with
  one symmetric float32 scale per output channel (its last axis): s_c = max|w[..., c]| / 127.5,
  q = clip(round(w / s_c), -128, 127) (qwix's absmax calibration; the 0.5 fills the outermost
  integer bucket).
- activations: the input of each of those layers is quantized on the fly, symmetric int8 with
  one scale per example (max |x| over the example), so an image's outputs never depend on the
  other images of its batch; products accumulate in int32 and are rescaled to float32.
- everything else stays float32: biases, BatchNorm, activations, pooling, softmax.
No calibration data is needed, and the test set is never looked at.

Convolutions run as XLA's convolution (int8 x int8 -> int32): qwix quantizes a kernel in the
shape its op consumes, and the im2col formulation reshapes the kernel inside the layer.

Why qwix: it is Google's maintained quantization library for JAX; it intercepts the
dot_general and convolution ops of Flax modules, so no model needs an int8 twin. Ops of the
root module are left alone: there the PCA projection of `Projected` models is a fixed constant,
not a layer's weight.
"""

import dataclasses
import importlib.metadata
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import qwix

from mnist_jax.data import preprocess
from mnist_jax.errors import UserError
from mnist_jax.evaluation import stats
from mnist_jax.models import layers

MODES = ("none", "int8")
CONV_IMPL = "xla"  # see the module docstring
SYMMETRIC_BOUND = 127.5  # qwix's int8 bound: scale = max|w| / 127.5

RULES = (
    qwix.QuantizationRule(
        module_path=".+",  # every submodule; not the root (see the module docstring)
        weight_qtype=jnp.int8,
        act_qtype=jnp.int8,
    ),
)


def method() -> dict[str, Any]:
    """What `--quantize=int8` does, for comparison.json."""
    return {
        "library": f"qwix {importlib.metadata.version('qwix')}",
        "weights": "int8, symmetric, one float32 scale per output channel (max|w| / 127.5)",
        "activations": "int8, symmetric, dynamic: one scale per example and layer input",
        "accumulation": "int32, rescaled to float32; biases and all other layers float32",
        "layers": "every Dense and Conv kernel",
        "conv_impl": CONV_IMPL,
        "calibration_data": "none",
    }


@dataclasses.dataclass(frozen=True)
class Quantized:
    """The int8 model (qwix-wrapped) and its variables (int8 kernels with their scales)."""

    model: nn.Module
    variables: dict[str, Any]


_wrapped: dict[nn.Module, tuple[nn.Module, Any]] = {}


def _wrap(model: nn.Module) -> tuple[nn.Module, Any]:
    """The qwix model and its abstract quantized params, once per model (seeds share them)."""
    if model not in _wrapped:
        qmodel = qwix.quantize_model(model, qwix.PtqProvider(list(RULES)))
        x = preprocess.normalize(jnp.zeros((1, *preprocess.IMAGE_SHAPE), jnp.uint8))
        with layers.context(conv_impl=CONV_IMPL):
            abstract = jax.eval_shape(lambda: qmodel.init(jax.random.key(0), x, train=False))
        _wrapped[model] = qmodel, abstract["params"]
    return _wrapped[model]


def _is_kernel(path: tuple) -> bool:
    return any(getattr(p, "key", None) == "kernel" for p in path)


def quantize(model: nn.Module, variables: dict[str, Any]) -> Quantized:
    """The int8 version of a trained float32 model; raises if a kernel stayed in float."""
    dtypes = {str(x.dtype) for x in jax.tree.leaves(variables["params"])}
    if getattr(model, "dtype", jnp.float32) != jnp.float32 or dtypes != {"float32"}:
        raise UserError(
            f"--quantize=int8 needs a float32 model; this run's parameters are {sorted(dtypes)}"
        )
    qmodel, abstract = _wrap(model)
    params = qwix.quantize_params(jax.tree.map(jnp.asarray, variables["params"]), abstract)
    qvars = {**variables, "params": params}
    floats = [
        jax.tree_util.keystr(path)
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        if _is_kernel(path) and getattr(path[-1], "name", None) not in ("qvalue", "scale")
    ]
    if floats:
        raise UserError(f"--quantize=int8 left these kernels in float32: {', '.join(floats)}")
    return Quantized(qmodel, qvars)


def kernels(variables: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Layer path -> (int8 kernel, float32 scales shaped to broadcast against it)."""
    parts: dict[str, dict[str, np.ndarray]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        names = [getattr(p, "key", None) for p in path]
        if "kernel" in names:
            layer = "/".join(names[: names.index("kernel")])
            parts.setdefault(layer, {})[getattr(path[-1], "name", "float")] = np.asarray(leaf)
    return {layer: (p["qvalue"], p["scale"]) for layer, p in parts.items() if "qvalue" in p}


def size_bytes(variables: dict[str, Any]) -> dict[str, int]:
    """Bytes of what inference needs (`total`) and of the layers' kernels alone (`kernels`).

    Float variables count 4 bytes per kernel weight; int8 ones 1 byte per weight plus the
    per-channel scales. Biases and BatchNorm values count in `total` as stored.
    """
    total = kernel = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        nbytes = int(np.asarray(leaf).nbytes)
        total += nbytes
        kernel += nbytes if _is_kernel(path) else 0
    return {"total": total, "kernels": kernel}


def section(
    records: dict[str, list[dict[str, Any]]],
    float_correct: dict[str, np.ndarray],
    int8_correct: dict[str, np.ndarray],
    seeds: dict[str, list[int]],
    corrupted: Any = None,
    int8_corrupted: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """comparison.json's `quantization`: float and int8 side by side for every model.

    `records[m]` are the runs' int8 records (runner.quantize_run); the correctness arrays are
    (runs, images); `int8_corrupted[m]` covers `corrupted.split` (robustness.CorruptedTestSet).
    Float against int8 is McNemar's test per run (the same network before and after
    quantization, on the same images), pooled over the runs.
    """
    out = {}
    for m, recs in records.items():
        col = lambda key, recs=recs: stats.summarize([r[key] for r in recs])
        rows = seeds[m] if len(set(seeds[m])) == len(seeds[m]) else None
        sizes = {k: recs[0][k] for k in ("float_bytes", "int8_bytes", "float_kernel_bytes",
                                         "int8_kernel_bytes")}  # fmt: skip
        entry = {
            "float": {
                "accuracy": col("float_accuracy"),
                "bytes": sizes["float_bytes"],
                "kernel_bytes": sizes["float_kernel_bytes"],
                "throughput_images_per_second": col("float_throughput_images_per_second"),
                "latency_ms_median": col("float_latency_ms_median"),
            },
            "int8": {
                "accuracy": col("accuracy"),
                "loss": col("loss"),
                "ece": col("ece"),
                "bytes": sizes["int8_bytes"],
                "kernel_bytes": sizes["int8_kernel_bytes"],
                "throughput_images_per_second": col("throughput_images_per_second"),
                "latency_ms_median": col("latency_ms_median"),
            },
            "accuracy_drop": stats.summarize([r["float_accuracy"] - r["accuracy"] for r in recs]),
            "size_ratio": sizes["int8_bytes"] / sizes["float_bytes"],
            "kernel_size_ratio": sizes["int8_kernel_bytes"] / sizes["float_kernel_bytes"],
            "prediction_agreement": col("prediction_agreement"),
            "mcnemar": stats.mcnemar_pairs(float_correct[m], int8_correct[m], rows, rows),
            "runs": recs,
        }
        if corrupted is not None and int8_corrupted is not None:
            per_run = int8_corrupted[m].reshape(len(recs), len(corrupted.names), -1).mean(axis=2)
            entry["int8"]["robustness"] = {
                name: stats.summarize(per_run[:, i].tolist())
                for i, name in enumerate(corrupted.names)
            }
            entry["int8"]["robustness_mean"] = stats.summarize(per_run.mean(axis=1).tolist())
        out[m] = entry
    return {"method": method(), "models": out}
