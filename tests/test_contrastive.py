"""The InfoNCE loss and its gradients (``ce_tutorial._contrastive``)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ce_tutorial as ct
from ce_tutorial import info_nce

from . import strategies as cst
from .differences import central_differences
from .reference import DIGITS, exact_mpf

EPS64 = np.finfo(np.float64).eps
TEMPERATURES = [0.05, 0.1, 0.5, 1.0, 3.0]


@st.composite
def embeddings(draw, bound: float = 5.0, min_rows: int = 1):
    """Queries and keys of the same shape (N, d), rows of length >= 0.1."""
    n = draw(st.integers(min_rows, cst.MAX_ROWS))
    d = draw(st.integers(1, 6))
    elements = cst.finite_floats(bound)
    q = draw(hnp.arrays(np.float64, (n, d), elements=elements))
    k = draw(hnp.arrays(np.float64, (n, d), elements=elements))
    # No row near zero, where the normalisation's gradient blows up.
    q[:, 0] += np.where(q[:, 0] >= 0, 0.1, -0.1)
    k[:, 0] += np.where(k[:, 0] >= 0, 0.1, -0.1)
    return q, k


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def logits_of(q, k, temperature, normalize=True):
    if normalize:
        q, k = unit(q), unit(k)
    return q @ k.T / temperature


def reference(q, k, temperature, symmetric=False) -> list[mpmath.mpf]:
    """Per-example losses at 50 digits, normalised rows, from exact inputs."""
    with mpmath.workdps(DIGITS):
        T = exact_mpf(temperature)

        def units(x):
            rows = [[exact_mpf(v) for v in row] for row in x]
            return [
                [v / mpmath.sqrt(mpmath.fsum(u * u for u in r)) for v in r]
                for r in rows
            ]

        qu, ku = units(q), units(k)
        n = len(qu)
        z = [[mpmath.fdot(qu[i], ku[j]) / T for j in range(n)] for i in range(n)]

        def loss(i, row):
            return mpmath.log(mpmath.fsum(mpmath.exp(v - row[i]) for v in row))

        out = []
        for i in range(n):
            rows = loss(i, z[i])
            if symmetric:
                rows = (rows + loss(i, [z[j][i] for j in range(n)])) / 2
            out.append(rows)
        return out


# --- the loss is a cross-entropy over the batch ------------------------------------


@given(embeddings(), st.sampled_from(TEMPERATURES), st.booleans(), cst.reductions)
def test_loss_is_cross_entropy_of_the_similarities(
    pair, temperature, normalize, reduction
):
    q, k = pair
    z = logits_of(q, k, temperature, normalize)
    labels = np.arange(len(q))
    expected = ct.cross_entropy_from_logits(z, labels, reduction)
    ours = info_nce(q, k, temperature, normalize, reduction=reduction)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


@given(embeddings(), st.sampled_from(TEMPERATURES), st.booleans())
def test_symmetric_loss_averages_rows_and_columns(pair, temperature, normalize):
    q, k = pair
    z = logits_of(q, k, temperature, normalize)
    labels = np.arange(len(q))
    rows = ct.cross_entropy_from_logits(z, labels)
    cols = ct.cross_entropy_from_logits(z.T, labels)
    ours = info_nce(q, k, temperature, normalize, symmetric=True, reduction="none")
    np.testing.assert_allclose(ours, (rows + cols) / 2, rtol=1e-12, atol=1e-12)
    # Swapping the roles of queries and keys changes nothing.
    swapped = info_nce(k, q, temperature, normalize, symmetric=True, reduction="none")
    np.testing.assert_allclose(swapped, ours, rtol=1e-12, atol=1e-12)


def test_hand_value():
    # Cosines 1 with the own key, 0 with the other: log(1 + e^{-1/T}).
    q = [[1.0, 0.0], [0.0, 1.0]]
    k = [[2.0, 0.0], [0.0, 3.0]]
    for temperature in (0.1, 0.5, 2.0):
        expected = math.log1p(math.exp(-1 / temperature))
        assert info_nce(q, k, temperature) == pytest.approx(expected, rel=1e-14)
        assert info_nce(q, k, temperature, symmetric=True) == pytest.approx(
            expected, rel=1e-14
        )


def test_one_pair_has_nothing_to_confuse_it_with():
    assert info_nce([[1.0, -2.0]], [[-3.0, 0.5]], reduction="none")[0] == 0.0


def test_a_large_temperature_gives_log_n():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 16, 4))
    assert info_nce(q, k, 1e8) == pytest.approx(math.log(16), abs=1e-7)


@given(embeddings(), st.sampled_from(TEMPERATURES), st.booleans(), st.booleans())
def test_loss_is_non_negative(pair, temperature, normalize, symmetric):
    q, k = pair
    losses = info_nce(q, k, temperature, normalize, symmetric, reduction="none")
    assert np.all(losses >= 0)


@given(embeddings(), st.sampled_from(TEMPERATURES), st.booleans())
def test_loss_matches_mpmath(pair, temperature, symmetric):
    q, k = pair
    ours = info_nce(q, k, temperature, symmetric=symmetric, reduction="none")
    for value, exact in zip(ours, reference(q, k, temperature, symmetric), strict=True):
        # the cosines are accurate to a few ulps of 1, the logits to those / T
        assert abs(mpmath.mpf(float(value)) - exact) <= 16 * EPS64 * (
            abs(exact) + 1 / temperature
        )


@pytest.mark.parametrize("temperature", [1e-3, 1e-10, 1e-300])
def test_a_small_temperature_does_not_overflow(temperature):
    # Logits up to 1 / T: exp(1 / T) overflows, the shifted form does not.
    q = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    k = np.array([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0]])
    ours = info_nce(q, k, temperature, reduction="none")
    exact = reference(q, k, temperature)
    for value, ref in zip(ours, exact, strict=True):
        assert abs(mpmath.mpf(float(value)) - ref) <= 16 * EPS64 * (abs(ref) + 1)
    # Query 2's own key is its worst match: its cosine is 0, that of key 1 is
    # 0.8, and key 0's 0.6 adds e^{-0.2 / T}, nothing at these T: 0.8 / T.
    assert ours[2] == pytest.approx(0.8 / temperature, rel=1e-12)


def test_huge_and_tiny_rows_normalise_without_overflow():
    q = np.array([[1e300, 1e300], [1e-300, -1e-300]])
    k = np.array([[3e-310, 3e-310], [-1e308, 1e308]])
    ours = info_nce(q, k, 0.5, reduction="none")
    same = info_nce(
        [[1.0, 1.0], [1.0, -1.0]], [[1.0, 1.0], [-1.0, 1.0]], 0.5, reduction="none"
    )
    np.testing.assert_allclose(ours, same, rtol=1e-14)


def test_scaling_rows_changes_nothing_with_normalize():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(2, 6, 3))
    scale = rng.uniform(0.1, 10.0, size=(2, 6, 1))
    np.testing.assert_allclose(
        info_nce(q * scale[0], k * scale[1], reduction="none"),
        info_nce(q, k, reduction="none"),
        rtol=1e-13,
    )


# --- gradients ----------------------------------------------------------------------


@given(
    embeddings(bound=3.0),
    st.sampled_from([0.2, 0.5, 1.0]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["mean", "sum"]),
)
def test_gradients_match_central_differences(
    pair, temperature, normalize, symmetric, reduction
):
    q, k = pair
    _, grad_q, grad_k = info_nce(
        q, k, temperature, normalize, symmetric, reduction, return_grad=True
    )
    h = 1e-6

    def loss(qq, kk):
        return info_nce(qq, kk, temperature, normalize, symmetric, reduction)

    numerical_q = central_differences(lambda qq: loss(qq, k), q, h)
    numerical_k = central_differences(lambda kk: loss(q, kk), k, h)
    for grad, numerical in ((grad_q, numerical_q), (grad_k, numerical_k)):
        # Rounding of the loss over 2h, and the h^2 truncation: the loss's
        # third derivative is at most about 1 / (T^3 |x|^3), with |x| >= 0.1.
        size = info_nce(q, k, temperature, normalize, symmetric, "sum") + len(q)
        scale = np.abs(q).max() * np.abs(k).max() if not normalize else 1.0
        tol = 64 * EPS64 * size * (1 + scale / temperature) / h
        tol += h**2 * 1e3 * (1 + scale / temperature) ** 3
        assert np.max(np.abs(grad - numerical)) <= tol


@given(embeddings(), st.sampled_from(TEMPERATURES), st.booleans())
def test_normalised_gradients_are_orthogonal_to_their_rows(
    pair, temperature, symmetric
):
    # Scaling a row does not change the loss, so the gradient has no radial part.
    q, k = pair
    _, grad_q, grad_k = info_nce(
        q, k, temperature, symmetric=symmetric, return_grad=True
    )
    for x, grad in ((q, grad_q), (k, grad_k)):
        radial = np.einsum("ij,ij->i", grad, unit(x))
        assert np.all(np.abs(radial) <= 64 * EPS64 * (1 + np.abs(grad).sum(axis=1)))


def test_gradient_of_the_mean_is_that_of_the_sum_over_n():
    rng = np.random.default_rng(2)
    q, k = rng.normal(size=(2, 5, 3))
    _, gq_sum, gk_sum = info_nce(q, k, 0.2, reduction="sum", return_grad=True)
    loss, gq, gk = info_nce(q, k, 0.2, reduction="mean", return_grad=True)
    assert loss == info_nce(q, k, 0.2)
    np.testing.assert_allclose(gq, gq_sum / 5, rtol=1e-14)
    np.testing.assert_allclose(gk, gk_sum / 5, rtol=1e-14)


def test_gradient_when_the_softmax_is_nearly_one_hot():
    # y_hat_ii = 1 - tiny: the diagonal of softmax - I is kept accurate.
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    _, grad_q, _ = info_nce(
        q, q, 0.02, normalize=False, reduction="sum", return_grad=True
    )
    # d/dq_0 of log(1 + e^{(q_0 . k_1 - q_0 . k_0) / T}) = sigma(-1/T) (k_1 - k_0) / T
    weight = math.exp(-50.0) / (1 + math.exp(-50.0)) / 0.02
    np.testing.assert_allclose(grad_q[0], [-weight, weight], rtol=1e-14)


# --- dtypes, shapes and inputs ------------------------------------------------------


def test_float32_in_float32_out():
    rng = np.random.default_rng(3)
    q, k = rng.normal(size=(2, 8, 4)).astype(np.float32)
    loss, grad_q, grad_k = info_nce(q, k, 0.1, return_grad=True)
    assert loss.dtype == grad_q.dtype == grad_k.dtype == np.float32
    wide = info_nce(q.astype(np.float64), k.astype(np.float64), 0.1)
    assert loss == pytest.approx(wide, rel=1e-5)
    assert info_nce(q, k.astype(np.float64)).dtype == np.float64
    assert info_nce([[1, 2], [3, 4]], [[2, 1], [4, 3]]).dtype == np.float64


def test_empty_batch():
    empty = np.zeros((0, 3))
    assert info_nce(empty, empty, reduction="none").shape == (0,)
    loss, grad_q, grad_k = info_nce(empty, empty, reduction="sum", return_grad=True)
    assert loss == 0.0
    assert grad_q.shape == grad_k.shape == (0, 3)
    with pytest.raises(ValueError, match=r"reduction='mean' is undefined"):
        info_nce(empty, empty)


def test_no_features_without_normalisation_is_log_n():
    # every similarity is 0: each query's N candidates look the same
    losses = info_nce(
        np.zeros((4, 0)), np.zeros((4, 0)), normalize=False, reduction="none"
    )
    np.testing.assert_allclose(losses, math.log(4), rtol=1e-15)


def test_inputs_are_never_modified():
    rng = np.random.default_rng(4)
    q, k = rng.normal(size=(2, 5, 3))
    before = q.copy(), k.copy()
    q.flags.writeable = k.flags.writeable = False
    for normalize in (True, False):
        for symmetric in (True, False):
            info_nce(q, k, 0.1, normalize, symmetric, "sum", return_grad=True)
    np.testing.assert_array_equal(q, before[0])
    np.testing.assert_array_equal(k, before[1])


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "k", "kwargs", "error", "pattern"),
    [
        (
            np.ones((3, 2)),
            np.ones((4, 2)),
            {},
            ValueError,
            r"queries has shape \(3, 2\) but keys has shape \(4, 2\): row i of each "
            r"is a positive pair",
        ),
        (np.ones(3), np.ones(3), {}, ValueError, r"queries must be 2-D"),
        (np.ones((3, 2)), np.ones((3, 2, 1)), {}, ValueError, r"keys must be 2-D"),
        (
            [[1.0, 0.0], [1.0, np.nan]],
            np.ones((2, 2)),
            {},
            ValueError,
            r"queries\[1, 1\] = nan is not finite",
        ),
        (
            np.ones((2, 2)),
            [[1.0, -np.inf], [1.0, 0.0]],
            {},
            ValueError,
            r"keys\[0, 1\] = -inf is not finite",
        ),
        (
            [[1.0, 0.0], [0.0, 0.0]],
            np.ones((2, 2)),
            {},
            ValueError,
            r"queries\[1\] is all zeros: normalize=True needs every row",
        ),
        (
            np.zeros((2, 0)),
            np.zeros((2, 0)),
            {},
            ValueError,
            r"queries has shape \(2, 0\): normalize=True needs at least one feature",
        ),
        (
            [[1e200, 0.0], [1.0, 0.0]],
            [[1e200, 0.0], [1.0, 0.0]],
            {"normalize": False},
            ValueError,
            r"the similarity queries\[0\] \. keys\[0\] overflows float64",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"temperature": 0.0},
            ValueError,
            r"positive",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"temperature": "1"},
            TypeError,
            r"real number",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"normalize": 1},
            TypeError,
            r"normalize must",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"symmetric": "no"},
            TypeError,
            r"symmetric",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"return_grad": None},
            TypeError,
            r"return_grad",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"reduction": "batchmean"},
            ValueError,
            r"one of",
        ),
        (
            np.ones((2, 2)),
            np.ones((2, 2)),
            {"reduction": "none", "return_grad": True},
            ValueError,
            r"return_grad=True needs reduction='mean' or 'sum'",
        ),
        ([[True]], [[1.0]], {}, TypeError, r"queries must hold real numbers"),
        ([[1.0]], [[1j]], {}, TypeError, r"keys must hold real numbers"),
    ],
)
def test_bad_input_names_the_argument(q, k, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        info_nce(q, k, **kwargs)


def test_the_earliest_bad_row_is_reported():
    q, k = np.ones((3, 2)), np.ones((3, 2))
    q[2, 0] = np.nan
    k[1, 1] = np.inf
    with pytest.raises(ValueError, match=r"keys\[1, 1\] = inf is not finite"):
        info_nce(q, k)
