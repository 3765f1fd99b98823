"""The book's code keeps the Notation page's promise for ``eps``.

``book/notation.md`` reserves eps for machine epsilon, the gap between 1 and
the next larger float of a format (``np.finfo(dtype).eps``). This test reads
every code cell of every page in ``_toc.yml`` and fails when a name that says
eps (``eps``, ``bf16_eps``, ``eps_32``, ...) is bound to anything else: by an
assignment, as a function parameter's default, as a loop variable over values
the loop spells out, or as a keyword argument. A smoothing amount, a tolerance
or a small step needs a name of its own (``smoothing``, ``tol``, ``h``).

A value is accepted when it is ``np.finfo(...).eps`` (or ``finfo(...).eps``),
or a constant expression equal to the machine epsilon of an IEEE or bfloat16
format, such as ``2.0**-7`` for bfloat16, whose epsilon NumPy cannot report.
"""

from __future__ import annotations

import ast
import json
import re

import pytest

from .test_prose import page_path, pages_for, read_page, toc_pages

# 2**-k for bfloat16 (7), float16 (10), float32 (23), float64 (52),
# x87 extended (63) and binary128 (112).
MACHINE_EPSILONS = {2.0**-k for k in (7, 10, 23, 52, 63, 112)}

_EPS_NAME = re.compile(r"^(?:\w+_)?eps(?:_\w+)?$", re.IGNORECASE)


def _is_finfo_eps(node: ast.expr) -> bool:
    """``np.finfo(x).eps``, ``numpy.finfo(x).eps`` or ``finfo(x).eps``."""
    if not (isinstance(node, ast.Attribute) and node.attr == "eps"):
        return False
    call = node.value
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "finfo"


def _constant_value(node: ast.expr) -> float | None:
    """The value of a constant arithmetic expression, or None."""
    allowed = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator, ast.unaryop)
    if not all(isinstance(n, (*allowed, ast.expr_context)) for n in ast.walk(node)):
        return None
    try:
        value = eval(compile(ast.Expression(node), "<eps>", "eval"), {}, {})
    except Exception:
        return None
    return float(value) if isinstance(value, int | float) else None


def is_machine_epsilon(node: ast.expr) -> bool:
    if _is_finfo_eps(node):
        return True
    return _constant_value(node) in MACHINE_EPSILONS


def _loop_bindings(
    target: ast.expr, iterable: ast.expr, line: int
) -> list[tuple[str, ast.expr | None, int]]:
    """The values a loop binds to its names, where the loop spells them out.

    ``for eps in (0.0, 0.1)`` binds eps to each literal element, and
    ``for name, eps in [("a", 0.1)]`` to the matching position of each tuple.
    A loop over anything else (a variable, a call) is not followed: its
    values are not in the source.
    """
    if not isinstance(iterable, ast.List | ast.Tuple | ast.Set):
        return []
    found: list[tuple[str, ast.expr | None, int]] = []
    for element in iterable.elts:
        if isinstance(target, ast.Name):
            found.append((target.id, element, line))
        elif isinstance(target, ast.Tuple) and isinstance(element, ast.Tuple):
            for name, value in zip(target.elts, element.elts, strict=False):
                if isinstance(name, ast.Name):
                    found.append((name.id, value, line))
    return found


def eps_bindings(source: str) -> list[tuple[str, ast.expr | None, int]]:
    """Every binding of an eps-like name: (name, value or None, line)."""
    found: list[tuple[str, ast.expr | None, int]] = []

    def target_names(target: ast.expr) -> list[str]:
        return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                value = node.value if isinstance(target, ast.Name) else None
                found += [(n, value, node.lineno) for n in target_names(target)]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            value = node.value if isinstance(node, ast.AnnAssign) else None
            found += [(n, value, node.lineno) for n in target_names(node.target)]
        elif isinstance(node, ast.For | ast.comprehension):
            found += _loop_bindings(node.target, node.iter, getattr(node, "lineno", 0))
        elif isinstance(node, ast.NamedExpr):
            found.append((node.target.id, node.value, node.lineno))
        elif isinstance(node, ast.FunctionDef | ast.Lambda):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = [None] * (len(positional) - len(args.defaults)) + list(
                args.defaults
            )
            pairs = list(zip(positional, defaults, strict=True))
            pairs += list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
            for arg, default in pairs:
                if default is not None:
                    found.append((arg.arg, default, default.lineno))
        elif isinstance(node, ast.Call):
            found += [(k.arg, k.value, k.value.lineno) for k in node.keywords if k.arg]
    return [(name, value, line) for name, value, line in found if _EPS_NAME.match(name)]


