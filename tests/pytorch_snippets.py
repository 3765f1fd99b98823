"""Run the PyTorch code that a chapter shows, for the tests that check it.

The chapters never import torch: their PyTorch code sits in fenced ``python``
blocks of the prose. :func:`run_snippets` runs those blocks in order, like a
REPL, and records for each top-level expression its value (or the exception it
raised) and the warnings it emitted, so that a test can assert what the
chapter says about them. (``tests/test_pytorch_claims.py`` does the same for
``book/in_practice.ipynb``, with its own copy of these few lines.)
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"


@dataclass
class Result:
    """What one expression of a snippet gave: a value or an error, and warnings."""

    value: object = None
    error: Exception | None = None
    warnings: list[str] = field(default_factory=list)


def chapter_markdown(name: str) -> str:
    """The markdown cells of ``book/<name>.ipynb``, joined."""
    cells = json.loads((BOOK / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    return "\n\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
    )


def torch_snippets(markdown: str) -> list[str]:
    """The fenced Python blocks of the prose that use torch, in order."""
    blocks = re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
    return [b for b in blocks if "torch" in b or re.search(r"\bF\.", b)]


def run_snippets(snippets: list[str], chapter: str) -> tuple[dict[str, Result], dict]:
    """Run the snippets in one namespace; map each expression to its ``Result``."""
    namespace: dict = {}
    results: dict[str, Result] = {}
    filename = f"<{chapter} snippet>"
    for block in snippets:
        for statement in ast.parse(block).body:
            source = ast.get_source_segment(block, statement)
            if not isinstance(statement, ast.Expr):
                module = ast.Module(body=[statement], type_ignores=[])
                exec(compile(module, filename, "exec"), namespace)  # the book's code
                continue
            result = Result()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result.value = eval(  # the book's own snippet
                        compile(ast.Expression(statement.value), filename, "eval"),
                        namespace,
                    )
                except Exception as exc:  # recorded, checked by the tests
                    result.error = exc
            result.warnings = [str(w.message) for w in caught]
            results[source] = result
    return results, namespace
