"""The softmax at a temperature (``ce_tutorial._temperature``).

The helpers are private; :func:`ce_tutorial.distillation_loss` and
:func:`ce_tutorial.info_nce` rest on them, and their own tests check the public
behaviour. Here: the temperature's validation, and ``log_softmax(z / T)``
from :func:`tempered` against SciPy and against mpmath where ``z / T``
overflows.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import log_softmax

from ce_tutorial._temperature import check_flag, check_temperature, tempered

from . import strategies as cst
from .reference import DIGITS, exact_mpf

F64 = np.dtype(np.float64)
F32 = np.dtype(np.float32)
EPS64 = np.finfo(np.float64).eps
MAX64 = np.finfo(np.float64).max


def log_probabilities(z: np.ndarray, temperature) -> np.ndarray:
    parts = tempered(z, temperature)
    return parts.shifted - parts.log_s[:, None]


def reference_log_softmax(z: np.ndarray, temperature) -> list[list[mpmath.mpf]]:
    """``log_softmax(z / T)`` row by row at 50 digits; -inf entries stay -inf."""
    out = []
    with mpmath.workdps(DIGITS):
        T = exact_mpf(temperature)
        for row in z:
            v = [exact_mpf(x) / T if np.isfinite(x) else None for x in row]
            lse = mpmath.log(mpmath.fsum(mpmath.exp(x) for x in v if x is not None))
            out.append([x - lse if x is not None else -mpmath.inf for x in v])
    return out


# --- check_temperature ---------------------------------------------------------


@pytest.mark.parametrize("value", [1, 0.5, np.float32(2.0), np.int64(3), 1e-300])
def test_temperature_is_returned_in_the_dtype(value):
    T = check_temperature(value, F64)
    assert T.dtype == F64
    assert T == float(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), "1.0", None, [1.0]])
def test_temperature_must_be_a_real_number(value):
    with pytest.raises(TypeError, match=r"temperature must be a real number"):
        check_temperature(value, F64)


def test_a_0_d_array_is_not_a_temperature():
    with pytest.raises(TypeError, match=r"temperature must be a real number"):
        check_temperature(np.array(1.0), F64)


@pytest.mark.parametrize(
    "value", [0, 0.0, -0.0, -1.0, np.nan, np.inf, -np.inf, 10**400]
)
def test_temperature_must_be_positive_and_finite(value):
    with pytest.raises(ValueError, match=r"temperature must be positive and finite"):
        check_temperature(value, F64)


@pytest.mark.parametrize("value", [1e-50, 1e300])
def test_temperature_must_survive_the_cast_to_float32(value):
    with pytest.raises(ValueError, match=r"in float32, the dtype of the computation"):
        check_temperature(value, F32)
    assert check_temperature(value, F64) == value


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_flags_accept_bools(value):
    assert check_flag(value, "normalize") is bool(value)


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_flags_refuse_other_values(value):
    with pytest.raises(TypeError, match=r"normalize must be True or False"):
        check_flag(value, "normalize")


# --- tempered: log_softmax(z / T) ----------------------------------------------


@given(cst.logits(), st.sampled_from([0.05, 0.5, 1.0, 3.0, 100.0]))
def test_tempered_log_softmax_matches_scipy(z, temperature):
    ours = log_probabilities(z, F64.type(temperature))
    theirs = log_softmax(z / temperature, axis=1)
    scale = np.abs(theirs).max(axis=1, keepdims=True) + 1
    assert np.all(np.abs(ours - theirs) <= 8 * EPS64 * scale)


@given(cst.logits(min_classes=2), st.sampled_from([0.1, 1.0, 10.0]))
def test_tempered_pieces_are_a_shift_and_a_log_sum(z, temperature):
    parts = tempered(z, F64.type(temperature))
    assert np.array_equal(parts.m, z.max(axis=1))
    assert np.all(parts.shifted <= 0)
    assert np.all(parts.shifted.max(axis=1) == 0)  # the maximum's term is 1
    assert np.all(parts.log_s >= 0)
    assert np.all(parts.log_s <= np.log(z.shape[1]) + 4 * EPS64)


@pytest.mark.parametrize(
    ("row", "temperature"),
    [
        # z / T overflows for T < 1; the shift comes first, so it does not.
        ([1e308, 1.7e308, 0.0], 0.5),
        ([1e308, 9.9e307], 1e-300),
        # z - m overflows, but (z - m) / T is in range for T > 1.
        ([1e308, -1e308, 0.0], 1.5),
        ([1.7e308, -1.7e308], 4.0),
        # a small gap, made large by a small T
        ([1.0, 1.0 + 2**-40, -3.0], 1e-12),
        # a confident row: the top log-probability is tiny, and kept accurate
        ([0.0, -40.0, -45.0], 1.0),
        # a masked class
        ([2.0, -np.inf, 1.0], 0.3),
    ],
)
def test_tempered_log_softmax_against_mpmath(row, temperature):
    z = np.array([row])
    ours = log_probabilities(z, F64.type(temperature))[0]
    ref = reference_log_softmax(z, temperature)[0]
    for value, exact in zip(ours, ref, strict=True):
        if exact == -mpmath.inf or -exact > MAX64:
            assert value == -np.inf  # the correctly rounded value
            continue
        error = abs(mpmath.mpf(float(value)) - exact)
        # a few ulps of the entry itself, or of 1 near 0
        assert error <= 4 * EPS64 * max(abs(exact), mpmath.mpf(2.0**-1000))


def test_a_tiny_top_log_probability_keeps_its_digits():
    # log_softmax([0, -40])_0 = -log1p(e^-40), about -4.2e-18: 1 - that is 1.
    z = np.array([[0.0, -40.0]])
    top = log_probabilities(z, F64.type(1.0))[0, 0]
    assert top == pytest.approx(-np.exp(-40.0), rel=4 * EPS64)


def test_tempered_handles_an_empty_batch():
    parts = tempered(np.zeros((0, 3)), F64.type(0.5))
    assert parts.shifted.shape == (0, 3)
    assert parts.m.shape == parts.log_s.shape == (0,)


def test_tempered_does_not_modify_its_input():
    z = np.array([[1e308, -1e308, 0.0]])
    before = z.copy()
    z.flags.writeable = False
    tempered(z, F64.type(1.5))
    np.testing.assert_array_equal(z, before)