def misused_eps(source: str) -> list[str]:
    """Descriptions of the bindings of an eps-like name to something else."""
    problems = []
    for name, value, line in eps_bindings(source):
        if value is None:
            problems.append(f"line {line}: {name} is an augmented target")
        elif not is_machine_epsilon(value):
            problems.append(f"line {line}: {name} = {ast.unparse(value)}")
    return problems


# --------------------------------------------------------------------------
# The checker, on small cases


@pytest.mark.parametrize(
    "source",
    [
        "eps = np.finfo(np.float64).eps",
        "eps32 = np.finfo(np.float32).eps",
        "bf16_eps = 2.0**-7",
        "def f(x, eps=np.finfo(float).eps):\n    return x",
        "smoothing = 0.1\nsteps = 300\nepsilon_like = 1",
        "g(x, eps=numpy.finfo(x.dtype).eps)",
        "u = np.finfo(np.float64).eps / 2",
        "for name, eps in rows:\n    print(name, eps)",
        "for name, eps in [('f32', np.finfo(np.float32).eps)]:\n    pass",
    ],
)
def test_checker_accepts_machine_epsilons(source):
    assert misused_eps(source) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("eps = 0.1", "eps = 0.1"),
        ("eps_smooth = 1e-3", "eps_smooth = 0.001"),
        ("def smooth(y, eps=0.1):\n    return y", "eps = 0.1"),
        ("smooth(y, eps=0.05)", "eps = 0.05"),
        ("for eps in (np.finfo(float).eps, 0.1):\n    pass", "eps = 0.1"),
        ("for name, eps in [('a', 0.1)]:\n    pass", "eps = 0.1"),
        ("eps = np.finfo(float).eps\neps *= 2", "eps is an augmented target"),
        ("eps = 2.0**-8", "eps = 2.0 ** (-8)"),
        ("eps = np.finfo(np.float64).tiny", "eps = np.finfo(np.float64).tiny"),
    ],
)
def test_checker_rejects_other_values(source, problem):
    problems = misused_eps(source)
    assert len(problems) == 1 and problems[0].endswith(problem), problems


# --------------------------------------------------------------------------
# The book


def code_cells(page: str) -> list[str]:
    path = page_path(page)
    if path.suffix != ".ipynb":
        return []
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return [
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
    ]


@pytest.mark.parametrize("page", pages_for("eps"))
def test_eps_is_only_ever_machine_epsilon(page):
    problems = []
    for number, source in enumerate(code_cells(page)):
        problems += [f"code cell {number}, {p}" for p in misused_eps(source)]
    assert not problems, (
        f"{page}: eps names machine epsilon (book/notation.md); rename these:\n  "
        + "\n  ".join(problems)
    )


# --------------------------------------------------------------------------
# The glossary: one line per term, pointing to the term's home

_GLOSSARY_BLOCK = re.compile(r"^```\{glossary\}\n(?P<body>.*?)^```", re.M | re.S)
_HOME_LINK = re.compile(r"\{(?:ref|doc)\}`[^`]+`")


def glossary_entries(text: str) -> list[tuple[str, list[str]]]:
    """The (term, definition lines) of the ``glossary`` directives in ``text``.

    A term starts at the left margin; its definition is the indented lines
    below it, up to the next blank line.
    """
    entries: list[tuple[str, list[str]]] = []
    for block in _GLOSSARY_BLOCK.finditer(text):
        for paragraph in re.split(r"\n\s*\n", block["body"].strip("\n")):
            lines = paragraph.splitlines()
            if not lines or lines[0].startswith(":"):
                continue  # a directive option such as :sorted:
            entries.append((lines[0].strip(), [line.strip() for line in lines[1:]]))
    return entries


def glossary_problems(text: str) -> list[str]:
    """Why the glossary ``text`` breaks the one-line, one-home rule, if it does."""
    entries = glossary_entries(text)
    problems = [] if entries else ["no glossary entries"]
    terms = [term for term, _ in entries]
    for term, definition in entries:
        if len(definition) != 1:
            problems.append(f"{term!r}: {len(definition)} lines, not one")
        elif len(_HOME_LINK.findall(definition[0])) != 1:
            problems.append(f"{term!r}: needs exactly one {{ref}} or {{doc}} link")
    if len(set(map(str.casefold, terms))) != len(terms):
        problems.append("a term is listed twice")
    if terms != sorted(terms, key=str.casefold):
        problems.append("terms are not in alphabetical order")
    return problems


_GOOD = (
    "```{glossary}\n"
    "entropy\n  Average surprise: {ref}`sec-a`.\n\n"
    "logits\n  Raw scores: {doc}`b`.\n"
    "```\n"
)


