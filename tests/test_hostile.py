"""Hostile input, fork and threads: the families of issue 10.

The first part holds one regression test for each break the adversarial
review found; each of them failed on the code before the fix. The rest looks
for more of the same families:

- exotic array types: masked arrays, ``np.matrix``, memmaps, read-only and
  negatively strided views, big-endian data, pandas objects;
- every dtype that does not hold real numbers, for every array argument;
- overflow at each dtype's extremes, in every path, against mpmath;
- ``fork`` and races with :func:`ce_tutorial.set_num_threads` on every
  streamed function, bounded in time: a hang fails within seconds;
- the extra memory of every streamed route and axis, via ``tracemalloc``.

The suite runs under ``-W error`` (``filterwarnings = ["error"]``), so any
leaked warning fails the test that leaked it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import signal
import threading
import time
import warnings

import mpmath
import numpy as np
import pytest

import ce_tutorial as ct
from ce_tutorial import _streaming

from .memory import traced_peak
from .reference import DIGITS, exact_mpf, label_losses_rows

# A child or a thread that has not finished by then is taken to hang. The
# calls they make take well under a second, even on a loaded machine.
HANG_SECONDS = 10.0
F64 = np.finfo(np.float64)
F32 = np.finfo(np.float32)


@pytest.fixture(autouse=True)
def restore_num_threads():
    previous = ct.set_num_threads(None)
    yield
    ct.set_num_threads(previous)


def _big(n_rows: int = 200_000, n_classes: int = 10, seed: int = 10):
    """Logits, labels and soft targets large enough to use two threads."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n_rows, n_classes))
    y = rng.integers(0, n_classes, size=n_rows)
    q = rng.uniform(size=z.shape)
    q /= q.sum(axis=1, keepdims=True)
    return z, y, q


def _streamed_calls(z, y, q):
    """Every function that streams over blocks of rows, on the same input."""
    return {
        "softmax": lambda: ct.softmax(z),
        "log_softmax": lambda: ct.log_softmax(z),
        "logsumexp": lambda: ct.logsumexp(z),
        "logsumexp_middle_axis": lambda: ct.logsumexp(
            z.reshape(-1, 2, z.shape[1]), axis=1
        ),
        "ce_labels": lambda: ct.cross_entropy_from_logits(z, y),
        "ce_labels_fallback": lambda: ct.cross_entropy_from_logits(z + 800.0, y),
        "ce_targets": lambda: ct.cross_entropy_from_logits(z, q),
        "grad_labels": lambda: ct.cross_entropy_grad(z, y),
        "ce_options": lambda: ct.cross_entropy_from_logits(
            z, y, weight=np.linspace(0.5, 2.0, z.shape[1]), label_smoothing=0.1
        ),
        "ce_k_dim": lambda: ct.cross_entropy_from_logits(
            z.reshape(-1, 2, z.shape[1]).swapaxes(1, 2), y.reshape(-1, 2)
        ),
    }


STREAMED = list(_streamed_calls(None, None, None))


# --------------------------------------------------------------------------
# Fork and thread races: bounded in time
# --------------------------------------------------------------------------


def _fork_and_wait(check) -> int:
    """Run ``check()`` in a forked child; return its exit code.

    0: ``check()`` returned True; 1: it returned False; 2: it raised. A child
    still running after ``HANG_SECONDS`` is killed and the test fails.
    """
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock
        # the child: that deadlock is exactly what this test looks for.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 2
        try:
            code = 0 if check() else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + HANG_SECONDS
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child still ran after {HANG_SECONDS} s: it hung")
        time.sleep(0.01)


@pytest.fixture(scope="module")
def big():
    return _big()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("name", STREAMED)
def test_break1_a_forked_child_can_use_the_streaming_functions(big, name):
    call = _streamed_calls(*big)[name]
    ct.set_num_threads(2)
    expected = call()  # the parent's pool now has live worker threads
    code = _fork_and_wait(lambda: np.array_equal(call(), expected))
    assert code == 0, f"the child's result was wrong (exit code {code})"
    # ... and the parent's pool still works after the fork.
    np.testing.assert_array_equal(call(), expected)


