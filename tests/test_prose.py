"""Every number the prose states is computed by the chapter that states it.

For each page in ``_toc.yml`` this test reads the prose (the markdown cells of a
notebook and its figures' captions and alt text, or the whole text of a ``.md``
page) and finds every decimal number, percentage, power of ten and integer from
100 up, and every other number with three or more significant digits:
``0.8084``, ``0.91``, ``4.3``, ``2.30258509``, ``1,797``, ``300``,
``50 257``, ``58%``, ``96.7%``, ``2.68 \\times 10^{3}``, ``1.5e-8``, ``10^{-10}``.
Integers below 100 (``8 x 8``, ``10 classes``) are counts and names, and
are not read. A number passes if a
code cell of the same page, in its source or its stored text output, contains a
number that equals it after rounding to the precision the prose writes, and
that is itself written at least as precisely. So ``0.8084`` is supported by an
output ``0.80840516`` but not by ``0.808``. A number inserted with MyST-NB's
``{glue}`` role is computed by construction and is not read.

What is *not* prose, and is skipped: URLs and link targets, the targets of
roles such as ``{cite:p}``, ``{doc}`` and ``{eq}``, labels (``(sec-x)=``,
``:label:``, equation labels), the argument of ``{solution-start}``-style
directives, version numbers such as ``2.13.0``, years in citations such as
``Szegedy et al. (2016)``, digits that are part of a name (``float64``,
``log_2``) and signs (the check compares magnitudes). Numbers inside inline code
and fenced code in the prose *are* checked: a quoted output is a claim too.

The page list comes from ``_toc.yml``, so a new chapter is checked as soon as
it is added to the book. ``ALLOWLIST`` holds the few true constants that no
cell could compute, each with its reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (page, number as written) -> why no cell computes it. Keep it short: a number
# that a cell could print belongs in a cell.
ALLOWLIST: dict[tuple[str, str], str] = {
    ("intro", "3.11"): "the oldest Python version the book supports: a requirement",
}


# Pages that break a rule of this module today and are being fixed on a branch
# in flight (issue 17 and the chapters it shares with other issues). Each is an
# expected failure, and a strict one: a page that starts passing fails the
# suite until it is taken off this list. The list is empty when issue 17 is
# done; do not add to it.
PENDING: dict[str, set[str]] = {
    "numbers": set(),
    "words": set(),
    "eps": set(),  # tests/test_notation.py
}

# The most words of prose a page may have: a chapter a learner reads in one
# sitting. Code, outputs and mathematics are not counted (see prose_words).
WORD_BUDGET = 3000


def toc_pages() -> list[str]:
    """The pages of the book, in ``_toc.yml`` order, e.g. ``book/gradient``."""
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    pages = re.findall(r"^\s*(?:root|-\s*file)\s*:\s*(\S+)\s*$", text, re.MULTILINE)
    return list(dict.fromkeys(pages))


def page_path(page: str) -> Path:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{page}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"{page} from _toc.yml has no .ipynb or .md file")


# --------------------------------------------------------------------------
# Reading a page


def _text(value: str | list[str]) -> str:
    return value if isinstance(value, str) else "".join(value)


_VEGA_LITE = "https://vega.github.io/schema/vega-lite/"


def read_page(path: Path) -> tuple[str, str]:
    """Return the page's prose and the text of its code (sources and outputs)."""
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8"), ""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    prose, code = [], []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            prose.append(_text(cell["source"]))
        elif cell["cell_type"] == "code":
            # A figure's caption and alt text are prose too.
            mystnb = cell.get("metadata", {}).get("mystnb", {})
            prose.append(mystnb.get("figure", {}).get("caption", ""))
            prose.append(mystnb.get("image", {}).get("alt", ""))
            code.append(_text(cell["source"]))
            for output in cell.get("outputs", []):
                if "text" in output:
                    code.append(_text(output["text"]))
                for mime, data in output.get("data", {}).items():
                    # An interactive chart's HTML embeds thousands of numbers,
                    # its precomputed states, which would "support" almost any
                    # number in the prose: a chart supports nothing.
                    if mime.startswith("text/") and _VEGA_LITE not in _text(data):
                        code.append(_text(data))
    return "\n\n".join(prose), "\n".join(code)


