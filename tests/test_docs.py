"""Every public name has a numpydoc docstring that teaches.

The examples themselves run as doctests (``--doctest-modules`` collects
``ce_tutorial/``); here we check that the sections are there.
"""

from __future__ import annotations

import inspect
import itertools
import re

import pytest

import ce_tutorial

SECTIONS = ["Parameters", "Returns", "Raises", "Examples"]


def _section_titles(doc: str) -> list[str]:
    """numpydoc section titles: a line followed by a line of dashes as long."""
    lines = inspect.cleandoc(doc).splitlines()
    return [
        title.strip()
        for title, rule in itertools.pairwise(lines)
        if re.fullmatch(r"-{3,}", rule.strip())
        and len(rule.strip()) == len(title.strip())
    ]


def test_all_lists_only_existing_names():
    assert sorted(ce_tutorial.__all__) == sorted(set(ce_tutorial.__all__))
    for name in ce_tutorial.__all__:
        assert hasattr(ce_tutorial, name), name


@pytest.mark.parametrize("name", ce_tutorial.__all__)
def test_public_docstrings_have_the_numpydoc_sections(name):
    doc = getattr(ce_tutorial, name).__doc__
    assert doc, f"{name} has no docstring"
    titles = _section_titles(doc)
    missing = [s for s in SECTIONS if s not in titles]
    assert not missing, f"{name} lacks {missing}"
    # In numpydoc's order.
    order = [titles.index(s) for s in SECTIONS]
    assert order == sorted(order), f"{name}: sections out of order {titles}"


@pytest.mark.parametrize("name", ce_tutorial.__all__)
def test_examples_are_doctests(name):
    # The Examples section calls the function itself, as a doctest.
    doc = inspect.cleandoc(getattr(ce_tutorial, name).__doc__)
    examples = doc.split("Examples\n--------", 1)[1]
    assert re.search(rf"^>>> .*\b{name}\(", examples, flags=re.MULTILINE), name


def test_public_functions_have_type_hints():
    for name in ce_tutorial.__all__:
        hints = getattr(ce_tutorial, name).__annotations__
        assert "return" in hints, name