def _child_compares(expected: np.ndarray) -> None:
    z, y, _ = _big()
    if not np.array_equal(ct.cross_entropy_from_logits(z, y), expected):
        raise SystemExit(1)


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)
def test_break1_multiprocessing_with_fork_does_not_hang(big):
    z, y, _ = big
    ct.set_num_threads(2)
    expected = ct.cross_entropy_from_logits(z, y)
    process = multiprocessing.get_context("fork").Process(
        target=_child_compares, args=(expected,)
    )
    with warnings.catch_warnings():  # as in _fork_and_wait
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    process.join(HANG_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail(f"the child process still ran after {HANG_SECONDS} s: it hung")
    assert process.exitcode == 0


def _run_threads(targets, timeout: float = HANG_SECONDS) -> None:
    """Start one daemon thread per target; fail if any is alive at the end."""
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        pytest.fail(f"a thread still ran after {timeout} s: it hung")


def test_break2_growing_the_pool_never_breaks_a_call_in_flight(monkeypatch):
    """Eight callers run every streamed function while a ninth thread keeps
    raising the thread count, so the pool is replaced under them."""
    # Small inputs that still split between many threads, so that the pool is
    # replaced often; a fresh one-thread pool in each round.
    monkeypatch.setattr(_streaming, "MIN_ELEMENTS_PER_THREAD", 1 << 10)
    monkeypatch.setattr(_streaming, "_pool", None)
    z, y, q = _big(4_000, 16)
    calls = _streamed_calls(z, y, q)
    ct.set_num_threads(1)
    expected = {name: call() for name, call in calls.items()}
    errors: list[str] = []

    def caller(name: str, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                if not np.array_equal(calls[name](), expected[name]):
                    errors.append(f"{name}: wrong result")
        except BaseException as exc:  # reported below
            errors.append(f"{name}: {exc!r}")

    for _ in range(12):
        _streaming._pool = None
        ct.set_num_threads(1)
        stop = threading.Event()

        def setter(stop=stop) -> None:
            for n in range(2, 17):
                ct.set_num_threads(n)
                time.sleep(0.002)
            stop.set()

        callers = [
            (lambda name=name, stop=stop: caller(name, stop))
            for name in (STREAMED * 2)[:8]
        ]
        _run_threads([*callers, setter])
    assert errors == []


@pytest.mark.parametrize("name", STREAMED)
def test_concurrent_callers_get_the_serial_result(name):
    z, y, q = _big(40_000, 16, seed=11)
    call = _streamed_calls(z, y, q)[name]
    ct.set_num_threads(1)
    expected = call()
    ct.set_num_threads(2)
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(np.array_equal(call(), expected))
        except BaseException as exc:  # reported below
            results.append(exc)

    _run_threads([worker] * 4)
    assert results == [True] * 4


# --------------------------------------------------------------------------
# The other breaks of issue 10
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ct.cross_entropy([[0.5, 0.5]], [[1e308, 1e308]]),
            r"y\[0\] sums to inf",
        ),
        (
            lambda: ct.cross_entropy_from_logits(
                [[0.0, 0.0]], np.float32([[3e38, 3e38]])
            ),
            r"y\[0\] sums to inf",
        ),
        (
            lambda: ct.entropy([[1e308, 1e308]]),
            r"p\[0, 0\] = 1e\+308 is greater than 1",
        ),
        (
            lambda: ct.kl_divergence([0.5, 0.5], [1e308, 1e308]),
            r"q\[0\] = 1e\+308 is greater than 1",
        ),
    ],
)
def test_break3_the_row_sum_check_leaks_no_warning(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_break3_an_overflowing_soft_target_loss_is_inf_without_a_warning():
    # The target row sums to 1 + 1e-8, within the tolerance of 4.0e-6 for two
    # classes, so it is valid, and the true loss, 1.797...e308 * (1 + 1e-8), is
    # beyond float64's range: inf is its correctly rounded value.
    loss = ct.cross_entropy_from_logits([[0.0, -F64.max]], [[0.0, 1 + 1e-8]])
    assert loss[0] == np.inf


TIMEDELTA = np.array([[1, 0]], dtype="m8[s]")


@pytest.mark.parametrize(
    ("call", "exception", "message"),
    [
        (lambda: ct.one_hot(TIMEDELTA[0], 3), TypeError, r"y must hold integer"),
        (lambda: ct.cross_entropy(TIMEDELTA, [0]), TypeError, r"y_hat must hold real"),
        (lambda: ct.cross_entropy([[1.0, 0.0]], TIMEDELTA[0, :1]), TypeError, r"^y "),
        (lambda: ct.entropy(TIMEDELTA), TypeError, r"p must hold real numbers"),
        (lambda: ct.kl_divergence([1.0], TIMEDELTA[0, :1]), TypeError, r"^q "),
        (lambda: ct.softmax(TIMEDELTA), TypeError, r"logits must hold real numbers"),
        (lambda: ct.logsumexp(TIMEDELTA), TypeError, r"logits must hold real"),
        (
            lambda: ct.cross_entropy_from_logits([[0.0, 0.0]], TIMEDELTA[0, :1]),
            TypeError,
            r"y must hold integer class labels, got dtype timedelta64\[s\]",
        ),
        (
            lambda: ct.cross_entropy_grad([[0.0, 0.0]], TIMEDELTA),
            TypeError,
            r"y must hold real numbers, got dtype timedelta64\[s\]",
        ),
    ],
)
def test_break4_timedelta_is_rejected_naming_the_argument(call, exception, message):
    with pytest.raises(exception, match=message):
        call()


def test_break5_a_masked_array_is_rejected_not_computed_on():
    logits = np.ma.masked_array([1.0, 2.0, 1000.0], mask=[0, 0, 1])
    with pytest.raises(
        ValueError, match=r"logits is a masked array with 1 masked entry"
    ):
        ct.softmax(logits)
    labels = np.ma.masked_array([0, 5], mask=[0, 1])
    with pytest.raises(ValueError, match=r"y is a masked array with 1 masked entry"):
        ct.cross_entropy([[0.5, 0.5], [0.5, 0.5]], labels)


@pytest.mark.parametrize(
    ("dtype", "big_logit"), [(np.float64, 1e308), (np.float32, 3.4e38)]
)
def test_break6_soft_targets_at_extreme_logits_give_the_finite_loss(dtype, big_logit):
    z = np.array([[big_logit, -big_logit]], dtype=dtype)
    q = np.array([[0.75, 0.25]])
    loss = ct.cross_entropy_from_logits(z, q)
    assert loss.dtype == dtype
    with mpmath.workdps(DIGITS):
        a, b = mpmath.mpf(float(z[0, 0])), mpmath.mpf(float(z[0, 1]))
        # m = a is the maximum: sum_j q_j (m - z_j) + log(1 + e^(b - a)).
        true = mpmath.mpf(0.25) * (a - b) + mpmath.log1p(mpmath.exp(b - a))
        error = abs(mpmath.mpf(float(loss[0])) - true) / true
    assert float(error) <= 2 * np.finfo(dtype).eps


TINY_MASS = [[1 - 1e-50, 1e-50]]


def test_break7_tiny_target_mass_survives_the_float32_cast():
    # 1e-50 of target mass on a class the model rules out: infinite loss.
    assert ct.cross_entropy(np.float32([[1.0, 0.0]]), TINY_MASS)[0] == np.inf
    z = np.float32([[0.0, -np.inf]])
    assert ct.cross_entropy_from_logits(z, TINY_MASS)[0] == np.inf
    with pytest.raises(
        ValueError, match=r"logits\[0, 1\] is -inf but y\[0, 1\] = 1e-50"
    ):
        ct.cross_entropy_grad(z, TINY_MASS)
    # ... and on a class it allows, the tiny mass adds (almost) nothing.
    finite = ct.cross_entropy(np.float32([[0.5, 0.5]]), TINY_MASS)
    np.testing.assert_allclose(finite, np.float32(np.log(2)), rtol=F32.eps)


def _peak_extra(call) -> int:
    """The peak memory ``call()`` allocates beyond what it returns, in bytes."""
    peak, result = traced_peak(call)
    return peak - np.asarray(result).nbytes


def _fallback_logits(n_rows: int, dtype) -> np.ndarray:
    """Logits whose every row leaves the fast route: near 1000 (float64) or 90."""
    offset = 1000.0 if dtype == np.float64 else 90.0
    rng = np.random.default_rng(8)
    return (rng.standard_normal((n_rows, 10)) + offset).astype(dtype)


@pytest.mark.parametrize("n_threads", [8, 16])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_break8_the_fallback_route_needs_under_a_quarter_of_the_logits(
    n_threads, dtype
):
    z = _fallback_logits(2_000_000, dtype)
    y = np.random.default_rng(9).integers(0, 10, size=z.shape[0])
    ct.set_num_threads(n_threads)
    # The N losses count as extra memory here: _peak_extra took them off.
    extra = _peak_extra(lambda: ct.cross_entropy_from_logits(z, y))
    assert extra + z.shape[0] * np.dtype(dtype).itemsize <= 0.25 * z.nbytes


@pytest.mark.parametrize(
    "f", [ct.logsumexp, ct.log_softmax, ct.softmax], ids=lambda f: f.__name__
)
def test_break8_a_middle_class_axis_does_not_copy_the_input(f):
    z = np.random.default_rng(12).standard_normal((40, 50, 1000))
    assert _peak_extra(lambda: f(z, axis=1)) <= 0.25 * z.nbytes


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_break9_the_earliest_bad_row_is_named_whatever_the_threads(n_threads):
    z, y, q = _big(10_000, 64, seed=13)
    ct.set_num_threads(n_threads)
    late_nan = z.copy()
    late_nan[8000, 3] = np.nan
    bad_y, bad_q = y.copy(), q.copy()
    bad_y[100] = 64
    bad_q[100] *= 2
    for call in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        with pytest.raises(ValueError, match=r"y\[100\] = 64 is out of range"):
            call(late_nan, bad_y)
        with pytest.raises(ValueError, match=r"y\[100\] sums to 2"):
            call(late_nan, bad_q)
    # The other way round: the bad logits come first.
    early_nan = z.copy()
    early_nan[100, 3] = np.nan
    bad_y, bad_q = y.copy(), q.copy()
    bad_y[8000] = -1
    bad_q[8000] *= 2
    for call in (ct.cross_entropy_from_logits, ct.cross_entropy_grad):
        for target in (bad_y, bad_q):
            with pytest.raises(ValueError, match=r"logits\[100\] contains NaN"):
                call(early_nan, target)


def test_break9_one_hot_names_a_label_beyond_the_integer_range():
    with pytest.raises(
        ValueError, match=r"y\[0\] = 9223372036854775808 is out of the integer range"
    ):
        ct.one_hot([2**63, 0], 3)
    with pytest.raises(ValueError, match=r"y\[1\] = -9223372036854775809 is out of"):
        ct.one_hot([0, -(2**63) - 1], 3)


@pytest.mark.parametrize(
    ("num_classes", "size"),
    [(10**12, "8,000,000,000,000"), (2**70, "9,444,732,965,739,290,427,392")],
)
def test_break9_one_hot_refuses_a_matrix_beyond_memory(num_classes, size):
    with pytest.raises(
        ValueError,
        match=rf"num_classes = {num_classes} would make a one-hot matrix of 1 x "
        rf"{num_classes} float64 entries, {size} bytes, more than",
    ):
        ct.one_hot([0], num_classes)


# --------------------------------------------------------------------------
# Issue 19: the third round. Each test failed on the code before the fix.
# --------------------------------------------------------------------------

LD = np.longdouble
LONGDOUBLE_IS_WIDER = np.finfo(LD).eps < F64.eps
needs_wide_longdouble = pytest.mark.skipif(
    not LONGDOUBLE_IS_WIDER, reason="longdouble is float64 here"
)
TIMEDELTA_Y = np.array([1, 0], dtype="m8[s]")


@pytest.mark.parametrize(
    "call",
    [
        lambda: ct.binary_cross_entropy([0.5, 0.5], TIMEDELTA_Y),
        lambda: ct.binary_cross_entropy_from_logits([0.0, 0.0], TIMEDELTA_Y),
        lambda: ct.binary_cross_entropy_grad([0.0, 0.0], TIMEDELTA_Y),
    ],
    ids=["probabilities", "logits", "grad"],
)
def test_round3_break1_timedelta_binary_targets_are_refused(call):
    with pytest.raises(
        TypeError,
        match=r"y must hold bool, integer 0/1 or float targets in \[0, 1\], got "
        r"dtype timedelta64\[s\]",
    ):
        call()


# Every target argument, and the dtypes the one gate refuses for it.
TARGET_ARGUMENTS = {
    "labels_losses": lambda y: ct.cross_entropy([[0.5, 0.5], [0.5, 0.5]], y),
    "labels_logits": lambda y: ct.cross_entropy_from_logits(np.zeros((2, 2)), y),
    "labels_grad": lambda y: ct.cross_entropy_grad(np.zeros((2, 2)), y),
    "one_hot": lambda y: ct.one_hot(y, 2),
    "ece_top_label": lambda y: ct.expected_calibration_error([[1.0, 0.0]] * 2, y),
    "ece_binary": lambda y: ct.expected_calibration_error([0.5, 0.5], y),
    "classwise": lambda y: ct.classwise_calibration_error([[1.0, 0.0]] * 2, y),
    "fit_temperature": lambda y: ct.fit_temperature([[1.0, 0.0], [0.0, 1.0]], y),
    "binary": lambda y: ct.binary_cross_entropy_from_logits([0.0, 0.0], y),
}
REFUSED = {
    "labels_losses": ["bool", "m8[s]", "M8[s]", "complex128", "U1", "O"],
    "binary": ["m8[s]", "M8[s]", "complex128", "U1", "O"],
    "ece_binary": ["float64", "m8[s]", "M8[s]", "complex128", "U1", "O"],
}


@pytest.mark.parametrize(
    ("argument", "dtype"),
    [
        (argument, dtype)
        for argument in TARGET_ARGUMENTS
        for dtype in REFUSED.get(argument, REFUSED["labels_losses"])
    ],
)
def test_round3_break1_one_dtype_gate_for_every_target_argument(argument, dtype):
    y = np.array([1, 0]).astype(dtype) if dtype != "U1" else np.array(["1", "0"])
    with pytest.raises(
        TypeError, match=rf"^y must hold .*got dtype {re.escape(str(y.dtype))}"
    ):
        TARGET_ARGUMENTS[argument](y)


@needs_wide_longdouble
def test_round3_break2_longdouble_target_mass_is_not_cast_away():
    tiny = np.array([LD("1e-4000")])  # 0 in float64
    # A certain, wrong prediction of an event with mass 1e-4000: infinite.
    assert ct.binary_cross_entropy_from_logits([-np.inf], tiny)[0] == np.inf
    assert ct.binary_cross_entropy([0.0], tiny)[0] == np.inf
    with pytest.raises(ValueError, match=r"z\[0\] = -inf contradicts y\[0\] = 1e-4000"):
        ct.binary_cross_entropy_grad([-np.inf], tiny)
    # The same for the negative outcome: 1 - y = 2**-62 > 0 in longdouble.
    almost = np.array([1 - LD(2) ** -62])
    assert ct.binary_cross_entropy_from_logits([np.inf], almost)[0] == np.inf
    assert ct.binary_cross_entropy([1.0], almost)[0] == np.inf
    pos_weight = np.array([LD("1e-4000")])
    assert (
        ct.binary_cross_entropy_from_logits([-np.inf], [1.0], pos_weight)[0] == np.inf
    )


def test_round3_break2_pos_weight_times_y_does_not_underflow_to_nothing():
    assert ct.binary_cross_entropy_from_logits([-np.inf], [1e-200], [1e-200])[0] == (
        np.inf
    )
    with pytest.raises(ValueError, match=r"contradicts"):
        ct.binary_cross_entropy_grad([-np.inf], [1e-200], [1e-200])
    # Finite: w y softplus(-z) = 1e-200 * 1e-200 * 1e308 = 1e-92, and the
    # negative term softplus(-1e308) = 0.
    loss = ct.binary_cross_entropy_from_logits([-1e308], [1e-200], [1e-200])[0]
    with mpmath.workdps(DIGITS):
        true = mpmath.mpf(1e-200) * mpmath.mpf(1e-200) * mpmath.mpf(1e308)
        assert abs(mpmath.mpf(float(loss)) - true) <= 2 * F64.eps * true


@needs_wide_longdouble
def test_round3_break2_a_longdouble_pos_weight_beyond_float64_is_no_nan():
    big = np.array([LD("1e400")])
    # y = 0: the positive term has no mass, whatever its weight.
    loss = ct.binary_cross_entropy_from_logits([0.0], [0.0], big)
    assert loss[0] == pytest.approx(np.log(2), rel=1e-15)
    # y = 1e-300: w y log 2 = 1e100 log 2, finite in float64.
    loss = ct.binary_cross_entropy_from_logits([0.0], [1e-300], big)
    assert loss[0] == pytest.approx(1e100 * np.log(2), rel=1e-15)
    grad = ct.binary_cross_entropy_grad([0.0], [0.0], big, reduction="sum")
    np.testing.assert_array_equal(grad, [0.5])


@pytest.mark.parametrize(
    ("call", "want"),
    [
        (
            lambda: ct.binary_cross_entropy_from_logits(
                np.float32([-3e38]), [1.0], pos_weight=[10.0]
            ),
            np.float32([np.inf]),
        ),
        (
            lambda: ct.binary_cross_entropy_from_logits(
                [-1e308, -1e308], [1.0, 1.0], reduction="sum"
            ),
            np.inf,
        ),
        (
            lambda: ct.binary_cross_entropy_grad(
                np.float32([-1.0]), [1.0], pos_weight=[1e39], reduction="sum"
            ),
            np.float32([-np.inf]),
        ),
        (
            lambda: ct.binary_cross_entropy_from_logits(
                np.float16([-60000.0]), [1.0], pos_weight=[1e300]
            ),
            np.float32([np.inf]),
        ),
        (
            lambda: ct.cross_entropy_from_logits([[1e308, 0.0]] * 3, [1, 1, 1], "sum"),
            np.inf,
        ),
        (
            lambda: ct.cross_entropy_from_logits(
                [[1e308, 0.0]] * 3, [[0.0, 1.0]] * 3, "sum"
            ),
            np.inf,
        ),
    ],
    ids=["bce_cast", "bce_sum", "bce_grad_cast", "bce_float16", "ce_sum", "ce_sum_p"],
)
def test_round3_break3_overflow_is_inf_without_a_warning(call, want):
    np.testing.assert_array_equal(call(), want)


@pytest.mark.parametrize(
    ("call", "want"),
    [
        (
            lambda: ct.cross_entropy_from_logits([[1e308, 0.0]] * 3, [1] * 3, "mean"),
            1e308,
        ),
        (
            lambda: ct.cross_entropy_from_logits(
                np.float32([[3e38, 0.0]] * 3), [1] * 3, "mean"
            ),
            np.float32(3e38),
        ),
        (
            lambda: ct.cross_entropy_from_logits(
                [[1e308, 0.0]] * 3 + [[0.0, 0.0]],
                [1, 1, 1, -100],
                "mean",
                ignore_index=-100,
            ),
            1e308,
        ),
        (
            lambda: ct.cross_entropy_from_logits(
                [[1e308, 0.0]] * 3, [[0.0, 1.0]] * 3, "mean"
            ),
            1e308,
        ),
        (
            lambda: ct.binary_cross_entropy_from_logits(
                [-1e308] * 3, [1.0] * 3, reduction="mean"
            ),
            1e308,
        ),
    ],
    ids=["float64", "float32", "ignore_index", "targets", "binary"],
)
def test_round3_break4_the_mean_of_finite_losses_is_finite(call, want):
    got = call()
    eps = float(np.finfo(got.dtype).eps)
    assert got.dtype == np.asarray(want).dtype
    assert float(got) == pytest.approx(float(want), rel=4 * eps)


@pytest.mark.parametrize(
    ("z", "scale"),
    [
        ([[0.0, -(2.0**1023)]] * 7, 2.0**1023),
        ([[1e308, -1e308]] * 7, 2e308),
        ([[-1e308, 1e308]] * 7, 2e308),
    ],
    ids=["difference_2_1023", "both_signs", "both_signs_swapped"],
)
def test_round3_break5_fit_temperature_at_the_float64_limit(z, scale):
    # Six rows of seven have the first class (or the second, swapped) as the
    # true one: p = 6/7 = sigmoid(d / T) at T = d / log 6, which is finite.
    first = z[0][0] > z[0][1]
    y = [0 if first else 1] * 6 + [1 if first else 0]
    want = scale / math.log(6) if scale != 2e308 else 2 * (1e308 / math.log(6))
    assert ct.fit_temperature(z, y) == pytest.approx(want, rel=1e-8)


@needs_wide_longdouble
def test_round3_messages_name_longdouble_values_as_they_are():
    # f"{x}" rounds a longdouble to a Python float: -1e-4000 read "-0.0".
    with pytest.raises(ValueError, match=r"p\[0\] = -1e-4000 is negative"):
        ct.entropy(np.array([LD("-1e-4000"), LD(1)]))
    with pytest.raises(ValueError, match=r"y_hat\[0\] = -1e-4000 is not in \[0, 1\]"):
        ct.binary_cross_entropy(np.array([LD("-1e-4000")]), [1])


# --------------------------------------------------------------------------
# Exotic array types
# --------------------------------------------------------------------------

Z = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -4.0]])
Y = np.array([0, 2])
P = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])

