"""Statistics over seeds: summaries with t intervals, and the seed-aware model comparison.

Each model is trained with several seeds and every seed is evaluated on the same 10,000 test
images, so an accuracy difference between two models varies for two reasons: the training seed
(retrain and the accuracy moves) and the test images (another 10,000 digits from the same
source would give other numbers). McNemar's test on one seed pair sees only the second; it can
call a 0.5-point gap significant when reseeding alone moves accuracy by that much. The
comparison here (`compare_accuracy`) accounts for both. Student's t distribution is scipy's
(installed with JAX, which depends on it).
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mnist_jax.evaluation import metrics

# ---------------------------------------------------------------------------------------------
# Student's t distribution.


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` (> 0, need not be an integer) degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    from scipy import stats as scipy_stats  # deferred: a second of imports, for evaluation only

    return float(2.0 * scipy_stats.t.sf(abs(t), df))


def t_critical(df: float, confidence: float = 0.95) -> float:
    """The t with P(|T| <= t) = confidence: the half-width of a t interval in standard errors."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(0.5 + confidence / 2.0, df))


# ---------------------------------------------------------------------------------------------
# One quantity over seeds.


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean, sample std (ddof=1), n, the 95% t interval of the mean, the values: what every set of
    runs reports (comparison.json, studies).

    std and ci95 are None for a single value (no spread to estimate). Missing or non-finite values
    (None, NaN, inf) appear as None in `values` and make mean, std and ci95 None too: a mean
    that silently skipped a run would describe fewer seeds than `n` says.
    """
    if len(values) == 0:
        raise ValueError("summarize needs at least one value, got an empty sequence")
    x = np.array([np.nan if v is None else v for v in values], np.float64)
    out: dict[str, Any] = {
        "mean": None,
        "std": None,
        "n": len(x),
        "ci95": None,
        "values": [_finite(v) for v in x],
    }
    if not np.all(np.isfinite(x)):
        return out
    mean = float(x.mean())
    out["mean"] = mean
    if len(x) > 1:
        std = float(x.std(ddof=1))
        out["std"] = std
        half = t_critical(len(x) - 1) * std / math.sqrt(len(x))
        out["ci95"] = [mean - half, mean + half]
    return out


# ---------------------------------------------------------------------------------------------
# Two models, several seeds each, the same test images.


def _check(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.atleast_2d(np.asarray(correct_a)), np.atleast_2d(np.asarray(correct_b))
    for name, x in (("correct_a", a), ("correct_b", b)):
        if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2:
            raise ValueError(
                f"{name} must have shape (seeds, images) with >= 2 images, got {x.shape}"
            )
        if not np.isin(x, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1) per image, got {x.dtype}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"models were scored on different images: {a.shape[1]} vs {b.shape[1]}")
    return a.astype(bool), b.astype(bool)


def t_test_difference(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Accuracy of B minus A, its standard error from seeds and images, a t interval, p-value.

    D = (mean over B's seeds of accuracy) - (same for A). By the law of total variance,
    Var(D) = E[Var(D | test set)] + Var(E[D | test set]), two estimable parts:
      seeds:  on a fixed test set each model's per-seed accuracies are independent draws, so
              s_a^2 / k_a + s_b^2 / k_b (sample variances). A's and B's seeds count as
              independent even with equal seed numbers; a positive correlation from a shared
              data order would only make the test cautious.
      images: the seed-averaged per-image difference d_j = q_b(j) - q_a(j) (q: fraction of a
              model's seeds right on image j) gives var(d) / N, less each model's per-image
              seed noise (unbiased estimate q(1 - q) / (k - 1), averaged, over N) so that the
              seed variance is not counted twice.
    The reference distribution is Student's t with Welch-Satterthwaite degrees of freedom
    (k - 1 for each seed term, N - 1 for the image term): with 3 seeds per model and a visible
    seed spread that is a t with about 2 to 4 degrees of freedom, which is what a 3-seed
    estimate of a spread supports. With one seed per model the seed terms are unknown
    (`seed_variance_estimated`) and the test is the paired test-set comparison that McNemar's
    test also makes.

    Why this test: McNemar's test (per seed pair or pooled) and a two-level bootstrap were the
    alternatives. McNemar's sees only the images and rejects a true null far too often when
    seeds move accuracy; the bootstrap has 10 distinct seed resamples at k = 3 (see
    `bootstrap_difference`). tests/test_stats.py simulates models with a known truth, 3 seeds
    each: under the null this test rejects 3.7% (seed effect) and 4.7% (none) of the time at
    the 5% level (Welch's test is itself slightly conservative with 3 seeds), the pooled
    McNemar test 52% with a seed effect, and the bootstrap interval misses 0 in 13% and 0.3%.
    """
    a, b = _check(correct_a, correct_b)
    (k_a, n), k_b = a.shape, b.shape[0]
    acc_a, acc_b = a.mean(axis=1), b.mean(axis=1)
    diff = float(acc_b.mean() - acc_a.mean())
    q_a, q_b = a.mean(axis=0), b.mean(axis=0)
    v_img = float(np.var(q_b - q_a, ddof=1)) / n
    parts: list[tuple[float, float]] = []  # (variance of D, degrees of freedom)
    for k, acc, q in ((k_a, acc_a, q_a), (k_b, acc_b, q_b)):
        if k > 1:
            parts.append((float(np.var(acc, ddof=1)) / k, k - 1.0))
            v_img -= float(np.mean(q * (1 - q))) / (k - 1) / n
        else:
            parts.append((0.0, math.inf))
    parts.append((max(v_img, 0.0), n - 1.0))
    var = sum(v for v, _ in parts)
    if var > 0:
        se = math.sqrt(var)
        df = var**2 / sum(v * v / d for v, d in parts if v > 0)
        half = t_critical(df) * se
        p = t_two_sided_p(diff / se, df)
    else:  # every seed of each model right on the same images: no variation to test against
        se, df, half, p = 0.0, None, 0.0, 1.0 if diff == 0 else 0.0
    return {
        "method": "seed_and_image_t",
        "difference": diff,
        "std_error": se,
        "df": df,
        "ci95": [diff - half, diff + half],
        "p_value": p,
        "variance": {"seeds_a": parts[0][0], "seeds_b": parts[1][0], "images": parts[2][0]},
        "seed_variance_estimated": [k_a > 1, k_b > 1],
        "n_seeds_a": int(k_a),
        "n_seeds_b": int(k_b),
        "n_images": int(n),
    }


