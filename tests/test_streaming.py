"""Streaming over row blocks on several threads (``ce_tutorial._streaming``).

Inputs here are large enough (8000 x 64) for the work to be split between
threads; the results and the errors must not depend on how many there are.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import ce_tutorial as ct

from .memory import traced_peak

N_ROWS, N_CLASSES = 8000, 64


@pytest.fixture(autouse=True)
def restore_num_threads():
    previous = ct.set_num_threads(None)
    yield
    ct.set_num_threads(previous)


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(6)
    z = rng.normal(scale=5.0, size=(N_ROWS, N_CLASSES))
    z[rng.uniform(size=z.shape) < 0.05] = -np.inf  # some masked classes
    z[:, 0] = np.maximum(z[:, 0], 0.0)  # but never a whole row
    y = rng.integers(0, N_CLASSES, size=N_ROWS)
    y[np.isneginf(z[np.arange(N_ROWS), y])] = 0  # no masked true class
    q = rng.uniform(size=z.shape)
    q[np.isneginf(z)] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    return z, y, q


def _streamed_calls(z, y, q):
    return {
        "softmax": lambda: ct.softmax(z),
        "log_softmax": lambda: ct.log_softmax(z),
        "logsumexp": lambda: ct.logsumexp(z),
        "softmax_axis0": lambda: ct.softmax(z.T, axis=0),
        "logsumexp_3d": lambda: ct.logsumexp(z.reshape(80, 100, N_CLASSES), axis=2),
        "ce_labels": lambda: ct.cross_entropy_from_logits(z, y),
        "ce_targets": lambda: ct.cross_entropy_from_logits(z, q),
        "grad_labels": lambda: ct.cross_entropy_grad(z, y),
        "grad_targets": lambda: ct.cross_entropy_grad(z, q),
        "ce_float32": lambda: ct.cross_entropy_from_logits(z.astype(np.float32), y),
        # every 7th row scaled far beyond the fast route's range: both routes
        "ce_both_routes": lambda: ct.cross_entropy_from_logits(z * _every_7th(200), y),
        "ce_both_routes_float32": lambda: ct.cross_entropy_from_logits(
            (z * _every_7th(30)).astype(np.float32), y
        ),
        # every 5th row is padding, skipped with ignore_index
        "ce_ignore": lambda: ct.cross_entropy_from_logits(
            z, _padded(y), ignore_index=-100
        ),
        "ce_ignore_sum": lambda: ct.cross_entropy_from_logits(
            z, _padded(y), "sum", ignore_index=-100
        ),
        "ce_ignore_mean": lambda: ct.cross_entropy_from_logits(
            z, _padded(y), "mean", ignore_index=-100
        ),
        "ce_ignore_both_routes_float32": lambda: ct.cross_entropy_from_logits(
            (z * _every_7th(30)).astype(np.float32), _padded(y), ignore_index=-100
        ),
        "grad_ignore": lambda: ct.cross_entropy_grad(z, _padded(y), ignore_index=-100),
    }


def _every_7th(factor):
    return np.where(np.arange(N_ROWS) % 7 == 0, float(factor), 1.0)[:, None]


def _padded(y):
    """``y`` with every 5th label set to -100, PyTorch's padding label."""
    y = y.copy()
    y[::5] = -100
    return y


CALLS = list(_streamed_calls(None, None, None))


def test_get_num_threads_defaults_to_a_positive_integer():
    n = ct.get_num_threads()
    assert isinstance(n, int)
    assert n >= 1


def test_set_num_threads_returns_the_previous_value():
    default = ct.get_num_threads()
    assert ct.set_num_threads(3) == default
    assert ct.get_num_threads() == 3
    assert ct.set_num_threads(np.int64(1)) == 3
    assert ct.get_num_threads() == 1
    assert ct.set_num_threads(None) == 1
    assert ct.get_num_threads() == default


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_rejects_non_positive_counts(n):
    with pytest.raises(ValueError, match=rf"n_threads must be at least 1, got {n}"):
        ct.set_num_threads(n)


@pytest.mark.parametrize("n", [2.0, "2", True])
def test_set_num_threads_rejects_non_integers(n):
    pattern = rf"n_threads must be an integer or None, got {re.escape(repr(n))}"
    with pytest.raises(TypeError, match=pattern):
        ct.set_num_threads(n)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("n_threads", [2, 3, 4])
