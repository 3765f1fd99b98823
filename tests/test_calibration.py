"""Tests of ce_tutorial._calibration: ECE, reliability curve, temperature fit."""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize_scalar
from sklearn.calibration import calibration_curve

import ce_tutorial._calibration as calibration
from ce_tutorial import (
    classwise_calibration_error,
    cross_entropy_from_logits,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
    softmax,
)

from . import strategies as cst

# --------------------------------------------------------------------------
# expected_calibration_error and reliability_curve: hand-computed values
# --------------------------------------------------------------------------


def test_ece_hand_value_two_bins_of_equal_weight():
    # Confidence 0.9, one right and one wrong: gap |0.5 - 0.9| = 0.4.
    # Confidence 0.6 (class 1), both right: gap |1 - 0.6| = 0.4. ECE = 0.4.
    y_hat = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]]
    assert expected_calibration_error(y_hat, [0, 1, 1, 1], n_bins=10) == (
        pytest.approx(0.4, rel=1e-14)
    )


def test_ece_is_zero_for_a_calibrated_bin():
    # Four predictions at confidence 0.75, three right: acc = conf = 0.75.
    y_hat = [[0.75, 0.25, 0.0]] * 4
    assert expected_calibration_error(y_hat, [0, 0, 0, 2]) == 0.0


def test_ece_with_one_bin_is_the_gap_of_the_means():
    y_hat = np.array([[0.7, 0.3], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 0, 1])  # correct, wrong, wrong
    # mean confidence (0.7 + 0.8 + 0.55) / 3, accuracy 1/3
    expected = abs(1 / 3 - (0.7 + 0.8 + 0.55) / 3)
    assert expected_calibration_error(y_hat, y, n_bins=1) == pytest.approx(
        expected, rel=1e-14
    )


def test_a_confidence_on_a_bin_edge_belongs_to_the_bin_below():
    # M = 2: bins (0, 0.5] and (0.5, 1]. Example 0 has confidence exactly
    # 0.5 (a tie, predicted class 0, correct); example 1 has 0.75, wrong.
    y_hat = [[0.5, 0.5], [0.25, 0.75]]
    y = [0, 0]
    # Bin 0: acc 1, conf 0.5, gap 0.5; bin 1: acc 0, conf 0.75, gap 0.75.
    assert expected_calibration_error(y_hat, y, n_bins=2) == 0.625
    # Had 0.5 gone to the upper bin: acc 0.5, conf 0.625, ECE 0.125.
    conf, acc, count = reliability_curve(y_hat, y, n_bins=2)
    np.testing.assert_array_equal(conf, [0.5, 0.75])
    np.testing.assert_array_equal(acc, [1.0, 0.0])
    np.testing.assert_array_equal(count, [1, 1])


