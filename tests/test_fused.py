"""The fused language-model head (``ce_tutorial._fused``).

The reference is the unfused computation in NumPy: the logits
``features @ weight.T`` in float64, their loss from
``cross_entropy_from_logits`` and the gradients by the chain rule from
``cross_entropy_grad``.
"""

from __future__ import annotations

import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import ce_tutorial._fused as fused
from ce_tutorial import (
    cross_entropy_from_logits,
    cross_entropy_grad,
    linear_cross_entropy,
)

from .strategies import finite_floats

IGNORE = -100


def unfused(h, w, y, reduction="mean", ignore_index=None):
    """Loss and gradients of the two-step computation, in float64."""
    h64, w64 = np.asarray(h, np.float64), np.asarray(w, np.float64)
    y = np.asarray(y)
    kept = np.ones(len(y), bool) if ignore_index is None else y != ignore_index
    z = h64 @ w64.T
    per_row = np.zeros(len(y))
    per_row[kept] = cross_entropy_from_logits(z[kept], y[kept])
    g = np.zeros_like(z)
    if kept.any():
        g[kept] = cross_entropy_grad(z[kept], y[kept], reduction="sum")
    if reduction == "none":
        return per_row, None, None
    if reduction == "mean":
        g /= kept.sum()
        return per_row.sum() / kept.sum(), g @ w64, g.T @ h64
    return per_row.sum(), g @ w64, g.T @ h64


def problem(n=40, d=6, v=30, seed=0, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    h = rng.normal(scale=scale, size=(n, d)).astype(dtype)
    w = rng.normal(scale=scale, size=(v, d)).astype(dtype)
    y = rng.integers(0, v, size=n)
    return h, w, y


@pytest.fixture
def small_chunks(monkeypatch):
    """Force several chunks of rows and several vocabulary blocks."""
    monkeypatch.setattr(fused, "CHUNK_BYTES", 7 * 30 * 8)  # 7 rows of 30 logits
    monkeypatch.setattr(fused, "VOCAB_BLOCKS", 4)  # slices of at most 8 rows


# --- agreement with the unfused computation ---------------------------------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("ignore_index", [None, IGNORE, 3])
@pytest.mark.parametrize("chunks", ["one", "many"])
def test_matches_unfused_numpy(reduction, ignore_index, chunks, request):
    if chunks == "many":
        request.getfixturevalue("small_chunks")
    h, w, y = problem()
    if ignore_index == IGNORE:
        y[::3] = IGNORE
    want, want_gh, want_gw = unfused(h, w, y, reduction, ignore_index)
    got = linear_cross_entropy(h, w, y, reduction, ignore_index=ignore_index)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    if reduction == "none":
        return
    loss, gh, gw = linear_cross_entropy(
        h, w, y, reduction, ignore_index=ignore_index, return_grad=True
    )
    assert loss == got
    np.testing.assert_allclose(gh, want_gh, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-12, atol=1e-15)


def test_chunking_does_not_change_the_losses(small_chunks):
    h, w, y = problem(n=50)
    assert fused.chunk_rows(50, 30, 8) == 4  # ceil(50 / 16) rows, 13 chunks
    many = linear_cross_entropy(h, w, y, "none")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "CHUNK_BYTES", 1 << 30)
        mp.setattr(fused, "MAX_CHUNK_FRACTION", 1)
        assert fused.chunk_rows(50, 30, 8) == 50
        one = linear_cross_entropy(h, w, y, "none")
    # Each row's loss is computed from that row alone.
    np.testing.assert_array_equal(many, one)


def test_hand_derived_values():
    # Logits [[1, 0, -1], [0, 2, 2], [1, 1, 0]] with labels 0, 1, 2.
    h = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    w = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    lse = np.log(
        [np.e + 1 + np.exp(-1), 1 + 2 * np.exp(2), 2 * np.e + 1],
    )
    want = lse - np.array([1.0, 2.0, 0.0])
    losses = linear_cross_entropy(h, w, [0, 1, 2], "none")
    np.testing.assert_allclose(losses, want, rtol=1e-15)
    assert linear_cross_entropy(h, w, [0, 1, 2], "sum") == pytest.approx(
        want.sum(), rel=1e-15
    )


