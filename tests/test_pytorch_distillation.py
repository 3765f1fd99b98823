"""The distillation loss against PyTorch, and what the book says about PyTorch's.

``ce_tutorial.distillation_loss`` is PyTorch's
``F.kl_div(F.log_softmax(z / T), F.log_softmax(t / T), reduction="batchmean",
log_target=True) * T**2``, and its gradient is autograd's. The distillation
chapter (``book/distillation.ipynb``) shows PyTorch code without running it;
the tests at the end of this module run that code and check the values and the
factor of C between ``"mean"`` and ``"batchmean"`` that the chapter quotes.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ce_tutorial import distillation_grad, distillation_loss

from . import strategies as cst
from .pytorch_snippets import chapter_markdown, run_snippets, torch_snippets
from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

EPS64 = np.finfo(np.float64).eps
TEMPERATURES = [0.5, 1.0, 2.0, 4.0, 10.0]


def t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, dtype=np.float64))


def torch_loss(s, teacher, temperature, reduction="batchmean"):
    """Hinton's loss as PyTorch users write it: KL of log-probabilities, x T^2."""
    return (
        F.kl_div(
            F.log_softmax(s / temperature, dim=1),
            F.log_softmax(teacher / temperature, dim=1),
            reduction=reduction,
            log_target=True,
        )
        * temperature**2
    )


@st.composite
def pairs(draw):
    s = draw(cst.logits(bound=30.0))
    return s, draw(cst.logits(bound=30.0, shape=s.shape))


def _tolerance(s, teacher, temperature):
    """A few ulps of T^2 sum_j p_j (|log p_j| + |log y_hat_j|), per row.

    Both sides compute the KL as a sum of such differences, each rounding its
    log-probabilities to a few ulps of their size.
    """
    log_p = F.log_softmax(t(teacher) / temperature, dim=1).numpy()
    log_y_hat = F.log_softmax(t(s) / temperature, dim=1).numpy()
    scale = (np.exp(log_p) * (np.abs(log_p) + np.abs(log_y_hat))).sum(axis=1) + 1
    return 16 * EPS64 * temperature**2 * scale


@given(pairs(), st.sampled_from(TEMPERATURES))
def test_loss_matches_kl_div_batchmean_times_t_squared(pair, temperature):
    s, teacher = pair
    theirs = torch_loss(t(s), t(teacher), temperature).item()
    ours = distillation_loss(s, teacher, temperature)
    assert abs(ours - theirs) <= _tolerance(s, teacher, temperature).mean()
    # "sum" is PyTorch's "sum", and "none" its per-element terms summed by row
    theirs_sum = torch_loss(t(s), t(teacher), temperature, "sum").item()
    ours_sum = distillation_loss(s, teacher, temperature, "sum")
    assert abs(ours_sum - theirs_sum) <= _tolerance(s, teacher, temperature).sum()
    rows = torch_loss(t(s), t(teacher), temperature, "none").sum(dim=1).numpy()
    ours_rows = distillation_loss(s, teacher, temperature, "none")
    assert np.all(np.abs(ours_rows - rows) <= _tolerance(s, teacher, temperature))


