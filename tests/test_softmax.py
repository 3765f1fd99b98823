"""The softmax family (``ce_tutorial._softmax``): softmax, log_softmax, logsumexp."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from ce_tutorial import log_softmax, logsumexp, softmax

from . import strategies as cst
from .reference import log1p_rows, log_softmax_rows, logsumexp_rows, ulp_error_bound

SOFTMAX_FAMILY = [softmax, log_softmax, logsumexp]
family = pytest.mark.parametrize("f", SOFTMAX_FAMILY, ids=lambda f: f.__name__)
EPS64 = np.finfo(np.float64).eps

# --- hand-derived values --------------------------------------------------------


def test_softmax_of_equal_scores_is_uniform():
    np.testing.assert_array_equal(
        softmax([[0.0, 0.0], [7.0, 7.0]]), np.full((2, 2), 0.5)
    )
    np.testing.assert_array_equal(softmax([5.0, 5.0, 5.0, 5.0]), np.full(4, 0.25))


def test_softmax_hand_values():
    # softmax([0, log 3]) = [1/4, 3/4]
    assert softmax([0.0, math.log(3.0)]) == pytest.approx([0.25, 0.75], rel=1e-15)
    # softmax([1, 2, 3])_j = e^j / (e + e^2 + e^3)
    total = math.e + math.e**2 + math.e**3
    expected = [math.e / total, math.e**2 / total, math.e**3 / total]
    assert softmax([1.0, 2.0, 3.0]) == pytest.approx(expected, rel=1e-14)
    # Shifting by 1000 changes nothing, and does not overflow.
    assert softmax([1001.0, 1002.0, 1003.0]) == pytest.approx(expected, rel=1e-14)


def test_logsumexp_hand_values():
    lse = logsumexp([[0.0, 0.0], [10.0, 10.0]])
    assert lse == pytest.approx([math.log(2), 10 + math.log(2)], rel=1e-15)
    assert logsumexp([1000.0, 1000.0]) == pytest.approx(1000 + math.log(2), rel=1e-15)
    assert logsumexp([-1000.0, -1000.0]) == pytest.approx(
        -1000 + math.log(2), rel=1e-15
    )
    # log(e^0 + e^log 3) = log 4
    assert logsumexp([0.0, math.log(3.0)]) == pytest.approx(math.log(4), rel=1e-15)
    assert logsumexp([3.5]) == 3.5


def test_log_softmax_hand_values():
    # log_softmax([1000, 1]) = [-log(1 + e^-999), -999 - log(1 + e^-999)]
    np.testing.assert_array_equal(log_softmax([1000.0, 1.0]), [0.0, -999.0])
    assert log_softmax([0.0, math.log(3.0)]) == pytest.approx(
        [math.log(0.25), math.log(0.75)], rel=1e-15
    )
    # The naive route loses the small probability: log(0) = -inf.
    with np.errstate(divide="ignore"):
        assert np.log(softmax([1000.0, 1.0]))[1] == -np.inf


def test_1d_logsumexp_returns_a_scalar():
    lse = logsumexp([1.0, 2.0])
    assert isinstance(lse, np.floating)
    assert np.ndim(lse) == 0


def test_single_class():
    np.testing.assert_array_equal(softmax([[3.0], [-2.0]]), [[1.0], [1.0]])
    np.testing.assert_array_equal(log_softmax([[3.0], [-2.0]]), [[0.0], [0.0]])
    np.testing.assert_array_equal(logsumexp([[3.0], [-2.0]]), [3.0, -2.0])


# --- masked classes (-inf) --------------------------------------------------------


def test_masked_class_gets_probability_exactly_zero():
    p = softmax([[1000.0, 1000.0, -np.inf], [-np.inf, 0.0, math.log(3.0)]])
    assert p[0, 2] == 0.0
    assert p[1, 0] == 0.0
    assert p[0, :2] == pytest.approx([0.5, 0.5], rel=1e-15)
    assert p[1, 1:] == pytest.approx([0.25, 0.75], rel=1e-15)


def test_masked_class_has_log_probability_minus_inf():
    z = np.array([[0.0, -np.inf, math.log(3.0)]])
    lp = log_softmax(z)
    assert lp[0, 1] == -np.inf
    assert lp[0, [0, 2]] == pytest.approx([math.log(0.25), math.log(0.75)], rel=1e-15)


def test_masked_class_adds_nothing_to_logsumexp():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5)) * 10
    z[:, 3] = -np.inf
    np.testing.assert_allclose(
        logsumexp(z), logsumexp(np.delete(z, 3, axis=1)), rtol=4 * EPS64
    )


# --- axis -------------------------------------------------------------------------


@family
def test_axis_0_on_a_matrix(f):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4, 3))
    got = f(z, axis=0)
    want = f(z.T, axis=1)
    np.testing.assert_array_equal(got, want.T if want.ndim == 2 else want)


@family
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_axis_on_3d_arrays(f, axis):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2, 3, 4)) * 5
    got = f(z, axis=axis)
    moved = np.moveaxis(z, axis, -1)
    want = f(moved.reshape(-1, moved.shape[-1])).reshape(*moved.shape[:-1], -1)
    if f is logsumexp:
        want = want.reshape(moved.shape[:-1])
        assert got.shape == moved.shape[:-1]
    else:
        want = np.moveaxis(want, -1, axis)
        assert got.shape == z.shape
    np.testing.assert_array_equal(got, want)


@family
def test_numpy_integer_axis(f):
    z = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(z, axis=np.int64(0)), f(z, axis=0))


@family
@pytest.mark.parametrize(("axis", "ndim"), [(2, 2), (-3, 2), (3, 3), (1, 1)])
def test_axis_out_of_bounds(f, axis, ndim):
    z = np.zeros((2,) * ndim)
    pattern = rf"axis = {axis} is out of bounds for logits with {ndim} dimension\(s\)"
    with pytest.raises(ValueError, match=pattern):
        f(z, axis=axis)


@family
@pytest.mark.parametrize("axis", [1.0, None, "0", True, (0,), np.float64(0.0)])
def test_axis_must_be_an_integer(f, axis):
    pattern = rf"axis must be an integer, got {re.escape(repr(axis))}"
    with pytest.raises(TypeError, match=pattern):
        f(np.zeros((2, 2)), axis=axis)


@family
def test_errors_name_the_slice_along_any_axis(f):
    z = np.zeros((2, 3, 4))
    z[1, :, 2] = [0.0, np.nan, 1.0]
    with pytest.raises(ValueError, match=r"logits\[1, :, 2\] contains NaN"):
        f(z, axis=1)
    with pytest.raises(ValueError, match=r"logits\[1, 1\] contains NaN"):
        f(z, axis=2)
    with pytest.raises(ValueError, match=r"logits\[:, 1, 2\] contains NaN"):
        f(z, axis=0)


@family
def test_errors_on_1d_input_name_the_whole_array(f):
    with pytest.raises(ValueError, match=r"^logits contains \+inf"):
        f([0.0, np.inf])
    with pytest.raises(ValueError, match=r"^logits is -inf in every class"):
        f([-np.inf, -np.inf])


# --- dtypes -----------------------------------------------------------------------


@family
def test_float32_in_float32_out(f):
    z = np.array([[1.0, 2.0, 3.0], [0.0, -np.inf, 5.0]], dtype=np.float32)
    out = f(z)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, f(z.astype(np.float64)), rtol=1e-6)


@family
def test_integer_logits_compute_in_float64(f):
    z = np.array([[1, 2, 3], [1000, 1000, 0]])
    out = f(z)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, f(z.astype(np.float64)))


@family
def test_float16_computes_in_float32_without_overflow(f):
    # exp(12) = 162755 overflows float16 (max 65504).
    z = np.array([[12.0, 0.0]], dtype=np.float16)
    out = f(z)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    # A few float32 ulps of max(|value|, |logsumexp| = 12, 1).
    want = f(np.array([[12.0, 0.0]]))
    scale = np.maximum(np.abs(want), 12.0)
    np.testing.assert_array_less(
        np.abs(out - want), 4 * np.finfo(np.float32).eps * scale
    )


def test_float16_softmax_matches_the_float64_answer():
    p = softmax(np.array([[12.0, 0.0]], dtype=np.float16))
    p1 = 1 / (1 + math.exp(-12))
    assert p[0] == pytest.approx([p1, 1 - p1], rel=1e-6)


# --- streaming over blocks of rows ------------------------------------------------


@pytest.fixture(scope="module")
def big_logits():
    rng = np.random.default_rng(3)
    return rng.normal(scale=4.0, size=(5000, 37))


@family
def test_many_rows_match_scipy(f, big_logits):
    ours = f(big_logits)
    if f is softmax:
        ref = scipy.special.softmax(big_logits, axis=-1)
        np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-300)
    elif f is log_softmax:
        ref = scipy.special.log_softmax(big_logits, axis=-1)
        np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-13)
    else:
        ref = scipy.special.logsumexp(big_logits, axis=-1)
        np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=1e-13)


@family
@pytest.mark.parametrize(
    ("row", "value", "pattern"),
    [
        (4321, np.nan, r"logits\[4321\] contains NaN"),
        (4999, np.inf, r"logits\[4999\] contains \+inf"),
        (2600, -np.inf, r"logits\[2600\] is -inf in every class"),
    ],
)
def test_an_error_in_a_late_block_names_the_global_row(
    f, big_logits, row, value, pattern
):
    z = big_logits.copy()
    if value == -np.inf:
        z[row] = value
    else:
        z[row, 17] = value
    with pytest.raises(ValueError, match=pattern):
        f(z)


@family
def test_an_error_in_a_late_block_along_axis_0(f, big_logits):
    z = big_logits.T.copy()  # shape (37, 5000), classes along axis 0
    z[5, 4321] = np.nan
    with pytest.raises(ValueError, match=r"logits\[:, 4321\] contains NaN"):
        f(z, axis=0)


# --- properties -------------------------------------------------------------------


@given(cst.nd_logits(), st.data())
def test_softmax_sums_to_one_along_the_axis(z, data):
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    p = softmax(z, axis=axis)
    assert p.shape == z.shape
    assert ((p >= 0) & (p <= 1)).all()
    c = z.shape[axis]
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=0, atol=(c + 1) * EPS64)


@given(cst.nd_logits(bound=500.0), st.data())
def test_logsumexp_is_at_least_the_maximum(z, data):
    # log(sum(exp(z))) >= max(z), since the sum holds exp(max(z)).
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    assert (logsumexp(z, axis=axis) >= z.max(axis=axis)).all()


@given(cst.logits(), cst.finite_floats(bound=100.0))
def test_log_softmax_is_shift_invariant(z, shift):
    shifted = z + shift
    # The only change is the rounding of z + shift itself.
    atol = 4 * EPS64 * (np.abs(z).max() + abs(shift) + 1)
    np.testing.assert_allclose(log_softmax(shifted), log_softmax(z), rtol=0, atol=atol)


@given(cst.nd_logits(), st.data())
def test_exp_of_log_softmax_is_softmax(z, data):
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    lp = log_softmax(z, axis=axis)
    assert (lp <= 0).all()
    np.testing.assert_allclose(
        np.exp(lp), softmax(z, axis=axis), rtol=1e-13, atol=1e-300
    )


@given(cst.nd_logits(), st.data())
def test_agrees_with_scipy(z, data):
    axis = data.draw(st.integers(-z.ndim, z.ndim - 1))
    lse = logsumexp(z, axis=axis)
    ref_lse = scipy.special.logsumexp(z, axis=axis)
    scale = np.maximum(np.abs(ref_lse), 1.0)
    np.testing.assert_array_less(np.abs(lse - ref_lse), 4 * EPS64 * scale + 1e-300)
    lp = log_softmax(z, axis=axis)
    ref_lp = scipy.special.log_softmax(z, axis=axis)
    scale = np.maximum(np.abs(ref_lp), np.expand_dims(scale, axis))
    np.testing.assert_array_less(np.abs(lp - ref_lp), 8 * EPS64 * scale)
    np.testing.assert_allclose(
        softmax(z, axis=axis),
        scipy.special.softmax(z, axis=axis),
        rtol=1e-13,
        atol=1e-300,
    )


@given(cst.logits(), st.data())
def test_masked_columns_agree_with_dropping_them(z, data):
    c = z.shape[1]
    mask = data.draw(st.lists(st.booleans(), min_size=c, max_size=c))
    if all(mask):
        mask[0] = False
    masked = z.copy()
    masked[:, mask] = -np.inf
    keep = ~np.array(mask)
    # The sums may be added in another order: allow a few ulps of logsumexp.
    lse = logsumexp(z[:, keep])
    atol = 4 * EPS64 * np.maximum(np.abs(lse), 1.0)
    np.testing.assert_array_less(np.abs(logsumexp(masked) - lse), atol + 1e-300)
    p = softmax(masked)
    assert (p[:, ~keep] == 0).all()
    np.testing.assert_allclose(p[:, keep], softmax(z[:, keep]), rtol=4 * EPS64)
    lp = log_softmax(masked)
    assert (lp[:, ~keep] == -np.inf).all()
    # An entry z_j - lse is as large as |z_j - lse|, and one ulp of it can exceed
    # 4 eps (it is 4 eps at 5.0): the bound scales with the entries too.
    ref = log_softmax(z[:, keep])
    error = np.abs(lp[:, keep] - ref)
    scale = np.maximum(np.abs(ref), np.maximum(np.abs(lse), 1.0)[:, None])
    np.testing.assert_array_less(error, 4 * EPS64 * scale + 1e-300)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_logsumexp_and_log_softmax_agree_with_mpmath(dtype, data):
    bound = 1000.0 if dtype == np.float64 else 80.0
    z = data.draw(cst.logits(dtype=dtype, bound=bound))
    lse = logsumexp(z)
    lp = log_softmax(z)
    assert lse.dtype == dtype
    assert lp.dtype == dtype
    ref_lse = logsumexp_rows(z)
    ref_lp = log_softmax_rows(z)
    for i in range(z.shape[0]):
        error, bound_ = ulp_error_bound(lse[i], ref_lse[i], ref_lse[i], dtype)
        assert error <= bound_, (i, lse[i], ref_lse[i])
        for j in range(z.shape[1]):
            error, bound_ = ulp_error_bound(lp[i, j], ref_lp[i][j], ref_lse[i], dtype)
            assert error <= bound_, (i, j, lp[i, j], ref_lp[i][j])


# --- relative accuracy of confident rows (the log1p form) ---------------------------


@pytest.mark.parametrize("n_classes", [2, 10, 100, 5000])
@pytest.mark.parametrize(
    ("dtype", "margin"), [(np.float64, 40.0), (np.float32, 16.0)], ids=["f64", "f32"]
)
def test_confident_rows_are_accurate_relative_to_their_size(dtype, margin, n_classes):
    """The top log-probability of a confident row, and a logsumexp near 0, are
    tiny numbers; both must be right to a few ulps of themselves, not of 1.
    (``log`` of a sum that holds the maximum's 1 gives 0 or a multiple of eps.)
    """
    rng = np.random.default_rng(n_classes)
    z = rng.normal(size=(12, n_classes))
    top = rng.integers(0, n_classes, size=12)
    z[np.arange(12), top] = 0.0
    z -= margin  # the top class at 0, every other below -margin + a few
    z[np.arange(12), top] = 0.0
    z = z.astype(dtype)
    lse, lp = logsumexp(z), log_softmax(z)
    ref_lse, ref_lp = log1p_rows(z)
    eps = float(np.finfo(dtype).eps)
    for i in range(12):
        true_top = float(ref_lp[i][top[i]])
        assert 0 < -true_top < 1e-2  # small: ulps of 1 would be too coarse
        assert abs(float(lp[i, top[i]]) - true_top) <= 4 * eps * abs(true_top)
        assert abs(float(lse[i]) - float(ref_lse[i])) <= 4 * eps * float(ref_lse[i])


@pytest.mark.parametrize("f", [logsumexp, log_softmax], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_and_near_ties_for_the_maximum(f, dtype):
    # Rows whose exponential sum is 2 or more keep log(s): ties, exact or
    # within half an ulp, must not be mistaken for the single maximum.
    near = np.nextafter(dtype(0), dtype(-1))
    z = np.array([[0, 0, -50], [0, near, -50], [0, -1e-30, -50]], dtype=dtype)
    ref_lse, ref_lp = log1p_rows(z)
    got = f(z)
    refs = ref_lse if f is logsumexp else ref_lp
    eps = float(np.finfo(dtype).eps)
    for got_row, ref_row in zip(np.atleast_2d(got.T).T, refs, strict=True):
        for g, r in zip(np.atleast_1d(got_row), np.atleast_1d(ref_row), strict=True):
            r = float(r)
            assert abs(float(g) - r) <= 4 * eps * max(abs(r), 1e-300) or r == g


@pytest.mark.parametrize("f", SOFTMAX_FAMILY, ids=lambda f: f.__name__)
def test_a_middle_axis_gives_what_the_moved_copy_gives(f):
    # The middle axis cannot be viewed as rows: blocks are gathered one by one.
    z = np.random.default_rng(3).normal(size=(7, 300, 11)) * 4
    got = f(z, axis=1)
    moved = np.ascontiguousarray(np.moveaxis(z, 1, -1))
    want = f(moved, axis=-1)
    if f is not logsumexp:
        want = np.moveaxis(want, -1, 1)
    np.testing.assert_array_equal(got, want, strict=True)
