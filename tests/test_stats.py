"""evaluation/stats.py against scipy, slow reference implementations, hand-computed values and
simulations of models with a known truth (fast: numpy only, synthetic correctness matrices)."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from mnist_jax.evaluation import stats


def _models(
    rng: np.random.Generator,
    n: int,
    k_a: int,
    k_b: int,
    seed_sd: float = 0.0,
    gap: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Correctness (k, n) of two models on the same images: shared image difficulty, a random
    per-seed skill offset (logit scale, sd `seed_sd`), B better by `gap` on the logit scale."""
    difficulty = rng.normal(4.0, 2.0, n)

    def model(k: int, shift: float) -> np.ndarray:
        skill = rng.normal(0.0, seed_sd, (k, 1))
        return rng.random((k, n)) < 1 / (1 + np.exp(-(difficulty + skill + shift)))

    return model(k_a, 0.0), model(k_b, gap)


# --- Student's t -------------------------------------------------------------------------------


# Two-sided critical values from printed t tables (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.2).
T_TABLE = [(1, 0.95, 12.706), (2, 0.95, 4.303), (10, 0.95, 2.228), (29, 0.95, 2.045),
           (5, 0.99, 4.032), (20, 0.90, 1.725), (math.inf, 0.95, 1.960)]  # fmt: skip


@pytest.mark.parametrize("df, confidence, table", T_TABLE)
def test_t_interval_half_widths_match_the_printed_table(df, confidence, table):
    critical = stats.t_critical(df, confidence) if math.isfinite(df) else 1.959964
    assert critical == pytest.approx(table, abs=5e-4)
    # The two-sided p of the critical value is the interval's complement, on both sides.
    assert stats.t_two_sided_p(critical, df) == pytest.approx(1 - confidence, rel=1e-6)
    assert stats.t_two_sided_p(-critical, df) == stats.t_two_sided_p(critical, df)
    assert stats.t_two_sided_p(0.0, df) == pytest.approx(1.0)


def test_t_distribution_rejects_bad_arguments():
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats.t_two_sided_p(1.0, 0)
    with pytest.raises(ValueError, match="confidence"):
        stats.t_critical(3, 1.0)