def test_edges_are_the_floats_m_over_m_and_one_is_in_the_top_bin():
    # fl(0.2) == fl(1/5), so it is on the edge and goes to bin 0 of 5;
    # nextafter(0.2, 1) is above the edge, in bin 1; 1.0 is in bin 4.
    above = np.nextafter(0.2, 1.0)
    y_hat = np.array(
        [
            [0.2, 0.2, 0.2, 0.2, 0.2],
            [above, 0.2, 0.2, 0.2, 0.4 - above],
            [1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    conf, _, count = reliability_curve(y_hat, [0, 0, 0], n_bins=5)
    np.testing.assert_array_equal(count, [1, 1, 1])
    np.testing.assert_array_equal(conf, [0.2, above, 1.0])


def test_float32_edges_are_float32():
    # float32(0.2) is above float64 0.2 but equal to float32(1) / float32(5),
    # so it is on an edge of the float32 bins: bin 0, not bin 1.
    y_hat = np.array([[0.2] * 5, [0.3, 0.2, 0.2, 0.2, 0.1]], np.float32)
    conf, acc, count = reliability_curve(y_hat, [0, 0], n_bins=5)
    assert conf.dtype == np.float32 and acc.dtype == np.float32
    np.testing.assert_array_equal(count, [1, 1])  # (0, 0.2] and (0.2, 0.4]
    np.testing.assert_array_equal(conf, np.array([0.2, 0.3], np.float32))


def test_ties_predict_the_first_largest_class():
    y_hat = [[0.4, 0.4, 0.2]]
    assert expected_calibration_error(y_hat, [0]) == pytest.approx(0.6, rel=1e-15)
    assert expected_calibration_error(y_hat, [1]) == pytest.approx(0.4, rel=1e-15)


def test_reliability_curve_returns_non_empty_bins_in_order():
    y_hat = [[0.95, 0.05], [0.15, 0.85], [0.3, 0.7], [0.65, 0.35]]
    conf, acc, count = reliability_curve(y_hat, [0, 1, 0, 0], n_bins=4)
    # bins (0.5, 0.75]: 0.7 (wrong), 0.65 (right); (0.75, 1]: 0.95, 0.85 (right)
    np.testing.assert_allclose(conf, [0.675, 0.9], rtol=1e-15)
    np.testing.assert_array_equal(acc, [0.5, 1.0])
    np.testing.assert_array_equal(count, [2, 2])
    assert count.dtype.kind == "i"


def test_integer_probabilities_compute_in_float64():
    conf, acc, _ = reliability_curve([[1, 0], [0, 1]], [0, 0], n_bins=3)
    assert conf.dtype == np.float64
    np.testing.assert_array_equal(acc, [0.5])
    assert expected_calibration_error([[1, 0], [0, 1]], [0, 0]) == 0.5


def test_float16_computes_in_float32():
    conf, _, _ = reliability_curve(np.array([[0.75, 0.25]], np.float16), [0])
    assert conf.dtype == np.float32


def test_inputs_are_not_modified():
    y_hat = np.array([[0.6, 0.4], [0.1, 0.9]])
    y = np.array([0, 0])
    before = y_hat.copy(), y.copy()
    expected_calibration_error(y_hat, y)
    reliability_curve(y_hat, y)
    np.testing.assert_array_equal(y_hat, before[0])
    np.testing.assert_array_equal(y, before[1])


def test_empty_batch():
    empty = np.zeros((0, 3))
    with pytest.raises(ValueError, match=r"undefined for an empty batch"):
        expected_calibration_error(empty, [])
    conf, acc, count = reliability_curve(empty, [])
    assert conf.shape == acc.shape == count.shape == (0,)


# --------------------------------------------------------------------------
# Agreement with scikit-learn's calibration_curve
# --------------------------------------------------------------------------
# calibration_curve(y_true, y_prob, strategy="uniform") bins the probability
# of the positive class, y_prob, not a top-label confidence, and reports the
# fraction of positives. The two coincide when every y_prob is above 1/2:
# then the predicted class is 1, its confidence is y_prob, and "correct" means
# y == 1. In the pinned scikit-learn 1.9.1 its bins are also closed on the
# right (np.searchsorted(edges[1:-1], y_prob), side "left"), with 0 in the
# first bin, like ours; the difference is the edges themselves:
# np.linspace(0, 1, M + 1) is not always the correctly rounded m / M (for
# M = 10, linspace gives 0.6000000000000001 for 6/10), so a value between the
# two floats goes to different bins. Away from the edges they agree.


@pytest.mark.parametrize("n_bins", [1, 2, 5, 10, 15, 23])
def test_agrees_with_sklearn_calibration_curve_off_the_edges(n_bins):
    rng = np.random.default_rng(n_bins)
    p1 = rng.uniform(0.5, 1.0, size=400)
    p1 = p1[p1 > 0.5]
    edges = np.concatenate(
        [np.arange(n_bins + 1) / n_bins, np.linspace(0, 1, n_bins + 1)]
    )
    gap = np.abs(p1[:, None] - edges[None, :]).min(axis=1)
    p1 = p1[gap > 1e-9]  # off every edge of both conventions
    y = (rng.uniform(size=p1.size) < p1**2).astype(np.int64)
    y_hat = np.column_stack([1 - p1, p1])

    conf, acc, count = reliability_curve(y_hat, y, n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(y, p1, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(conf, prob_pred, rtol=1e-13)
    np.testing.assert_allclose(acc, prob_true, rtol=1e-13)
    assert count.sum() == p1.size


def test_differs_from_sklearn_between_its_edge_and_m_over_m():
    # 0.6000000000000001 is sklearn's edge 6 of 10 (closed on the right, so it
    # is in sklearn's bin (0.5, 0.6]) but lies above 6/10 == 0.6 (our bin 6).
    p1 = np.array([np.nextafter(0.6, 1.0)])
    assert p1[0] == np.linspace(0, 1, 11)[6]
    conf, _, _ = reliability_curve(np.column_stack([1 - p1, p1]), [1], n_bins=10)
    _, prob_pred = calibration_curve([1], p1, n_bins=10, strategy="uniform")
    assert conf[0] == prob_pred[0]  # same single point ...
    # ... but in a different bin: ours is (0.6, 0.7].
    y_hat = np.array([[1 - p1[0], p1[0]], [0.35, 0.65]])
    _, _, count = reliability_curve(y_hat, [1, 1], n_bins=10)
    np.testing.assert_array_equal(count, [2])  # 0.6000000000000001 with 0.65


GOOD_Y_HAT = [[0.7, 0.3], [0.4, 0.6]]

# --------------------------------------------------------------------------
# Binary predictions: a 1-D probability of the positive class, 0/1 labels
# --------------------------------------------------------------------------
# calibration_curve bins y_prob itself, whichever side of 1/2 it is on, and
# reports the fraction of positives: the binary mode's definition. As above,
# the two differ only between sklearn's linspace edges and ours.


def _off_the_edges(p, n_bins):
    """The entries of ``p`` farther than 1e-9 from every edge of both kinds."""
    edges = np.concatenate(
        [np.arange(n_bins + 1) / n_bins, np.linspace(0, 1, n_bins + 1)]
    )
    return p[np.abs(p[:, None] - edges[None, :]).min(axis=1) > 1e-9]


def _sklearn_ece(y, p, n_bins):
    """The count-weighted gap of sklearn's binary curve, with its own bins."""
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    bins = np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], p)
    counts = np.bincount(bins, minlength=n_bins)
    counts = counts[counts > 0]
    return float(np.sum(counts * np.abs(prob_true - prob_pred)) / p.size)


@pytest.mark.parametrize("n_bins", [1, 2, 5, 10, 15, 23])
def test_binary_curve_and_ece_agree_with_sklearn(n_bins):
    rng = np.random.default_rng(100 + n_bins)
    p = _off_the_edges(rng.uniform(size=500), n_bins)
    y = (rng.uniform(size=p.size) < p**2).astype(np.int64)  # miscalibrated
    conf, frac, count = reliability_curve(p, y, n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(conf, prob_pred, rtol=1e-13)
    np.testing.assert_allclose(frac, prob_true, rtol=1e-13)
    assert count.sum() == p.size
    ece = expected_calibration_error(p, y, n_bins=n_bins)
    assert ece > 0.01
    assert ece == pytest.approx(_sklearn_ece(y, p, n_bins), rel=1e-12)


def test_binary_ece_hand_value_differs_from_the_top_label_one():
    # p = 0.2 with labels 0 and 1: fraction 0.5, gap 0.3; p = 0.8 with labels
    # 1 and 1: gap 0.2. Each bin holds half the examples: ECE = 0.25.
    p = np.array([0.2, 0.2, 0.8, 0.8])
    y = [0, 1, 1, 1]
    assert expected_calibration_error(p, y, n_bins=10) == pytest.approx(0.25, abs=1e-15)
    conf, frac, count = reliability_curve(p, y, n_bins=10)
    np.testing.assert_allclose(conf, [0.2, 0.8], rtol=1e-15)
    np.testing.assert_array_equal(frac, [0.5, 1.0])
    np.testing.assert_array_equal(count, [2, 2])
    # Top-label: every confidence is 0.8 and 3 of 4 are right: gap 0.05.
    top = np.column_stack([1 - p, p])
    assert expected_calibration_error(top, y, n_bins=10) == pytest.approx(
        0.05, abs=1e-15
    )


def test_binary_probability_below_one_half_is_binned_as_it_is():
    # Top-label binning would put 0.1 with 0.9; the binary mode keeps it low.
    conf, frac, count = reliability_curve([0.1, 0.9], [0, 1], n_bins=10)
    np.testing.assert_allclose(conf, [0.1, 0.9])
    np.testing.assert_array_equal(frac, [0.0, 1.0])
    np.testing.assert_array_equal(count, [1, 1])
    # 0 and 1 are valid probabilities here; 0 goes to the first bin.
    conf, frac, count = reliability_curve([0.0, 1.0, 0.05], [0, 1, 1], n_bins=10)
    np.testing.assert_allclose(conf, [0.025, 1.0])
    np.testing.assert_array_equal(frac, [0.5, 1.0])
    np.testing.assert_array_equal(count, [2, 1])


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 1, 0]),
        np.array([0, 1, 1, 0], dtype=np.uint8),
        np.array([False, True, True, False]),
        [0, 1, 1, 0],
    ],
    ids=["int64", "uint8", "bool", "list"],
)
def test_binary_labels_may_be_bool_or_any_integer(labels):
    p = np.float32([0.3, 0.6, 0.9, 0.2])
    ece = expected_calibration_error(p, labels, n_bins=5)
    # Bins (0.2, 0.4]: 0.3 with label 0; (0.4, 0.6]: 0.6 with 1; (0.8, 1]: 0.9
    # with 1; (0, 0.2]: 0.2 with 0 (an edge: the bin below).
    want = (0.3 + 0.4 + 0.1 + 0.2) / 4
    assert ece == pytest.approx(want, rel=1e-6)
    conf, _, _ = reliability_curve(p, labels, n_bins=5)
    assert conf.dtype == np.float32


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 1.0).filter(lambda v: abs(v - 0.5) > 1e-6),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([2, 4, 10, 16]),
)
def test_top_label_ece_of_two_classes_is_at_most_the_binary_one(pairs, n_bins):
    # With M even, p and 1 - p fall in mirrored bins, and the top-label bin of
    # confidence c pools the binary bins of c and 1 - c: |a - b| <= |a| + |b|.
    p = np.array([v for v, _ in pairs])
    y = np.array([label for _, label in pairs], dtype=np.int64)
    off = np.abs(p[:, None] - np.arange(n_bins + 1) / n_bins).min(axis=1) > 1e-9
    p, y = p[off], y[off]
    assume(p.size > 0)
    binary = expected_calibration_error(p, y, n_bins=n_bins)
    top = expected_calibration_error(np.column_stack([1 - p, p]), y, n_bins=n_bins)
    assert top <= binary + 1e-12