# --------------------------------------------------------------------------
# Finding numbers

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")
_SEPARATOR = r"(?:,|\u202f|\u2009|\u00a0|\\,|\{,\}|\\ | )"  # 50,257  50 257  50\,257
_MANTISSA = (
    rf"(?:\d{{1,3}}(?:{_SEPARATOR}\d{{3}})+(?![\d.,]\d)(?:\.\d+)?"  # grouped
    r"|\d+\.\d+|\d+|\.\d+)"
)
_POWER = r"(?:\{[-+]?\d+\}|[-+]?\d)"
_NUMBER = re.compile(
    rf"(?<![\w.\\])(?P<mantissa>{_MANTISSA})"
    rf"(?:(?P<e>[eE][-+]?\d+)"  # 1.5e-8
    # 5 \times 10^{-324}, 5 \u00d7 10^{-324}, 5 \cdot 10^{-324}
    rf"|\s*(?:\\times|\u00d7|\\cdot|\u00b7)\s*10\s*\^\s*(?P<times10>{_POWER})"
    rf"|\s*\^\s*(?P<power>{_POWER}))?"  # 10^{-300}, 2^{10}
    r"(?P<percent>\s*(?:\\%|%))?"
    r"(?![\w])"
)
_VERSION = re.compile(r"(?<![\w.])\d+\.\d+\.\d+(?:\.\d+)*(?![\w])")
_CITATION_YEAR = re.compile(
    r"(?:et al\.?,?\s*\(?|[A-Z][\w-]+,?\s+\(|\()(?:19|20)\d\d[a-z]?(?=[\s);,.:])"
)


@dataclass(frozen=True)
class Number:
    """A number as written: its value, its significant digits and its unit.

    ``unit`` is the place value of the last written digit: 0.8084 has unit 1e-4,
    1797 has unit 1 and 2680 has unit 10 (trailing zeros of an integer are not
    counted as significant).
    """

    text: str
    value: Decimal
    digits: int
    unit: Decimal
    start: int = 0
    percent: bool = False
    decimal: bool = False  # written with a decimal point or a power of ten


def _mantissa_digits(mantissa: str) -> tuple[Decimal, int, int]:
    """Value, significant digits and exponent of the unit of a plain mantissa."""
    digits_only = re.sub(r"[^\d.]", "", mantissa)
    value = Decimal(digits_only)
    if "." in digits_only:
        whole, frac = digits_only.split(".")
        significant = (whole + frac).lstrip("0")
        return value, len(significant), -len(frac)
    stripped = digits_only.lstrip("0")
    trailing = len(stripped) - len(stripped.rstrip("0"))
    return value, len(stripped.rstrip("0")), trailing


def _power(text: str) -> int:
    return int(text.strip("{}"))


def parse_numbers(text: str, *, grouping: bool = True) -> list[Number]:
    """Every number written in ``text``, with its written precision.

    Numbers with a power of another base (``2^{10}``) are returned with zero
    significant digits, so they are never checked. ``grouping=False`` reads
    ``1 000`` as two numbers, as code and its outputs do.
    """
    text = _SUPERSCRIPT_RUN.sub(  # 10⁻³²⁴ -> 10^{-324}
        lambda m: "^{" + m[0].translate(_SUPERSCRIPTS) + "}", text
    ).replace("\u2212", "-")  # a minus sign
    numbers = []
    pattern = _NUMBER
    if not grouping:
        pattern = re.compile(_NUMBER.pattern.replace(_SEPARATOR, "(?:,)"))
    for match in pattern.finditer(text):
        value, digits, unit_exp = _mantissa_digits(match["mantissa"])
        if match["e"] or match["times10"]:
            exponent = int(match["e"][1:]) if match["e"] else _power(match["times10"])
            value = value.scaleb(exponent)
            unit_exp += exponent
        elif match["power"]:
            base = value
            value = Decimal(1).scaleb(_power(match["power"]))
            value = value if base == 10 else Decimal("NaN")
            digits, unit_exp = (1, _power(match["power"])) if base == 10 else (0, 0)
        numbers.append(
            Number(
                text=match[0].strip(),
                value=value,
                digits=digits,
                unit=Decimal(1).scaleb(unit_exp),
                start=match.start(),
                percent=bool(match["percent"]),
                decimal="." in match["mantissa"]
                or bool(match["e"] or match["times10"])
                or (bool(match["power"]) and digits > 0),
            )
        )
    return numbers


