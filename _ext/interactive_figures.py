"""One figure per interactive chart on the website.

An interactive figure's code cell ends with two outputs: a still PNG of the
chart (drawn by vl-convert), which every notebook viewer shows, including
those that run no JavaScript, and Altair's HTML, whose script loads Vega and
draws the chart. MyST-NB wraps each output of a cell that has a ``figure``
caption in a figure of its own, so the page would get two figures, two
captions and two figure numbers for one chart.

This transform runs while a page is read, before Sphinx numbers its figures:
when a figure holding only a still image is followed by a figure holding an
Altair chart (``altair-viz-`` in its HTML), it moves the image into the
chart's figure, ahead of the chart, and drops the first figure with its
caption. The website then has one figure with one caption; the still image is
what a reader without JavaScript sees, and the stylesheet
(``_static/ce-tutorial.css``) hides it once vega-embed has drawn the chart.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

ALTAIR_MARK = "altair-viz-"


def _bundle(figure: nodes.figure) -> nodes.container | None:
    """The MyST-NB mime bundle a figure wraps, if it wraps exactly one."""
    bundles = [
        child
        for child in figure.children
        if isinstance(child, nodes.container)
        and child.get("nb_element") == "mime_bundle"
    ]
    return bundles[0] if len(bundles) == 1 else None


def _by_mime(bundle: nodes.container) -> dict[str, nodes.container]:
    return {
        child["mime_type"]: child
        for child in bundle.children
        if isinstance(child, nodes.container) and "mime_type" in child
    }


def _is_chart(figure: nodes.Node) -> bool:
    bundle = _bundle(figure) if isinstance(figure, nodes.figure) else None
    html = _by_mime(bundle).get("text/html") if bundle else None
    return html is not None and ALTAIR_MARK in html.astext()


class MergeStillIntoChart(SphinxTransform):
    """Move a chart's still PNG into the chart's figure; drop the PNG's figure."""

    default_priority = 200

    def apply(self, **kwargs: Any) -> None:
        for figure in list(self.document.findall(nodes.figure)):
            bundle = _bundle(figure)
            if bundle is None or figure.parent is None:
                continue
            mimes = _by_mime(bundle)
            if "image/png" not in mimes or "text/html" in mimes:
                continue
            siblings = figure.parent.children
            index = siblings.index(figure)
            chart = siblings[index + 1] if index + 1 < len(siblings) else None
            if chart is None or not _is_chart(chart):
                continue
            images = list(mimes["image/png"].findall(nodes.image))
            for image in images:
                image.parent.remove(image)
                image["classes"].append("chart-still")
            chart[0:0] = images
            figure.parent.remove(figure)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_transform(MergeStillIntoChart)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
