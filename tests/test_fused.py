"""The fused language-model head (``ce_tutorial._fused``).

The reference is the unfused computation in NumPy: the logits
``features @ weight.T`` in float64, their loss from
``cross_entropy_from_logits`` and the gradients by the chain rule from
``cross_entropy_grad``.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import mpmath
import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from threadpoolctl import threadpool_limits

import ce_tutorial._fused as fused
from ce_tutorial import (
    cross_entropy_from_logits,
    linear_cross_entropy,
)

from .differences import central_differences
from .memory import traced_peak
from .reference import label_losses_rows, ulp_error_bound
from .strategies import finite_floats

IGNORE = -100


def unfused(
    h, w, y, reduction="mean", ignore_index=None, bias=None, z_loss=0.0, softcap=None
):
    """Loss and gradients of the two-step computation, in float64.

    The logits ``u = h @ w.T + bias``, soft-capped to ``c tanh(u / c)``; each
    kept row's loss ``logsumexp(z) - z_y + z_loss * logsumexp(z)**2``; the
    gradients by the chain rule. Returns ``(loss, grad_h, grad_w, grad_b)``.
    """
    h64, w64 = np.asarray(h, np.float64), np.asarray(w, np.float64)
    y = np.asarray(y)
    kept = np.ones(len(y), bool) if ignore_index is None else y != ignore_index
    u = h64 @ w64.T
    if bias is not None:
        u = u + np.asarray(bias, np.float64)
    z = u if softcap is None else softcap * np.tanh(u / softcap)
    lse = scipy.special.logsumexp(z, axis=1)
    per_row = np.zeros(len(y))
    per_row[kept] = (
        cross_entropy_from_logits(z[kept], y[kept]) + z_loss * lse[kept] ** 2
    )
    g = np.zeros_like(z)
    if kept.any():
        soft = scipy.special.softmax(z[kept], axis=1)
        g[kept] = (1 + 2 * z_loss * lse[kept])[:, None] * soft
        g[np.flatnonzero(kept), y[kept]] -= 1
    if softcap is not None:
        g *= 1 - np.tanh(u / softcap) ** 2
    if reduction == "none":
        return per_row, None, None, None
    if reduction == "mean":
        g /= kept.sum()
        return per_row.sum() / kept.sum(), g @ w64, g.T @ h64, g.sum(axis=0)
    return per_row.sum(), g @ w64, g.T @ h64, g.sum(axis=0)


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
    want, want_gh, want_gw, _ = unfused(h, w, y, reduction, ignore_index)
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
    assert fused.chunk_rows(50, 30, 8) == 5  # ceil(50 / 11) rows, 10 chunks
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

    numeric_h = central_differences(lambda hh: loss(hh, w), h, step)
    numeric_w = central_differences(lambda ww: loss(h, ww), w, step)
    for grad, numeric in ((gh, numeric_h), (gw, numeric_w)):
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
    want, want_gh, want_gw, _ = unfused(h, w, y, reduction, IGNORE)
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
        (2048, 32000, 4, 512, 187),  # an eleventh of the batch
        (4096, 50257, 4, 768, 333),  # the 64 MiB budget
        (512, 32000, 4, 2048, 256),  # d / 8 rows: wide features widen the chunk
        (512, 32000, 4, 8192, 512),  # ... up to the whole batch
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
        (256, 32000, 2048, 500, 64),  # an eighth of the buffer
        (187, 32000, 512, 1460, 22),
        (64, 16000, 64, 2000, 8),  # an eighth of the buffer, not a quarter of V
        (256, 1000, 16, 250, 4),  # a quarter of V
        (64, 17, 4, 5, 4),  # ceil(17 / 4) = 5 rows: four slices
        (64, 17, 64, 2, 9),  # an eighth of the buffer: 2 rows, nine slices
    ],
)
def test_vocab_slices(rows, v, d, width, n_slices):
    assert fused.vocab_block_rows(rows, v, d) == width
    assert len(range(0, v, width)) == n_slices
    assert width * d <= max(d, rows * v / 8)  # at most an eighth of the buffer


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
    want, want_gh, want_gw, _ = unfused(h.astype(out), w.astype(out), y)
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


OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "z_loss": {"z_loss": 1e-4},
    "softcap": {"softcap": 30.0},
    "all": {"bias": True, "z_loss": 1e-4, "softcap": 30.0},
}


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
@pytest.mark.parametrize(
    ("n", "d", "v"),
    [(2048, 32, 4096), (1024, 64, 1000), (1024, 512, 1000), (512, 256, 32000)],
    ids=["wide", "d-as-large-as-a-chunk", "n-is-2d", "n-is-2d-large-v"],
)
def test_peak_memory_is_under_an_eighth_of_the_logits(n, d, v, options):
    h, w, y = problem(n, d, v, seed=3, dtype=np.float32, scale=0.3)
    kwargs = dict(options)
    if kwargs.pop("bias", False):
        kwargs["bias"] = np.linspace(-1, 1, v, dtype=np.float32)
    logits_bytes = n * v * 4
    # Once untraced first: a first call may import modules lazily (about 1 MB
    # of Python objects), which is no part of the function's working memory.
    linear_cross_entropy(h[:2], w, y[:2], return_grad=True, **kwargs)
    peak, (loss, gh, gw, *gb) = traced_peak(
        lambda: linear_cross_entropy(h, w, y, return_grad=True, **kwargs)
    )
    extra = peak - gh.nbytes - gw.nbytes - sum(g.nbytes for g in gb)
    assert extra <= logits_bytes / 8, f"{extra / logits_bytes:.3f} of the logits"
    # and it still computes the right thing
    assert loss == pytest.approx(unfused(h, w, y, **kwargs)[0], rel=1e-5)


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


# --- bias, z_loss and softcap --------------------------------------------------


def with_options(v, bias, z_loss, softcap, seed=0):
    kwargs = {"z_loss": z_loss, "softcap": softcap}
    if bias:
        kwargs["bias"] = np.random.default_rng(seed).normal(size=v)
    return kwargs


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("z_loss", [0.0, 0.05])
@pytest.mark.parametrize("softcap", [None, 2.5])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_options_match_the_unfused_formula(
    bias, z_loss, softcap, reduction, small_chunks
):
    h, w, y = problem(scale=1.5)
    y[::4] = IGNORE
    kwargs = with_options(30, bias, z_loss, softcap)
    want = unfused(h, w, y, reduction, IGNORE, **kwargs)
    got = linear_cross_entropy(h, w, y, reduction, IGNORE, **kwargs)
    np.testing.assert_allclose(got, want[0], rtol=1e-13, atol=1e-14)
    if reduction == "none":
        return
    found = linear_cross_entropy(h, w, y, reduction, IGNORE, True, **kwargs)
    assert len(found) == (4 if bias else 3)
    assert found[0] == got
    for ours, theirs in zip(found[1:], want[1:], strict=False):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_options_central_differences():
    h, w, y = problem(n=5, d=3, v=4, seed=1, scale=2.0)
    b = np.array([0.3, -0.2, 0.1, 0.5])
    options = {"z_loss": 0.1, "softcap": 1.5}
    _, gh, gw, gb = linear_cross_entropy(h, w, y, bias=b, return_grad=True, **options)
    step = 1e-6
    arrays = {"h": h, "w": w, "b": b}

    def loss(**changed):
        args = {**arrays, **changed}
        return linear_cross_entropy(args["h"], args["w"], y, bias=args["b"], **options)

    for name, grad in (("h", gh), ("w", gw), ("b", gb)):
        numeric = central_differences(
            lambda x, name=name: loss(**{name: x}), arrays[name], step
        )
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_softcap_bounds_the_logits():
    # A logit of 1000 capped at 5 counts as 5 tanh(200) = 5 (to rounding).
    h, w = np.array([[1.0]]), np.array([[1000.0], [0.0]])
    loss = linear_cross_entropy(h, w, [1], "none", softcap=5.0)
    assert loss[0] == pytest.approx(np.logaddexp(5.0, 0.0) - 0.0, rel=1e-15)
    # Saturated logits pass no gradient to the raw logits (1 - tanh^2 = 0).
    _, gh, gw = linear_cross_entropy(h, w, [1], softcap=5.0, return_grad=True)
    assert gw[0, 0] == 0.0 and gh[0, 0] == 0.0


def test_z_loss_pulls_log_z_to_zero():
    # Logits all equal to 3: log Z = 3 + log V; the z-loss adds lam (log Z)^2,
    # and its gradient moves every logit down by 2 lam log Z / V.
    v = 5
    h, w = np.array([[1.0]]), np.full((v, 1), 3.0)
    log_z = 3 + np.log(v)
    plain = linear_cross_entropy(h, w, [0])
    with_z = linear_cross_entropy(h, w, [0], z_loss=0.01)
    assert with_z - plain == pytest.approx(0.01 * log_z**2, rel=1e-14)
    _, _, gw = linear_cross_entropy(h, w, [0], z_loss=0.01, return_grad=True)
    _, _, gw0 = linear_cross_entropy(h, w, [0], return_grad=True)
    np.testing.assert_allclose(gw - gw0, 2 * 0.01 * log_z / v, rtol=1e-13)


def test_bias_equals_a_constant_feature():
    # A bias b is a last feature of 1 with weights b: the same loss and gradients.
    h, w, y = problem(n=12, d=4, v=9, seed=2)
    b = np.random.default_rng(3).normal(size=9)
    loss, gh, gw, gb = linear_cross_entropy(h, w, y, bias=b, return_grad=True)
    h1 = np.hstack([h, np.ones((12, 1))])
    w1 = np.hstack([w, b[:, None]])
    loss1, gh1, gw1 = linear_cross_entropy(h1, w1, y, return_grad=True)
    assert loss == pytest.approx(loss1, rel=1e-15)
    np.testing.assert_allclose(gh, gh1[:, :4], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(gw, gw1[:, :4], rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(gb, gw1[:, 4], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"z_loss": -0.1}, ValueError, r"z_loss must be >= 0, got -0.1"),
        ({"z_loss": np.inf}, ValueError, r"z_loss must be finite .*got inf"),
        ({"z_loss": np.nan}, ValueError, r"z_loss must be finite .*got nan"),
        ({"z_loss": "0.1"}, TypeError, r"z_loss must be a real number .*'0.1'"),
        ({"z_loss": True}, TypeError, r"z_loss must be a real number .*True"),
        ({"softcap": 0.0}, ValueError, r"softcap must be None or > 0, got 0.0"),
        ({"softcap": -30}, ValueError, r"softcap must be None or > 0, got -30"),
        ({"softcap": np.inf}, ValueError, r"softcap must be finite .*got inf"),
        ({"softcap": [30.0]}, TypeError, r"softcap must be a real number"),
        ({"bias": np.zeros(4)}, ValueError, r"bias has shape \(4,\), but weight"),
        ({"bias": np.zeros((1, 5))}, ValueError, r"expected shape \(5,\)"),
        ({"bias": [0, 0, np.nan, 0, 0]}, ValueError, r"bias\[2\] = nan is not"),
        ({"bias": np.zeros(5, complex)}, TypeError, r"bias must hold real numbers"),
    ],
)
def test_bad_options_name_the_argument(kwargs, error, message):
    h, w, y = problem(n=4, d=3, v=5)
    with pytest.raises(error, match=message):
        linear_cross_entropy(h, w, y, **kwargs)


def test_bias_dtype_joins_the_compute_dtype():
    h, w, y = problem(n=4, d=3, v=5, dtype=np.float32)
    out = linear_cross_entropy(h, w, y, bias=np.zeros(5, np.float32), return_grad=True)
    assert all(x.dtype == np.float32 for x in out)
    loss = linear_cross_entropy(h, w, y, bias=np.zeros(5))
    assert loss.dtype == np.float64


# --- regressions: labels, overflow and accuracy (issue 19, section 4) ----------


@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 2, 3], dtype="m8[s]"),
        np.array([0, 1, 2, 3], dtype="M8[s]"),
        np.array([True, False, True, False]),
        np.array([0.0, 1.0, 2.0, 3.0]),
        np.array([0, 1, 2, 3], dtype=object),
    ],
    ids=["timedelta64", "datetime64", "bool", "float", "object"],
)
def test_labels_that_are_not_integers_are_a_type_error(labels):
    # timedelta64 counts as an integer type for np.issubdtype: it was accepted.
    h, w, _ = problem(n=4, v=5)
    name = str(labels.dtype)
    with pytest.raises(
        TypeError,
        match=rf"^y must hold integer class labels, got dtype {re.escape(name)}",
    ):
        linear_cross_entropy(h, w, labels)


def test_overflowing_results_are_inf_without_a_warning():
    # pytest turns warnings into errors: each call below warned before.
    # A float64 loss of 2e308 is inf, with or without the mean.
    h, w = [[1.0]], [[1e308], [-1e308]]
    assert linear_cross_entropy(h, w, [1], "none")[0] == np.inf
    assert linear_cross_entropy(h, w, [1]) == np.inf
    # A float32 sum beyond float32's range (each loss 3e38) is inf.
    h32 = np.ones((3, 1), np.float32)
    w32 = np.array([[0.0], [-3e38]], np.float32)
    assert linear_cross_entropy(h32, w32, [1, 1, 1], "sum") == np.inf
    # grad_weight beyond float64's range: -2.2e308 and 2.2e308 are -inf and inf.
    loss, gh, gw = linear_cross_entropy(
        [[1e308]] * 3, [[1e-308], [0.0]], [1, 1, 1], "sum", return_grad=True
    )
    assert np.isfinite(loss) and np.isfinite(gh).all()
    np.testing.assert_array_equal(gw[:, 0], [np.inf, -np.inf])


def test_overflow_across_chunks_is_inf_without_a_warning(small_chunks):
    # The same rows in chunks of 5: the grad_weight sum overflows in the
    # accumulation over chunks, not inside one product.
    h = np.full((12, 1), 6e307)
    _, _, gw = linear_cross_entropy(
        h, [[1e-307], [0.0]], [1] * 12, "sum", return_grad=True
    )
    np.testing.assert_array_equal(gw[:, 0], [np.inf, -np.inf])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_the_mean_of_finite_losses_is_finite(dtype, ignore_index):
    # Logits [0, -big] with label 1: each loss is big, and so is their mean.
    big = 1e308 if dtype == np.float64 else 3e38
    h = np.ones((4, 1), dtype)
    w = np.array([[0.0], [-big]], dtype)
    y = [1, 1, 1, 1] if ignore_index is None else [1, IGNORE, 1, 1]
    loss = linear_cross_entropy(h, w, y, ignore_index=ignore_index)
    assert loss.dtype == dtype
    assert loss == dtype(big)
    loss, _, _ = linear_cross_entropy(
        h, w, y, ignore_index=ignore_index, return_grad=True
    )
    assert loss == dtype(big)


def test_a_tiny_loss_keeps_its_relative_accuracy():
    # Logits [40, 0] with label 0: the loss is log(1 + e^-40) = 4.248e-18, which
    # (m - z_y) + log(s) rounds to 0.
    loss = linear_cross_entropy([[1.0]], [[40.0], [0.0]], [0], "none")[0]
    with mpmath.workdps(50):
        want = mpmath.log1p(mpmath.exp(-40))
    assert loss == pytest.approx(float(want), rel=2 * np.finfo(float).eps, abs=0)
    loss32 = linear_cross_entropy(
        np.ones((1, 1), np.float32), np.array([[20.0], [0.0]], np.float32), [0], "none"
    )[0]
    with mpmath.workdps(50):
        want32 = mpmath.log1p(mpmath.exp(-20))
    assert loss32 == pytest.approx(
        float(want32), rel=2 * float(np.finfo(np.float32).eps), abs=0
    )


@pytest.mark.parametrize(
    ("scale", "shift"),
    [(4.0, 0.0), (30.0, 0.0), (4.0, 500.0), (4.0, -400.0), (0.05, 0.0)],
    ids=["spread-4", "spread-30", "shifted-up", "shifted-down", "nearly-flat"],
)
def test_losses_match_mpmath_to_a_few_ulps(scale, shift):
    # features = I, so the logits are weight.T exactly; every route is taken:
    # rows within log(max)/4 of 0 unshifted, the others shifted by their maximum.
    rng = np.random.default_rng(7)
    n, v = 60, 37
    z = rng.normal(scale=scale, size=(n, v)) + shift
    y = rng.integers(0, v, size=n)
    z[:10, :] -= 60.0
    z[np.arange(10), y[:10]] += 60.0  # ten confident, right rows: tiny losses
    losses = linear_cross_entropy(np.eye(n), z.T, y, "none")
    refs = label_losses_rows(z, y)
    for i, ref in enumerate(refs):
        error, bound = ulp_error_bound(losses[i], ref, ref, np.float64, k=2.5)
        assert error <= bound, (i, losses[i], ref)
        if ref < 1e-3:  # relative to the loss itself, however small
            assert abs(losses[i] - float(ref)) <= 4 * np.finfo(float).eps * float(ref)


@pytest.mark.parametrize("fold_width", [1, 10**9], ids=["fold", "no-fold"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
def test_scaling_the_rows_before_or_after_the_products_agrees(
    fold_width, bias, monkeypatch, small_chunks
):
    # The row scale of G is applied to the features (fold) or to the buffer.
    monkeypatch.setattr(fused, "FOLD_WIDTH", fold_width)
    h, w, y = problem(scale=1.5)
    y[::5] = IGNORE
    kwargs = with_options(30, bias, 0.05, None)
    want = unfused(h, w, y, "mean", IGNORE, **kwargs)
    found = linear_cross_entropy(h, w, y, "mean", IGNORE, True, **kwargs)
    for ours, theirs in zip(found, want, strict=False):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("scale", [0.5, 200.0], ids=["bounded", "maxima-needed"])
def test_rows_with_or_without_their_maxima_agree(scale):
    # Small logits are exponentiated as they are (their Cauchy-Schwarz bound
    # is small); large ones are shifted by their maxima. Both match float64.
    h, w, y = problem(n=30, d=4, v=50, seed=4, scale=scale)
    bounds = fused._row_bounds(h, w, None)
    small = bounds.max() <= fused.bound_limit(np.dtype(np.float64), 50)
    assert small == (scale < 1)
    want = unfused(h, w, y, "sum")
    found = linear_cross_entropy(h, w, y, "sum", return_grad=True)
    assert found[0] == pytest.approx(want[0], rel=1e-13)
    for ours, theirs in zip(found[1:], want[1:3], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-12)