_ROLE = re.compile(r"\{(?!math\})[\w:-]+\}`[^`]*`")  # {cite:p}`x`, {glue:text}`k`
_LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
_LABEL_LINE = re.compile(r"^\s*\([\w:-]+\)=\s*$", re.MULTILINE)
_EQUATION_LABEL = re.compile(r"\$\$\s*\([\w:-]+\)")
_OPTION_LINE = re.compile(r"^\s*:[\w-]+:.*$", re.MULTILINE)
_SOLUTION_FENCE = re.compile(r"^(\s*(?:`{3,}|:{3,})\{solution[\w-]*\}).*$", re.M)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_SUBSCRIPT = re.compile(r"_(?:\{[^{}]*\}|\w+)")


def prose_only(markdown: str) -> str:
    """Blank out what is not prose, keeping every other character in place."""

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match[0])

    for pattern in (
        _HTML_COMMENT,
        _ROLE,
        _LINK_TARGET,
        _LABEL_LINE,
        _EQUATION_LABEL,
        _OPTION_LINE,
        _VERSION,
        _CITATION_YEAR,
        _SUBSCRIPT,
    ):
        markdown = pattern.sub(blank, markdown)
    return _SOLUTION_FENCE.sub(lambda m: m[1] + blank(m)[len(m[1]) :], markdown)


def is_checked(number: Number) -> bool:
    """Whether the prose's ``number`` must be printed by a cell of its page.

    Every decimal number (``0.91``, ``4.3``), every percentage (``58%``), every
    power of ten (``1e-8``, ``10^{-10}``), every integer from 100 up, and
    anything else with three or more significant digits. Integers below 100
    (``8 x 8 pixels``, ``10 classes``, ``step 3``) are counts and names,
    and a power of another base (``2^{10}``) is not read.
    """
    if number.digits == 0 or not number.value.is_finite():
        return False
    return (
        number.digits >= 3
        or number.decimal
        or number.percent
        or abs(number.value) >= 100
    )


def checked_numbers(markdown: str) -> list[Number]:
    """The numbers of the prose that a cell of the page must print."""
    return [n for n in parse_numbers(prose_only(markdown)) if is_checked(n)]


def supports(candidate: Number, claim: Number) -> bool:
    """Whether ``candidate``, rounded to the claim's precision, is the claim.

    A percentage is supported by the number itself or by the fraction: 96.7%
    by ``96.7`` or by ``0.967``.
    """
    if not candidate.value.is_finite():
        return False
    for shift in (0, -2) if claim.percent else (0,):
        value, unit = claim.value.scaleb(shift), claim.unit.scaleb(shift)
        if (
            candidate.unit <= unit
            and abs(abs(candidate.value) - abs(value)) <= unit / 2
        ):
            return True
    return False


def unsupported(markdown: str, code: str) -> list[Number]:
    """The checked numbers of ``markdown`` that no number of ``code`` supports."""
    candidates = parse_numbers(code, grouping=False)
    return [
        claim
        for claim in checked_numbers(markdown)
        if not any(supports(c, claim) for c in candidates)
    ]


def sentence_around(text: str, position: int) -> str:
    """The sentence (roughly) that contains ``text[position]``, on one line."""
    boundary = re.compile(r"(?<=[.!?:])\s+(?=[A-Z`$(*])|\n\s*\n")
    start = 0
    for match in boundary.finditer(text, 0, position):
        start = match.end()
    end_match = boundary.search(text, position)
    end = end_match.start() if end_match else len(text)
    sentence = " ".join(text[start:end].split())
    return sentence if len(sentence) <= 240 else sentence[:237] + "..."


# --------------------------------------------------------------------------
# The checker, on small cases


@pytest.mark.parametrize(
    ("prose", "code"),
    [
        ("The mean is 0.8084.", "print(x)\n0.80840516"),  # rounds to it
        ("The mean is 0.8084.", "mean: 0.8084"),
        ("About 2680 of them.", "2.68e+03"),  # unit 10 on both sides
        ("We keep 1,797 digits.", "(1797, 64)"),
        ("The 50 257 tokens.", "V = 50257"),
        ("Accuracy 96.7% on the test set.", "test acc 0.967"),
        ("A step of $2.22 \\times 10^{-16}$.", "2.22e-16"),
        ("It is $-0.450$ here.", "[-0.45  0.15]  # 0.450"),
        ("The sum is $-2.996$.", "2.99573227"),
    ],
)
def test_checker_accepts_a_number_a_cell_prints(prose, code):
    assert checked_numbers(prose), "the example should contain a checked number"
    assert unsupported(prose, code) == []


