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

Convolutions run as XLA's convolution: qwix quantizes a kernel in the shape its op consumes, and
the im2col formulation reshapes the kernel inside the layer. XLA:CPU's integer convolution is
slow (with it, `evaluate --quantize=int8` of 3 CNN and 3 MLP runs took 119 s instead of 57 s on
the 2-core CPU), so on CPU the int8 values are convolved as float32 (`_exact_int8_conv`, passed
through the PtqProvider's convolution hook): every product of two int8 values and every partial
sum of at most 1,024 of them is an integer below 2^24, which float32 holds exactly, so the
result is bit for bit the int32 accumulation's (tests/test_evaluate.py checks it).

Why qwix: it is Google's maintained quantization library for JAX; it intercepts the
dot_general and convolution ops of Flax modules, so no model needs an int8 twin. Ops of the
root module are left alone: there the PCA projection of `Projected` models is a fixed constant,
not a layer's weight.
"""

import dataclasses
import importlib.metadata
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import qwix
from flax import nnx
from qwix._src.core import conv_general as qwix_conv  # the provider's default convolution

from mnist_jax.core.errors import UserError
from mnist_jax.data import preprocess
from mnist_jax.evaluation import inference, scores, scoring, stats
from mnist_jax.models import layers

MODES = ("none", "int8")
CONV_IMPL = "xla"  # see the module docstring
SYMMETRIC_BOUND = 127.5  # qwix's int8 bound: scale = max|w| / 127.5
EXACT_FLOAT_TERMS = 2**24 // 2**14  # int8 products summed exactly in float32: |x*w| <= 2^14

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


def _exact_int8_conv(lhs: Any, rhs: Any, window_strides: Any, padding: Any, **kw: Any) -> jax.Array:
    """qwix's quantized convolution, with the int8 operands convolved as float32 on CPU.

    Exact (see the module docstring) while a kernel sums at most EXACT_FLOAT_TERMS products.
    The sums go back to int32 behind an optimization barrier, so that XLA cannot fold the
    rescaling into the convolution (which would make its inputs non-integer); the rescaling is
    qwix's (`res * lhs.scale * rhs.scale`). Anything else (other backends, layouts, dilations,
    larger kernels, asymmetric or non-int8 operands) takes qwix's own int32 path.
    """
    fallback = lambda: qwix_conv.conv_general_dilated(lhs, rhs, window_strides, padding, **kw)
    if jax.default_backend() != "cpu" or any(
        not isinstance(a, qwix.QArray) or a.qvalue.dtype != jnp.int8 or a.zero_point is not None
        for a in (lhs, rhs)
    ):
        return fallback()
    n, out = lhs.shape[0], rhs.shape[-1]
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    plain = (
        jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, kw.get("dimension_numbers")) == nhwc
        and all(kw.get(k) in (None, 1, (1, 1)) for k in ("lhs_dilation", "rhs_dilation",
                                                          "feature_group_count",
                                                          "batch_group_count"))
        and kw.get("preferred_element_type") is None
        and lhs.scale.shape == (n, 1, 1, 1)
        and rhs.scale.shape == (1, 1, 1, out)
        and math.prod(rhs.shape[:3]) <= EXACT_FLOAT_TERMS
    )  # fmt: skip
    if not plain:
        return fallback()
    sums = jax.lax.conv_general_dilated(
        lhs.qvalue.astype(jnp.float32), rhs.qvalue.astype(jnp.float32), window_strides, padding,
        dimension_numbers=nhwc, precision=jax.lax.Precision.HIGHEST,
    )  # fmt: skip
    res = jax.lax.optimization_barrier(sums).astype(jnp.int32)
    return (res * lhs.scale * rhs.scale).astype(lhs.scale.dtype)


_wrapped: dict[nn.Module, tuple[nn.Module, Any]] = {}


def _wrap(model: nn.Module) -> tuple[nn.Module, Any]:
    """The qwix model and its abstract quantized params, once per model (seeds share them)."""
    if model not in _wrapped:
        qmodel = qwix.quantize_model(
            model, qwix.PtqProvider(list(RULES), _conv_general_dilated_fn=_exact_int8_conv)
        )
        x = preprocess.normalize(jnp.zeros((1, *preprocess.IMAGE_SHAPE), jnp.uint8))
        with layers.context(conv_impl=CONV_IMPL):
            abstract = jax.eval_shape(lambda: qmodel.init(jax.random.key(0), x, train=False))
        _wrapped[model] = qmodel, abstract["params"]
    return _wrapped[model]


def _is_kernel(path: tuple) -> bool:
    return any(getattr(p, "key", None) == "kernel" for p in path)


def quantize(model: nn.Module, variables: dict[str, Any]) -> Quantized:
    """The int8 version of a trained float32 model; raises if a kernel stayed in float."""
    if isinstance(model, nnx.bridge.ToLinen):
        raise UserError(
            f"--quantize=int8 quantizes Linen models; {model.nnx_class.__name__} is a Flax NNX "
            "model (qwix's Linen interception does not reach into it); evaluate it without "
            "--quantize"
        )
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


@dataclasses.dataclass
class Int8Outputs:
    """A run's int8 model and what evaluating it measured (runner.RunOutputs.int8)."""

    quantized: Quantized
    variables_dev: Any  # the int8 variables on the evaluation's devices
    predictions: scores.Predictions  # on the clean test set
    speed: dict[str, float]  # inference.throughput at the evaluation's batch size
    wait: dict[str, float]  # inference.latency at batch 1
    correct_on: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # extra sets