@pytest.mark.parametrize("func", [expected_calibration_error, reliability_curve])
@pytest.mark.parametrize(
    ("y_hat", "y", "error", "pattern"),
    [
        ([0.2, 0.7], [0, 2], ValueError, r"y\[1\] = 2 is not a 0/1 label"),
        ([0.2, 0.7], [-1, 1], ValueError, r"y\[0\] = -1 is not a 0/1 label"),
        ([0.2, 0.7], [0.0, 1.0], TypeError, r"y must hold bool or integer 0/1"),
        (
            [0.2, 0.7],
            np.array([0, 1], dtype="m8[s]"),
            TypeError,
            r"y must hold bool or integer 0/1 labels, got dtype timedelta64",
        ),
        ([0.2, 0.7], [0, 1, 1], ValueError, r"y has shape \(3,\), but y_hat holds 2"),
        ([0.2, 0.7], [[0, 1]], ValueError, r"y has shape \(1, 2\)"),
        ([0.2, 1.5], [0, 1], ValueError, r"y_hat\[1\] = 1\.5 is not in \[0, 1\]"),
        ([np.nan, 0.5], [0, 1], ValueError, r"y_hat\[0\] = nan is not in \[0, 1\]"),
        ([-0.0, -1e-300], [0, 1], ValueError, r"y_hat\[1\] = -1e-300 is not in"),
        ([True, False], [0, 1], TypeError, r"y_hat must hold real numbers"),
    ],
)
def test_binary_contract(func, y_hat, y, error, pattern):
    with pytest.raises(error, match=pattern):
        func(y_hat, y)


def test_binary_empty_batch():
    conf, frac, count = reliability_curve(np.empty(0), np.empty(0, dtype=int))
    assert conf.size == frac.size == count.size == 0
    with pytest.raises(ValueError, match=r"undefined for an empty batch"):
        expected_calibration_error([], [])


# --------------------------------------------------------------------------
# classwise_calibration_error
# --------------------------------------------------------------------------


def _classwise_by_hand(y_hat, y, n_bins):
    """Kull et al.'s definition, class by class, with sklearn's binary curve."""
    total = 0.0
    for k in range(y_hat.shape[1]):
        total += _sklearn_ece((y == k).astype(int), y_hat[:, k], n_bins)
    return total / y_hat.shape[1]


@pytest.mark.parametrize(("n_classes", "n_bins"), [(3, 10), (5, 15), (10, 7)])
def test_classwise_agrees_with_sklearn_class_by_class(n_classes, n_bins):
    rng = np.random.default_rng(n_classes * n_bins)
    y_hat = rng.dirichlet(np.ones(n_classes) * 0.7, size=600)
    edges = np.concatenate(
        [np.arange(n_bins + 1) / n_bins, np.linspace(0, 1, n_bins + 1)]
    )
    far = np.abs(y_hat[..., None] - edges).min(axis=-1) > 1e-9
    keep = far.all(axis=1)
    y_hat = y_hat[keep]
    # Labels drawn from the sharpened predictions: the model is miscalibrated.
    sharp = y_hat**2 / (y_hat**2).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(n_classes, p=row) for row in sharp])
    got = classwise_calibration_error(y_hat, y, n_bins=n_bins)
    assert got > 0.01
    assert got == pytest.approx(_classwise_by_hand(y_hat, y, n_bins), rel=1e-12)


def test_classwise_hand_value():
    # Docstring example: (0.35 + 0.35 + 0) / 3.
    y_hat = np.array([[0.6, 0.4, 0.0]] * 2 + [[0.3, 0.7, 0.0]] * 2)
    got = classwise_calibration_error(y_hat, [0, 0, 1, 1], n_bins=10)
    assert got == pytest.approx(0.7 / 3, rel=1e-14)