@pytest.mark.parametrize(
    ("prose", "code", "number"),
    [
        ("The mean is 0.8085.", "0.80840516", "0.8085"),  # rounds to 0.8084
        ("The mean is 0.80840.", "0.8084", "0.80840"),  # output less precise
        ("We keep 1,798 digits.", "(1797, 64)", "1,798"),
        ("Accuracy 96.8% on the test set.", "test acc 0.967", "96.8%"),
        ("See `F.cross_entropy(...)`, which returns `0.8320`.", "0.8084", "0.8320"),
        ("The step is $5.01 \\times 10^{-324}$.", "5e-324", "5.01 \\times 10^{-324}"),
    ],
)
def test_checker_rejects_a_number_no_cell_prints(prose, code, number):
    assert [n.text for n in unsupported(prose, code)] == [number]


@pytest.mark.parametrize(
    "prose",
    [
        "Small counts: 8 x 8 pixels, 10 classes, step 3, 64 features, 99 runs.",
        "A power of another base: $2^{10}$ and $2^{-52}$.",
        "PyTorch 2.13.0 and scikit-learn 1.9.1 are versions.",
        "As shown by {cite:t}`szegedy2016rethinking` and Szegedy et al. (2016).",
        "See [the docs](https://example.org/v/123.456) and {eq}`eq-x-123`.",
        "(sec-training-125)=\n# Title",
        "```{solution-start} ex-gradient-123\n:class: dropdown\n```",
        "$$\nx = 1\n$$ (eq-x-345)",
        "Types `float64` and $\\log_{256} x$, with $x_{123}$ and $2^{10}$.",
    ],
)
def test_checker_skips_what_is_not_a_checked_number(prose):
    assert checked_numbers(prose) == []


@pytest.mark.parametrize(
    ("prose", "written"),
    [
        ("Two significant digits: 2.3 and 0.91.", ["2.3", "0.91"]),
        ("One digit: 0.5, 4.0 and 1e-300.", ["0.5", "4.0", "1e-300"]),
        ("Percentages: 97% and 5\\%.", ["97%", "5\\%"]),
        (
            "Powers of ten: $10^{-10}$, $5 \\times 10^{-324}$.",
            ["10^{-10}", "5 \\times 10^{-324}"],
        ),
        ("Large counts: 100 runs, 300 steps, 1,797 digits.", ["100", "300", "1,797"]),
    ],
)
def test_checker_reads_every_decimal_percentage_and_integer_from_100(prose, written):
    assert [n.text for n in checked_numbers(prose)] == written


def test_checker_reads_scientific_and_grouped_forms():
    values = {
        n.text: (n.value, n.digits)
        for n in checked_numbers(
            "Values 2.30258509, 1.23e-5, $4.56 \\times 10^{-7}$, 50,257 and 12.5%."
        )
    }
    assert values["2.30258509"] == (Decimal("2.30258509"), 9)
    assert values["1.23e-5"] == (Decimal("1.23e-5"), 3)
    assert values["4.56 \\times 10^{-7}"] == (Decimal("4.56e-7"), 3)
    assert values["50,257"] == (Decimal(50257), 5)
    assert values["12.5%"] == (Decimal("12.5"), 3)


def test_captions_and_alt_text_are_prose(tmp_path):
    cell = {
        "cell_type": "code",
        "metadata": {
            "mystnb": {
                "figure": {"caption": "The loss reaches 0.1234."},
                "image": {"alt": "A curve ending at 5.678."},
            }
        },
        "source": "print(0.12341)",
        "outputs": [],
    }
    path = tmp_path / "page.ipynb"
    path.write_text(json.dumps({"cells": [cell]}), encoding="utf-8")
    prose, code = read_page(path)
    assert [n.text for n in unsupported(prose, code)] == ["5.678"]


def test_toc_lists_the_chapters():
    pages = toc_pages()
    assert "book/intro" in pages
    assert "book/gradient" in pages
    for page in pages:
        page_path(page)  # every page exists


# --------------------------------------------------------------------------
# Counting words

_FENCE = re.compile(r"^(`{3,}|~{3,})(?P<info>[^\n]*)\n.*?^\1\s*$", re.M | re.S)
_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<!\\)\$[^$\n]+?\$")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+(?:['\u2019-][A-Za-z\u00c0-\u024f]+)*")


