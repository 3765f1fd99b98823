"""The website as a reader meets it: every page of the table of contents, in
headless Chromium, at desktop and at phone width.

The pages come from ``_toc.yml``, so a chapter added there is tested too. Each
page is loaded once per width (see ``conftest.Site.visit``); the tests below
check what that visit recorded, one concern per test, so a failure names the
page and the problem. Screenshots land in ``artifacts/screenshots/``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import unquote

import pytest
import yaml

from .reader import MATHJAX_CDN, Site

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
SOURCE_SUFFIXES = {".md", ".ipynb", ".rst"}
SERIOUS = {"serious", "critical"}


def toc_pages() -> list[str]:
    """Docnames of every page listed in _toc.yml, in reading order."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(entry: dict) -> None:
        if "glob" in entry:
            raise NotImplementedError(f"glob entries are not supported: {entry}")
        if "file" in entry:
            files.append(entry["file"])
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []):
                walk(child)

    walk(toc)
    pages = []
    for file in files:
        path = PurePosixPath(file)
        pages.append(
            str(path.with_suffix("") if path.suffix in SOURCE_SUFFIXES else path)
        )
    return pages


PAGES = toc_pages()


@pytest.fixture(params=PAGES)
def page(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_toc_entry_is_a_source_file():
    assert len(PAGES) == len(set(PAGES)) > 1
    missing = [
        name
        for name in PAGES
        if not any((REPO / f"{name}{suffix}").is_file() for suffix in SOURCE_SUFFIXES)
    ]
    assert missing == []


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_page_loads(site: Site, page: str, device: str):
    visit = site.visit(page, device)
    assert visit.status == 200, f"{visit.url} answered HTTP {visit.status}"
    assert visit.screenshot is not None
    assert visit.screenshot.stat().st_size > 0


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_no_console_errors(site: Site, page: str, device: str):
    visit = site.visit(page, device)
    assert visit.console_errors == []


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_needs_no_network(site: Site, page: str, device: str):
    """Nothing outside the served book is fetched, except MathJax from its CDN,
    which the local copy must hold."""
    visit = site.visit(page, device)
    assert visit.blocked == [], "requests to the internet (blocked)"
    assert visit.missing_local == [], f"{MATHJAX_CDN} files missing locally"


def test_math_renders(site: Site, page: str):
    math = site.visit(page, "desktop").math
    if math["formulas"]:
        assert math["loaded"], "the page has formulas but MathJax did not load"
    assert math["errors"] == [], "MathJax reported errors"
    assert math["unrendered"] == [], "formulas MathJax did not typeset"
    assert math["rendered"] >= math["formulas"]
    assert math["rawTex"] == [], "TeX shown as plain text"


def test_images_load_and_have_alt_text(site: Site, page: str):
    images = site.visit(page, "desktop").images
    assert [img["src"] for img in images if not img["loaded"]] == [], "broken"
    assert [img["src"] for img in images if not (img["alt"] or "").strip()] == [], (
        "images without alt text"
    )


def test_internal_links_resolve(site: Site, page: str):
    broken = []
    for href in site.visit(page, "desktop").links:
        if not href.startswith(site.base_url):
            continue
        status, ids = site.target(href)
        fragment = unquote(href.partition("#")[2])
        if status != 200:
            broken.append(f"{href} (HTTP {status})")
        elif fragment and ids and fragment not in ids:
            broken.append(f"{href} (no element with id {fragment!r})")
    assert broken == []


def test_no_serious_accessibility_violations(site: Site, page: str):
    violations = [
        f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. "
        f"{v['nodes'][0]['target']})"
        for v in site.visit(page, "desktop").axe_violations
        if v["impact"] in SERIOUS
    ]
    assert violations == []


def test_text_does_not_scroll_sideways_on_a_phone(site: Site, page: str):
    """Wide formulas, code and tables may scroll inside their own boxes; the
    page itself must not. On failure, the message lists what sticks out."""
    overflow = site.visit(page, "phone").overflow
    assert overflow["width"] == 390
    assert overflow["scrolledX"] == 0, overflow["sticking"]
    assert overflow["scrollWidth"] <= overflow["width"], overflow["sticking"]


def test_search_finds_cross_entropy(site: Site):
    visit, results = site.search("cross-entropy")
    assert visit.status == 200
    assert visit.console_errors == []
    assert visit.blocked == []
    assert results, "the search page found nothing for 'cross-entropy'"
    found = {href.removeprefix(site.base_url).split(".html")[0] for href in results}
    assert found <= set(PAGES) | {"genindex"}, found
