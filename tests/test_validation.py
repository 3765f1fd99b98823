"""The input contract shared by every public function (``ce_tutorial._validation``).

Each error case asserts the exception type and a message that names the
argument and the offending value. The checks run through the public functions,
since that is where a user meets them.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import ce_tutorial as ct

Y_HAT = np.array([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
LOGITS = np.log(Y_HAT)
Q = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])

# Every function that takes integer labels, as f(y) with valid predictions of
# shape (2, 3).
LABEL_FUNCTIONS = [
    pytest.param(lambda y: ct.likelihood(Y_HAT, y), id="likelihood"),
    pytest.param(lambda y: ct.negative_log_likelihood(Y_HAT, y), id="nll"),
    pytest.param(lambda y: ct.cross_entropy(Y_HAT, y), id="cross_entropy"),
    pytest.param(lambda y: ct.cross_entropy_from_logits(LOGITS, y), id="from_logits"),
    pytest.param(lambda y: ct.cross_entropy_grad(LOGITS, y), id="grad"),
]
LABEL_FUNCTIONS_AND_ONE_HOT = [
    *LABEL_FUNCTIONS,
    pytest.param(lambda y: ct.one_hot(y, 3), id="one_hot"),
]

# Every function that takes probabilities y_hat, as f(y_hat) with labels [0, 0].
PROBABILITY_FUNCTIONS = [
    pytest.param(lambda p: ct.likelihood(p, [0, 0]), id="likelihood"),
    pytest.param(lambda p: ct.negative_log_likelihood(p, [0, 0]), id="nll"),
    pytest.param(lambda p: ct.cross_entropy(p, [0, 0]), id="cross_entropy"),
]

# Every function that takes logits, as f(logits) with labels [0, 0].
LOGIT_FUNCTIONS = [
    pytest.param(ct.softmax, id="softmax"),
    pytest.param(ct.log_softmax, id="log_softmax"),
    pytest.param(ct.logsumexp, id="logsumexp"),
    pytest.param(lambda z: ct.cross_entropy_from_logits(z, [0, 0]), id="from_logits"),
    pytest.param(lambda z: ct.cross_entropy_grad(z, [0, 0]), id="grad"),
]
LOSS_FROM_LOGITS = [
    pytest.param(ct.cross_entropy_from_logits, id="from_logits"),
    pytest.param(ct.cross_entropy_grad, id="grad"),
]

# Every function that takes target distributions, as f(y) with predictions of
# shape (2, 3).
TARGET_FUNCTIONS = [
    pytest.param(lambda y: ct.cross_entropy(Y_HAT, y), id="cross_entropy"),
    pytest.param(lambda y: ct.cross_entropy_from_logits(LOGITS, y), id="from_logits"),
    pytest.param(lambda y: ct.cross_entropy_grad(LOGITS, y), id="grad"),
]

REDUCED_FUNCTIONS = [
    pytest.param(lambda r: ct.cross_entropy(Y_HAT, [0, 2], reduction=r), id="ce"),
    pytest.param(
        lambda r: ct.cross_entropy_from_logits(LOGITS, [0, 2], reduction=r),
        id="from_logits",
    ),
    pytest.param(
        lambda r: ct.cross_entropy_grad(LOGITS, [0, 2], reduction=r), id="grad"
    ),
]


# --- integer labels ----------------------------------------------------------


@pytest.mark.parametrize("f", LABEL_FUNCTIONS_AND_ONE_HOT)
@pytest.mark.parametrize(
    ("y", "dtype"),
    [
        (np.array([True, False]), "bool"),
        (np.array([0.0, 2.0]), "float64"),
        (np.array([0, 2], dtype=np.float32), "float32"),
        (np.array(["0", "2"]), "<U1"),
    ],
    ids=["bool", "float64", "float32", "str"],
)
def test_labels_must_be_integers(f, y, dtype):
    pattern = rf"y must hold integer class labels, got dtype {re.escape(dtype)}"
    with pytest.raises(TypeError, match=pattern):
        f(y)


@pytest.mark.parametrize("f", LABEL_FUNCTIONS_AND_ONE_HOT)
@pytest.mark.parametrize(
    ("y", "index", "value"), [([0, -1], 1, -1), ([3, 0], 0, 3), ([0, 7], 1, 7)]
)
def test_labels_out_of_range(f, y, index, value):
    pattern = rf"y\[{index}\] = {value} is out of range for 3 classes \(0 <= y < 3\)"
    with pytest.raises(ValueError, match=pattern):
        f(np.array(y))


@pytest.mark.parametrize("f", LABEL_FUNCTIONS)
def test_labels_must_match_the_batch(f):
    with pytest.raises(
        ValueError, match=r"y has shape \(3,\), but there are 2 samples"
    ):
        f(np.array([0, 1, 2]))


@pytest.mark.parametrize(
    "f",
    [
        pytest.param(lambda y: ct.likelihood(Y_HAT, y), id="likelihood"),
        pytest.param(lambda y: ct.negative_log_likelihood(Y_HAT, y), id="nll"),
    ],
)
def test_probability_only_functions_want_1d_labels(f):
    with pytest.raises(ValueError, match=r"y must be integer .* got shape \(2, 1\)"):
        f(np.array([[0], [2]]))


@pytest.mark.parametrize("f", TARGET_FUNCTIONS)
def test_targets_of_three_dimensions_are_rejected(f):
    with pytest.raises(ValueError, match=r"y must be integer labels .*\(2, 3, 1\)"):
        f(np.zeros((2, 3, 1), dtype=int))


@pytest.mark.parametrize("f", LABEL_FUNCTIONS_AND_ONE_HOT)
def test_unsigned_and_small_integer_labels_are_accepted(f):
    expected = f(np.array([0, 2]))
    for dtype in (np.uint8, np.int8, np.int32, np.uint64):
        np.testing.assert_array_equal(f(np.array([0, 2], dtype=dtype)), expected)


def test_the_one_liner_wraps_negative_labels_and_ce_tutorial_does_not():
    # The source's one-liner indexes with y directly. y = -1 is an invalid
    # label, but NumPy reads it as "the last column" and returns a loss.
    y_hat = Y_HAT
    y = np.array([0, -1])
    one_liner = -np.log(y_hat[range(len(y_hat)), y])
    # It silently used y_hat[1, 2] = 0.5, the last class of the second row.
    assert one_liner[1] == pytest.approx(-math.log(0.5), rel=1e-15)
    with pytest.raises(ValueError, match=r"y\[1\] = -1 is out of range"):
        ct.cross_entropy(y_hat, y)


# --- one_hot and num_classes -------------------------------------------------


@pytest.mark.parametrize("num_classes", [0, -2])
def test_num_classes_must_be_positive(num_classes):
    with pytest.raises(
        ValueError, match=rf"num_classes must be at least 1, got {num_classes}"
    ):
        ct.one_hot([0], num_classes)


@pytest.mark.parametrize("num_classes", [3.0, "3", None, True, np.bool_(True)])
def test_num_classes_must_be_an_integer(num_classes):
    pattern = rf"num_classes must be an integer, got {re.escape(repr(num_classes))}"
    with pytest.raises(TypeError, match=pattern):
        ct.one_hot([0], num_classes)


def test_num_classes_accepts_numpy_integers():
    np.testing.assert_array_equal(
        ct.one_hot([1], np.int64(3)), np.array([[0.0, 1.0, 0.0]])
    )


def test_one_hot_labels_must_be_1d():
    with pytest.raises(ValueError, match=r"y must be 1-D.*\(2, 1\)"):
        ct.one_hot([[0], [1]], 3)


def test_one_hot_of_an_empty_list():
    encoded = ct.one_hot([], 4)
    assert encoded.shape == (0, 4)
    assert encoded.dtype == np.float64


# --- predicted probabilities --------------------------------------------------


@pytest.mark.parametrize("f", PROBABILITY_FUNCTIONS)
@pytest.mark.parametrize(
    ("y_hat", "pattern"),
    [
        ([0.5, 0.5], r"y_hat must be 2-D, .* got shape \(2,\)"),
        (np.full((2, 1, 1), 1.0), r"y_hat must be 2-D, .* got shape \(2, 1, 1\)"),
        (np.empty((2, 0)), r"y_hat has shape \(2, 0\): at least one class"),
        ([[0.5, np.nan], [0.5, 0.5]], r"y_hat\[0, 1\] = nan is not finite"),
        ([[0.5, 0.5], [np.inf, 0.5]], r"y_hat\[1, 0\] = inf is not finite"),
        ([[0.5, 0.5], [-0.25, 1.25]], r"y_hat\[1, 0\] = -0.25 is negative"),
        ([[0.5, 0.5], [0.75, 0.2]], r"y_hat\[1\] sums to 0\.95, not 1"),
        ([[0.5, 0.5], [1.0 + 1e-9, 0.0]], r"y_hat\[1, 0\] = 1.000000001 is greater"),
    ],
    ids=["1d", "3d", "no-class", "nan", "inf", "negative", "sum", "above-one"],
)
def test_probabilities_are_validated(f, y_hat, pattern):
    with pytest.raises(ValueError, match=pattern):
        f(y_hat)


@pytest.mark.parametrize("f", PROBABILITY_FUNCTIONS)
@pytest.mark.parametrize(
    ("y_hat", "dtype"),
    [
        (np.array([[True, False]]), "bool"),
        (np.array([[1 + 0j, 0j]]), "complex128"),
        (np.array([["1", "0"]]), "<U1"),
    ],
    ids=["bool", "complex", "str"],
)
def test_probabilities_must_be_real(f, y_hat, dtype):
    with pytest.raises(
        TypeError, match=rf"y_hat must hold real numbers, got dtype {re.escape(dtype)}"
    ):
        f(np.repeat(y_hat, 2, axis=0))


@pytest.mark.parametrize("f", PROBABILITY_FUNCTIONS)
def test_ragged_probabilities_are_rejected(f):
    with pytest.raises(ValueError, match=r"y_hat could not be read as an array"):
        f([[0.5, 0.5], [1.0]])


# Every function that checks row sums, as f(rows) for rows of shape (N, C)
# that must each be a distribution: predictions, target distributions, or both.
def _labels_for(rows):
    return np.zeros(rows.shape[0], dtype=np.int64)


ROW_SUM_FUNCTIONS = [
    pytest.param(lambda p: ct.likelihood(p, _labels_for(p)), id="likelihood"),
    pytest.param(lambda p: ct.negative_log_likelihood(p, _labels_for(p)), id="nll"),
    pytest.param(lambda p: ct.cross_entropy(p, _labels_for(p)), id="cross_entropy"),
    pytest.param(
        lambda p: ct.cross_entropy(np.full(p.shape, 1 / p.shape[1]), p),
        id="ce_targets",
    ),
    pytest.param(
        lambda p: ct.cross_entropy_from_logits(np.zeros(p.shape), p), id="from_logits"
    ),
    pytest.param(lambda p: ct.cross_entropy_grad(np.zeros(p.shape), p), id="grad"),
    pytest.param(ct.entropy, id="entropy"),
    pytest.param(lambda p: ct.kl_divergence(p, p), id="kl_p"),
    pytest.param(
        lambda p: ct.kl_divergence(np.full(p.shape, 1 / p.shape[1]), p), id="kl_q"
    ),
    pytest.param(lambda p: ct.expected_calibration_error(p, _labels_for(p)), id="ece"),
    pytest.param(lambda p: ct.reliability_curve(p, _labels_for(p)), id="curve"),
    pytest.param(
        lambda p: ct.classwise_calibration_error(p, _labels_for(p)), id="classwise"
    ),
]


def _tolerance(dtype, n_classes):
    """The documented rule: (32 + sqrt(C)) eps, eps no finer than float32's."""
    eps = max(np.finfo(np.float32).eps, np.finfo(dtype).eps)
    return (32 + math.sqrt(n_classes)) * eps