def prose_words(markdown: str) -> int:
    """The number of words a reader reads in ``markdown``.

    A word is a run of letters, with inner apostrophes and hyphens
    (``don't``, ``log-sum-exp``). Not counted: code blocks (but the text of a
    MyST directive such as an exercise or a figure caption is), display
    mathematics, comments, labels, directive options, and the targets of
    roles and links.
    Inline code and inline mathematics count as one word each, whatever their
    length, as a reader reads them.
    """

    def keep_directive(match: re.Match[str]) -> str:
        if match["info"].strip().startswith("{") and not match[
            "info"
        ].strip().startswith(("{math}", "{code", "{literalinclude}")):
            return match[0]  # the body of a directive is prose
        return " "

    text = _FENCE.sub(keep_directive, markdown)
    text = re.sub(r"\$\$\s*\([\w:-]+\)", "$$", text)  # equation labels
    text = _DISPLAY_MATH.sub(" ", text)
    text = re.sub(r"\{math\}`[^`]*`", " ", text)
    text = _INLINE_MATH.sub(" math ", text)
    for pattern in (_HTML_COMMENT, _LABEL_LINE, _OPTION_LINE, _LINK_TARGET):
        text = pattern.sub(" ", text)
    # {ref}`the text <target>` reads "the text"; {ref}`target` reads as a title.
    text = re.sub(r"\{[\w:-]+\}`([^`<]*)<[^`>]*>`", r"\1", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ref ", text)
    text = re.sub(r"^\s*(?:`{3,}|:{3,})\{[\w-]+\}.*$", " ", text, flags=re.M)
    text = _INLINE_CODE.sub(" code ", text)
    return len(_WORD.findall(text))


@pytest.mark.parametrize(
    ("markdown", "words"),
    [
        ("The loss is small.", 4),
        ("A log-sum-exp and don't.", 4),
        ("The loss $\\ell = -\\log \\hat{y}_y$ of one example.", 6),
        ("Call `cross_entropy_from_logits(z, y)` here.", 3),
        ("Text\n\n$$\na + b = c\n$$ (eq-x)\n\nmore", 2),
        ("See {doc}`stability` and {ref}`the step <sec-x>`.", 5),
        ("```python\nx = loss(a, b)\n```\nDone.", 1),
        ("```{exercise}\n:label: ex-1\nShow that it holds.\n```", 4),
        ("<!-- a note -->\n(sec-a)=\n# Title here", 2),
    ],
)
def test_prose_words_counts_what_a_reader_reads(markdown, words):
    assert prose_words(markdown) == words


# --------------------------------------------------------------------------
# The book


def pages_for(rule: str) -> list:
    """``toc_pages()``, with the pages pending for ``rule`` as strict xfails."""
    reason = f"being fixed on a branch for {rule!r} (issue 17); see PENDING"
    return [
        pytest.param(page, marks=pytest.mark.xfail(reason=reason, strict=True))
        if page in PENDING[rule]
        else page
        for page in toc_pages()
    ]


def test_pending_lists_only_pages_of_the_book():
    pages = set(toc_pages())
    for rule, pending in PENDING.items():
        assert pending <= pages, f"PENDING[{rule!r}] names {pending - pages}"


@pytest.mark.parametrize("page", pages_for("words"))
def test_each_page_is_read_in_one_sitting(page):
    prose, _ = read_page(page_path(page))
    words = prose_words(prose)
    assert words <= WORD_BUDGET, (
        f"{page} has {words:,} words of prose, over the budget of {WORD_BUDGET:,}: "
        "split it, or move what belongs elsewhere"
    )


@pytest.mark.parametrize("page", pages_for("numbers"))
def test_numbers_in_prose_are_computed_by_the_page(page):
    path = page_path(page)
    prose, code = read_page(path)
    name = path.stem
    missing = [n for n in unsupported(prose, code) if (name, n.text) not in ALLOWLIST]
    report = "\n".join(
        f"  {name}: {n.text!r} in: {sentence_around(prose, n.start)}" for n in missing
    )
    assert not missing, (
        f"{len(missing)} number(s) in the prose of {path.name} that no code cell "
        "or output of the page prints (print it in a cell, or glue it):\n" + report
    )


def test_allowlist_entries_are_still_used():
    for (name, number), reason in ALLOWLIST.items():
        assert reason.strip(), f"allowlist entry {(name, number)} needs a reason"
        pages = [p for p in toc_pages() if Path(p).name == name]
        assert pages, f"allowlist entry for {name}, which is not in _toc.yml"
        prose, _ = read_page(page_path(pages[0]))
        written = [n.text for n in checked_numbers(prose)]
        assert number in written, f"{number!r} no longer appears in {name}: remove it"