@given(pairs(), st.sampled_from(TEMPERATURES))
def test_pytorch_mean_divides_by_the_number_of_classes_too(pair, temperature):
    s, teacher = pair
    with pytest.warns(UserWarning, match=MEAN_WARNING):
        mean = torch_loss(t(s), t(teacher), temperature, "mean").item()
    batchmean = torch_loss(t(s), t(teacher), temperature).item()
    assert mean * s.shape[1] == pytest.approx(batchmean, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(pairs(), st.sampled_from(TEMPERATURES))
def test_gradient_matches_autograd(reduction, pair, temperature):
    s, teacher = pair
    s_t = t(s).requires_grad_(True)
    torch_reduction = {"mean": "batchmean", "sum": "sum", "none": "sum"}[reduction]
    torch_loss(s_t, t(teacher), temperature, torch_reduction).backward()
    ours = distillation_grad(s, teacher, temperature, reduction)
    np.testing.assert_allclose(
        ours, s_t.grad.numpy(), rtol=0, atol=16 * EPS64 * temperature
    )


def test_pytorch_gives_nan_or_inf_where_logits_are_huge():
    # What the package's care buys: with logits of 1e308, PyTorch's z / T
    # overflows at T = 0.5, and its KL is not a number.
    s = np.array([[1e308, -1e308, 0.0]])
    teacher = np.array([[-1e308, 1e308, 0.0]])
    theirs = torch_loss(t(s), t(teacher), 0.5).item()
    assert not np.isfinite(theirs)
    assert distillation_loss(s, teacher, 0.5) == pytest.approx(1e308, rel=1e-14)


# --- the chapter's PyTorch code -----------------------------------------------------

PROSE = chapter_markdown("distillation")
FLAT = " ".join(PROSE.split())  # the prose with its line breaks as spaces
SNIPPETS = torch_snippets(PROSE)
RESULTS, NAMESPACE = run_snippets(SNIPPETS, "distillation")

BATCHMEAN = 'F.kl_div(log_y_hat, log_p, reduction="batchmean", log_target=True) * T**2'
DEFAULT = "F.kl_div(log_y_hat, log_p, log_target=True) * T**2"
MEAN_WARNING = (
    r"reduction: 'mean' divides the total loss by both the batch size and the "
    r"support size"
)


def _value(expression: str) -> float:
    result = RESULTS[expression]
    assert result.error is None, f"{expression} raised {result.error!r}"
    return result.value.item()


def _data() -> tuple[np.ndarray, np.ndarray, float]:
    student, teacher = NAMESPACE["student"], NAMESPACE["teacher"]
    assert student.dtype == teacher.dtype == torch.float64
    return student.numpy(), teacher.numpy(), NAMESPACE["T"]


def test_every_snippet_expression_is_checked():
    assert len(SNIPPETS) == 1
    assert set(RESULTS) == {BATCHMEAN, DEFAULT}


def test_batchmean_is_the_quoted_value_and_ce_tutorials_mean():
    # "... which gives the mean of (eq-distillation-loss) over the batch, 0.1705 here"
    value = _value(BATCHMEAN)
    assert f"{value:.4f}" == "0.1705"
    assert "over the batch, 0.1705 here" in FLAT
    assert not RESULTS[BATCHMEAN].warnings
    assert distillation_loss(*_data()) == pytest.approx(value, rel=1e-13)


def test_the_default_is_mean_smaller_by_c_and_warns():
    # "The default, reduction="mean", divides by the number of terms, N C: it returns
    # 0.0568, smaller by the factor C = 3, and PyTorch warns that it does."
    assert inspect.signature(F.kl_div).parameters["reduction"].default == "mean"
    student, teacher, T = _data()
    N, C = student.shape
    assert C == 3
    value = _value(DEFAULT)
    assert f"{value:.4f}" == "0.0568"
    assert "it returns 0.0568, smaller by the factor $C = 3$" in FLAT
    assert "and PyTorch warns that it does" in FLAT
    assert value * C == pytest.approx(_value(BATCHMEAN), rel=1e-13)
    total = distillation_loss(student, teacher, T, reduction="sum")
    assert value == pytest.approx(total / (N * C), rel=1e-13)
    assert any(re.search(MEAN_WARNING, w) for w in RESULTS[DEFAULT].warnings)


def test_kl_div_takes_the_student_first_and_computes_kl_of_the_target():
    # "F.kl_div(input, target) takes the student's log-probabilities first, and
    # computes KL(target || input)"
    log_y_hat, log_p = NAMESPACE["log_y_hat"], NAMESPACE["log_p"]
    p, y_hat = log_p.exp(), log_y_hat.exp()
    ours = (p * (log_p - log_y_hat)).sum()
    reverse = (y_hat * (log_y_hat - log_p)).sum()
    theirs = F.kl_div(log_y_hat, log_p, reduction="sum", log_target=True)
    assert theirs.item() == pytest.approx(ours.item(), rel=1e-13)
    assert reverse.item() != pytest.approx(theirs.item(), rel=1e-6)  # order matters


def test_log_target_means_the_target_is_given_as_log_probabilities():
    log_y_hat, log_p = NAMESPACE["log_y_hat"], NAMESPACE["log_p"]
    as_logs = F.kl_div(log_y_hat, log_p, reduction="sum", log_target=True)
    as_probabilities = F.kl_div(log_y_hat, log_p.exp(), reduction="sum")
    assert as_logs.item() == pytest.approx(as_probabilities.item(), rel=1e-13)


def test_without_log_target_an_underflowed_probability_is_lost():
    # The chapter's reason for log_target=True: a teacher probability that
    # underflows to 0 drops its term, whose true value is not 0.
    student = t([[0.0, 0.0]])
    teacher = t([[0.0, -800.0]])
    log_y_hat = F.log_softmax(student, dim=1)
    log_p = F.log_softmax(teacher, dim=1)
    assert log_p.exp()[0, 1].item() == 0.0
    with_logs = F.kl_div(log_y_hat, log_p, reduction="sum", log_target=True)
    expected = distillation_loss(student.numpy(), teacher.numpy(), reduction="sum")
    assert with_logs.item() == pytest.approx(expected, rel=1e-13)
