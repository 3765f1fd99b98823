"""Entropy and KL divergence (``ce_tutorial._information``)."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ce_tutorial import cross_entropy, entropy, kl_divergence

from . import strategies as cst

EPS64 = np.finfo(np.float64).eps

# --- hand-derived values -------------------------------------------------------


@pytest.mark.parametrize("c", [1, 2, 3, 7, 10, 1000])
def test_entropy_of_the_uniform_distribution_is_log_c(c):
    h = entropy(np.full(c, 1.0 / c))
    assert h == pytest.approx(math.log(c), rel=1e-12, abs=4 * EPS64)


@pytest.mark.parametrize("c", [1, 2, 5])
def test_entropy_of_a_one_hot_distribution_is_zero(c):
    for k in range(c):
        p = np.zeros(c)
        p[k] = 1.0
        h = entropy(p)
        assert h == 0.0
        assert not np.signbit(h)


def test_entropy_hand_values():
    # H([1/4, 3/4]) = -(1/4 log 1/4 + 3/4 log 3/4)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy([0.25, 0.75]) == pytest.approx(expected, rel=1e-14)
    # H([1/2, 1/4, 1/4]) = 1.5 log 2
    assert entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 * math.log(2), rel=1e-14)


def test_kl_hand_values():
    assert kl_divergence([1.0, 0.0], [0.25, 0.75]) == pytest.approx(
        math.log(4), rel=1e-14
    )
    # 1/2 log(1/2 / 1/4) + 1/2 log(1/2 / 3/4) = 1/2 log 2 + 1/2 log(2/3)
    expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected, rel=1e-14)
    assert kl_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_kl_is_infinite_where_q_misses_mass_of_p_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kl_divergence([0.5, 0.5], [1.0, 0.0]) == np.inf
        # p = 0 where q = 0 costs nothing: 0 log(0 / 0) = 0.
        assert kl_divergence([1.0, 0.0], [1.0, 0.0]) == 0.0
        kl = kl_divergence([[0.5, 0.5], [1.0, 0.0]], [[1.0, 0.0], [0.5, 0.5]])
        np.testing.assert_array_equal(kl, [np.inf, math.log(2)])


# --- shapes and dtypes ------------------------------------------------------------


def test_shapes():
    p = np.full((2, 3, 4), 0.25)
    assert entropy(p).shape == (2, 3)
    assert kl_divergence(p, p).shape == (2, 3)
    assert entropy([[0.5, 0.5]]).shape == (1,)
    h = entropy([0.5, 0.5])
    assert isinstance(h, np.floating)
    assert np.ndim(h) == 0
    assert isinstance(kl_divergence([0.5, 0.5], [0.5, 0.5]), np.floating)


def test_float32_in_float32_out():
    p = np.array([[0.25, 0.75]], dtype=np.float32)
    q = np.array([[0.5, 0.5]], dtype=np.float32)
    assert entropy(p).dtype == np.float32
    assert kl_divergence(p, q).dtype == np.float32
    assert kl_divergence(p, q.astype(np.float64)).dtype == np.float64
    assert entropy(p)[0] == pytest.approx(entropy(p.astype(np.float64))[0], rel=1e-6)


def test_integer_distributions_compute_in_float64():
    h = entropy(np.array([[1, 0], [0, 1]]))
    assert h.dtype == np.float64
    np.testing.assert_array_equal(h, [0.0, 0.0])


# --- validation -------------------------------------------------------------------

BAD_DISTRIBUTIONS = [
    (0.5, r" must hold distributions along its last axis, got shape \(\)"),
    (np.empty((2, 0)), r" must hold distributions .* got shape \(2, 0\)"),
    ([[0.5, np.nan]], r"\[0, 1\] = nan is not finite"),
    ([0.5, np.inf], r"\[1\] = inf is not finite"),
    ([[0.5, 0.5], [1.5, -0.5]], r"\[1, 1\] = -0.5 is negative"),
    ([[0.5, 0.5], [1.0 + 1e-9, 0.0]], r"\[1, 0\] = 1.000000001 is greater than 1"),
    ([[0.5, 0.5], [0.25, 0.5]], r"\[1\] sums to 0\.75, not 1"),
]


BAD_IDS = ["scalar", "no-class", "nan", "inf", "negative", "above-one", "sum"]


@pytest.mark.parametrize(("p", "pattern"), BAD_DISTRIBUTIONS, ids=BAD_IDS)
def test_entropy_validates_p(p, pattern):
    with pytest.raises(ValueError, match="^p" + pattern):
        entropy(p)


@pytest.mark.parametrize(("bad", "pattern"), BAD_DISTRIBUTIONS, ids=BAD_IDS)
def test_kl_validates_p_and_q(bad, pattern):
    # A valid partner; each argument is validated before the shapes are compared.
    good = np.full((*np.shape(bad)[:-1], 2), 0.5)
    with pytest.raises(ValueError, match="^p" + pattern):
        kl_divergence(bad, good)
    with pytest.raises(ValueError, match="^q" + pattern):
        kl_divergence(good, bad)


def test_kl_shapes_must_match():
    with pytest.raises(
        ValueError, match=r"p has shape \(2,\) but q has shape \(1, 2\)"
    ):
        kl_divergence([0.5, 0.5], [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"p has shape \(2,\) but q has shape \(3,\)"):
        kl_divergence([0.5, 0.5], [0.25, 0.25, 0.5])


@pytest.mark.parametrize(
    ("p", "dtype"),
    [(np.array([True, False]), "bool"), (np.array([1 + 0j, 0j]), "complex128")],
)
def test_distributions_must_be_real(p, dtype):
    pattern = rf"must hold real numbers, got dtype {re.escape(dtype)}"
    with pytest.raises(TypeError, match="^p " + pattern):
        entropy(p)
    with pytest.raises(TypeError, match="^q " + pattern):
        kl_divergence([1.0, 0.0], p)


# --- properties -------------------------------------------------------------------


@given(cst.distributions())
def test_entropy_lies_between_zero_and_log_c(p):
    h = entropy(p)
    c = p.shape[-1]
    assert (h >= 0).all()
    assert (h <= math.log(c) + 8 * EPS64).all()


@given(cst.distributions())
def test_kl_of_a_distribution_with_itself_is_zero(p):
    kl = kl_divergence(p, p)
    np.testing.assert_array_equal(kl, np.zeros(p.shape[0]))


@given(st.data())
def test_cross_entropy_is_entropy_plus_kl(data):
    # H(p, q) = H(p) + KL(p || q), with q > 0 so that everything is finite.
    p = data.draw(cst.distributions())
    q = data.draw(cst.distributions(shape=p.shape, min_weight=0.01))
    kl = kl_divergence(p, q)
    assert (kl >= -8 * EPS64).all()  # Gibbs' inequality, up to rounding
    np.testing.assert_allclose(
        cross_entropy(q, p), entropy(p) + kl, rtol=1e-12, atol=16 * EPS64
    )