# --- summarize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_summarize_matches_scipy_t_interval(n):
    x = np.random.default_rng(n).normal(0.98, 0.004, n)
    s = stats.summarize(x.tolist())
    lo, hi = sps.t.interval(0.95, n - 1, loc=x.mean(), scale=sps.sem(x))
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-14)
    assert s["std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
    assert s["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    assert s["n"] == n and s["values"] == x.tolist()


def test_summarize_one_value_missing_values_and_strict_json():
    assert stats.summarize([0.99]) == {
        "mean": 0.99,
        "std": None,  # no spread to estimate from one seed
        "n": 1,
        "ci95": None,
        "values": [0.99],
    }
    assert stats.summarize([2.0, 2.0])["ci95"] == [2.0, 2.0]
    for bad in ([1.0, float("nan")], [1.0, None, 3.0], [float("inf"), 1.0]):
        s = stats.summarize(bad)
        assert s["mean"] is None and s["std"] is None and s["ci95"] is None
        assert s["n"] == len(bad) and s["values"][0] in (1.0, None)
        json.dumps(s, allow_nan=False)
    with pytest.raises(ValueError, match="at least one value"):
        stats.summarize([])


# --- the seed-and-image t test -----------------------------------------------------------------


def test_t_test_with_one_seed_is_the_paired_image_test():
    rng = np.random.default_rng(0)
    a, b = _models(rng, 5000, 1, 1, gap=0.3)
    r = stats.t_test_difference(a, b)
    d = b[0].astype(float) - a[0]
    assert r["difference"] == pytest.approx(d.mean())
    assert r["std_error"] == pytest.approx(math.sqrt(d.var(ddof=1) / d.size), rel=1e-12)
    assert r["df"] == pytest.approx(d.size - 1)
    assert r["seed_variance_estimated"] == [False, False]
    assert r["p_value"] == pytest.approx(2 * sps.t.sf(d.mean() / r["std_error"], d.size - 1))


def test_t_test_variance_terms_by_hand():
    """Seed terms: sample variance of per-seed accuracy / k. Image term: var(d)/N minus each
    model's unbiased per-image seed noise q(1-q)/(k-1)/N. Satterthwaite degrees of freedom."""
    a = np.array([[1, 1, 0, 1, 0, 1], [1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 0, 1]], bool)
    b = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    r = stats.t_test_difference(a, b)
    acc_a, acc_b = [4 / 6, 4 / 6, 5 / 6], [4 / 6, 1.0]
    q_a = [1, 2 / 3, 1 / 3, 1, 1 / 3, 1]
    q_b = [1, 1, 1, 1, 1 / 2, 1 / 2]
    d = [qb - qa for qa, qb in zip(q_a, q_b, strict=True)]
    mean_d = sum(d) / 6
    var_d = sum((x - mean_d) ** 2 for x in d) / 5
    noise = sum(q * (1 - q) for q in q_a) / 6 / 2 + sum(q * (1 - q) for q in q_b) / 6 / 1
    v_img = max(var_d - noise, 0) / 6
    v_a = sum((x - sum(acc_a) / 3) ** 2 for x in acc_a) / 2 / 3
    v_b = sum((x - sum(acc_b) / 2) ** 2 for x in acc_b) / 1 / 2
    assert r["difference"] == pytest.approx(sum(acc_b) / 2 - sum(acc_a) / 3)
    assert r["variance"] == pytest.approx({"seeds_a": v_a, "seeds_b": v_b, "images": v_img})
    v = v_a + v_b + v_img
    df = v**2 / (v_a**2 / 2 + v_b**2 / 1 + (v_img**2 / 5 if v_img else 0))
    assert r["df"] == pytest.approx(df)
    assert r["ci95"] == pytest.approx(
        list(sps.t.interval(0.95, df, loc=r["difference"], scale=math.sqrt(v)))
    )


def test_t_test_is_calibrated_where_pooled_mcnemar_and_bootstrap_are_not():
    """Under the null (A and B the same model), 3 seeds each, with a seed effect: the t test
    rejects at most about 5% of the time (Welch's test with 3 vs 3 normal values: 3.3%);
    McNemar pooled over seed pairs, blind to the seed variance, far more often; the bootstrap
    interval misses 0 too often. Without a seed effect the t test is still calibrated and the
    bootstrap is conservative (it counts the per-image seed noise twice). Rates measured with
    this seed: t 3.7% / 4.7%, pooled McNemar 52% / 3%, bootstrap 12.7% / 0.3%."""
    rng = np.random.default_rng(1)
    sims = 300
    for seed_sd, t_range, mcnemar_min, boot_range in (
        (0.3, (0.02, 0.09), 0.3, (0.09, 1.0)),
        (0.0, (0.02, 0.09), 0.0, (0.0, 0.02)),
    ):
        t_rej = mc_rej = boot_rej = 0
        for i in range(sims):
            a, b = _models(rng, 2000, 3, 3, seed_sd=seed_sd)
            t_rej += stats.t_test_difference(a, b)["p_value"] < 0.05
            mc_rej += stats.mcnemar_pairs(a, b)["pooled"]["exact_p_value"] < 0.05
            lo, hi = stats.bootstrap_difference(a, b, 200, rng_seed=i)["ci95"]
            boot_rej += not lo <= 0 <= hi
        assert t_range[0] <= t_rej / sims <= t_range[1], (seed_sd, t_rej)
        assert mc_rej / sims >= mcnemar_min, (seed_sd, mc_rej)
        assert boot_range[0] <= boot_rej / sims <= boot_range[1], (seed_sd, boot_rej)


def test_identical_models_and_large_differences():
    rng = np.random.default_rng(2)
    a, _ = _models(rng, 10_000, 3, 3, seed_sd=0.2)
    r = stats.compare_accuracy(a, a.copy())
    assert r["difference"] == 0 and r["p_value"] == 1.0 and r["bootstrap"]["p_value"] == 1.0
    assert r["ci95"][0] < 0 < r["ci95"][1]
    assert all(p["exact_p_value"] == 1.0 for p in r["mcnemar"]["pairs"])
    same = np.ones((3, 100), bool)
    r = stats.t_test_difference(same, same)  # no variation at all: nothing to test
    assert r["p_value"] == 1.0 and r["ci95"] == [0.0, 0.0] and r["df"] is None
    a, b = _models(rng, 10_000, 3, 4, seed_sd=0.05, gap=1.5)
    r = stats.compare_accuracy(a, b, replicates=2000)
    assert r["difference"] > 0.01 and r["ci95"][0] > 0
    # With 3-4 seeds the t has about 3 degrees of freedom: a 20-standard-error gap gives p ~ 4e-4.
    assert r["p_value"] < 1e-3 and r["bootstrap"]["p_value"] == 1 / 2001
    assert max(p["exact_p_value"] for p in r["mcnemar"]["pairs"]) < 1e-20


def test_compare_accuracy_is_strict_json_deterministic_and_checks_input():
    rng = np.random.default_rng(3)
    a, b = _models(rng, 3000, 1, 3, seed_sd=0.2, gap=0.2)
    r = stats.compare_accuracy(a, b, seeds_a=[5], seeds_b=[4, 5, 6], replicates=500)
    json.dumps(r, allow_nan=False)
    assert r == stats.compare_accuracy(a, b, seeds_a=[5], seeds_b=[4, 5, 6], replicates=500)
    assert r["accuracy_a"]["ci95"] is None and r["accuracy_b"]["ci95"] is not None
    assert r["seed_variance_estimated"] == [False, True]
    assert (r["n_seeds_a"], r["n_seeds_b"], r["n_images"]) == (1, 3, 3000)
    assert r["bootstrap"]["replicates"] == 500
    assert [(p["seed_a"], p["seed_b"]) for p in r["mcnemar"]["pairs"]] == [(5, 5)]
    with pytest.raises(ValueError, match="different images"):
        stats.compare_accuracy(a, b[:, :-1])
    with pytest.raises(ValueError, match="booleans"):
        stats.compare_accuracy(a * 0.5, b)
    with pytest.raises(ValueError, match="distinct seeds"):
        stats.compare_accuracy(a, b, seeds_b=[1, 1, 2])


# --- the two-level bootstrap -------------------------------------------------------------------


def test_bootstrap_replicates_match_a_slow_reference_on_the_same_draws():
    """Rebuild each replicate's resampled data set explicitly (seed rows, and every drawn image
    repeated as often as drawn) and average it with loops."""
    rng = np.random.default_rng(4)
    a, b = _models(rng, 40, 2, 3, seed_sd=0.5)
    fast = stats._replicates(a, b, 50, rng_seed=9)
    _, _, counts, inverse = stats._patterns(a, b)
    representative = [int(np.flatnonzero(inverse == p)[0]) for p in range(len(counts))]
    slow = []
    for idx_a, idx_b, img in stats._bootstrap_draws(2, 3, counts, 50, rng_seed=9):
        for r in range(len(img)):
            images = [representative[p] for p in range(len(counts)) for _ in range(img[r, p])]
            assert len(images) == 40

            def acc(c, rows, images=images):
                return sum(sum(c[s, j] for j in images) / len(images) for s in rows) / len(rows)

            slow.append(acc(b, idx_b[r]) - acc(a, idx_a[r]))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_bootstrap_matches_plain_index_resampling():
    """Multinomial counts over correctness patterns vs drawing image indices (independent RNG)."""
    rng = np.random.default_rng(5)
    a, b = _models(rng, 2000, 3, 3, seed_sd=0.3, gap=0.2)
    ours = stats.bootstrap_difference(a, b, 4000, rng_seed=0)
    ref_rng = np.random.default_rng(123)
    ref = np.empty(4000)
    for r in range(len(ref)):
        sa, sb = ref_rng.integers(0, 3, 3), ref_rng.integers(0, 3, 3)
        images = ref_rng.integers(0, 2000, 2000)
        ref[r] = b[sb][:, images].mean() - a[sa][:, images].mean()
    assert ours["std_error"] == pytest.approx(ref.std(ddof=1), rel=0.08)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    width = hi - lo
    assert ours["ci95"] == pytest.approx([lo, hi], abs=0.1 * width)


def test_bootstrap_with_one_seed_matches_the_analytic_paired_std():
    rng = np.random.default_rng(6)
    a, b = _models(rng, 10_000, 1, 1, gap=0.3)
    r = stats.bootstrap_difference(a, b, 10_000, rng_seed=0)
    d = b[0].astype(float) - a[0]
    assert r["std_error"] == pytest.approx(math.sqrt(d.var() / d.size), rel=0.03)
    assert r["difference"] == pytest.approx(d.mean())


# --- McNemar per seed pair and pooled ----------------------------------------------------------


def _pair(a_only: int, b_only: int, both: int = 10) -> tuple[np.ndarray, np.ndarray]:
    a = [1] * a_only + [0] * b_only + [1] * both
    b = [0] * a_only + [1] * b_only + [1] * both
    return np.array(a, bool), np.array(b, bool)


def test_mcnemar_pairs_and_pooled_by_hand():
    (a0, b0), (a1, b1) = _pair(5, 1), _pair(2, 0, both=14)
    r = stats.mcnemar_pairs(np.stack([a0, a1]), np.stack([b0, b1]))
    first, second = r["pairs"]
    assert (first["a_only_correct"], first["b_only_correct"]) == (5, 1)
    assert first["exact_p_value"] == pytest.approx(2 * (1 + 6) / 2**6)  # 0.21875
    assert second["exact_p_value"] == pytest.approx(2 * 1 / 2**2)  # 0.5
    pooled = r["pooled"]  # 7 vs 1 discordant images over both pairs
    assert (pooled["a_only_correct"], pooled["b_only_correct"]) == (7, 1)
    assert pooled["exact_p_value"] == pytest.approx(2 * (1 + 8) / 2**8)  # 0.0703125
    assert pooled["chi2_corrected"] == pytest.approx((6 - 1) ** 2 / 8)  # 3.125
    assert pooled["chi2_p_value"] == pytest.approx(sps.chi2.sf(3.125, 1))


def test_seed_pairs_by_seed_number_else_by_position():
    assert stats.seed_pairs(3, 3, [0, 1, 2], [2, 1, 7]) == [(1, 1), (2, 0)]
    assert stats.seed_pairs(3, 2, [0, 1, 2], [5, 6]) == [(0, 0), (1, 1)]
    assert stats.seed_pairs(2, 4, None, None) == [(0, 0), (1, 1)]


def test_pooled_mcnemar_with_many_discordant_images_matches_scipy():
    """Weak models disagree on thousands of images; the exact p-value stays exact (and fast)."""
    rng = np.random.default_rng(7)
    a, b = rng.random((4, 10_000)) < 0.5, rng.random((4, 10_000)) < 0.52
    pooled = stats.mcnemar_pairs(a, b)["pooled"]
    k, n = pooled["a_only_correct"], pooled["a_only_correct"] + pooled["b_only_correct"]
    assert n > 15_000
    expected = sps.binomtest(k, n, 0.5).pvalue
    assert pooled["exact_p_value"] == pytest.approx(expected, rel=1e-9)