def test_central_differences():
    h, w, y = problem(n=5, d=3, v=4, seed=1)
    y[1] = IGNORE
    _, gh, gw = linear_cross_entropy(h, w, y, ignore_index=IGNORE, return_grad=True)
    step = 1e-6

    def loss(hh, ww):
        return linear_cross_entropy(hh, ww, y, ignore_index=IGNORE)

    for array, grad, which in [(h, gh, 0), (w, gw, 1)]:
        numeric = np.empty_like(array)
        for idx in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[idx] += step
            minus[idx] -= step
            args_p = (plus, w) if which == 0 else (h, plus)
            args_m = (minus, w) if which == 0 else (h, minus)
            numeric[idx] = (loss(*args_p) - loss(*args_m)) / (2 * step)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(gh[1], 0.0)


@st.composite
def fused_problems(draw):
    n = draw(st.integers(1, 8))
    d = draw(st.integers(1, 5))
    v = draw(st.integers(1, 8))
    element = finite_floats(bound=5.0)
    h = draw(hnp.arrays(np.float64, (n, d), elements=element))
    w = draw(hnp.arrays(np.float64, (v, d), elements=element))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, v - 1)))
    skip = draw(hnp.arrays(np.bool_, (n,)))
    if skip.all():
        skip[0] = False  # keep one row, so that the mean is defined
    y[skip] = IGNORE
    return h, w, y