def test_glossary_checker_accepts_one_line_with_one_link():
    assert glossary_problems(_GOOD) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_GOOD.replace("surprise:", "surprise,\n  on average:"), "2 lines, not one"),
        (_GOOD.replace("{ref}`sec-a`", "the entropy chapter"), "exactly one"),
        (_GOOD.replace("logits", "entropy"), "listed twice"),
        (_GOOD.replace("logits", "alpha"), "alphabetical"),
        ("# No glossary here\n", "no glossary entries"),
    ],
)
def test_glossary_checker_rejects(text, problem):
    assert any(problem in p for p in glossary_problems(text)), glossary_problems(text)


def test_each_glossary_entry_is_one_line_linking_to_its_home():
    glossary = page_path("book/glossary")
    problems = glossary_problems(glossary.read_text(encoding="utf-8"))
    assert not problems, f"{glossary.name}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------
# Symbols: every letter a chapter's mathematics uses is on the Notation page
#
# This checks the mechanical half of the Notation page's promise: that a
# symbol a chapter writes is listed at all. Whether it keeps the one meaning
# listed there is for a reader to judge. A symbol is a single letter, Latin
# or Greek (``\ell`` included), read with its typeface: ``x``, bold ``x``,
# calligraphic ``B`` and blackboard ``E`` are four symbols. Accents (``\hat``,
# ``\tilde``, ``\bar``) and subscripts do not make new symbols, and words set
# upright (``\text``, ``\operatorname``, ``\mathrm``, ``\texttt``) are names,
# not symbols.

_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta kappa lambda mu nu "
    "xi pi rho sigma tau phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi "
    "Sigma Phi Psi Omega ell"
).split()
# Inline mathematics may run over a line break, never over a blank line.
_MATH = re.compile(
    r"\$\$(.+?)\$\$|\$((?:[^$\n]|\n(?!\s*\n))+?)\$|^```\{math\}\n(.*?)^```", re.S | re.M
)
_INLINE_CODE = re.compile(r"``?[^`]*``?")
_WORDS = re.compile(r"\\(?:text\w*|operatorname|mathrm|label|tag)\s*\{[^{}]*\}")
_FACE = re.compile(r"\\(mathbf|boldsymbol|mathcal|mathbb)\s*\{\s*(\\?[A-Za-z]+)\s*\}")
_TOKEN = re.compile(
    r"(?P<face>@(?:mathbf|boldsymbol|mathcal|mathbb):\\?[A-Za-z]+)"
    r"|\\(?P<command>[A-Za-z]+)"
    r"|(?<![A-Za-z])(?P<letter>[A-Za-z])(?![A-Za-z])"
)


def math_symbols(markdown: str) -> set[str]:
    """The letters used as symbols in the mathematics of ``markdown``.

    Bold letters come back as ``bold x``, calligraphic and blackboard ones as
    ``cal B`` and ``bb E``, Greek ones by name (``\\alpha``).
    """
    found: set[str] = set()
    markdown = _INLINE_CODE.sub(" ", markdown)
    for match in _MATH.finditer(markdown):
        tex = _WORDS.sub(" ", next(g for g in match.groups() if g is not None))
        tex = _FACE.sub(lambda m: f" @{m[1]}:{m[2]} ", tex)
        for token in _TOKEN.finditer(tex):
            if token["face"]:
                face, letter = token["face"][1:].split(":")
                face = "bold" if face in ("mathbf", "boldsymbol") else face[4:]
                found.add(f"{face} {letter}")
            elif token["command"] in _GREEK:
                found.add("\\" + token["command"])
            elif token["letter"]:
                found.add(token["letter"])
    return found


def test_math_symbols_reads_typefaces_and_skips_words():
    text = (
        r"Let $\hat{\mathbf{y}} = \operatorname{softmax}(\mathbf{z} / T)$ and "
        r"$\mathrm{KL}(p \,\|\, q) \ge 0$, with $\mathcal{B}$ and $\ell_{\text{focal}}$"
        " and `$not math$`:\n$$\n\\mathbb{E}[L_{\\mathcal{B}}] = \\alpha\n$$ (eq-x)\n"
    )
    assert math_symbols(text) == {
        "bold y",
        "bold z",
        "T",
        "p",
        "q",
        "cal B",
        "\\ell",
        "bb E",
        "L",
        "\\alpha",
    }


@pytest.mark.parametrize("page", [p for p in toc_pages() if p != "book/notation"])
def test_every_symbol_of_a_chapter_is_on_the_notation_page(page):
    listed = math_symbols(page_path("book/notation").read_text(encoding="utf-8"))
    prose, _ = read_page(page_path(page))
    missing = sorted(math_symbols(prose) - listed)
    assert not missing, (
        f"{page} uses symbols that book/notation.md does not list: {missing}; "
        "add a row for each, with one meaning"
    )
