"""What the book says about PyTorch, checked with PyTorch.

The book never imports torch: its PyTorch snippets are plain code blocks in the
markdown of ``book/in_practice.ipynb``. This module reads those blocks from the
chapter, runs them in order like a REPL (each top-level expression is
evaluated and its value, or the exception it raises, is recorded), and checks:

- every value the prose quotes for an expression, at the digits quoted, and
  that the quoted text really appears in the chapter;
- that ``ce_tutorial`` computes the same values, where the chapter compares;
- every error the chapter says PyTorch raises, by type and message;
- the facts about PyTorch's interface that the chapter states (which target
  dtypes are accepted, when ``ignore_index`` is refused).

Every expression of every snippet must be claimed below, so a snippet added to
the chapter without a check fails ``test_every_snippet_expression_is_checked``.
"""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from ce_tutorial import cross_entropy_from_logits, log_softmax, one_hot

from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional

CHAPTER = Path(__file__).resolve().parent.parent / "book" / "in_practice.ipynb"
CHAPTERS = sorted(CHAPTER.parent.glob("*.ipynb"))

# The chapter's data, in NumPy, for the ce_tutorial side of each comparison.
Y_HAT = np.array([[0.1, 0.3, 0.6], [0.2, 0.3, 0.5]])
Y = np.array([0, 2])
Z = np.array(
    [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [-0.5, 0.2, 1.5], [1.0, 1.0, 1.0]],
)
LABELS = np.array([0, 2, 2, 1])
WEIGHT = np.array([1.0, 2.0, 0.25])
KEEP = np.array([True, False, True, True])  # labels_ignore = [0, -100, 2, 1]
LABELS_IGNORE = np.where(KEEP, LABELS, -100)
P_SMOOTH = 0.9 * one_hot(LABELS, 3) + 0.1 / 3


def _markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
    )


PROSE = _markdown(CHAPTER)


def torch_snippets(markdown: str) -> list[str]:
    """The fenced Python blocks of the prose that use torch, in order."""
    blocks = re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    return [b for b in blocks if "torch" in b or re.search(r"\bF\.", b)]


def run_snippets(snippets: list[str]) -> tuple[dict[str, object], dict]:
    """Run the snippets in one namespace; map each expression to its result."""
    namespace: dict = {}
    results: dict[str, object] = {}
    for block in snippets:
        for statement in ast.parse(block).body:
            source = ast.get_source_segment(block, statement)
            if isinstance(statement, ast.Expr):
                expression = ast.Expression(statement.value)
                try:
                    results[source] = eval(  # the book's own snippet
                        compile(expression, "<in_practice snippet>", "eval"),
                        namespace,
                    )
                except Exception as exc:  # recorded, checked below
                    results[source] = exc
            else:
                module = ast.Module(body=[statement], type_ignores=[])
                exec(compile(module, "<in_practice snippet>", "exec"), namespace)
    return results, namespace


RESULTS, NAMESPACE = run_snippets(torch_snippets(PROSE))


def _smoothed_weighted_terms():
    return (WEIGHT * P_SMOOTH * -log_softmax(Z)).sum(axis=1)


LOSSES = cross_entropy_from_logits(Z, LABELS)

