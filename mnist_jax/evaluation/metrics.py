"""Classification metrics as pure numpy functions of labels and logits (or probabilities).

No JAX and no scipy: these run on the host over the per-example outputs the evaluation binary
gathers, and the tests check them against scikit-learn. Conventions follow scikit-learn's:
confusion-matrix rows are true labels and columns predictions; a precision or recall with an
empty denominator is 0.
"""

import math
from typing import Any

import numpy as np

NUM_CLASSES = 10


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities, computed in float64 so that confidences near 1 stay distinct."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels (the loss the models are trained on)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
    """Counts (num_classes, num_classes): entry [i, j] = examples of class i predicted as j."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    for name, x in (("labels", labels), ("predictions", predictions)):
        if x.size and (x.min() < 0 or x.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{x.min()}, {x.max()}]")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, np.float64), where=den > 0)


def per_class_report(cm: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, with macro and support-weighted averages.

    The same numbers as `sklearn.metrics.classification_report(..., output_dict=True)`.
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    precision = _safe_divide(tp, cm.sum(axis=0))
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    weights = support / max(support.sum(), 1)

    def avg(w: np.ndarray) -> dict[str, float]:
        return {
            "precision": float(precision @ w),
            "recall": float(recall @ w),
            "f1": float(f1 @ w),
            "support": int(support.sum()),
        }

    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.astype(int).tolist(),
        "macro_avg": avg(np.full(len(tp), 1 / len(tp))),
        "weighted_avg": avg(weights),
    }


def calibration(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of the top-class confidence, and the reliability-diagram bins.

    Bins split [0, 1] into `num_bins` equal intervals (lower edge exclusive, as in Guo et al.
    2017); ECE is the count-weighted mean |accuracy - confidence| over the bins.
    """
    probs = np.asarray(probs, np.float64)
    confidence = probs.max(axis=-1)
    correct = probs.argmax(axis=-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    count = np.bincount(index, minlength=num_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=num_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=num_bins)
    mean_conf = _safe_divide(conf_sum, count)
    bin_acc = _safe_divide(correct_sum, count)
    ece = float(np.sum(count * np.abs(bin_acc - mean_conf)) / max(len(confidence), 1))
    return {
        "ece": ece,
        "mean_confidence": float(confidence.mean()),
        "bins": {
            "lower": edges[:-1].tolist(),
            "upper": edges[1:].tolist(),
            "count": count.astype(int).tolist(),
            "mean_confidence": mean_conf.tolist(),
            "accuracy": bin_acc.tolist(),
        },
    }


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The `k` misclassified examples with the highest top-class probability, most confident first.

    Ties are broken by example index, so the list is deterministic.
    """
    probs = np.asarray(probs, np.float64)
    predicted = probs.argmax(axis=-1)
    confidence = probs.max(axis=-1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    order = wrong[np.lexsort((wrong, -confidence[wrong]))][:k]
    return [
        {
            "index": int(i),
            "label": int(labels[i]),
            "predicted": int(predicted[i]),
            "confidence": float(confidence[i]),
            "probability_of_label": float(probs[i, labels[i]]),
        }
        for i in order
    ]


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips (k <= n/2 side doubled)."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    term = tail = 1  # C(n, 0); C(n, i + 1) = C(n, i) (n - i) / (i + 1), exactly, in O(k) steps
    for i in range(k):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)  # exact big-integer arithmetic, one rounding at the end


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's test of two classifiers on the same examples, from per-example correctness.

    Only the discordant pairs carry information: `a_only` (a right, b wrong) and `b_only`. Under
    the null hypothesis of equal accuracy each discordant pair is a fair coin flip. Reports the
    exact binomial p-value (preferred; valid for any counts) and the chi-square statistic with
    Edwards' continuity correction and its p-value (1 degree of freedom).
    """
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"correctness vectors differ in shape: {a.shape} vs {b.shape}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    chi2 = max(abs(a_only - b_only) - 1, 0) ** 2 / n if n else 0.0
    return {
        "n": int(a.size),
        "both_correct": int(np.sum(a & b)),
        "both_wrong": int(np.sum(~a & ~b)),
        "a_only_correct": a_only,
        "b_only_correct": b_only,
        "exact_p_value": _binomial_two_sided(min(a_only, b_only), n),
        "chi2_corrected": float(chi2),
        "chi2_p_value": chi2_sf_1dof(chi2),
    }


def chi2_sf_1dof(x: float) -> float:
    """P(X > x) for a chi-square variable with one degree of freedom: erfc(sqrt(x / 2))."""
    return float(math.erfc(math.sqrt(max(x, 0.0) / 2)))