@given(fused_problems(), st.sampled_from(["mean", "sum"]))
def test_property_matches_unfused(problem_, reduction):
    h, w, y = problem_
    want, want_gh, want_gw = unfused(h, w, y, reduction, IGNORE)
    loss, gh, gw = linear_cross_entropy(
        h, w, y, reduction, ignore_index=IGNORE, return_grad=True
    )
    # |logits| <= 125, so a loss is at most about 250 + log V.
    assert loss == pytest.approx(want, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(gh, want_gh, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-9, atol=1e-11)
    assert np.all(gh[y == IGNORE] == 0.0)


# --- ignore_index ---------------------------------------------------------------


def test_ignored_rows_cost_nothing():
    h, w, y = problem(n=6)
    y_pad = y.copy()
    y_pad[[1, 4]] = IGNORE
    kept = y_pad != IGNORE
    losses = linear_cross_entropy(h, w, y_pad, "none", ignore_index=IGNORE)
    assert losses[1] == 0.0 and losses[4] == 0.0
    np.testing.assert_array_equal(
        losses[kept], linear_cross_entropy(h, w, y, "none")[kept]
    )
    mean = linear_cross_entropy(h, w, y_pad, ignore_index=IGNORE)
    assert mean == pytest.approx(losses.sum() / 4, rel=1e-15)
    total = linear_cross_entropy(h, w, y_pad, "sum", ignore_index=IGNORE)
    assert total == pytest.approx(losses.sum(), rel=1e-15)


def test_ignore_index_may_be_a_real_class():
    # As in PyTorch, the rows labelled with ignore_index are skipped, whatever it is.
    h, w, _ = problem(n=4, v=5)
    y = np.array([0, 2, 2, 4])
    losses = linear_cross_entropy(h, w, y, "none", ignore_index=2)
    assert losses[1] == losses[2] == 0.0
    assert losses[0] > 0 and losses[3] > 0


def test_all_ignored():
    h, w, _ = problem(n=3)
    y = np.full(3, IGNORE)
    with pytest.raises(
        ValueError, match=r"every label equals ignore_index = -100.*PyTorch returns nan"
    ):
        linear_cross_entropy(h, w, y, ignore_index=IGNORE)
    loss, gh, gw = linear_cross_entropy(
        h, w, y, "sum", ignore_index=IGNORE, return_grad=True
    )
    assert loss == 0.0
    assert not gh.any() and not gw.any()
    np.testing.assert_array_equal(
        linear_cross_entropy(h, w, y, "none", ignore_index=IGNORE), np.zeros(3)
    )


def test_ignore_index_does_not_excuse_other_labels():
    h, w, _ = problem(n=3, v=30)
    with pytest.raises(
        ValueError,
        match=r"y\[2\] = -1 is out of range for 30 classes "
        r"\(0 <= y < 30\), and is not ignore_index = -100",
    ):
        linear_cross_entropy(h, w, [IGNORE, 0, -1], ignore_index=IGNORE)
    with pytest.raises(ValueError, match=r"y\[0\] = 30 is out of range"):
        linear_cross_entropy(h, w, [30, IGNORE, 0], ignore_index=IGNORE)


def test_without_ignore_index_a_negative_label_raises():
    h, w, _ = problem(n=3, v=30)
    with pytest.raises(
        ValueError,
        match=r"y\[1\] = -100 is out of range for 30 classes \(0 <= y < 30\)",
    ):
        linear_cross_entropy(h, w, [0, IGNORE, 1])


@pytest.mark.parametrize("bad", [1.5, True, "x", np.bool_(False)])
def test_ignore_index_must_be_an_integer(bad):
    h, w, y = problem(n=3)
    with pytest.raises(TypeError, match=r"ignore_index must be an integer or None"):
        linear_cross_entropy(h, w, y, ignore_index=bad)


def test_numpy_integer_ignore_index():
    h, w, y = problem(n=3)
    y[0] = IGNORE
    a = linear_cross_entropy(h, w, y, ignore_index=np.int16(IGNORE))
    assert a == linear_cross_entropy(h, w, y, ignore_index=IGNORE)


# --- the contract -----------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "value", "message"),
    [
        ("features", np.nan, r"features\[2, 1\] = nan is not finite"),
        ("features", -np.inf, r"features\[2, 1\] = -inf is not finite"),
        ("weight", np.inf, r"weight\[2, 1\] = inf is not finite"),
        ("weight", np.nan, r"weight\[2, 1\] = nan is not finite"),
    ],
)
def test_non_finite_inputs_name_the_culprit(which, value, message):
    h, w, y = problem(n=4, d=3, v=5)
    (h if which == "features" else w)[2, 1] = value
    with pytest.raises(ValueError, match=message):
        linear_cross_entropy(h, w, y)


def test_widths_must_match():
    h, w, y = problem(n=4, d=3, v=5)
    with pytest.raises(
        ValueError,
        match=r"features has shape \(4, 3\) and weight has shape \(5, 2\): "
        r"their widths d must match \(3 != 2\)",
    ):
        linear_cross_entropy(h, w[:, :2], y)


@pytest.mark.parametrize(
    ("h_shape", "w_shape", "message"),
    [
        ((4,), (5, 3), r"features must be 2-D, of shape \(n_samples, d\), got \(4,\)"),
        ((4, 3), (5, 3, 1), r"weight must be 2-D, of shape \(V, d\), got \(5, 3, 1\)"),
        (
            (4, 3),
            (0, 3),
            r"weight has shape \(0, 3\): at least one row \(V >= 1\) is needed",
        ),
    ],
)
def test_shapes(h_shape, w_shape, message):
    with pytest.raises(ValueError, match=message):
        linear_cross_entropy(np.zeros(h_shape), np.zeros(w_shape), [0, 0, 0, 0])


def test_label_shape_and_type():
    h, w, _ = problem(n=4, v=5)
    with pytest.raises(
        ValueError, match=r"y has shape \(3,\), but features has 4 rows"
    ):
        linear_cross_entropy(h, w, [0, 1, 2])
    with pytest.raises(
        TypeError, match=r"y must hold integer class labels, got dtype float64"
    ):
        linear_cross_entropy(h, w, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"got dtype bool"):
        linear_cross_entropy(h, w, [True, False, True, False])
    with pytest.raises(ValueError, match=r"y\[3\] = 5 is out of range for 5 classes"):
        linear_cross_entropy(h, w, [0, 1, 2, 5])


