"""Binary and multi-label cross-entropy (``ce_tutorial._binary``)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics import log_loss

import ce_tutorial as ct

from . import reference as mpref
from . import strategies as cst
from .reference import DIGITS

LOG2 = math.log(2.0)
LOGIT_FUNCTIONS = [
    ct.sigmoid,
    ct.log_sigmoid,
    lambda z: ct.binary_cross_entropy_from_logits(z, np.ones(np.shape(z))),
    lambda z: ct.binary_cross_entropy_grad(z, np.ones(np.shape(z))),
]
LOSSES_WITH_Y = [
    ct.binary_cross_entropy,
    ct.binary_cross_entropy_from_logits,
    ct.binary_cross_entropy_grad,
]


def assert_positive_zero(x):
    """``x`` is exactly 0.0 everywhere, never -0.0."""
    x = np.asarray(x)
    assert (x == 0.0).all()
    assert not np.signbit(x).any()


def ulps(ours, ref: mpmath.mpf, dtype, scale: mpmath.mpf | None = None) -> float:
    """``|ours - ref|`` in units of the last place of ``scale`` (default ``ref``).

    Below the dtype's smallest normal number the unit is the subnormal
    spacing, the finest the dtype can resolve.
    """
    scale = ref if scale is None else scale
    with mpmath.workdps(DIGITS):
        error = abs(mpref.exact_mpf(ours) - ref)
        unit = float(np.spacing(np.abs(dtype(float(scale)))))
        return float(error / mpref.exact_mpf(unit))


# --- sigmoid and log_sigmoid by hand --------------------------------------------


def test_sigmoid_hand_values():
    # sigma(log 3) = 1 / (1 + 1/3) = 3/4
    s = ct.sigmoid([0.0, math.log(3.0), -math.log(3.0)])
    np.testing.assert_allclose(s, [0.5, 0.75, 0.25], rtol=2e-16, atol=0)
    assert s[0] == 0.5
    assert ct.sigmoid(-40.0) == pytest.approx(math.exp(-40) / (1 + math.exp(-40)))


def test_sigmoid_saturates_without_overflow_or_warning():
    s = ct.sigmoid([-800.0, 800.0, -np.inf, np.inf])
    np.testing.assert_array_equal(s, [0.0, 1.0, 0.0, 1.0])
    # Not flushed to zero early: e^-700 is a normal float64.
    assert ct.sigmoid(-700.0) == pytest.approx(math.exp(-700), rel=1e-14)


def test_log_sigmoid_hand_values():
    assert ct.log_sigmoid(0.0) == pytest.approx(-LOG2, rel=1e-16)
    # log sigma(40) = -log1p(e^-40) = -e^-40 (1 - e^-40/2 + ...)
    assert ct.log_sigmoid(40.0) == pytest.approx(-math.exp(-40), rel=1e-15)
    assert ct.log_sigmoid(-1000.0) == -1000.0
    assert ct.log_sigmoid(-np.inf) == -np.inf
    assert_positive_zero(ct.log_sigmoid([np.inf, 1000.0]))


def test_scalar_in_gives_numpy_scalar_out():
    s = ct.sigmoid(0.0)
    assert isinstance(s, np.float64)
    loss = ct.binary_cross_entropy_from_logits(0.0, 1)
    assert isinstance(loss, np.float64)
    assert loss == pytest.approx(LOG2, rel=1e-16)


# --- the losses by hand -----------------------------------------------------------


def test_binary_cross_entropy_hand_values():
    loss = ct.binary_cross_entropy([0.9, 0.9, 0.6], [1, 0, 0.3])
    expected = [
        -math.log(0.9),
        -math.log(0.1),  # log1p(-0.9), up to the rounding of 0.9
        -(0.3 * math.log(0.6) + 0.7 * math.log(0.4)),
    ]
    np.testing.assert_allclose(loss, expected, rtol=1e-14)


def test_binary_cross_entropy_certain_predictions():
    y_hat = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    y = [1, 0, 0, 1, 0.5, 0.5]
    loss = ct.binary_cross_entropy(y_hat, y)
    np.testing.assert_array_equal(loss, [np.inf, np.inf, 0, 0, np.inf, np.inf])
    assert_positive_zero(loss[2:4])


def test_from_logits_hand_values():
    z = [0.0, 0.0, 0.0, 2.0, 2.0, math.log(3.0)]
    y = [0, 1, 0.5, 1, 0, 0.25]
    loss = ct.binary_cross_entropy_from_logits(z, y)
    expected = [
        LOG2,
        LOG2,
        LOG2,
        math.log1p(math.exp(-2)),
        2 + math.log1p(math.exp(-2)),
        # sigma(log 3) = 3/4
        -(0.25 * math.log(0.75) + 0.75 * math.log(0.25)),
    ]
    np.testing.assert_allclose(loss, expected, rtol=1e-15)


def test_from_logits_confident_correct_keeps_relative_accuracy():
    # The loss e^-40 is far below eps: max(z, 0) - z y + log1p(e^-|z|) must
    # not round it to 0 (or to a multiple of eps).
    loss = ct.binary_cross_entropy_from_logits([40.0, -40.0], [1, 0])
    np.testing.assert_allclose(loss, [math.exp(-40)] * 2, rtol=1e-15)


@pytest.mark.parametrize(
    ("z", "y", "expected"),
    [
        (np.inf, 1, 0.0),
        (np.inf, 0, np.inf),
        (np.inf, 0.3, np.inf),
        (-np.inf, 0, 0.0),
        (-np.inf, 1, np.inf),
        (-np.inf, 0.3, np.inf),
    ],
)
def test_infinite_logits_agree_or_contradict(z, y, expected):
    loss = ct.binary_cross_entropy_from_logits([z], [y])
    assert loss[0] == expected
    if expected == 0:
        assert_positive_zero(loss)
    # The probability route gives the same, through sigmoid(+-inf) = 1 or 0.
    assert ct.binary_cross_entropy(ct.sigmoid([z]), [y])[0] == expected


def test_zero_pos_weight_removes_the_positive_term_even_at_infinity():
    loss = ct.binary_cross_entropy_from_logits(
        [[-np.inf, 0.0]], [[1, 0.5]], pos_weight=[0.0, 0.0]
    )
    np.testing.assert_allclose(loss, [[0.0, 0.5 * LOG2]], rtol=1e-16)


def test_pos_weight_hand_values():
    z = np.zeros((2, 3))
    y = np.array([[1, 0, 0.5], [1, 1, 1]])
    loss = ct.binary_cross_entropy_from_logits(z, y, pos_weight=[3.0, 2.0, 3.0])
    # w y log 2 + (1 - y) log 2, tag by tag
    expected = LOG2 * np.array([[3, 1, 0.5 * 3 + 0.5], [3, 2, 3]])
    np.testing.assert_allclose(loss, expected, rtol=1e-15)


def test_pos_weight_broadcasts_over_the_last_axis_of_any_shape():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 3, 4))
    y = rng.integers(0, 2, size=(2, 3, 4))
    w = np.array([0.5, 1.0, 2.0, 4.0])
    loss = ct.binary_cross_entropy_from_logits(z, y, pos_weight=w)
    for k in range(4):
        col = ct.binary_cross_entropy_from_logits(
            z[..., k : k + 1], y[..., k : k + 1], pos_weight=w[k : k + 1]
        )
        np.testing.assert_array_equal(loss[..., k], col[..., 0])


def test_reductions_average_over_every_entry():
    z = np.array([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]])
    y = np.array([[1, 0, 0], [1, 1, 0]])
    none = ct.binary_cross_entropy_from_logits(z, y)
    assert none.shape == (2, 3)
    mean = ct.binary_cross_entropy_from_logits(z, y, reduction="mean")
    assert mean == pytest.approx(none.sum() / 6, rel=1e-15)
    total = ct.binary_cross_entropy_from_logits(z, y, reduction="sum")
    assert total == pytest.approx(none.sum(), rel=1e-15)
    probs = ct.binary_cross_entropy(ct.sigmoid(z), y, reduction="mean")
    assert probs == pytest.approx(mean, rel=1e-14)


def test_empty_batch():
    z = np.zeros((0, 3))
    for f in (ct.binary_cross_entropy_from_logits, ct.binary_cross_entropy):
        assert f(z, z).shape == (0, 3)
        assert f(z, z, reduction="sum") == 0.0
        with pytest.raises(ValueError, match=r"reduction='mean' is undefined"):
            f(z, z, reduction="mean")
    assert ct.binary_cross_entropy_grad(z, z, reduction="sum").shape == (0, 3)
    with pytest.raises(ValueError, match=r"reduction='mean' is undefined"):
        ct.binary_cross_entropy_grad(z, z)
    assert ct.sigmoid([]).shape == (0,)


# --- the gradient by hand ---------------------------------------------------------


def test_gradient_hand_values():
    z = [0.0, 0.0, 0.0, 2.0]
    y = [1, 0, 0.25, 1]
    grad = ct.binary_cross_entropy_grad(z, y, reduction="sum")
    minus_sig_neg2 = -1 / (1 + math.exp(2))  # sigma(2) - 1 = -sigma(-2)
    np.testing.assert_allclose(grad, [-0.5, 0.5, 0.25, minus_sig_neg2], rtol=1e-15)
    np.testing.assert_array_equal(
        ct.binary_cross_entropy_grad(z, y, reduction="none"), grad
    )
    np.testing.assert_allclose(ct.binary_cross_entropy_grad(z, y), grad / 4, rtol=0)


def test_gradient_with_pos_weight_by_hand():
    # (1 - y) sigma(0) - w y sigma(0) with sigma(0) = 1/2
    grad = ct.binary_cross_entropy_grad(
        np.zeros((1, 3)), [[1, 0, 0.5]], pos_weight=[3.0, 3.0, 3.0], reduction="sum"
    )
    np.testing.assert_allclose(grad, [[-1.5, 0.5, 0.25 - 0.75]], rtol=1e-16)


def test_gradient_mean_divides_by_every_entry():
    z = np.arange(6.0).reshape(2, 3) - 2
    y = np.array([[1, 0, 1], [0, 0, 1]])
    total = ct.binary_cross_entropy_grad(z, y, reduction="sum")
    np.testing.assert_allclose(ct.binary_cross_entropy_grad(z, y), total / 6, rtol=0)


def test_gradient_of_confident_correct_prediction_is_not_rounded_to_zero():
    grad = ct.binary_cross_entropy_grad([40.0, -40.0], [1, 0], reduction="sum")
    np.testing.assert_allclose(grad, [-math.exp(-40), math.exp(-40)], rtol=1e-15)


def test_gradient_at_agreeing_infinite_logits_is_zero():
    grad = ct.binary_cross_entropy_grad([np.inf, -np.inf], [1, 0], reduction="sum")
    np.testing.assert_array_equal(grad, [0.0, 0.0])


@pytest.mark.parametrize(
    ("z", "y", "pattern"),
    [
        ([0.0, np.inf], [1, 0.3], r"z\[1\] = inf contradicts y\[1\] = 0.3"),
        ([0.0, -np.inf], [1, 1], r"z\[1\] = -inf contradicts y\[1\] = 1"),
    ],
)
def test_gradient_at_contradicting_infinite_logits_raises(z, y, pattern):
    with pytest.raises(ValueError, match=pattern + r": the loss is infinite"):
        ct.binary_cross_entropy_grad(z, y)


# --- dtypes and inputs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float16, np.float32),
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int64, np.float64),
        (np.int8, np.float64),
        (np.longdouble, np.longdouble),
    ],
)
def test_dtypes(dtype, expected):
    z = np.array([[0, 1], [-1, 2]], dtype=dtype)
    y = np.array([[1, 0], [0, 1]], dtype=np.float64)  # y's dtype does not matter
    assert ct.sigmoid(z).dtype == expected
    assert ct.log_sigmoid(z).dtype == expected
    for reduction in ("none", "mean", "sum"):
        loss = ct.binary_cross_entropy_from_logits(z, y, [1.0, 2.0], reduction)
        assert loss.dtype == expected
        assert ct.binary_cross_entropy_grad(z, y, reduction=reduction).dtype == expected
    y_hat = np.array([[0, 1], [1, 0]], dtype=dtype)
    assert ct.binary_cross_entropy(y_hat, y).dtype == expected


def test_float32_rounds_once_from_the_float64_value():
    z = np.random.default_rng(1).normal(scale=20, size=200)
    z32 = z.astype(np.float32)
    y = (z > 3).astype(np.int64)
    for f in (ct.sigmoid, ct.log_sigmoid):
        np.testing.assert_array_equal(f(z32), f(z32.astype(np.float64)).astype("f4"))
    np.testing.assert_array_equal(
        ct.binary_cross_entropy_from_logits(z32, y),
        ct.binary_cross_entropy_from_logits(z32.astype(np.float64), y).astype("f4"),
    )


def test_labels_may_be_bool_int_or_float():
    z = [-1.0, 2.0]
    expected = ct.binary_cross_entropy_from_logits(z, [0.0, 1.0])
    for y in ([False, True], [0, 1], np.array([0, 1], dtype=np.uint8)):
        np.testing.assert_array_equal(
            ct.binary_cross_entropy_from_logits(z, y), expected
        )


def test_inputs_are_not_modified():
    z = np.array([[0.5, -np.inf], [3.0, np.inf]])
    y = np.array([[1.0, 0.0], [0.5, 1.0]])
    w = np.array([2.0, 1.0])
    copies = z.copy(), y.copy(), w.copy()
    ct.binary_cross_entropy_from_logits(z, y, pos_weight=w)
    ct.binary_cross_entropy_grad(z, y, pos_weight=w)
    ct.sigmoid(z)
    ct.log_sigmoid(z)
    ct.binary_cross_entropy(ct.sigmoid(z), y)
    for before, after in zip(copies, (z, y, w), strict=True):
        np.testing.assert_array_equal(before, after)


# --- the contract: errors name the argument and the value -----------------------


@pytest.mark.parametrize("f", LOGIT_FUNCTIONS)
def test_nan_logits_are_rejected(f):
    with pytest.raises(ValueError, match=r"z\[1, 0\] = nan is NaN; logits must be"):
        f(np.array([[0.0, 1.0], [np.nan, 2.0]]))


@pytest.mark.parametrize("f", LOGIT_FUNCTIONS)
@pytest.mark.parametrize(
    ("z", "pattern"),
    [
        (np.array([True, False]), r"z must hold real numbers, got dtype bool"),
        (np.array([1 + 2j]), r"z must hold real numbers, got dtype complex128"),
        (np.array(["1.0"]), r"z must hold real numbers, got dtype <U3"),
    ],
)
def test_non_real_logits_are_type_errors(f, z, pattern):
    with pytest.raises(TypeError, match=pattern):
        f(z)


def test_ragged_input_is_named():
    with pytest.raises(ValueError, match=r"z could not be read as an array"):
        ct.sigmoid([[1.0], [1.0, 2.0]])


@pytest.mark.parametrize("f", LOSSES_WITH_Y)
@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        ([1, 2], r"y\[1\] = 2 is not in \[0, 1\]; targets must be 0/1 labels"),
        ([0, -1], r"y\[1\] = -1 is not in \[0, 1\]"),
        ([1.5, 0.0], r"y\[0\] = 1.5 is not in \[0, 1\]"),
        ([0.0, -0.25], r"y\[1\] = -0.25 is not in \[0, 1\]"),
        ([np.nan, 0.0], r"y\[0\] = nan is not in \[0, 1\]"),
        ([0.0, np.inf], r"y\[1\] = inf is not in \[0, 1\]"),
        ([1.0, 0.0, 1.0], r"y has shape \(3,\), but (z|y_hat) has shape \(2,\)"),
        ([[1.0, 0.0]], r"y has shape \(1, 2\), but (z|y_hat) has shape \(2,\)"),
    ],
)
def test_bad_targets_are_value_errors(f, y, pattern):
    with pytest.raises(ValueError, match=pattern):
        f([0.25, 0.5], y)


@pytest.mark.parametrize("f", LOSSES_WITH_Y)
@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        (np.array([1j, 0]), r"y must hold bool, integer 0/1 or float targets"),
        (np.array(["1", "0"]), r"got dtype <U1"),
        (np.array([None, 1]), r"got dtype object"),
    ],
)
def test_non_real_targets_are_type_errors(f, y, pattern):
    with pytest.raises(TypeError, match=pattern):
        f([0.25, 0.5], y)


@pytest.mark.parametrize(
    ("y_hat", "pattern"),
    [
        ([0.5, 1.2], r"y_hat\[1\] = 1.2 is not in \[0, 1\]; predicted probabilities"),
        ([-0.1, 0.5], r"y_hat\[0\] = -0.1 is not in \[0, 1\]"),
        ([np.nan, 0.5], r"y_hat\[0\] = nan is not in \[0, 1\]"),
        ([0.5, np.inf], r"y_hat\[1\] = inf is not in \[0, 1\]"),
    ],
)
def test_bad_probabilities_are_value_errors(y_hat, pattern):
    with pytest.raises(ValueError, match=pattern):
        ct.binary_cross_entropy(y_hat, [1, 0])


def test_bool_probabilities_are_type_errors():
    with pytest.raises(TypeError, match=r"y_hat must hold real numbers, got dtype bo"):
        ct.binary_cross_entropy([True, False], [1, 0])


@pytest.mark.parametrize(
    "f", [ct.binary_cross_entropy_from_logits, ct.binary_cross_entropy_grad]
)
@pytest.mark.parametrize(
    ("w", "error", "pattern"),
    [
        ([1.0, -1.0], ValueError, r"pos_weight\[1\] = -1.0 is not a finite, non-neg"),
        ([np.inf, 1.0], ValueError, r"pos_weight\[0\] = inf is not a finite"),
        ([1.0, np.nan], ValueError, r"pos_weight\[1\] = nan is not a finite"),
        ([1.0, 2.0, 3.0], ValueError, r"pos_weight has shape \(3,\), but z has shape"),
        ([[1.0, 2.0]], ValueError, r"pos_weight has shape \(1, 2\).*expected shape"),
        (2.0, ValueError, r"pos_weight has shape \(\), but z has shape \(3, 2\)"),
        ([True, False], TypeError, r"pos_weight must hold real numbers, got dtype b"),
        ([1j, 1], TypeError, r"pos_weight must hold real numbers, got dtype complex"),
    ],
)
def test_bad_pos_weight(f, w, error, pattern):
    with pytest.raises(error, match=pattern):
        f(np.zeros((3, 2)), np.ones((3, 2)), pos_weight=w)


def test_pos_weight_needs_an_axis():
    with pytest.raises(ValueError, match=r"pos_weight needs z with at least one axis"):
        ct.binary_cross_entropy_from_logits(0.0, 1, pos_weight=[2.0])


@pytest.mark.parametrize("f", LOSSES_WITH_Y)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", None, 1])
def test_bad_reduction(f, reduction):
    with pytest.raises(ValueError, match=r"reduction must be one of 'none', 'mean'"):
        f([0.5], [1], reduction=reduction)


# --- properties ---------------------------------------------------------------------


def labels(shape, soft: bool):
    """Hard 0/1 labels or soft targets in [0, 1] of ``shape``."""
    if soft:
        return hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0))
    return hnp.arrays(np.int64, shape, elements=st.integers(0, 1))


@st.composite
def logits_and_labels(draw, bound=50.0, dtype=np.float64, infinite=False):
    z = draw(cst.nd_logits(dtype=dtype, bound=bound))
    if infinite:
        mask = draw(hnp.arrays(np.int8, z.shape, elements=st.integers(-1, 1)))
        z = np.where(mask == 0, z, np.copysign(np.inf, mask)).astype(dtype)
    return z, draw(labels(z.shape, draw(st.booleans())))


@given(logits_and_labels(bound=700.0), st.booleans())
def test_two_class_softmax_agreement(zy, soft):
    z, y = zy
    z, y = z.ravel(), y.ravel()
    two = np.column_stack([np.zeros_like(z), z])  # softmax([0, z])[1] = sigma(z)
    ours = ct.binary_cross_entropy_from_logits(z, y)
    if np.issubdtype(y.dtype, np.integer):
        theirs = ct.cross_entropy_from_logits(two, y)
        np.testing.assert_allclose(ours, theirs, rtol=8 * np.finfo(float).eps, atol=0)
    else:
        theirs = ct.cross_entropy_from_logits(two, np.column_stack([1 - y, y]))
        scale = np.maximum(np.abs(z), 1)  # the soft route shifts by max(z, 0)
        assert (np.abs(ours - theirs) <= 8 * np.finfo(float).eps * scale).all()


@given(
    logits_and_labels(bound=1e4, infinite=True), st.sampled_from([np.float32, float])
)
def test_loss_is_non_negative_and_never_nan(zy, dtype):
    z, y = zy
    loss = ct.binary_cross_entropy_from_logits(z.astype(dtype), y)
    assert not np.isnan(loss).any()
    assert (loss >= 0).all()
    assert not np.signbit(loss).any()
    probs = ct.binary_cross_entropy(ct.sigmoid(z.astype(dtype)), y)
    assert not np.isnan(probs).any()
    assert (probs >= 0).all()


@given(logits_and_labels(bound=20.0), st.booleans())
def test_gradient_matches_central_differences(zy, with_weight):
    z, y = zy
    w = np.linspace(0.5, 3.0, z.shape[-1]) if with_weight else None
    h = 1e-6
    # Each entry's loss depends on that entry alone, so every entry can be
    # perturbed at once.
    up = ct.binary_cross_entropy_from_logits(z + h, y, w)
    down = ct.binary_cross_entropy_from_logits(z - h, y, w)
    numeric = (up - down) / (2 * h)
    grad = ct.binary_cross_entropy_grad(z, y, w, reduction="sum")
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-7)
    mean = ct.binary_cross_entropy_grad(z, y, w)
    np.testing.assert_allclose(mean * z.size, grad, rtol=1e-15, atol=0)


@given(
    cst.logits(bound=30.0, shape=(6, 1)),
    hnp.arrays(np.int64, (6, 1), elements=st.integers(0, 1)),
    st.integers(0, 4),
)
def test_pos_weight_equals_duplicating_positives(z, y, w):
    # Every positive row appears w times; negatives once.
    repeats = np.where(y[:, 0] == 1, w, 1)
    z_dup, y_dup = np.repeat(z, repeats, axis=0), np.repeat(y, repeats, axis=0)
    weighted = ct.binary_cross_entropy_from_logits(z, y, [float(w)], "sum")
    duplicated = ct.binary_cross_entropy_from_logits(z_dup, y_dup, reduction="sum")
    assert weighted == pytest.approx(duplicated, rel=1e-13, abs=1e-300)
    g = ct.binary_cross_entropy_grad(z, y, [float(w)], "sum")
    g_dup = ct.binary_cross_entropy_grad(z_dup, y_dup, reduction="sum")
    # each original row's gradient is the sum over its copies (0 for no copy)
    origin = np.repeat(np.arange(6), repeats)
    per_row = np.bincount(origin, weights=g_dup[:, 0], minlength=6)
    np.testing.assert_allclose(g[:, 0], per_row, rtol=1e-13, atol=0)


@given(
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(1e-9, 1 - 1e-9)),
    st.data(),
)
def test_agrees_with_sklearn_log_loss(y_hat, data):
    y = data.draw(hnp.arrays(np.int64, y_hat.shape, elements=st.integers(0, 1)))
    theirs = log_loss(y, y_hat, labels=[0, 1])
    ours = ct.binary_cross_entropy(y_hat, y, reduction="mean")
    assert ours == pytest.approx(theirs, rel=1e-12)
    # and from logits, where the sigmoid stays clear of sklearn's clipping
    z = np.log(y_hat) - np.log1p(-y_hat)
    from_logits = ct.binary_cross_entropy_from_logits(z, y, reduction="mean")
    assert from_logits == pytest.approx(theirs, rel=1e-7)


def test_sklearn_clips_where_the_package_says_inf():
    # log_loss clips probabilities to [eps, 1 - eps]; nothing is clipped here.
    assert log_loss([1, 0], [0.0, 0.0], labels=[0, 1]) == pytest.approx(
        -math.log(np.finfo(float).eps) / 2, rel=1e-12
    )
    assert ct.binary_cross_entropy([0.0, 0.0], [1, 0], reduction="mean") == np.inf


# --- accuracy against mpmath ----------------------------------------------------------

ULPS = 4


@given(
    cst.finite_floats(700.0),
    st.sampled_from([np.float32, np.float64]),
    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
)
def test_loss_within_a_few_ulps_of_mpmath(z, dtype, y):
    z = dtype(z)
    ours = ct.binary_cross_entropy_from_logits(np.array([z]), [y])[0]
    assert ulps(ours, mpref.binary_loss(z, y), dtype) <= ULPS


@given(cst.finite_floats(700.0), st.integers(0, 1), st.floats(0.0, 100.0, width=32))
def test_loss_with_pos_weight_within_a_few_ulps_of_mpmath(z, y, w):
    ours = ct.binary_cross_entropy_from_logits([z], [y], pos_weight=[w])[0]
    assert ulps(ours, mpref.binary_loss(z, y, w), np.float64) <= ULPS


@given(cst.finite_floats(700.0), st.sampled_from([np.float32, np.float64]))
def test_sigmoid_and_log_sigmoid_within_a_few_ulps_of_mpmath(z, dtype):
    z = dtype(z)
    with mpmath.workdps(DIGITS):
        ref_s = mpref.sigmoid(mpref.exact_mpf(z))
        ref_log = -mpref.softplus(-mpref.exact_mpf(z))
    assert ulps(ct.sigmoid(z), ref_s, dtype) <= ULPS
    assert ulps(ct.log_sigmoid(z), ref_log, dtype) <= ULPS


@given(
    cst.finite_floats(700.0),
    st.sampled_from([np.float32, np.float64]),
    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
)
def test_gradient_within_a_few_ulps_of_mpmath(z, dtype, y):
    z = dtype(z)
    ours = ct.binary_cross_entropy_grad(np.array([z]), [y], reduction="sum")[0]
    ref, larger_term = mpref.binary_grad(z, y)
    # For hard labels one term is 0, so this is relative to the result itself.
    assert ulps(ours, ref, dtype, scale=larger_term) <= ULPS


@given(
    st.floats(0.0, 1.0, allow_subnormal=False),
    st.sampled_from([np.float32, np.float64]),
    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
)
def test_probability_loss_within_a_few_ulps_of_mpmath(p, dtype, y):
    p = dtype(p)
    ours = ct.binary_cross_entropy(np.array([p]), [y])[0]
    with mpmath.workdps(DIGITS):
        pp, yy = mpref.exact_mpf(p), mpref.exact_mpf(y)
        terms = []
        if yy > 0:
            terms.append(-yy * mpmath.log(pp) if pp > 0 else mpmath.inf)
        if yy < 1:
            terms.append(-(1 - yy) * mpmath.log1p(-pp) if pp < 1 else mpmath.inf)
        ref = mpmath.fsum(terms)
    if ref == mpmath.inf:
        assert ours == np.inf
    else:
        assert ulps(ours, ref, dtype) <= ULPS