def test_classwise_of_two_classes_is_the_binary_ece_of_class_1():
    # Class 0's probabilities are 1 - p, binned in mirrored bins: its error
    # equals class 1's, so the mean is the binary ECE of p (off the edges).
    rng = np.random.default_rng(7)
    p = _off_the_edges(rng.uniform(size=300), 10)
    y = (rng.uniform(size=p.size) < p**3).astype(int)
    got = classwise_calibration_error(np.column_stack([1 - p, p]), y, n_bins=10)
    assert got == pytest.approx(expected_calibration_error(p, y, n_bins=10), rel=1e-12)


def test_classwise_is_zero_for_perfect_one_hot_predictions():
    y = np.array([0, 2, 1, 2])
    y_hat = np.eye(3)[y]
    assert classwise_calibration_error(y_hat, y) == 0.0
    assert classwise_calibration_error([[1.0], [1.0]], [0, 0]) == 0.0


def test_classwise_dtypes_and_inputs_untouched():
    y_hat = np.float32([[0.7, 0.3], [0.2, 0.8], [0.55, 0.45]])
    y = np.array([0, 1, 1])
    before = (y_hat.copy(), y.copy())
    got32 = classwise_calibration_error(y_hat, y, n_bins=4)
    got64 = classwise_calibration_error(y_hat.astype(np.float64), y, n_bins=4)
    assert isinstance(got32, float)
    assert got32 == pytest.approx(got64, rel=1e-6)
    np.testing.assert_array_equal(y_hat, before[0])
    np.testing.assert_array_equal(y, before[1])


@pytest.mark.parametrize(
    ("y_hat", "y", "n_bins", "error", "pattern"),
    [
        ([0.2, 0.8], [0, 1], 15, ValueError, r"y_hat must be 2-D"),
        (np.empty((0, 3)), [], 15, ValueError, r"undefined for an empty batch"),
        (GOOD_Y_HAT, [0, 2], 15, ValueError, r"y\[1\] = 2 is out of range"),
        ([[0.7, 0.4], [0.4, 0.6]], [0, 1], 15, ValueError, r"y_hat\[0\] sums to"),
        (GOOD_Y_HAT, [0.0, 1.0], 15, TypeError, r"y must hold integer class labels"),
        (GOOD_Y_HAT, [0, 1], 0, ValueError, r"n_bins must be a positive integer"),
        ([["a", "b"]], [0], 15, TypeError, r"y_hat must hold real numbers"),
    ],
)
def test_classwise_contract(y_hat, y, n_bins, error, pattern):
    with pytest.raises(error, match=pattern):
        classwise_calibration_error(y_hat, y, n_bins=n_bins)


# --------------------------------------------------------------------------
# ECE and reliability curve: contract
# --------------------------------------------------------------------------


@pytest.mark.parametrize("func", [expected_calibration_error, reliability_curve])
@pytest.mark.parametrize(
    ("y_hat", "y", "n_bins", "error", "pattern"),
    [
        (
            GOOD_Y_HAT,
            [0, 1],
            0,
            ValueError,
            r"n_bins must be a positive integer, got 0",
        ),
        (GOOD_Y_HAT, [0, 1], -3, ValueError, r"n_bins .* got -3"),
        (
            GOOD_Y_HAT,
            [0, 1],
            2.0,
            TypeError,
            r"n_bins must be a positive integer, got 2\.0",
        ),
        (GOOD_Y_HAT, [0, 1], True, TypeError, r"n_bins .* got True"),
        (GOOD_Y_HAT, [0, 1], "5", TypeError, r"n_bins .* got '5'"),
        (
            [[[0.7, 0.3]]],
            [0],
            15,
            ValueError,
            r"y_hat must be 1-D \(the probability of the positive class\) or 2-D",
        ),
        ([[0.7, 0.4], [0.4, 0.6]], [0, 1], 15, ValueError, r"y_hat\[0\] sums to"),
        (
            [[1.2, 0.0], [0.4, 0.6]],
            [0, 1],
            15,
            ValueError,
            r"y_hat\[0, 0\] = 1\.2 is greater than 1",
        ),
        (
            [[0.5, 0.5], [-0.1, 1.1]],
            [0, 1],
            15,
            ValueError,
            r"y_hat\[1, 0\] = -0\.1 is negative",
        ),
        (
            [[np.nan, 0.5], [0.4, 0.6]],
            [0, 1],
            15,
            ValueError,
            r"y_hat\[0, 0\] = nan is not finite",
        ),
        ([[True, False]], [0], 15, TypeError, r"y_hat must hold real numbers"),
        (
            GOOD_Y_HAT,
            [0, -1],
            15,
            ValueError,
            r"y\[1\] = -1 is out of range for 2 classes",
        ),
        (GOOD_Y_HAT, [0, 2], 15, ValueError, r"y\[1\] = 2 is out of range"),
        (GOOD_Y_HAT, [0.0, 1.0], 15, TypeError, r"y must hold integer class labels"),
        (
            GOOD_Y_HAT,
            [0, 1, 1],
            15,
            ValueError,
            r"y has shape \(3,\), but there are 2 samples",
        ),
    ],
)
def test_binned_contract(func, y_hat, y, n_bins, error, pattern):
    with pytest.raises(error, match=pattern):
        func(y_hat, y, n_bins=n_bins)


# --------------------------------------------------------------------------
# ECE and reliability curve: properties
# --------------------------------------------------------------------------


@st.composite
def predictions_and_labels(draw):
    p = draw(cst.distributions(min_classes=1))
    return p, draw(cst.labels_for(*p.shape))


@given(predictions_and_labels(), st.integers(1, 30))
def test_ece_is_the_count_weighted_gap_of_the_curve(data, n_bins):
    p, y = data
    ece = expected_calibration_error(p, y, n_bins=n_bins)
    conf, acc, count = reliability_curve(p, y, n_bins=n_bins)
    assert 0.0 <= ece <= 1.0
    assert count.sum() == len(y)
    assert np.all(count >= 1)
    assert np.all((acc >= 0) & (acc <= 1))
    assert ece == pytest.approx(np.sum(count * np.abs(acc - conf)) / len(y), abs=1e-14)
    # each bin's mean confidence lies inside the bin
    assert np.all(conf > 0) and np.all(conf <= 1 + 1e-15)