def _patterns(
    a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct per-image correctness columns: A's rows, B's rows, images per column, image->column.

    Images with the same column are interchangeable in any statistic here, so resampling N
    images equals drawing multinomial counts over the (few, for trained models) patterns.
    """
    columns, inverse, counts = np.unique(
        np.concatenate([a, b]), axis=1, return_inverse=True, return_counts=True
    )
    return columns[: len(a)], columns[len(a) :], counts, inverse.reshape(-1)


def _bootstrap_draws(
    k_a: int, k_b: int, pattern_counts: np.ndarray, replicates: int, rng_seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Chunks of (A's seed indices, B's seed indices, image counts per pattern) per replicate."""
    rng = np.random.default_rng(rng_seed)
    n, probs = int(pattern_counts.sum()), pattern_counts / pattern_counts.sum()
    chunk = max(1, min(replicates, 2_000_000 // len(probs)))  # <= 16 MB of counts at a time
    for start in range(0, replicates, chunk):
        r = min(chunk, replicates - start)
        yield (
            rng.integers(0, k_a, (r, k_a)),
            rng.integers(0, k_b, (r, k_b)),
            rng.multinomial(n, probs, size=r),
        )


def _replicates(a: np.ndarray, b: np.ndarray, replicates: int, rng_seed: int) -> np.ndarray:
    """D* = acc(B) - acc(A) of each bootstrap replicate, (replicates,) float64."""
    (k_a, n), k_b = a.shape, b.shape[0]
    cols_a, cols_b, counts, _ = _patterns(a, b)
    stars = []
    for idx_a, idx_b, img in _bootstrap_draws(k_a, k_b, counts, replicates, rng_seed):
        right_a = img @ cols_a.T.astype(np.float64)  # (r, k_a): resampled images right, per seed
        right_b = img @ cols_b.T.astype(np.float64)
        acc_a = np.take_along_axis(right_a, idx_a, axis=1).mean(axis=1) / n
        acc_b = np.take_along_axis(right_b, idx_b, axis=1).mean(axis=1) / n
        stars.append(acc_b - acc_a)
    return np.concatenate(stars)


def bootstrap_difference(
    correct_a: np.ndarray, correct_b: np.ndarray, replicates: int = 10_000, rng_seed: int = 0
) -> dict[str, Any]:
    """Two-level bootstrap of D = acc(B) - acc(A): seeds of each model, and test images (paired).

    Each replicate draws k_a of A's seeds and k_b of B's with replacement, and N test images
    with replacement, the same images for both models (resampling both factors of the crossed
    seeds x images design). Percentile interval; p-value from the centred replicates,
    (1 + #{|D* - D| >= |D|}) / (1 + R), never below 1 / (R + 1). Reported as a cross-check,
    not the headline: with 3 seeds the seed level has 10 distinct resamples, shrinks the seed
    variance by (k - 1) / k and has normal rather than t tails (too narrow when seeds dominate),
    while the image level counts each image's seed noise a second time (too wide when they do
    not). tests/test_stats.py measures both effects against the t test.
    """
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    a, b = _check(correct_a, correct_b)
    diff = float(b.mean() - a.mean())
    star = _replicates(a, b, replicates, rng_seed)
    lo, hi = np.quantile(star, [0.025, 0.975])
    extreme = int(np.sum(np.abs(star - diff) >= abs(diff) - 1e-12))
    return {
        "method": "two_level_bootstrap",
        "difference": diff,
        "std_error": float(star.std(ddof=1)) if replicates > 1 else 0.0,
        "ci95": [float(lo), float(hi)],
        "p_value": (1 + extreme) / (1 + replicates),
        "replicates": int(replicates),
        "rng_seed": int(rng_seed),
    }


def seed_pairs(
    k_a: int, k_b: int, seeds_a: Sequence[int] | None, seeds_b: Sequence[int] | None
) -> list[tuple[int, int]]:
    """Row pairs (i, j) to compare: equal seed numbers if the models share any, else by position."""
    seeds_a = list(range(k_a)) if seeds_a is None else list(seeds_a)
    seeds_b = list(range(k_b)) if seeds_b is None else list(seeds_b)
    for name, s, k in (("seeds_a", seeds_a, k_a), ("seeds_b", seeds_b, k_b)):
        if len(s) != k or len(set(s)) != k:
            raise ValueError(f"{name} must be {k} distinct seeds (one per row), got {s}")
    common = sorted(set(seeds_a) & set(seeds_b))
    if common:
        return [(seeds_a.index(s), seeds_b.index(s)) for s in common]
    return [(i, i) for i in range(min(k_a, k_b))]


def mcnemar_pairs(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
) -> dict[str, Any]:
    """McNemar's test per seed pair, and pooled over the pairs (stratified, Mantel-Haenszel).

    Under "the two trained networks of each pair are equally accurate", every discordant image
    is a fair coin in every pair, so the pooled discordant counts are binomial: the exact pooled
    p-value is the stratified exact McNemar test and the corrected chi-square is the CMH
    statistic. Both condition on the trained networks and treat the pairs' images as
    independent although they are the same images: a statement about these networks on these
    images, not about the architectures (that is `t_test_difference`).
    """
    a, b = _check(correct_a, correct_b)
    pairs = seed_pairs(len(a), len(b), seeds_a, seeds_b)
    names_a = list(range(len(a))) if seeds_a is None else list(seeds_a)
    names_b = list(range(len(b))) if seeds_b is None else list(seeds_b)
    per_pair = [
        {"seed_a": names_a[i], "seed_b": names_b[j], **metrics.mcnemar(a[i], b[j])}
        for i, j in pairs
    ]
    pooled = metrics.mcnemar(
        np.concatenate([a[i] for i, _ in pairs]), np.concatenate([b[j] for _, j in pairs])
    )
    return {"pairs": per_pair, "pooled": pooled}


def compare_accuracy(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    seeds_a: Sequence[int] | None = None,
    seeds_b: Sequence[int] | None = None,
    replicates: int = 10_000,
    rng_seed: int = 0,
) -> dict[str, Any]:
    """Model B against model A on the same test images, several seeds each (strict-JSON safe).

    correct_a (k_a, N) and correct_b (k_b, N) say which test images each seed got right; rows
    are named by `seeds_a` / `seeds_b` (default 0, 1, ...), which only decide the McNemar pairs.
    The headline (difference, ci95, p_value) is `t_test_difference`; `bootstrap` and `mcnemar`
    are reported beside it (see their docstrings for what each does and does not cover).
    """
    a, b = _check(correct_a, correct_b)
    result = t_test_difference(a, b)
    result["accuracy_a"] = summarize(a.mean(axis=1).tolist())
    result["accuracy_b"] = summarize(b.mean(axis=1).tolist())
    result["bootstrap"] = bootstrap_difference(a, b, replicates, rng_seed)
    result["mcnemar"] = mcnemar_pairs(a, b, seeds_a, seeds_b)
    return result