# (name, call taking one array for the argument under test, plain input)
ARGUMENTS = [
    ("softmax/logits", lambda a: ct.softmax(a), Z),
    ("log_softmax/logits", lambda a: ct.log_softmax(a), Z),
    ("logsumexp/logits", lambda a: ct.logsumexp(a), Z),
    ("ce_from_logits/logits", lambda a: ct.cross_entropy_from_logits(a, Y), Z),
    ("ce_from_logits/y", lambda a: ct.cross_entropy_from_logits(Z, a), Y),
    ("ce_from_logits/targets", lambda a: ct.cross_entropy_from_logits(Z, a), P),
    ("grad/logits", lambda a: ct.cross_entropy_grad(a, Y), Z),
    ("grad/targets", lambda a: ct.cross_entropy_grad(Z, a), P),
    ("cross_entropy/y_hat", lambda a: ct.cross_entropy(a, Y), P),
    ("cross_entropy/targets", lambda a: ct.cross_entropy(P, a), P[::-1]),
    ("likelihood/y_hat", lambda a: ct.likelihood(a, [0, 1]), P),
    ("nll/y", lambda a: ct.negative_log_likelihood(P, a), Y),
    ("one_hot/y", lambda a: ct.one_hot(a, 3), Y),
    ("entropy/p", lambda a: ct.entropy(a), P),
    ("kl/p", lambda a: ct.kl_divergence(a, P[::-1]), P),
    ("kl/q", lambda a: ct.kl_divergence(P[::-1], a), P),
]
ARGUMENT_IDS = [a[0] for a in ARGUMENTS]
NAMES = {"logits": "logits", "y": "y", "targets": "y", "y_hat": "y_hat"}