@pytest.mark.parametrize("f", ROW_SUM_FUNCTIONS)
@pytest.mark.parametrize("n_classes", [2, 10, 1000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_the_row_sum_rule_holds_in_every_function(f, n_classes, dtype):
    tol = _tolerance(dtype, n_classes)
    base = np.full((1, n_classes), 0.25 / (n_classes - 1))
    base[0, 0] = 0.75

    def row(offset):
        r = base.copy()
        r[0, 0] += offset
        r = r.astype(dtype)
        # The offset as the dtype rounds it, measured in float64.
        return r, float(r.astype(np.float64).sum() - 1)

    inside, off = row(0.9 * tol)
    assert 0.8 * tol < off < tol
    f(inside)  # accepted as is
    for sign in (1, -1):
        outside, off = row(sign * 1.1 * tol)
        assert abs(off) > tol
        with pytest.raises(ValueError, match=r"sums to .*not 1 \(tolerance"):
            f(outside)


@pytest.mark.parametrize("f", ROW_SUM_FUNCTIONS)
def test_float32_softmax_rows_converted_to_float64_are_accepted(f):
    # Issue 19: before the rule, 697 of these 1,000 rows were refused.
    rng = np.random.default_rng(19)
    z = rng.normal(scale=3.0, size=(1_000, 10)).astype(np.float32)
    p32 = np.exp(z - z.max(axis=1, keepdims=True))
    p32 /= p32.sum(axis=1, keepdims=True)
    p = p32.astype(np.float64)
    off = np.abs(p.sum(axis=1) - 1)
    assert (off > math.sqrt(np.finfo(np.float64).eps)).sum() > 500
    f(p)


@pytest.mark.parametrize("f", ROW_SUM_FUNCTIONS)
@pytest.mark.parametrize("n_classes", [2, 10, 1000, 50_257])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_off_by_1e_4_are_refused(f, n_classes, dtype):
    p = np.full((1, n_classes), 1 / n_classes)
    p[0, 0] += 1e-4
    p = p.astype(dtype)
    with pytest.raises(ValueError, match=r"\[0\] sums to .*not 1"):
        f(p)


def test_the_tolerance_is_named_in_the_message():
    tol = _tolerance(np.float64, 2)
    with pytest.raises(ValueError, match=rf"tolerance {tol:.1e}\)"):
        ct.cross_entropy([[0.5, 0.4]], [0])


def test_integer_probabilities_compute_in_float64():
    loss = ct.cross_entropy(np.array([[1, 0], [0, 1]]), [0, 1])
    assert loss.dtype == np.float64
    np.testing.assert_array_equal(loss, [0.0, 0.0])


# --- logits -------------------------------------------------------------------


@pytest.mark.parametrize("f", LOGIT_FUNCTIONS)
@pytest.mark.parametrize(
    ("z", "pattern"),
    [
        ([[0.0, 1.0], [2.0, np.nan]], r"logits\[1\] contains NaN"),
        ([[np.nan, np.inf], [0.0, 0.0]], r"logits\[0\] contains NaN"),
        ([[0.0, 1.0], [np.inf, 0.0]], r"logits\[1\] contains \+inf"),
        ([[-np.inf, np.inf], [0.0, 0.0]], r"logits\[0\] contains \+inf"),
        ([[-np.inf, -np.inf], [0.0, 0.0]], r"logits\[0\] is -inf in every class"),
    ],
    ids=["nan", "nan-and-inf", "inf", "inf-and-masked", "all-masked"],
)
def test_logits_are_validated(f, z, pattern):
    with pytest.raises(ValueError, match=pattern):
        f(np.array(z))


@pytest.mark.parametrize("f", LOGIT_FUNCTIONS)
@pytest.mark.parametrize(
    ("z", "dtype"),
    [
        (np.array([[True, False], [False, True]]), "bool"),
        (np.array([[1j, 0j], [0j, 1j]]), "complex128"),
        (np.array([["1", "0"], ["0", "1"]]), "<U1"),
    ],
    ids=["bool", "complex", "str"],
)
def test_logits_must_be_real(f, z, dtype):
    with pytest.raises(
        TypeError, match=rf"logits must hold real numbers, got dtype {re.escape(dtype)}"
    ):
        f(z)


@pytest.mark.parametrize("f", LOGIT_FUNCTIONS)
def test_logits_with_an_empty_class_axis_are_rejected(f):
    with pytest.raises(
        ValueError, match=r"logits has shape \(2, 0\): the class axis .* is empty"
    ):
        f(np.empty((2, 0)))


@pytest.mark.parametrize(
    "f", [ct.softmax, ct.log_softmax, ct.logsumexp], ids=lambda f: f.__name__
)
def test_scalar_logits_are_rejected(f):
    with pytest.raises(ValueError, match=r"logits must have at least one dimension"):
        f(3.0)


@pytest.mark.parametrize("f", LOSS_FROM_LOGITS)
def test_loss_logits_must_be_at_least_2d(f):
    pattern = r"logits must be 2-D, .* or of shape \(n_samples, n_classes, d1, "
    with pytest.raises(ValueError, match=pattern + r".* got shape \(3,\)"):
        f(np.zeros(3), [0])


@pytest.mark.parametrize("f", LOSS_FROM_LOGITS)
@pytest.mark.parametrize(
    ("y", "pattern"),
    [
        (
            [0],
            r"y has shape \(1,\), but the logits have shape \(1, 2, 3\): "
            r"expected integer labels of shape \(1, 3\) or target distributions of "
            r"shape \(1, 2, 3\)",
        ),
        ([[0, 1]], r"y has shape \(1, 2\), but the logits .*labels of shape \(1, 3\)"),
        (
            np.zeros((1, 3, 2)),
            r"y has shape \(1, 3, 2\), but the predictions have "
            r"shape \(1, 2, 3\); target distributions must have the same shape",
        ),
        (np.zeros((1, 2, 3, 1)), r"y has shape \(1, 2, 3, 1\), but the logits"),
        ([[0.0, 1.0, 0.0]], r"y must hold integer class labels, got dtype float64"),
    ],
)
def test_k_dimensional_targets_must_match_the_logits(f, y, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        f(np.zeros((1, 2, 3)), y)


# --- target distributions -----------------------------------------------------


@pytest.mark.parametrize("f", TARGET_FUNCTIONS)
@pytest.mark.parametrize(
    ("q", "pattern"),
    [
        (
            np.full((2, 2), 0.5),
            r"y has shape \(2, 2\), but the predictions have shape \(2, 3\)",
        ),
        (np.full((3, 3), 1 / 3), r"y has shape \(3, 3\), but the predictions"),
        ([[0.0, 0.5, 0.5], [np.nan, 0.5, 0.5]], r"y\[1, 0\] = nan is not finite"),
        ([[0.0, np.inf, 0.5], [1.0, 0.0, 0.0]], r"y\[0, 1\] = inf is not finite"),
        ([[0.0, 0.5, 0.5], [1.5, -0.5, 0.0]], r"y\[1, 1\] = -0.5 is negative"),
        ([[0.0, 0.5, 0.4], [1.0, 0.0, 0.0]], r"y\[0\] sums to 0\.9, not 1"),
        ([[0.0, 0.5, 0.5], [1.0, 0.5, 0.0]], r"y\[1\] sums to 1\.5, not 1"),
    ],
    ids=["columns", "rows", "nan", "inf", "negative", "sum-low", "sum-high"],
)
def test_target_distributions_are_validated(f, q, pattern):
    with pytest.raises(ValueError, match=pattern):
        f(np.array(q))


@pytest.mark.parametrize("f", TARGET_FUNCTIONS)
def test_target_distributions_must_be_real(f):
    with pytest.raises(TypeError, match=r"y must hold real numbers, got dtype bool"):
        f(np.array([[False, True, False], [True, False, False]]))


@pytest.mark.parametrize("f", TARGET_FUNCTIONS)
def test_target_distributions_are_not_repaired(f):
    # A row that sums to 1 but holds a tiny negative entry is not clipped.
    with pytest.raises(ValueError, match=r"y\[0, 0\] = -1e-12 is negative"):
        f(np.array([[-1e-12, 0.5, 0.5 + 1e-12], [1.0, 0.0, 0.0]]))


# --- reduction ------------------------------------------------------------------


@pytest.mark.parametrize("f", REDUCED_FUNCTIONS)
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 1, ("mean",)])
def test_unknown_reductions_are_rejected(f, reduction):
    pattern = r"reduction must be one of 'none', 'mean' or 'sum', got " + re.escape(
        repr(reduction)
    )
    with pytest.raises(ValueError, match=pattern):
        f(reduction)


@pytest.mark.parametrize(
    "f",
    [
        pytest.param(ct.cross_entropy, id="cross_entropy"),
        pytest.param(ct.cross_entropy_from_logits, id="from_logits"),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_empty_batch_of_losses(f, dtype):
    empty = np.empty((0, 3), dtype=dtype)
    for y in ([], np.empty(0, dtype=int), np.empty((0, 3))):
        none = f(empty, y, reduction="none")
        assert none.shape == (0,)
        assert none.dtype == dtype
        total = f(empty, y, reduction="sum")
        assert total == 0.0
        assert total.dtype == dtype
        with pytest.raises(ValueError, match=r"reduction='mean' .* empty batch"):
            f(empty, y, reduction="mean")


def test_empty_batch_of_gradients():
    empty = np.empty((0, 3))
    for y in ([], np.empty((0, 3))):
        for reduction in ("none", "sum"):
            grad = ct.cross_entropy_grad(empty, y, reduction=reduction)
            assert grad.shape == (0, 3)
        with pytest.raises(ValueError, match=r"reduction='mean' .* empty batch"):
            ct.cross_entropy_grad(empty, y, reduction="mean")


def test_empty_batch_of_likelihoods():
    empty = np.empty((0, 3))
    assert ct.likelihood(empty, []) == 1.0
    assert ct.negative_log_likelihood(empty, []) == 0.0


# --- inputs are never modified, lists are accepted ------------------------------


def _calls():
    """(function, args) for every public function, with masked logits too."""
    masked = np.array([[0.5, -np.inf, 2.0], [1.0, 3.0, -1.0]])
    p = np.array([[0.25, 0.75], [0.5, 0.5]])
    q = np.array([[1.0, 0.0], [0.5, 0.5]])
    labels = np.array([0, 2])
    targets = np.array([[0.5, 0.0, 0.5], [0.0, 0.25, 0.75]])
    calls = [
        (ct.softmax, (masked,)),
        (ct.log_softmax, (masked,)),
        (ct.logsumexp, (masked,)),
        (ct.softmax, (masked.T.copy(), 0)),
        (ct.one_hot, (labels, 3)),
        (ct.likelihood, (Y_HAT, labels)),
        (ct.negative_log_likelihood, (Y_HAT, labels)),
        (ct.cross_entropy, (Y_HAT, labels)),
        (ct.cross_entropy, (Y_HAT, targets)),
        (ct.cross_entropy_from_logits, (masked, labels)),
        (ct.cross_entropy_from_logits, (masked, targets)),
        (ct.cross_entropy_grad, (masked, labels)),
        (ct.cross_entropy_grad, (masked, targets)),
        (ct.entropy, (p,)),
        (ct.kl_divergence, (p, q)),
    ]
    return [
        pytest.param(f, args, id=f"{f.__name__}-{i}")
        for i, (f, args) in enumerate(calls)
    ]


@pytest.mark.parametrize(("f", "args"), _calls())
@pytest.mark.parametrize("dtype", [None, np.float32])
def test_inputs_are_not_modified(f, args, dtype):
    def cast(a):
        if dtype is not None and isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return a.astype(dtype)
        return a

    args = tuple(cast(a) for a in args)
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    f(*args)
    for a, b in zip(args, before, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, strict=True)
    # Read-only inputs work too: any write to them would raise.
    frozen = []
    for a in args:
        if isinstance(a, np.ndarray):
            a = a.copy()
            a.flags.writeable = False
        frozen.append(a)
    f(*frozen)


@pytest.mark.parametrize(("f", "args"), _calls())
def test_python_lists_are_accepted(f, args):
    as_lists = tuple(a.tolist() if isinstance(a, np.ndarray) else a for a in args)
    expected = f(*args)
    got = f(*as_lists)
    np.testing.assert_array_equal(got, expected, strict=True)


# --- the earliest bad row, across arguments (issue 10) ------------------------------


def test_the_earliest_bad_row_wins_between_predictions_and_labels():
    y_hat = Y_HAT.copy()
    y_hat[1] = [0.5, 0.5, 0.5]  # row 1 sums to 1.5
    with pytest.raises(ValueError, match=r"y\[0\] = 7 is out of range"):
        ct.cross_entropy(y_hat, [7, 0])
    with pytest.raises(ValueError, match=r"y_hat\[1\] sums to 1.5"):
        ct.cross_entropy(y_hat, [0, 7])
    # A tie goes to the first argument.
    with pytest.raises(ValueError, match=r"y_hat\[1\] sums to 1.5"):
        ct.likelihood(y_hat, [0, -1])


def test_the_earliest_bad_row_wins_between_predictions_and_targets():
    y_hat = Y_HAT.copy()
    y_hat[1, 0] = -0.2
    q = Q.copy()
    q[0] = [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match=r"y\[0\] sums to 1.5"):
        ct.cross_entropy(y_hat, q)
    with pytest.raises(ValueError, match=r"y_hat\[1, 0\] = -0.2 is negative"):
        ct.cross_entropy(y_hat, Q)


def test_within_a_row_a_non_finite_entry_is_named_before_a_negative_one():
    with pytest.raises(ValueError, match=r"p\[0, 2\] = nan is not finite"):
        ct.entropy([[-0.5, 0.5, np.nan], [2.0, 0.0, 0.0]])


def test_kl_names_the_earliest_bad_row_of_p_or_q():
    p = np.array([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"q\[0, 1\] = 2.0 is greater than 1"):
        ct.kl_divergence([[0.5, 0.5], [0.5, 0.7]], [[0.5, 2.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"p\[1\] sums to 1.2"):
        ct.kl_divergence([[0.5, 0.5], [0.5, 0.7]], p)


# --- dtypes and array types that are not plain real arrays -------------------------


@pytest.mark.parametrize("dtype", ["m8[s]", "M8[s]"])
def test_datetimes_and_timedeltas_are_not_real_numbers(dtype):
    with pytest.raises(TypeError, match=r"logits must hold real numbers, got dtype"):
        ct.logsumexp(np.zeros(3, dtype=dtype))
    with pytest.raises(TypeError, match=r"y must hold integer class labels"):
        ct.one_hot(np.zeros(3, dtype=dtype), 3)


def test_a_label_beyond_int64_in_a_nested_list_is_named_by_its_index():
    with pytest.raises(ValueError, match=r"y\[1\] = 18446744073709551616 is out of"):
        ct.cross_entropy_from_logits(LOGITS, [0, 2**64])


def test_python_floats_that_are_not_integers_stay_a_type_error():
    with pytest.raises(TypeError, match=r"y must hold integer class labels, got dtype"):
        ct.one_hot([0.0, 1e30], 3)


def test_one_hot_below_the_memory_cap_still_works():
    assert ct.one_hot([0, 1], 10_000).shape == (2, 10_000)


# --- ignore_index ------------------------------------------------------------------


def assert_positive_zero(x):
    """``x`` is exactly 0.0 everywhere, never -0.0."""
    x = np.asarray(x)
    assert (x == 0.0).all()
    assert not np.signbit(x).any()


# The two functions that take ignore_index, as f(logits, y, reduction, ignore_index).
IGNORE_FUNCTIONS = [
    pytest.param(
        lambda z, y, r="none", i=None: ct.cross_entropy_from_logits(
            z, y, r, ignore_index=i
        ),
        id="from_logits",
    ),
    pytest.param(
        lambda z, y, r="mean", i=None: ct.cross_entropy_grad(z, y, r, ignore_index=i),
        id="grad",
    ),
]


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
@pytest.mark.parametrize(
    "ignore_index", [True, np.bool_(False), -100.0, np.float64(0.0), "-100", [-100]]
)
def test_ignore_index_must_be_an_integer(f, ignore_index):
    got = re.escape(repr(ignore_index))
    pattern = rf"ignore_index must be an integer or None, got {got}"
    with pytest.raises(TypeError, match=pattern):
        f(LOGITS, [0, 2], i=ignore_index)


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, np.int64(-100), np.int8(-100)])
def test_ignore_index_accepts_python_and_numpy_integers(f, ignore_index):
    y = np.array([0, -100])
    out = f(LOGITS, y, "none", ignore_index)
    np.testing.assert_array_equal(out[:1], f(LOGITS[:1], y[:1], "none"))
    assert_positive_zero(out[1])


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 2])
def test_ignore_index_is_refused_with_target_distributions(f, ignore_index):
    # PyTorch raises only for ignore_index >= 0 and quietly does nothing for a
    # negative one; here every value raises, so that it never does nothing.
    pattern = (
        rf"ignore_index = {ignore_index} applies to integer labels only, but y "
        r"holds target distributions of shape \(2, 3\)"
    )
    with pytest.raises(ValueError, match=pattern):
        f(LOGITS, Q, i=ignore_index)


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
def test_a_negative_label_without_ignore_index_still_raises(f):
    with pytest.raises(ValueError, match=r"^y\[1\] = -100 is out of range .*< 3\)$"):
        f(LOGITS, [0, -100])


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
@pytest.mark.parametrize(
    ("y", "ignore_index", "index", "value"),
    [
        ([0, -100, -1], -100, 2, -1),  # another negative label
        ([0, -100, 3], -100, 2, 3),  # a label too large
        ([-100, 0, 2], -1, 0, -100),  # -100, but the ignored value is -1
        ([7, 1, 7], 3, 0, 7),
    ],
)
def test_a_label_neither_in_range_nor_ignored_raises(f, y, ignore_index, index, value):
    z = np.zeros((3, 3))
    pattern = (
        rf"y\[{index}\] = {value} is out of range for 3 classes \(0 <= y < 3\), "
        rf"and is not ignore_index = {ignore_index}"
    )
    with pytest.raises(ValueError, match=pattern):
        f(z, y, i=ignore_index)


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
def test_a_bad_label_before_a_bad_logit_is_named_first(f):
    z = np.zeros((4, 3))
    z[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"y\[2\] = 5 is out of range"):
        f(z, [-100, 0, 5, 0], i=-100)
    # and the other way round, with the bad logit in an ignored row
    z[3], z[1, 0] = 0.0, np.inf
    with pytest.raises(ValueError, match=r"logits\[1\] contains \+inf"):
        f(z, [0, -100, 5, 0], i=-100)


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
def test_mean_over_no_kept_row_raises(f):
    pattern = (
        r"reduction='mean' is undefined when every label equals ignore_index = "
        r"-100: no row is left to average over \(PyTorch returns nan\)"
    )
    with pytest.raises(ValueError, match=pattern):
        f(LOGITS, [-100, -100], "mean", -100)
    # An empty batch keeps its own message.
    with pytest.raises(ValueError, match=r"undefined for an empty batch \(0 samples\)"):
        f(np.zeros((0, 3)), [], "mean", -100)


@pytest.mark.parametrize(
    ("dtype", "ignore_index", "expected"),
    [
        (np.int64, -100, -100),
        (np.int8, -100, -100),
        (np.int8, -129, None),  # below int8: no label can equal it
        (np.uint8, -100, None),
        (np.uint64, 2**64 - 1, 2**64 - 1),
        (np.int64, 2**70, None),
        (np.int64, None, None),
    ],
)
def test_ignored_label_in_the_labels_dtype(dtype, ignore_index, expected):
    from ce_tutorial._validation import ignored_label

    got = ignored_label(np.dtype(dtype), ignore_index)
    if expected is None:
        assert got is None
    else:
        assert got.dtype == dtype
        assert int(got) == expected


@pytest.mark.parametrize("f", IGNORE_FUNCTIONS)
@pytest.mark.parametrize(
    ("dtype", "ignore_index"), [(np.uint8, -100), (np.int64, 2**70), (np.int8, 200)]
)
def test_an_ignore_index_no_label_can_equal_skips_nothing(f, dtype, ignore_index):
    y = np.array([0, 2], dtype=dtype)
    for r in ("none", "sum", "mean"):
        np.testing.assert_array_equal(f(LOGITS, y, r, ignore_index), f(LOGITS, y, r))
    pattern = r"y\[1\] = -1 is out of range .*, and is not ignore_index = 18446"
    with pytest.raises(ValueError, match=pattern):
        f(LOGITS, np.array([0, -1]), i=2**64)


def test_reduce_with_kept_rows():
    from ce_tutorial._validation import reduce

    losses = np.array([1.0, 0.0, 2.0, 0.0], dtype=np.float32)
    mean = reduce(losses, "mean", n_kept=2)
    assert mean == np.float32(1.5)
    assert mean.dtype == np.float32
    assert reduce(losses, "mean", n_kept=4) == losses.mean()
    assert reduce(losses, "sum", n_kept=2) == np.float32(3.0)
    assert reduce(losses, "none", n_kept=2) is losses
