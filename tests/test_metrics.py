"""metrics.py against scikit-learn, scipy and worked examples (fast: numpy only)."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mnist_jax.evaluation import metrics


def _random_outputs(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits that are right most of the time, like a trained model's."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    logits = rng.normal(size=(n, 10)) * 2
    logits[np.arange(n), labels] += rng.normal(3, 2, n)
    return labels, logits


def test_confusion_matrix_and_report_match_sklearn():
    labels, logits = _random_outputs()
    predictions = logits.argmax(-1)
    cm = metrics.confusion_matrix(labels, predictions)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(labels, predictions, labels=range(10)))
    ours = metrics.per_class_report(cm)
    theirs = skm.classification_report(
        labels, predictions, labels=range(10), output_dict=True, zero_division=0
    )
    for d in range(10):
        for key, sk_key in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert ours[key][d] == pytest.approx(theirs[str(d)][sk_key], abs=1e-12)
        assert ours["support"][d] == theirs[str(d)]["support"]
    for avg in ("macro", "weighted"):
        assert ours[f"{avg}_avg"]["f1"] == pytest.approx(theirs[f"{avg} avg"]["f1-score"])
        assert ours[f"{avg}_avg"]["precision"] == pytest.approx(theirs[f"{avg} avg"]["precision"])
    assert metrics.accuracy(labels, predictions) == pytest.approx(theirs["accuracy"])


def test_report_with_a_never_predicted_class_is_zero_not_nan():
    labels = np.array([0, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1])  # class 2 never predicted: precision 0/0
    report = metrics.per_class_report(metrics.confusion_matrix(labels, predictions, 3))
    assert report["precision"][2] == 0.0 and report["f1"][2] == 0.0
    assert report["support"] == [1, 1, 2]


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must lie in"):
        metrics.confusion_matrix(np.array([10]), np.array([0]))


def test_cross_entropy_matches_sklearn_log_loss():
    labels, logits = _random_outputs(500)
    probs = metrics.softmax(logits)
    assert metrics.cross_entropy(labels, logits) == pytest.approx(
        skm.log_loss(labels, probs, labels=range(10))
    )


def test_calibration_of_hand_made_bins():
    # Two bins used (of 10): confidences 0.95 (4 examples, 3 right) and 0.55 (2 examples, 1 right).
    probs = np.full((6, 2), 0.0)
    probs[:4] = [0.95, 0.05]
    probs[4:] = [0.55, 0.45]
    labels = np.array([0, 0, 0, 1, 0, 1])
    cal = metrics.calibration(probs, labels, num_bins=10)
    expected = (4 * abs(0.75 - 0.95) + 2 * abs(0.5 - 0.55)) / 6
    assert cal["ece"] == pytest.approx(expected)
    assert cal["bins"]["count"][9] == 4 and cal["bins"]["count"][5] == 2
    assert sum(cal["bins"]["count"]) == 6
    assert cal["bins"]["accuracy"][9] == pytest.approx(0.75)


def test_calibration_bin_edges_are_right_inclusive():
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])  # 0.5 belongs to (0.4, 0.5], 1.0 to (0.9, 1.0]
    cal = metrics.calibration(probs, np.array([0, 0]), num_bins=10)
    assert cal["bins"]["count"][4] == 1 and cal["bins"]["count"][9] == 1


def test_confident_mistakes_are_ordered_and_only_mistakes():
    labels, logits = _random_outputs(300)
    probs = metrics.softmax(logits)
    mistakes = metrics.confident_mistakes(probs, labels, k=5)
    assert len(mistakes) == 5
    confidences = [m["confidence"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    wrong = probs.argmax(-1) != labels
    assert max(probs[wrong].max(-1)) == pytest.approx(confidences[0])
    for m in mistakes:
        assert m["label"] == labels[m["index"]] and m["predicted"] != m["label"]


def test_mcnemar_worked_example():
    """Wikipedia's example (article "McNemar's test"): a=101 both positive, b=121, c=59, d=33.

    The article's statistic (no correction) is (121-59)^2/180 = 21.35; with Edwards' continuity
    correction (|121-59|-1)^2/180 = 20.67, p = erfc(sqrt(20.67/2)) = 5.5e-6; exact binomial
    p = 2 * P(X <= 59 | n=180, 1/2) = 4.4e-6 (scipy.stats.binomtest agrees).
    """
    a = np.array([1] * 101 + [1] * 121 + [0] * 59 + [0] * 33, bool)
    b = np.array([1] * 101 + [0] * 121 + [1] * 59 + [0] * 33, bool)
    result = metrics.mcnemar(a, b)
    assert (result["a_only_correct"], result["b_only_correct"]) == (121, 59)
    assert result["both_correct"] == 101 and result["both_wrong"] == 33 and result["n"] == 314
    b_minus_c = result["a_only_correct"] - result["b_only_correct"]
    assert b_minus_c**2 / 180 == pytest.approx(21.35, abs=0.01)
    assert result["chi2_corrected"] == pytest.approx(61**2 / 180)
    assert result["chi2_p_value"] == pytest.approx(math.erfc(math.sqrt(61**2 / 360)))
    assert result["exact_p_value"] == pytest.approx(
        2 * sum(math.comb(180, i) for i in range(60)) / 2**180
    )


def test_mcnemar_small_exact_case_by_hand():
    # 1 vs 5 discordant: p = 2 * (C(6,0) + C(6,1)) / 2^6 = 14/64.
    a = np.array([1, 0, 0, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 1, 1, 1, 1, 1, 1, 0], bool)
    result = metrics.mcnemar(a, b)
    assert (result["a_only_correct"], result["b_only_correct"]) == (2, 5)
    a, b = a[1:], b[1:]  # drop one discordant pair: (1, 5)
    result = metrics.mcnemar(a, b)
    assert (result["a_only_correct"], result["b_only_correct"]) == (1, 5)
    assert result["exact_p_value"] == pytest.approx(14 / 64)
    assert result["chi2_corrected"] == pytest.approx(9 / 6)
    assert result["chi2_p_value"] == pytest.approx(math.erfc(math.sqrt(0.75)))


def test_mcnemar_identical_models_and_scipy_agreement():
    same = np.array([1, 0, 1, 1], bool)
    result = metrics.mcnemar(same, same)
    assert result["exact_p_value"] == 1.0 and result["chi2_corrected"] == 0.0
    assert result["chi2_p_value"] == 1.0
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    a, b = rng.random(10_000) < 0.98, rng.random(10_000) < 0.99  # MNIST-sized test set
    result = metrics.mcnemar(a, b)
    n = result["a_only_correct"] + result["b_only_correct"]
    expected = stats.binomtest(result["a_only_correct"], n, 0.5).pvalue
    assert result["exact_p_value"] == pytest.approx(expected, rel=1e-9)
    assert result["chi2_p_value"] == pytest.approx(stats.chi2.sf(result["chi2_corrected"], 1))