# expression as the chapter writes it -> (the values quoted in the prose,
# the same quantity computed with ce_tutorial and NumPy, or None).
CLAIMS = {
    'F.cross_entropy(logits, target, reduction="none")': (
        ["2.3026", "0.6931"],
        cross_entropy_from_logits(np.log(Y_HAT), Y),
    ),
    "F.cross_entropy(logits, target)": (
        ["1.4979"],
        cross_entropy_from_logits(np.log(Y_HAT), Y, reduction="mean"),
    ),
    'F.cross_entropy(logits, target, reduction="sum")': (
        ["2.9957"],
        cross_entropy_from_logits(np.log(Y_HAT), Y, reduction="sum"),
    ),
    # Quoted inline: probabilities passed where logits are expected.
    'F.cross_entropy(y_hat, target, reduction="none")': (
        ["1.3533", "0.9398"],
        cross_entropy_from_logits(Y_HAT, Y),
    ),
    'F.cross_entropy(Z, labels, reduction="none")': (
        ["0.2413", "1.5514", "0.3421", "1.0986"],
        LOSSES,
    ),
    "F.cross_entropy(Z, labels)": (["0.8084"], LOSSES.mean()),
    "F.cross_entropy(Z, labels, weight=weight)": (
        ["0.8320"],
        cross_entropy_from_logits(Z, LABELS, "mean", weight=WEIGHT),
    ),
    # weight's other rule: probability targets divide by N.
    "F.cross_entropy(Z, onehot, weight=weight)": (
        ["0.7280"],
        cross_entropy_from_logits(Z, one_hot(LABELS, 3), "mean", weight=WEIGHT),
    ),
    "F.cross_entropy(Z, labels_ignore)": (["0.5607"], LOSSES[KEEP].mean()),
    "F.cross_entropy(Z, labels_ignore, weight=weight)": (
        ["0.7766"],
        cross_entropy_from_logits(
            Z, LABELS_IGNORE, "mean", weight=WEIGHT, ignore_index=-100
        ),
    ),
    "F.cross_entropy(Z, labels, label_smoothing=0.1)": (
        ["0.8650"],
        cross_entropy_from_logits(Z, LABELS, reduction="mean", label_smoothing=0.1),
    ),
    "F.cross_entropy(Z, p_smooth)": (
        ["0.8650"],
        cross_entropy_from_logits(Z, P_SMOOTH, reduction="mean"),
    ),
    "F.cross_entropy(Z, labels, label_smoothing=0.1, weight=weight)": (
        ["0.9093"],
        cross_entropy_from_logits(
            Z, LABELS, "mean", weight=WEIGHT, label_smoothing=0.1
        ),
    ),
    "F.cross_entropy(Z, p_smooth, weight=weight)": (
        ["0.7957"],
        cross_entropy_from_logits(Z, P_SMOOTH, "mean", weight=WEIGHT),
    ),
    "F.cross_entropy(logits, torch.tensor([0, 2], dtype=torch.uint8))": (
        ["1.4979"],
        cross_entropy_from_logits(np.log(Y_HAT), Y, reduction="mean"),
    ),
}

# expression -> (exception type, message regex), as the chapter states them.
ERRORS = {
    "F.cross_entropy(logits, torch.tensor([0, -1]))": (
        IndexError,
        r"^Target -1 is out of bounds\.$",
    ),
    "F.cross_entropy(logits, torch.tensor([0, 2], dtype=torch.int32))": (
        RuntimeError,
        r"expected target dtype to be Long or Byte",
    ),
    "F.cross_entropy(Z, p_smooth, ignore_index=0)": (
        RuntimeError,
        r"ignore_index is not supported for floating point target",
    ),
}

# expressions whose result the chapter describes in words, checked here.
OTHER = {
    'F.cross_entropy(Z, labels_ignore, reduction="none")',
    "F.cross_entropy(Z, torch.full((4,), -100))",
}


def _value(expression: str):
    if expression not in RESULTS:
        # Quoted inline in the prose rather than in a code block.
        assert f"`{expression}`" in PROSE, f"{expression!r} is not in the chapter"
        return eval(expression, NAMESPACE)  # the book's own snippet
    result = RESULTS[expression]
    assert not isinstance(result, Exception), f"{expression} raised {result!r}"
    return result


def test_the_chapter_shows_torch_snippets():
    assert len(torch_snippets(PROSE)) >= 6


def test_every_snippet_expression_is_checked():
    unchecked = set(RESULTS) - set(CLAIMS) - set(ERRORS) - OTHER
    assert not unchecked, f"snippet expressions without a check: {sorted(unchecked)}"
    missing = (set(CLAIMS) - {'F.cross_entropy(y_hat, target, reduction="none")'}) | (
        set(ERRORS) | OTHER
    )
    missing -= set(RESULTS)
    assert not missing, f"checked expressions no longer in the chapter: {missing}"


@pytest.mark.parametrize("expression", sorted(CLAIMS))
def test_quoted_values(expression):
    quoted, ours = CLAIMS[expression]
    value = _value(expression)
    assert value.dtype == torch.float64
    values = np.atleast_1d(value.numpy())
    assert values.shape == (len(quoted),)
    for number, written in zip(values, quoted, strict=True):
        decimals = len(written.split(".")[1])
        assert f"{number:.{decimals}f}" == written, (expression, number)
        assert written in PROSE, f"the chapter no longer quotes {written}"
    # ce_tutorial (with NumPy for the weighting) gives the same numbers.
    np.testing.assert_allclose(values, np.atleast_1d(ours), rtol=1e-13, atol=0)


@pytest.mark.parametrize("expression", sorted(ERRORS))
def test_quoted_errors(expression):
    kind, message = ERRORS[expression]
    result = RESULTS[expression]
    assert type(result) is kind, (expression, result)
    assert re.search(message, str(result)), (expression, str(result))


