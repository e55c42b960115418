"""Paired bootstrap and exact McNemar (pasm.evaluate.paired) against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pasm.evaluate.paired import bootstrap_difference, compare, mcnemar_exact


def test_identical_methods_have_zero_difference_and_p_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(3, 200))
    got = compare(a, a.copy())
    assert got["difference"] == 0 and got["ci_low"] <= 0 <= got["ci_high"]
    assert (got["ci_low"], got["ci_high"]) == (0.0, 0.0)  # every resample of identical results is 0
    assert got["p_value"] == 1.0 and got["only_a"] == got["only_b"] == 0


@pytest.mark.parametrize(
    "only_a, only_b, p",
    [
        (3, 0, 2 * 0.5**3),  # 0.25
        (5, 1, 2 * (1 + 6) / 2**6),  # 2 P(X <= 1), X ~ Bin(6, 1/2) = 0.21875
        (10, 10, 1.0),  # balanced: no evidence either way
        (0, 8, 2 * 0.5**8),
    ],
)
def test_mcnemar_exact_matches_the_binomial_by_hand(only_a, only_b, p):
    n_same = 7  # concordant pairs (both right or both wrong) do not enter the test
    a = np.array([1] * only_a + [0] * only_b + [1] * n_same)
    b = np.array([0] * only_a + [1] * only_b + [1] * n_same)
    got = mcnemar_exact(a, b)
    assert (got["only_a"], got["only_b"]) == (only_a, only_b)
    assert got["p_value"] == pytest.approx(min(p, 1.0), abs=1e-12)


def test_mcnemar_pools_the_seeds():
    a = np.array([[1, 1, 0], [1, 0, 0]])  # seed 0: 2 right, seed 1: 1 right
    b = np.array([[0, 0, 0], [0, 0, 0]])
    assert mcnemar_exact(a, b)["only_a"] == 3 and mcnemar_exact(a, b)["p_value"] == pytest.approx(0.25)


def test_bootstrap_of_a_constant_difference_is_that_constant():
    a, b = np.ones((2, 50)), np.zeros((2, 50))
    got = bootstrap_difference(a, b, n_boot=200)
    assert got["difference"] == 1.0 and (got["ci_low"], got["ci_high"]) == (1.0, 1.0)


def test_bootstrap_of_two_faces_has_the_hand_computed_distribution():
    """One seed, faces with differences 1 and 0: a resample draws face 1 twice (mean 1), face 2 twice
    (mean 0) or each once (mean 1/2), with probabilities 1/4, 1/4, 1/2."""
    got = bootstrap_difference(np.array([[1, 0]]), np.array([[0, 0]]), n_boot=4000, seed=1)
    assert got["difference"] == 0.5
    assert (got["ci_low"], got["ci_high"]) == (0.0, 1.0)
    narrow = bootstrap_difference(np.array([[1, 0]]), np.array([[0, 0]]), n_boot=4000, level=0.4, seed=1)
    assert (narrow["ci_low"], narrow["ci_high"]) == (0.5, 0.5)  # the middle 40% is all 1/2


def test_bootstrap_resamples_seeds_too():
    """Seed 0 says +1 on every face, seed 1 says 0: faces alone cannot move the mean, seeds can."""
    a = np.array([[1] * 40, [0] * 40])
    b = np.zeros((2, 40))
    got = bootstrap_difference(a, b, n_boot=2000, seed=2)
    assert got["difference"] == 0.5 and got["ci_low"] == 0.0 and got["ci_high"] == 1.0


def test_a_real_difference_excludes_zero_and_is_reproducible():
    rng = np.random.default_rng(5)
    b = (rng.random((3, 2000)) < 0.6).astype(int)
    a = b.copy()
    flip = rng.random((3, 2000)) < 0.1
    a[flip & (b == 0)] = 1  # a fixes about 10% of b's mistakes and breaks nothing
    got = compare(a, b, seed=3)
    assert got["ci_low"] > 0 and got["p_value"] < 1e-6 and got["only_b"] == 0
    assert compare(a, b, seed=3) == got


def test_mismatched_or_non_binary_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        compare(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="lie in \\[0, 1\\]"):
        compare(np.full((1, 3), 2), np.ones((1, 3)))
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact(np.full((1, 3), 0.5), np.ones((1, 3)))


def test_shares_get_a_bootstrap_interval_and_no_mcnemar():
    a, b = np.array([[1.0, 0.5, 0.25, 1.0]]), np.array([[0.5, 0.5, 0.0, 0.75]])
    stats = compare(a, b, n_boot=200)
    assert np.isclose(stats["difference"], 0.25) and stats["ci_low"] <= 0.25 <= stats["ci_high"]
    assert np.isnan(stats["p_value"])


def test_one_seed_has_no_spread_in_the_table():
    from pasm.evaluate.comparison import comparison_rows, markdown

    labels = np.array([0, 1, 0, 1, 1, 0])
    pred = {"round0": np.array([[0, 1, 1, 1, 0, 0]]), "round1": np.array([[0, 1, 0, 1, 0, 0]])}
    sets = {
        "splits/test": {
            "labels": labels,
            "predicted": pred,
            "correct": {m: p == labels for m, p in pred.items()},
        }
    }
    rows = comparison_rows(sets, ["round0", "round1"], ["round0"], n_boot=200)
    assert np.isnan(rows[0]["accuracy_sd"]) and rows[1]["accuracy_mean"] == 5 / 6
    text = markdown(rows, ["round0"], [0], "toy", 200)
    assert "(n=6, 1 seed)" in text and "+- " not in text.split("## ")[1]
    assert "| round1 | 83.33 | 83.33 | +16.67 [" in text