def test_results_do_not_depend_on_the_number_of_threads(big, name, n_threads):
    call = _streamed_calls(*big)[name]
    ct.set_num_threads(1)
    serial = call()
    ct.set_num_threads(n_threads)
    parallel = call()
    np.testing.assert_array_equal(parallel, serial, strict=True)


@pytest.mark.parametrize(
    "f", [ct.softmax, ct.log_softmax, ct.logsumexp], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_the_first_bad_row_is_reported_whatever_the_threads(big, f, n_threads):
    z = big[0].copy()
    # Bad rows in the last stripe and in the first: the first one is named.
    z[7999, 3] = np.nan
    z[6000, 5] = np.inf
    ct.set_num_threads(n_threads)
    with pytest.raises(ValueError, match=r"logits\[6000\] contains \+inf"):
        f(z)
    z[123] = -np.inf
    with pytest.raises(ValueError, match=r"logits\[123\] is -inf in every class"):
        f(z)


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_the_first_bad_row_of_a_loss_is_reported_whatever_the_threads(big, n_threads):
    z, y, q = big
    ct.set_num_threads(n_threads)
    bad = z.copy()
    bad[7321, 9] = np.nan
    for target in (y, q):
        with pytest.raises(ValueError, match=r"logits\[7321\] contains NaN"):
            ct.cross_entropy_from_logits(bad, target)
    bad[4321, 1] = np.inf
    with pytest.raises(ValueError, match=r"logits\[4321\] contains \+inf"):
        ct.cross_entropy_from_logits(bad, y)
    bad_q = q.copy()
    bad_q[7777, 2] = -0.5
    bad_q[5555] *= 3
    with pytest.raises(ValueError, match=r"y\[5555\] sums to 3"):
        ct.cross_entropy_from_logits(z, bad_q)


def test_thread_count_survives_a_failing_call(big):
    ct.set_num_threads(2)
    z = big[0].copy()
    z[10, 0] = np.nan
    with pytest.raises(ValueError, match=r"logits\[10\]"):
        ct.logsumexp(z)
    assert ct.get_num_threads() == 2
    np.testing.assert_array_equal(ct.logsumexp(big[0][:5]), ct.logsumexp(big[0])[:5])


@pytest.mark.parametrize(
    "f",
    [ct.cross_entropy_from_logits, ct.cross_entropy_grad],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_the_first_bad_row_is_reported_with_skipped_rows(big, f, n_threads):
    z, y, _ = big
    ct.set_num_threads(n_threads)
    y = _padded(y)
    y[7001] = N_CLASSES  # neither a class nor ignore_index
    late = z.copy()
    late[7500, 4] = np.nan  # in a skipped row, after the bad label
    pattern = r"y\[7001\] = 64 is out of range .*, and is not ignore_index = -100"
    with pytest.raises(ValueError, match=pattern):
        f(late, y, ignore_index=-100)
    early = z.copy()
    early[2000, 4] = np.nan  # a skipped row's logits are validated too
    with pytest.raises(ValueError, match=r"logits\[2000\] contains NaN"):
        f(early, y, ignore_index=-100)


def _peak_extra(call) -> int:
    """The peak memory ``call()`` allocates beyond what it returns, in bytes."""
    peak, result = traced_peak(call)
    return peak - np.asarray(result).nbytes


@pytest.mark.parametrize("n_threads", [1, 8])
@pytest.mark.parametrize("route", ["fast", "fallback"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_skipping_rows_keeps_the_memory_bound(n_threads, route, dtype):
    # As for the loss without ignore_index: everything allocated, the N losses
    # included, stays under a quarter of ten-class logits. The skipped rows
    # are found block by block, so no mask of N rows is kept.
    # Logits near 1000 (float64) or 90 (float32) overflow exp: every row then
    # takes the loss's max-shifted fallback route.
    offset = 0.0 if route == "fast" else (1000.0 if dtype == np.float64 else 90.0)
    rng = np.random.default_rng(16)
    z = (rng.standard_normal((200_000, 10)) + offset).astype(dtype)
    y = _padded(rng.integers(0, 10, size=z.shape[0]))
    ct.set_num_threads(n_threads)
    extra = _peak_extra(lambda: ct.cross_entropy_from_logits(z, y, ignore_index=-100))
    assert extra + z.shape[0] * np.dtype(dtype).itemsize <= 0.25 * z.nbytes
    total = _peak_extra(
        lambda: ct.cross_entropy_from_logits(z, y, "sum", ignore_index=-100)
    )
    assert total <= 0.25 * z.nbytes