def test_ignored_examples_are_zero_and_all_ignored_is_nan():
    per_example = RESULTS['F.cross_entropy(Z, labels_ignore, reduction="none")']
    expected = np.where(KEEP, LOSSES, 0.0)
    np.testing.assert_allclose(per_example.numpy(), expected, rtol=1e-13, atol=0)
    assert per_example[1].item() == 0.0
    assert math.isnan(RESULTS["F.cross_entropy(Z, torch.full((4,), -100))"].item())


def test_the_two_mean_rules_of_weight():
    # "the weighted mean divides by N, not by the targets' weights": the same
    # weighted per-example losses, two means, in PyTorch and in ce_tutorial.
    by_label = RESULTS["F.cross_entropy(Z, labels, weight=weight)"].item()
    by_target = RESULTS["F.cross_entropy(Z, onehot, weight=weight)"].item()
    weighted = WEIGHT[LABELS] * LOSSES
    assert by_label == pytest.approx(weighted.sum() / WEIGHT[LABELS].sum(), rel=1e-14)
    assert by_target == pytest.approx(weighted.mean(), rel=1e-14)
    z, onehot, weight = (NAMESPACE[k] for k in ("Z", "onehot", "weight"))
    per_example = F.cross_entropy(z, onehot, weight=weight, reduction="none")
    np.testing.assert_allclose(per_example.numpy(), weighted, rtol=1e-13)


def test_label_smoothing_and_probability_targets_agree_per_example():
    # "both routes give these same per-example values"
    z, labels, weight = (NAMESPACE[k] for k in ("Z", "labels", "weight"))
    p_smooth = NAMESPACE["p_smooth"]
    smoothing = F.cross_entropy(
        z, labels, label_smoothing=0.1, weight=weight, reduction="none"
    )
    targets = F.cross_entropy(z, p_smooth, weight=weight, reduction="none")
    np.testing.assert_allclose(smoothing.numpy(), targets.numpy(), rtol=1e-13)
    np.testing.assert_allclose(
        targets.numpy(), _smoothed_weighted_terms(), rtol=1e-13, atol=0
    )


# ---------------------------------------------------------------------------
# The interface facts the chapter states


@pytest.mark.parametrize("dtype", ["int64", "uint8"])
def test_class_indices_may_be_int64_or_uint8(dtype):
    logits = torch.log(torch.tensor(Y_HAT))
    target = torch.tensor([0, 2], dtype=getattr(torch, dtype))
    loss = F.cross_entropy(logits, target)
    assert loss.item() == pytest.approx(1.4978661367769954, rel=1e-14)


@pytest.mark.parametrize(
    "dtype", ["int8", "int16", "int32", "float32", "float64", "bool"]
)
def test_other_index_dtypes_raise(dtype):
    logits = torch.log(torch.tensor(Y_HAT))
    target = torch.tensor([0, 1], dtype=getattr(torch, dtype))
    with pytest.raises(RuntimeError, match=r"expected target dtype to be Long or Byte"):
        F.cross_entropy(logits, target)


@pytest.mark.parametrize("bad", [-1, 3])
def test_out_of_range_targets_raise_index_error(bad):
    logits = torch.log(torch.tensor(Y_HAT))
    with pytest.raises(IndexError, match=rf"^Target {bad} is out of bounds\.$"):
        F.cross_entropy(logits, torch.tensor([0, bad]))


@pytest.mark.parametrize("ignore_index", [-100, -7, -1])
def test_negative_ignore_index_is_accepted_with_probability_targets(ignore_index):
    z, p = torch.tensor(Z), torch.tensor(P_SMOOTH)
    plain = F.cross_entropy(z, p)
    assert F.cross_entropy(z, p, ignore_index=ignore_index).item() == plain.item()


@pytest.mark.parametrize("ignore_index", [0, 1, 2, 5])
def test_non_negative_ignore_index_raises_with_probability_targets(ignore_index):
    z, p = torch.tensor(Z), torch.tensor(P_SMOOTH)
    with pytest.raises(RuntimeError, match=r"ignore_index is not supported"):
        F.cross_entropy(z, p, ignore_index=ignore_index)


def test_no_chapter_imports_torch():
    # torch is checked here, never run by the book.
    for path in CHAPTERS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "code"
        )
        assert not re.search(r"^\s*(import|from)\s+torch\b", code, re.M), path.name