@given(predictions_and_labels(), st.integers(1, 30), st.randoms(use_true_random=False))
def test_ece_does_not_depend_on_the_order_of_examples(data, n_bins, random):
    p, y = data
    order = np.array(random.sample(range(len(y)), len(y)))
    assert expected_calibration_error(p[order], y[order], n_bins) == pytest.approx(
        expected_calibration_error(p, y, n_bins), abs=1e-14
    )


@given(predictions_and_labels())
def test_one_bin_ece_is_the_gap_between_accuracy_and_mean_confidence(data):
    p, y = data
    correct = p.argmax(axis=1) == y
    expected = abs(correct.mean() - p.max(axis=1).mean())
    assert expected_calibration_error(p, y, n_bins=1) == pytest.approx(
        expected, abs=1e-14
    )


# --------------------------------------------------------------------------
# fit_temperature: references
# --------------------------------------------------------------------------


def mean_nll(z, y, temperature):
    return float(cross_entropy_from_logits(np.asarray(z) / temperature, y, "mean"))


def slope_mp(z, y, beta):
    """d/d(beta) of the mean NLL of softmax(beta z), with 50-digit mpmath."""
    with mpmath.workdps(50):
        beta = mpmath.mpf(beta)
        total = mpmath.mpf(0)
        for row, label in zip(z, y, strict=True):
            v = [mpmath.mpf(float(x)) for x in row]
            w = [mpmath.exp(beta * x) for x in v]
            total += mpmath.fsum(
                a * b for a, b in zip(w, v, strict=True)
            ) / mpmath.fsum(w)
            total -= v[label]
        return total / len(z)