@pytest.mark.parametrize("which", ["features", "weight"])
def test_non_real_inputs(which):
    h, w, y = problem(n=4, v=5)
    args = {"features": h, "weight": w}
    args[which] = args[which].astype(complex)
    with pytest.raises(TypeError, match=rf"{which} must hold real numbers"):
        linear_cross_entropy(args["features"], args["weight"], y)


def test_reduction_and_return_grad_are_checked():
    h, w, y = problem(n=4, v=5)
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        linear_cross_entropy(h, w, y, "avg")
    with pytest.raises(ValueError, match=r"return_grad=True needs a scalar loss"):
        linear_cross_entropy(h, w, y, "none", return_grad=True)
    with pytest.raises(TypeError, match=r"return_grad must be a bool, got 1"):
        linear_cross_entropy(h, w, y, return_grad=1)


def test_empty_batch():
    w = np.ones((5, 3))
    h = np.zeros((0, 3))
    with pytest.raises(ValueError, match=r"empty batch"):
        linear_cross_entropy(h, w, [])
    assert linear_cross_entropy(h, w, [], "none").shape == (0,)
    loss, gh, gw = linear_cross_entropy(h, w, [], "sum", return_grad=True)
    assert loss == 0.0 and gh.shape == (0, 3) and not gw.any()


def test_overflowing_logits_raise():
    h = np.full((2, 2), 1e20, dtype=np.float32)
    w = np.full((3, 2), 1e20, dtype=np.float32)
    with pytest.raises(ValueError, match=r"row 0 overflow float32.*pass float64"):
        linear_cross_entropy(h, w, [0, 1])
    # The same inputs in float64 are fine.
    loss = linear_cross_entropy(h.astype(np.float64), w.astype(np.float64), [0, 1])
    assert loss == pytest.approx(np.log(3), rel=1e-12)


def test_a_skipped_row_is_still_checked():
    # As in cross_entropy_from_logits: ignore_index skips a row's loss, not its
    # check, so an overflowing padding row raises.
    h = np.array([[1.0, 0.0], [1e20, 1e20], [0.0, 1.0]], dtype=np.float32)
    w = np.full((3, 2), 1e20, dtype=np.float32)
    with pytest.raises(ValueError, match=r"row 1 overflow float32.*pass float64"):
        linear_cross_entropy(h, w, [0, IGNORE, 1], ignore_index=IGNORE)


@pytest.mark.parametrize(
    ("n", "v", "itemsize", "d", "rows"),
    [
        (2048, 32000, 4, 512, 128),  # a sixteenth of the batch
        (512, 32000, 4, 2048, 256),  # d / 8 rows: wide features widen the chunk
        (512, 32000, 4, 8192, 262),  # ... up to the 32 MiB budget
        (4, 50000, 4, 64, 4),  # d / 8 > N: the whole batch
        (4, 50000, 4, 8, 1),  # at least one row
        (0, 50000, 4, 8, 1),
    ],
)
def test_chunk_rows(n, v, itemsize, d, rows):
    assert fused.chunk_rows(n, v, itemsize, d) == rows


@pytest.mark.parametrize(
    ("rows", "v", "d", "width", "n_slices"),
    [
        (256, 32000, 2048, 1000, 32),  # a quarter of the buffer
        (128, 32000, 512, 2000, 16),
        (64, 16000, 64, 2000, 8),  # an eighth of V
        (64, 9, 64, 2, 5),  # ceil(9 / 8) = 2 rows: five slices, not eight
    ],
)
def test_vocab_slices(rows, v, d, width, n_slices):
    assert fused.vocab_block_rows(rows, v, d) == width
    assert len(range(0, v, width)) == n_slices
    assert width * d <= max(d, rows * v / 4)  # at most a quarter of the buffer


