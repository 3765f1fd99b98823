"""Fixes for the HTML that Jupyter Book 1 writes, found by the browser tests.

1. Each inline ``<script>`` once (a backport of Sphinx PR #13402).
   sphinx-thebe, loaded by every Jupyter Book 1 site, registers an inline
   script (``const THEBE_JS_URL = ...``) with ``app.add_js_file(None, body=...)``
   after the HTML builder exists. Sphinx 7 then hands it to the builder twice,
   once as given (file name ``None``) and once from its registry (file name
   ``""``); its duplicate check compares the names, ``None != ""``, and both
   copies reach the page, where browsers stop at the second one: "Identifier
   'THEBE_JS_URL' has already been declared". Sphinx 8.2 passes ``""`` in both
   places; Jupyter Book 1 requires Sphinx 7, so this extension does the same.

2. Bibliography entries are list items. docutils 0.21 gives each citation
   ``role="doc-biblioentry"`` inside a ``role="list"``; DPUB-ARIA 1.1
   deprecated that role, so assistive technology (and axe-core's critical
   rule aria-required-children) no longer sees list items in the list.
   ``role="listitem"`` is what DPUB-ARIA now recommends.

Delete a fix once the pinned Sphinx/docutils make it unnecessary; the browser
tests (tests/browser) will say if it still is.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.writers.html5 import HTML5Translator


class HTMLTranslator(HTML5Translator):
    """Sphinx's HTML5 translator, with citations marked up as list items."""

    def visit_citation(self, node: nodes.citation) -> None:
        super().visit_citation(node)
        self.body[-1] = self.body[-1].replace(
            'role="doc-biblioentry"', 'role="listitem"'
        )


def setup(app: Sphinx) -> dict[str, Any]:
    add_js_file = app.add_js_file

    def add_js_file_once(filename: str | None, *args: Any, **kwargs: Any) -> None:
        add_js_file(filename or "", *args, **kwargs)

    app.add_js_file = add_js_file_once  # type: ignore[method-assign]
    # The theme (pydata-sphinx-theme) later mixes its own HTML into this class.
    for builder in ("html", "dirhtml", "singlehtml"):
        app.set_translator(builder, HTMLTranslator)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