def _argument_name(case: str) -> str:
    return NAMES.get(case.split("/")[1], case.split("/")[1])


@pytest.mark.parametrize(("case", "call", "plain"), ARGUMENTS, ids=ARGUMENT_IDS)
def test_a_masked_array_that_hides_an_entry_is_rejected(case, call, plain):
    mask = np.zeros(plain.shape, dtype=bool)
    mask.flat[-1] = True
    name = _argument_name(case)
    with pytest.raises(ValueError, match=rf"^{name} is a masked array with 1 masked"):
        call(np.ma.masked_array(plain, mask=mask))


@pytest.mark.parametrize(("case", "call", "plain"), ARGUMENTS, ids=ARGUMENT_IDS)
def test_a_masked_array_with_nothing_masked_is_its_data(case, call, plain):
    result = call(np.ma.masked_array(plain, mask=np.zeros(plain.shape, bool)))
    expected = call(plain)
    assert type(result) is type(expected)
    np.testing.assert_array_equal(result, expected, strict=True)


def _matrix(a: np.ndarray):
    with warnings.catch_warnings():  # np.matrix itself is pending deprecation
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


@pytest.mark.parametrize(
    ("case", "call", "plain"),
    [a for a in ARGUMENTS if a[2].ndim == 2],
    ids=[a[0] for a in ARGUMENTS if a[2].ndim == 2],
)
def test_np_matrix_is_treated_as_a_plain_2d_array(case, call, plain):
    result = call(_matrix(plain))
    expected = call(plain)
    assert not isinstance(result, np.matrix)
    np.testing.assert_array_equal(result, expected, strict=True)