def evaluate_int8(outputs: Any, options: Any, scorer: scoring.Scorer) -> Int8Outputs:
    """The int8 model of a run on the clean test set, timed (`outputs`: runner.RunOutputs,
    `options`: runner.Options, which import this module)."""
    q = quantize(outputs.model, outputs.variables)
    variables_dev = outputs.par.replicate(q.variables)
    test = outputs.test
    _, logits = scorer.logits(outputs.par, q.model, variables_dev, "test", test, CONV_IMPL)
    predictions = scores.Predictions.from_logits(test.labels, logits, options.ece_bins)
    speed = inference.throughput(
        q.model, q.variables, test.images, options.throughput_batch_size,
        options.throughput_min_seconds, conv_impl=CONV_IMPL,
    )  # fmt: skip
    wait = inference.latency(q.model, q.variables, test.images, options.latency_calls, CONV_IMPL)
    return Int8Outputs(q, variables_dev, predictions, speed, wait)


def int8_record(record: dict[str, Any], outputs: Any) -> dict[str, Any]:
    """A run's int8 entry in comparison.json beside its float `record`: every prediction
    metric (scores.py), size, speed and agreement with the float model."""
    int8 = outputs.int8
    float_size = size_bytes(outputs.variables)
    int8_size = size_bytes(int8.quantized.variables)
    agreement = np.mean(int8.predictions.predicted == outputs.predictions.predicted)
    return {
        "workdir": record["workdir"],
        "seed": record["seed"],
        "float_accuracy": record["accuracy"],
        **scores.score(int8.predictions),
        "prediction_agreement": float(agreement),
        "float_bytes": float_size["total"],
        "int8_bytes": int8_size["total"],
        "float_kernel_bytes": float_size["kernels"],
        "int8_kernel_bytes": int8_size["kernels"],
        "float_throughput_images_per_second": record["throughput_images_per_second"],
        "throughput_images_per_second": int8.speed["images_per_second"],
        "float_latency_ms_median": record["latency_ms_median"],
        "latency_ms_median": int8.wait["median_ms"],
    }


def section(
    records: dict[str, list[dict[str, Any]]],
    float_correct: dict[str, np.ndarray],
    int8_correct: dict[str, np.ndarray],
    seeds: dict[str, list[int]],
    corrupted: Any = None,
    int8_corrupted: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """comparison.json's `quantization`: float and int8 side by side for every model.

    `records[m]` are the runs' int8 records (int8_record); the correctness arrays are
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
                **{metric.name: col(metric.name) for metric in scores.of_predictions()},
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
