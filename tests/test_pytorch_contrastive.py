"""The InfoNCE loss against PyTorch, and the contrastive chapter's PyTorch code.

``ce_tutorial.info_nce`` is ``F.cross_entropy`` on the matrix of similarities
divided by the temperature, with ``torch.arange(N)`` as the labels, through
``F.normalize`` when ``normalize=True``; its gradients are autograd's. The
contrastive chapter (``book/contrastive.ipynb``) shows that PyTorch code
without running it; the tests at the end run it and check the values it
quotes.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ce_tutorial import info_nce

from . import strategies as cst
from .pytorch_snippets import chapter_markdown, run_snippets, torch_snippets
from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

EPS64 = np.finfo(np.float64).eps
TEMPERATURES = [0.05, 0.1, 0.5, 1.0, 2.0]


def t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))


@st.composite
def pairs(draw):
    """Queries and keys of shape (N, d), every row at least 0.1 long.

    ``F.normalize`` divides by ``max(|x|, 1e-12)``; rows this long are divided
    by their length, as ``info_nce`` divides them.
    """
    n = draw(st.integers(1, cst.MAX_ROWS))
    d = draw(st.integers(1, 6))
    elements = cst.finite_floats(5.0)
    q = draw(hnp.arrays(np.float64, (n, d), elements=elements))
    k = draw(hnp.arrays(np.float64, (n, d), elements=elements))
    q[:, 0] += np.where(q[:, 0] >= 0, 0.1, -0.1)
    k[:, 0] += np.where(k[:, 0] >= 0, 0.1, -0.1)
    return q, k


def torch_info_nce(q, k, temperature, normalize, symmetric, reduction):
    """The loss as a PyTorch user writes it (CLIP's pseudocode, in torch)."""
    if normalize:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = q @ k.T / temperature
    labels = torch.arange(len(q))
    loss = F.cross_entropy(logits, labels, reduction=reduction)
    if symmetric:
        loss = (loss + F.cross_entropy(logits.T, labels, reduction=reduction)) / 2
    return loss


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@given(pairs(), st.sampled_from(TEMPERATURES), st.booleans(), st.booleans())
def test_loss_matches_cross_entropy_on_the_similarities(
    reduction, pair, temperature, normalize, symmetric
):
    q, k = pair
    theirs = torch_info_nce(t(q), t(k), temperature, normalize, symmetric, reduction)
    ours = info_nce(q, k, temperature, normalize, symmetric, reduction)
    # logits up to 1 / T (normalised) or 25 d / T: a few ulps of their size
    scale = (1.0 if normalize else 25.0 * q.shape[1] * 4) / temperature + 1
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=32 * EPS64 * scale)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@given(pairs(), st.sampled_from(TEMPERATURES), st.booleans(), st.booleans())
def test_gradients_match_autograd_through_the_normalisation(
    reduction, pair, temperature, normalize, symmetric
):
    q, k = pair
    q_t, k_t = t(q).requires_grad_(True), t(k).requires_grad_(True)
    torch_info_nce(q_t, k_t, temperature, normalize, symmetric, reduction).backward()
    _, grad_q, grad_k = info_nce(
        q, k, temperature, normalize, symmetric, reduction, return_grad=True
    )
    # |gradient| <= N / (T |x|) with |x| >= 0.1 (normalised), or N |x| / T
    size = len(q) * (10.0 if normalize else 25.0 * q.shape[1]) / temperature
    for ours, theirs in ((grad_q, q_t.grad), (grad_k, k_t.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=64 * EPS64 * size)


def test_a_small_temperature_agrees_with_pytorch():
    # With T = 1e-3 the logits reach 1000, where exp overflows without a shift;
    # both shift, and the loss of a query whose own key is only its second-best
    # match is the margin of the best one over T: 0.2 / 1e-3.
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    k = np.array([[0.6, 0.8], [0.8, 0.6]])
    theirs = torch_info_nce(t(q), t(k), 1e-3, True, False, "none").numpy()
    ours = info_nce(q, k, 1e-3, reduction="none")
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    np.testing.assert_allclose(ours, [200.0, 200.0], rtol=1e-12)


# --- the chapter's PyTorch code -----------------------------------------------------

PROSE = chapter_markdown("contrastive")
FLAT = " ".join(PROSE.split())
SNIPPETS = torch_snippets(PROSE)
RESULTS, NAMESPACE = run_snippets(SNIPPETS, "contrastive")

ROWS = "F.cross_entropy(logits, labels)"
SYMMETRIC = "(F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2"


def _value(expression: str) -> float:
    result = RESULTS[expression]
    assert result.error is None, f"{expression} raised {result.error!r}"
    assert not result.warnings, result.warnings
    return result.value.item()


def _data():
    queries, keys = NAMESPACE["queries"], NAMESPACE["keys"]
    assert queries.dtype == keys.dtype == torch.float64
    return queries.numpy(), keys.numpy(), NAMESPACE["T"]


def test_every_snippet_expression_is_checked():
    assert len(SNIPPETS) == 1
    assert set(RESULTS) == {ROWS, SYMMETRIC}


def test_the_quoted_values_are_info_nce():
    # "PyTorch returns 0.7670, the mean loss above, and 0.7522, the symmetric
    # form of the next section."
    assert "PyTorch returns 0.7670, the mean loss above, and 0.7522" in FLAT
    queries, keys, T = _data()
    rows, symmetric = _value(ROWS), _value(SYMMETRIC)
    assert f"{rows:.4f}" == "0.7670"
    assert f"{symmetric:.4f}" == "0.7522"
    assert info_nce(queries, keys, T) == pytest.approx(rows, rel=1e-13)
    assert info_nce(queries, keys, T, symmetric=True) == pytest.approx(
        symmetric, rel=1e-13
    )


def test_the_labels_are_the_row_numbers():
    labels = NAMESPACE["labels"]
    assert labels.dtype == torch.int64
    assert labels.tolist() == list(range(len(NAMESPACE["queries"])))