@pytest.mark.parametrize(("case", "call", "plain"), ARGUMENTS, ids=ARGUMENT_IDS)
def test_memmaps_read_only_views_and_big_endian_data_give_the_same(
    case, call, plain, tmp_path
):
    expected = call(plain)
    memmap = np.memmap(
        tmp_path / "input.bin", dtype=plain.dtype, mode="w+", shape=plain.shape
    )
    memmap[...] = plain
    memmap.flush()
    read_only = plain.copy()
    read_only.flags.writeable = False
    swapped = plain.astype(plain.dtype.newbyteorder(">"))
    for variant in (
        np.memmap(memmap.filename, dtype=plain.dtype, mode="r", shape=plain.shape),
        read_only,
        swapped,
    ):
        result = call(variant)
        np.testing.assert_array_equal(result, expected)
        assert np.asarray(result).dtype == np.asarray(expected).dtype
        assert not isinstance(result, np.memmap)
    np.testing.assert_array_equal(read_only, plain)  # never modified


@pytest.mark.parametrize(("case", "call", "plain"), ARGUMENTS, ids=ARGUMENT_IDS)
def test_negatively_strided_views_give_the_same_as_their_copies(case, call, plain):
    reversed_rows = plain[::-1]
    result = call(reversed_rows)
    np.testing.assert_array_equal(
        result, call(np.ascontiguousarray(reversed_rows)), strict=True
    )