def well_posed(seed, n=200, c=5, true_temperature=2.0, scale=3.0):
    """Logits with labels drawn from softmax(z / true_temperature)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, c))
    probs = softmax(z / true_temperature)
    y = (probs.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return z, np.minimum(y, c - 1)


def test_hand_value_one_over_log_2():
    # softmax([1, 0] / T)_0 = 2/3 at exp(1/T) = 2.
    z = [[1.0, 0.0]] * 3
    assert fit_temperature(z, [0, 0, 1]) == pytest.approx(1 / np.log(2), rel=1e-13)


def test_hand_value_with_two_row_patterns():
    # Rows [a, 0] with labels p0 = 3/4 of class 0: softmax gives sigma(a / T),
    # optimum sigma(a / T) = 3/4, T = a / log 3, whatever a is.
    for a in (0.01, 1.0, 7.5, 1e3):
        z = [[a, 0.0]] * 4
        assert fit_temperature(z, [0, 0, 0, 1]) == pytest.approx(
            a / np.log(3), rel=1e-12
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_a_dense_grid(seed):
    z, y = well_posed(seed)
    t = fit_temperature(z, y)
    grid = np.geomspace(0.2, 20.0, 20001)
    losses = np.array([mean_nll(z, y, g) for g in grid])
    best = int(np.argmin(losses))
    assert 0 < best < grid.size - 1  # an interior grid minimum
    assert grid[best - 1] <= t <= grid[best + 1]
    assert mean_nll(z, y, t) <= losses[best] + 1e-14


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_against_scipy(seed):
    z, y = well_posed(seed, true_temperature=0.5 + seed)
    t = fit_temperature(z, y)
    # minimize_scalar on log T; its Brent tolerance is ~1.5e-8 in log T.
    res = minimize_scalar(lambda s: mean_nll(z, y, np.exp(s)), bracket=(-3.0, 3.0))
    assert res.success
    assert t == pytest.approx(np.exp(res.x), rel=1e-6)
    # brentq on the derivative in 1/T is far tighter.

    def slope(beta):
        w = softmax(beta * z)
        return float(np.mean((w * z).sum(axis=1) - z[np.arange(len(y)), y]))

    beta = brentq(slope, 1e-3, 1e3, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    assert t == pytest.approx(1 / beta, rel=1e-10)


@pytest.mark.parametrize("seed", [0, 5])
def test_relative_accuracy_1e_8_with_mpmath(seed):
    z, y = well_posed(seed, n=40, c=4)
    beta = 1 / fit_temperature(z, y)
    # The true minimiser lies strictly between beta (1 -+ 1e-8).
    assert slope_mp(z, y, beta * (1 - 1e-8)) < 0 < slope_mp(z, y, beta * (1 + 1e-8))


# --------------------------------------------------------------------------
# fit_temperature: invariances
# --------------------------------------------------------------------------


@pytest.mark.parametrize("a", [1e-3, 0.5, 3.0, 10.0, 1e5])
def test_scaling_the_logits_by_a_scales_t_by_a(a):
    z, y = well_posed(7)
    assert fit_temperature(a * z, y) == pytest.approx(
        a * fit_temperature(z, y), rel=1e-9
    )


@settings(max_examples=30, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.floats(0.2, 5.0),
    st.floats(1e-3, 1e3),
)
def test_scaling_property(seed, true_temperature, a):
    z, y = well_posed(seed, n=30, c=4, true_temperature=true_temperature)
    try:
        t = fit_temperature(z, y)
    except ValueError:  # a small sample may have no finite minimiser
        with pytest.raises(ValueError):
            fit_temperature(a * z, y)
        return
    assert fit_temperature(a * z, y) == pytest.approx(a * t, rel=1e-9)


def test_extreme_scales_stay_finite():
    z, y = well_posed(8)
    t = fit_temperature(z, y)
    assert fit_temperature(z * 1e300, y) == pytest.approx(t * 1e300, rel=1e-9)
    assert fit_temperature(z * 1e-300, y) == pytest.approx(t * 1e-300, rel=1e-9)


def test_adding_a_constant_to_each_row_changes_nothing():
    z, y = well_posed(9)
    shift = np.random.default_rng(9).normal(scale=100.0, size=(len(y), 1))
    assert fit_temperature(z + shift, y) == pytest.approx(
        fit_temperature(z, y), rel=1e-9
    )


def test_constant_rows_are_ignored():
    z, y = well_posed(10)
    t = fit_temperature(z, y)
    z2 = np.vstack([z, np.full((5, z.shape[1]), 4.2)])
    y2 = np.concatenate([y, [0, 1, 2, 3, 4]])
    assert fit_temperature(z2, y2) == pytest.approx(t, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_temperature_scaling_keeps_every_prediction(seed):
    z, y = well_posed(seed, true_temperature=0.3 + seed)
    t = fit_temperature(z, y)
    np.testing.assert_array_equal(softmax(z / t).argmax(axis=1), z.argmax(axis=1))


def test_dtypes_and_inputs():
    z, y = well_posed(11)
    t = fit_temperature(z, y)
    assert type(t) is float
    before = z.copy(), y.copy()
    fit_temperature(z, y)
    np.testing.assert_array_equal(z, before[0])
    np.testing.assert_array_equal(y, before[1])
    # float32 logits: computed in float64 from the float32 values
    z32 = z.astype(np.float32)
    assert fit_temperature(z32, y) == pytest.approx(
        fit_temperature(z32.astype(np.float64), y), rel=1e-12
    )
    zi = np.round(z * 10).astype(np.int64)
    assert fit_temperature(zi, y) == pytest.approx(
        fit_temperature(zi.astype(np.float64), y), rel=1e-12
    )


@settings(max_examples=200)
@given(cst.logits_and_labels(bound=20.0, min_classes=2))
def test_fit_or_the_right_error(data):
    z, y = data
    u = z - z.max(axis=1, keepdims=True)
    varied = (u != 0).any(axis=1)
    try:
        t = fit_temperature(z, y)
    except ValueError as exc:
        msg = str(exc)
        true_u = u[np.arange(len(y)), y][varied]
        if "constant" in msg:
            assert not varied.any()
        elif "T -> 0" in msg:
            assert np.all(true_u == 0)
        elif "T -> inf" in msg:
            margin = (z[np.arange(len(y)), y] - z.mean(axis=1))[varied]
            assert np.mean(margin) <= 1e-12 * np.abs(z).max()
        else:
            raise
        return
    assert 0 < t < np.inf
    # Dividing by t > 0 keeps the largest logit largest, wherever the top two
    # logits are apart by more than rounding (closer ones may round together).
    top2 = np.sort(z, axis=1)[:, -2:]
    apart = top2[:, 1] - top2[:, 0] > 1e-12 * np.abs(z).max()
    np.testing.assert_array_equal(
        (z / t).argmax(axis=1)[apart], z.argmax(axis=1)[apart]
    )
    # and T is a minimum of the NLL
    here = mean_nll(z, y, t)
    assume(0.0 < here)
    for factor in (1 - 1e-3, 1 + 1e-3):
        assert here <= mean_nll(z, y, t * factor) * (1 + 1e-12)


# --------------------------------------------------------------------------
# fit_temperature: contract
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z", "y", "pattern"),
    [
        # every true-class logit is the strict maximum of its row
        ([[3.0, 1.0], [2.0, 0.0]], [0, 0], r"keeps falling as T -> 0"),
        (
            [[3.0, 1.0, 0.0], [0.0, 5.0, 1.0]],
            [0, 1],
            r"keeps falling as T -> 0.*largest",
        ),
        # ties for the maximum: the NLL still falls as T -> 0
        ([[3.0, 3.0, 0.0], [1.0, 0.0, 0.0]], [1, 0], r"keeps falling as T -> 0"),
        # constant rows are ignored: the others decide
        ([[2.0, 2.0], [3.0, 1.0]], [1, 0], r"keeps falling as T -> 0"),
        # true logits on average at their row means: uniform is best
        ([[1.0, 0.0], [1.0, 0.0]], [0, 1], r"keeps falling as T -> inf.*= 0\.0 <= 0"),
        # true logits below the row means
        ([[1.0, 0.0], [0.0, 1.0]], [1, 0], r"keeps falling as T -> inf.*= -0\.5 <= 0"),
        ([[4.0, 0.0, 0.0], [2.0, 1.0, 0.0]], [2, 2], r"keeps falling as T -> inf"),
    ],
)
def test_no_finite_minimiser(z, y, pattern):
    with pytest.raises(ValueError, match=pattern):
        fit_temperature(z, y)


@pytest.mark.parametrize(
    ("z", "y", "error", "pattern"),
    [
        (
            [[1.0, 1.0], [0.0, 0.0]],
            [0, 1],
            ValueError,
            r"every row of logits is constant",
        ),
        ([[5.0]], [0], ValueError, r"every row of logits is constant"),
        (np.zeros((0, 3)), [], ValueError, r"needs at least one example.*empty batch"),
        ([1.0, 2.0], [0], ValueError, r"logits must be 2-D"),
        ([[1.0, np.nan]], [0], ValueError, r"logits\[0, 1\] = nan is not finite"),
        (
            [[1.0, 0.0], [np.inf, 0.0]],
            [0, 1],
            ValueError,
            r"logits\[1, 0\] = inf is not finite",
        ),
        ([[1.0, -np.inf]], [0], ValueError, r"logits\[0, 1\] = -inf is not finite"),
        ([[1.0, 0.0]], [-1], ValueError, r"y\[0\] = -1 is out of range for 2 classes"),
        ([[1.0, 0.0]], [2], ValueError, r"y\[0\] = 2 is out of range"),
        (
            [[1.0, 0.0]],
            [0, 1],
            ValueError,
            r"y has shape \(2,\), but there are 1 samples",
        ),
        ([[1.0, 0.0]], [0.0], TypeError, r"y must hold integer class labels"),
        ([[True, False]], [0], TypeError, r"logits must hold real numbers"),
        ([["a", "b"]], [0], TypeError, r"logits must hold real numbers"),
    ],
)
def test_fit_temperature_contract(z, y, error, pattern):
    with pytest.raises(error, match=pattern):
        fit_temperature(z, y)


@pytest.mark.parametrize(("slope", "way"), [(-1.0, "0"), (1.0, "inf")])
def test_minimiser_beyond_the_float_range(monkeypatch, slope, way):
    # A minimiser beyond the float range needs logit gaps below the smallest
    # normal float, where rounding decides the sign of f'. Test the guard by
    # making f' keep one sign, so that the bracket grows to inf or shrinks to 0.
    monkeypatch.setattr(calibration, "_slopes", lambda beta, u, u_true: (slope, 1.0))
    z, y = well_posed(12)
    with pytest.raises(
        ValueError, match=re.escape(f"keeps falling as T -> {way} beyond the floating")
    ):
        fit_temperature(z, y)


# --------------------------------------------------------------------------
# Regression tests: longdouble, huge n_bins, 2-D y, T -> inf by rounding
# --------------------------------------------------------------------------

LONGDOUBLE_IS_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="longdouble is float64 here")
def test_longdouble_probabilities_compute_in_longdouble():
    # 0.5 + 2**-60 is a longdouble but not a float64: a float64 accumulator
    # (np.bincount's weights) would round the bin's confidence to 0.5.
    delta = np.ldexp(np.longdouble(1), -60)
    y_hat = np.array([[0.5 + delta, 0.5 - delta], [0.1, 0.9]], np.longdouble)
    conf, acc, count = reliability_curve(y_hat, [0, 0], n_bins=4)
    assert conf.dtype == acc.dtype == np.longdouble
    np.testing.assert_array_equal(count, [1, 1])  # (0.5, 0.75] and (0.75, 1]
    assert conf[0] == 0.5 + delta and conf[1] == np.longdouble(0.9)
    np.testing.assert_array_equal(acc, [1, 0])
    # gaps 0.5 - delta and 0.9 over 2 examples
    ece = expected_calibration_error(y_hat, [0, 0], n_bins=4)
    assert ece == pytest.approx(0.7, rel=1e-15)


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="longdouble is float64 here")
def test_longdouble_agrees_with_float64_on_float64_values():
    rng = np.random.default_rng(20)
    p = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, size=300)
    for n_bins in (1, 7, 15):
        conf, acc, count = reliability_curve(p.astype(np.longdouble), y, n_bins)
        conf64, acc64, count64 = reliability_curve(p, y, n_bins)
        np.testing.assert_array_equal(count, count64)
        np.testing.assert_allclose(conf.astype(float), conf64, rtol=1e-15)
        np.testing.assert_allclose(acc.astype(float), acc64, rtol=1e-15)


def test_huge_n_bins_needs_memory_of_order_n_only():
    import tracemalloc

    # Confidences 0.9 (right) and 0.6 (wrong) in bins of their own:
    # ECE = (|1 - 0.9| + |0 - 0.6|) / 2 = 0.35, as with 10 bins.
    y_hat = [[0.9, 0.1], [0.4, 0.6]]
    tracemalloc.start()
    try:
        ece = expected_calibration_error(y_hat, [0, 0], n_bins=10**9)
        conf, acc, count = reliability_curve(y_hat, [0, 0], n_bins=10**9)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the edges of 10**9 bins alone are 8 GB
    assert ece == pytest.approx(0.35, rel=1e-15)
    np.testing.assert_array_equal(conf, [0.6, 0.9])
    np.testing.assert_array_equal(acc, [0.0, 1.0])
    np.testing.assert_array_equal(count, [1, 1])
    # 10**20 bins (more than an int64 can count) work the same way
    assert expected_calibration_error(y_hat, [0, 0], n_bins=10**20) == (
        pytest.approx(0.35, rel=1e-15)
    )
    _, _, count = reliability_curve(y_hat, [0, 0], n_bins=10**20)
    np.testing.assert_array_equal(count, [1, 1])


def test_huge_n_bins_keeps_the_edges_m_over_m():
    # M = 10**9: 0.7 == fl(7e8 / 1e9) is an edge, so it ends bin 7e8 - 1;
    # the next float and 0.7 + 5e-10 are in bin 7e8, (0.7, 0.700000001].
    c = np.array([0.7, np.nextafter(0.7, 1.0), 0.7 + 5e-10, 0.700000001 + 1e-12])
    assert 0.7 == 7 * 10**8 / 10**9 and 0.700000001 == 700000001 / 10**9
    y_hat = np.column_stack([c, 1 - c])
    conf, _, count = reliability_curve(y_hat, [0, 0, 0, 0], n_bins=10**9)
    np.testing.assert_array_equal(count, [1, 2, 1])
    assert conf[0] == 0.7 and conf[2] == c[3]


@pytest.mark.parametrize(
    ("dtype", "n_bins", "largest"),
    [
        (np.float64, 10**309, r"1\.7976931348623157e\+308"),
        (np.float32, 10**39, r"3\.4028235e\+38"),
    ],
)
def test_n_bins_beyond_the_float_range(dtype, n_bins, largest):
    y_hat = np.array(GOOD_Y_HAT, dtype)
    for func in (expected_calibration_error, reliability_curve):
        with pytest.raises(
            ValueError,
            match=rf"n_bins = 10{{39,309}} is too large: .* computed in "
            rf"{np.dtype(dtype)}, whose largest number is {largest}",
        ):
            func(y_hat, [0, 1], n_bins=n_bins)


def old_bins(confidence, n_bins):
    """The bins of the first implementation: searchsorted on stored edges."""
    dtype = confidence.dtype
    edges = np.arange(n_bins + 1, dtype=dtype) / dtype.type(n_bins)
    bins = np.searchsorted(edges, confidence, side="left") - 1
    return np.clip(bins, 0, n_bins - 1)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64, np.longdouble]),
    st.integers(1, 3000),
    st.lists(st.integers(0, 3000), min_size=1, max_size=20),
    st.lists(st.sampled_from([-1, 0, 1]), min_size=20, max_size=20),
)
def test_bins_match_stored_edges_exactly(dtype, n_bins, ms, nudges):
    # Confidences on the edges m / M and one float either side of them.
    dtype = np.dtype(dtype)
    edges = np.arange(n_bins + 1, dtype=dtype) / dtype.type(n_bins)
    c = edges[np.minimum(ms, n_bins)]
    towards = np.where(np.array(nudges[: c.size]) > 0, 2.0, -1.0).astype(dtype)
    c = np.where(np.array(nudges[: c.size]) != 0, np.nextafter(c, towards), c)
    c = np.clip(c, 0, 1).astype(dtype)
    ends = calibration._bin_ends(c, n_bins)
    np.testing.assert_array_equal(ends - 1, old_bins(c, n_bins))


def reference_bin(c, n_bins, dtype):
    """max{m : fl(fl(m) / fl(M)) < c}, by bisection on the Python integer m."""
    big = dtype.type(n_bins)
    lo, hi = 0, n_bins  # edge(lo) < c (for c > 0), edge(hi) = 1 >= c
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if dtype.type(mid) / big < c:
            lo = mid
        else:
            hi = mid
    return lo


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([np.float32, np.float64, np.longdouble]),
    st.sampled_from([2**24 + 1, 2**24 + 3, 10**9, 2**53 + 1, 10**20, 3 * 10**30]),
    st.floats(1e-6, 1.0),
    st.integers(-3, 3),
)
def test_bins_for_huge_n_bins_match_a_bisection_reference(dtype, n_bins, c, steps):
    # Beyond 2**24 (float32) or 2**53 (float64) the conversion of m rounds,
    # so neighbouring m share an edge; the bin is still the last m whose
    # edge is below c, and the key x = m + 1 is the float of that integer.
    dtype = np.dtype(dtype)
    c = dtype.type(c)
    for _ in range(abs(steps)):
        c = np.nextafter(c, dtype.type(2.0 if steps > 0 else 0.0))
    c = min(c, dtype.type(1))
    x = calibration._bin_ends(np.array([c], dtype), n_bins)[0]
    assert x == dtype.type(reference_bin(c, n_bins, dtype) + 1)


@pytest.mark.parametrize(
    ("func", "z"),
    [
        (expected_calibration_error, GOOD_Y_HAT),
        (reliability_curve, GOOD_Y_HAT),
        (fit_temperature, [[1.0, 0.0], [0.0, 2.0]]),
    ],
)
def test_two_dimensional_y_is_rejected_as_not_labels(func, z):
    with pytest.raises(
        ValueError,
        match=re.escape(
            "y must be a 1-D array of integer class labels of shape (2,); target "
            "distributions are not accepted here, got shape (2, 2)"
        ),
    ):
        func(z, np.eye(2))
    # A 1-D float y is a dtype error, without a hint to pass 2-D targets.
    with pytest.raises(TypeError, match=r"integer class labels") as info:
        func(z, [0.0, 1.0])
    assert "2-D" not in str(info.value)
    assert "not accepted here" in str(info.value)


def exact_margin_sign(z, y):
    """Sign of sum_i (C z[i, y_i] - sum_j z[i, j]), in exact rational arithmetic."""
    from fractions import Fraction

    z = np.asarray(z, dtype=np.float64)
    total = sum(
        z.shape[1] * Fraction(z[i, label]) - sum(map(Fraction, z[i]))
        for i, label in enumerate(y)
    )
    return (total > 0) - (total < 0)


# An exact mean margin of 0 comes out of float64 as a tiny positive number;
# without a rounding bound these returned T from 2.25e15 to 3.1e16. The first
# is the reviewer's case, the others came from a brute-force search over
# logits k / 10 (every one of them gave a finite T before).
ROUNDED_ZERO_MARGINS = [
    ([[-0.2, 0.3, -0.1], [0.1, -0.3, -0.1]], [0, 0]),
    ([[-0.3, 0.4, -0.4], [0.3, -0.8, 0.2]], [2, 2]),
    (
        [[0.4, -0.8, -0.2, -0.8], [0.2, -0.2, 0.2, 0.0], [-0.6, 0.5, -0.6, -0.9]],
        [0, 1, 3],
    ),
    ([[0.2, -0.5], [0.2, -0.4], [-0.2, -0.3], [0.7, 0.7]], [1, 0, 0, 0]),
    ([[0.6, 0.0], [0.2, -0.7], [-0.1, 0.1], [0.3, 0.2]], [0, 1, 1, 0]),
    ([[0.6, -0.2], [0.8, 0.4], [0.9, -0.3]], [0, 0, 1]),
]


@pytest.mark.parametrize(("z", "y"), ROUNDED_ZERO_MARGINS)
def test_a_margin_of_zero_rounded_up_still_means_t_is_infinite(z, y):
    assert exact_margin_sign(z, y) == 0  # the exact answer is T = inf
    with pytest.raises(
        ValueError,
        match=r"keeps falling as T -> inf \(to within rounding error\).*"
        r"mean of z\[y\] - mean\(z\) = .* (<= 0|is not above its rounding-error "
        r"bound)",
    ):
        fit_temperature(z, y)


@pytest.mark.parametrize("gap", [1.35e-6, 1e-4])
def test_a_genuinely_tiny_margin_still_gives_a_large_finite_t(gap):
    # Rows [1, 0] (class 0) and [1 - gap, 0] (class 1): margin gap / 4 and
    # f''(0) about 1/4, so T is about 1 / gap (7.4e5 for gap = 1.35e-6).
    z = [[1.0, 0.0], [1.0 - gap, 0.0]]
    assert exact_margin_sign(z, [0, 1]) == 1
    t = fit_temperature(z, [0, 1])
    assert t == pytest.approx(1 / gap, rel=1e-3)
    beta = 1 / t
    assert slope_mp(z, [0, 1], beta * (1 - 1e-8)) < 0
    assert slope_mp(z, [0, 1], beta * (1 + 1e-8)) > 0


def test_masked_logits_are_rejected_with_a_reason():
    with pytest.raises(
        ValueError,
        match=r"logits\[1, 2\] = -inf is not finite; .*a -inf that masks a class "
        r"is not supported",
    ):
        fit_temperature([[1.0, 0.0, 2.0], [1.0, 0.5, -np.inf]], [0, 1])


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="longdouble is float64 here")
def test_longdouble_logits_beyond_the_float64_range():
    # Rows [a, 0] with 2 of 3 labels class 0: T = a / log 2 (see the doctest).
    z = np.array([[1.0, 0.0]] * 3, np.longdouble)
    t = fit_temperature(z * np.longdouble("1e300"), [0, 0, 1])
    assert t == pytest.approx(1e300 / np.log(2), rel=1e-12)
    with pytest.raises(ValueError, match=r"T = 1\.44\d*e\+400 is outside the range"):
        fit_temperature(z * np.longdouble("1e400"), [0, 0, 1])