@pytest.mark.parametrize(
    ("h_dtype", "w_dtype", "out"),
    [
        (np.float32, np.float32, np.float32),
        (np.float16, np.float16, np.float32),
        (np.int64, np.int32, np.float64),
        (np.float32, np.float64, np.float64),
    ],
)
def test_dtypes(h_dtype, w_dtype, out):
    h, w, y = problem(n=5, d=3, v=4, scale=2.0)
    h, w = h.astype(h_dtype), w.astype(w_dtype)
    assert linear_cross_entropy(h, w, y, "none").dtype == out
    loss, gh, gw = linear_cross_entropy(h, w, y, return_grad=True)
    assert loss.dtype == out and gh.dtype == out and gw.dtype == out
    want, want_gh, want_gw = unfused(h.astype(out), w.astype(out), y)
    rtol = 2e-6 if out == np.float32 else 1e-12
    assert loss == pytest.approx(want, rel=rtol)
    np.testing.assert_allclose(gh, want_gh, rtol=rtol * 10, atol=rtol)
    np.testing.assert_allclose(gw, want_gw, rtol=rtol * 10, atol=rtol)


def test_lists_and_non_contiguous_inputs():
    h, w, y = problem(n=4, d=3, v=5)
    want = linear_cross_entropy(h, w, y)
    assert linear_cross_entropy(h.tolist(), w.tolist(), y.tolist()) == want
    w_f = np.asfortranarray(w)
    h_strided = np.repeat(h, 2, axis=0)[::2]
    assert linear_cross_entropy(h_strided, w_f, y) == pytest.approx(want, rel=1e-15)


def test_inputs_are_not_modified(small_chunks):
    h, w, y = problem(dtype=np.float32)
    y[::4] = IGNORE
    copies = h.copy(), w.copy(), y.copy()
    for reduction in ("mean", "sum"):
        linear_cross_entropy(h, w, y, reduction, ignore_index=IGNORE, return_grad=True)
    linear_cross_entropy(h, w, y, "none", ignore_index=IGNORE)
    for before, after in zip(copies, (h, w, y), strict=True):
        np.testing.assert_array_equal(before, after)


# --- memory and threads ------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "v"),
    [(2048, 32, 4096), (1024, 64, 1000), (1024, 512, 1000), (512, 256, 32000)],
    ids=["wide", "d-as-large-as-a-chunk", "n-is-2d", "n-is-2d-large-v"],
)
def test_peak_memory_is_under_an_eighth_of_the_logits(n, d, v):
    h, w, y = problem(n, d, v, seed=3, dtype=np.float32, scale=0.3)
    logits_bytes = n * v * 4
    # Once untraced first: a first call may import modules lazily (about 1 MB
    # of Python objects), which is no part of the function's working memory.
    linear_cross_entropy(h[:2], w, y[:2], return_grad=True)
    tracemalloc.start()
    try:
        loss, gh, gw = linear_cross_entropy(h, w, y, return_grad=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    extra = peak - gh.nbytes - gw.nbytes
    assert extra <= logits_bytes / 8, f"{extra / logits_bytes:.3f} of the logits"
    # and it still computes the right thing
    assert loss == pytest.approx(unfused(h, w, y)[0], rel=1e-5)


def test_threads_share_nothing():
    problems = [problem(n=64, d=8, v=300, seed=s, dtype=np.float32) for s in range(6)]
    with threadpool_limits(1, user_api="blas"):
        serial = [linear_cross_entropy(*p, return_grad=True) for p in problems]
        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(linear_cross_entropy, *p, return_grad=True)
                for p in problems * 3
            ]
            results = [f.result() for f in futures]
    for k, result in enumerate(results):
        for a, b in zip(result, serial[k % len(problems)], strict=True):
            np.testing.assert_array_equal(a, b)