def test_negative_strides_on_both_axes_of_large_logits():
    z, y, q = _big(20_000, 16, seed=14)
    view = z[::-1, ::-1]
    copy = np.ascontiguousarray(view)
    ct.set_num_threads(2)
    # NumPy's exp may take a different (SIMD or scalar) loop for strided and
    # contiguous data, each within an ulp: equal to a few ulps, not bitwise.
    close = {"rtol": 4 * F64.eps, "atol": 4 * F64.eps, "strict": True}
    for f in (ct.softmax, ct.log_softmax, ct.logsumexp):
        np.testing.assert_allclose(f(view), f(copy), **close)
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(view, y),
        ct.cross_entropy_from_logits(copy, y),
        **close,
    )
    np.testing.assert_allclose(
        ct.cross_entropy_from_logits(view, q[::-1, ::-1]),
        ct.cross_entropy_from_logits(copy, np.ascontiguousarray(q[::-1, ::-1])),
        **close,
    )


def test_pandas_objects_work_like_their_values():
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    frame = pd.DataFrame(Z)
    np.testing.assert_array_equal(ct.softmax(frame), ct.softmax(Z))
    np.testing.assert_array_equal(
        ct.cross_entropy_from_logits(frame, pd.Series(Y)),
        ct.cross_entropy_from_logits(Z, Y),
    )


# --------------------------------------------------------------------------
# Every dtype that does not hold real numbers
# --------------------------------------------------------------------------

NON_REAL = {
    "complex": np.complex128,
    "str": "U3",
    "bytes": "S3",
    "object": object,
    "structured": [("a", "f8")],
    "void": "V8",
    "datetime": "M8[s]",
    "timedelta": "m8[s]",
    "bool": bool,
}


@pytest.mark.parametrize("dtype", list(NON_REAL.values()), ids=list(NON_REAL))
@pytest.mark.parametrize(("case", "call", "plain"), ARGUMENTS, ids=ARGUMENT_IDS)
def test_every_non_real_dtype_is_a_type_error_naming_the_argument(
    case, call, plain, dtype
):
    bad = np.zeros(plain.shape, dtype=dtype)
    name = _argument_name(case)
    kind = "integer class labels" if plain.dtype.kind == "i" else "real numbers"
    with pytest.raises(TypeError, match=rf"^{name} must hold {kind}, got dtype"):
        call(bad)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, object])
def test_labels_that_are_not_integers_are_a_type_error(dtype):
    with pytest.raises(TypeError, match=r"^y must hold integer class labels"):
        ct.cross_entropy_from_logits(Z, Y.astype(dtype))


# --------------------------------------------------------------------------
# Overflow at the extremes of each dtype, in every path
# --------------------------------------------------------------------------

EXTREMES = [np.float16, np.float32, np.float64, np.longdouble]
EXTREME_IDS = [np.dtype(d).name for d in EXTREMES]


def _assert_correct(got, true, dtype, ulps: int = 4) -> None:
    """``got`` is ``true`` rounded to ``dtype``, within ``ulps`` of max(|true|, 1).

    A ``true`` beyond the dtype's range must be the infinity of its sign.
    """
    info = np.finfo(dtype)
    biggest = info.max
    # Round to nearest: only from max + ulp(max)/2 on does a value round to inf.
    threshold = (
        exact_mpf(biggest)
        + (exact_mpf(biggest) - exact_mpf(np.nextafter(biggest, 0))) / 2
    )
    if abs(true) >= threshold:
        assert got == (np.inf if true > 0 else -np.inf), (got, true)
        return
    scale = max(abs(true), 1)
    assert abs(exact_mpf(got) - true) <= ulps * exact_mpf(info.eps) * scale, (got, true)


def _lse(row) -> tuple[mpmath.mpf, mpmath.mpf]:
    """``(m, log(sum(exp(z - m))))`` of a row, in mpmath."""
    values = [exact_mpf(v) for v in row]
    m = max(values)
    return m, mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in values))


def _extreme_logits(dtype) -> np.ndarray:
    big = np.finfo(dtype).max
    return np.array(
        [[big, -big], [big, big], [-big, -big], [big, 0.0], [-big, big]], dtype=dtype
    )


@pytest.mark.parametrize("dtype", EXTREMES, ids=EXTREME_IDS)
def test_the_softmax_family_at_the_dtypes_extremes(dtype):
    z = _extreme_logits(dtype)
    out = np.promote_types(dtype, np.float32)
    p, log_p, lse = ct.softmax(z), ct.log_softmax(z), ct.logsumexp(z)
    assert p.dtype == log_p.dtype == lse.dtype == out
    with mpmath.workdps(DIGITS):
        for i, row in enumerate(z):
            m, log_s = _lse(row)
            _assert_correct(lse[i], m + log_s, out)
            for j, v in enumerate(row):
                _assert_correct(log_p[i, j], (exact_mpf(v) - m) - log_s, out)
                _assert_correct(p[i, j], mpmath.exp((exact_mpf(v) - m) - log_s), out)


@pytest.mark.parametrize("dtype", EXTREMES, ids=EXTREME_IDS)
@pytest.mark.parametrize("label", [0, 1])
def test_the_label_loss_at_the_dtypes_extremes(dtype, label):
    z = _extreme_logits(dtype)
    out = np.promote_types(dtype, np.float32)
    loss = ct.cross_entropy_from_logits(z, np.full(len(z), label))
    assert loss.dtype == out
    with mpmath.workdps(DIGITS):
        for row, got in zip(z, loss, strict=True):
            m, log_s = _lse(row)
            _assert_correct(got, (m - exact_mpf(row[label])) + log_s, out)


@pytest.mark.parametrize("dtype", EXTREMES, ids=EXTREME_IDS)
def test_the_target_loss_at_the_dtypes_extremes(dtype):
    z = _extreme_logits(dtype)
    out = np.promote_types(dtype, np.float32)
    q = np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0], [0.3, 0.7], [0.25, 0.75]])
    loss = ct.cross_entropy_from_logits(z, q)
    assert loss.dtype == out
    with mpmath.workdps(DIGITS):
        for row, target, got in zip(z, q, loss, strict=True):
            m, log_s = _lse(row)
            true = mpmath.fsum(
                exact_mpf(t) * ((m - exact_mpf(v)) + log_s)
                for t, v in zip(target, row, strict=True)
                if t > 0
            )
            _assert_correct(got, true, out)


@pytest.mark.parametrize("dtype", EXTREMES, ids=EXTREME_IDS)
def test_the_gradient_at_the_dtypes_extremes(dtype):
    z = _extreme_logits(dtype)
    grad = ct.cross_entropy_grad(z, np.zeros(len(z), dtype=int), reduction="sum")
    expected = ct.softmax(z)
    expected[:, 0] -= 1
    np.testing.assert_array_equal(grad, expected)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int8])
def test_integer_logits_at_their_extremes(dtype):
    info = np.iinfo(dtype)
    z = np.array([[info.max, info.min], [info.min, info.max]], dtype=dtype)
    zf = z.astype(np.float64)
    np.testing.assert_array_equal(ct.softmax(z), ct.softmax(zf), strict=True)
    np.testing.assert_array_equal(ct.logsumexp(z), ct.logsumexp(zf), strict=True)
    loss = ct.cross_entropy_from_logits(z, [0, 0])
    np.testing.assert_array_equal(loss, ct.cross_entropy_from_logits(zf, [0, 0]))
    expected = [float(r) for r in label_losses_rows(zf, np.array([0, 0]))]
    np.testing.assert_allclose(loss, expected, rtol=4 * F64.eps)


@pytest.mark.parametrize(
    "dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name
)
def test_probability_paths_at_the_smallest_probabilities(dtype):
    info = np.finfo(dtype)
    tiny = info.smallest_subnormal
    y_hat = np.array([[1.0, tiny, 0.0]], dtype=dtype)
    loss = ct.cross_entropy(y_hat, [1])
    with mpmath.workdps(DIGITS):
        true = -mpmath.log(mpmath.mpf(float(tiny)))
    np.testing.assert_allclose(loss, [float(true)], rtol=2 * info.eps)
    assert ct.negative_log_likelihood(y_hat, [1]) == loss[0]
    assert ct.likelihood(y_hat, [1]) == tiny
    h = ct.entropy(y_hat)
    with mpmath.workdps(DIGITS):
        true_h = -mpmath.mpf(float(tiny)) * mpmath.log(mpmath.mpf(float(tiny)))
    # float32: the term is below the smallest subnormal and rounds to 0 or it.
    assert abs(float(h[0]) - float(true_h)) <= float(tiny)
    kl = ct.kl_divergence([[0.0, 1.0, 0.0]], y_hat.astype(np.float64))
    np.testing.assert_allclose(kl, [float(true)], rtol=2 * info.eps)
    grad = ct.cross_entropy_grad(np.log(np.array([[1.0, tiny]], dtype=dtype)), [1])
    assert np.isfinite(grad).all()


# --------------------------------------------------------------------------
# Memory on every route and axis
# --------------------------------------------------------------------------


def _routes():
    """Each streamed route: (call, the input's bytes); inputs built up front."""
    rng = np.random.default_rng(15)
    z64 = rng.standard_normal((200_000, 10))
    y = rng.integers(0, 10, size=z64.shape[0])
    q = rng.uniform(size=z64.shape)
    q /= q.sum(axis=1, keepdims=True)
    z32, q32 = z64.astype(np.float32), q.astype(np.float32)
    far64, far32 = z64 + 1000.0, z32 + np.float32(90.0)
    z3 = z64.reshape(2_000, 100, 10)
    routes = {
        "labels_fast_float64": (lambda: ct.cross_entropy_from_logits(z64, y), z64),
        "labels_fast_float32": (lambda: ct.cross_entropy_from_logits(z32, y), z32),
        "labels_fallback_float64": (
            lambda: ct.cross_entropy_from_logits(far64, y),
            far64,
        ),
        "labels_fallback_float32": (
            lambda: ct.cross_entropy_from_logits(far32, y),
            far32,
        ),
        "targets_float64": (lambda: ct.cross_entropy_from_logits(z64, q), z64),
        "targets_float32": (lambda: ct.cross_entropy_from_logits(z32, q32), z32),
    }
    for f in (ct.logsumexp, ct.log_softmax, ct.softmax):
        for axis in (0, 1, 2):
            routes[f"{f.__name__}_axis{axis}"] = (
                lambda f=f, axis=axis: f(z3, axis=axis),
                z3,
            )
    return routes


ROUTES = list(_routes())


@pytest.fixture(scope="module")
def routes():
    return _routes()


@pytest.mark.parametrize("n_threads", [1, 8])
@pytest.mark.parametrize("route", ROUTES)
def test_every_streamed_route_and_axis_needs_under_a_quarter_of_the_input(
    routes, route, n_threads
):
    """Extra memory: everything allocated beyond a result of the input's size
    (the loss vector and logsumexp's result count as extra)."""
    call, z = routes[route]
    ct.set_num_threads(n_threads)
    peak, result = traced_peak(call)
    if result.shape == z.shape:
        peak -= result.nbytes
    assert peak <= 0.25 * z.nbytes
