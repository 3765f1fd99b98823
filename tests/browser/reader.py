"""How the browser tests read a page: one visit per page and device, with
every request routed and every check's raw data collected.

Every request a page makes goes through one router: pages, styles and images
come from the local server, MathJax's CDN and the CDN of Vega, Vega-Lite and
vega-embed (which the interactive figures load) are answered from the copies
that ``npm ci`` installs in ``tests/browser/node_modules``, and anything else
is refused and recorded, so a page that needs the internet fails its test.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

HERE = Path(__file__).resolve().parent

CHROMIUM = Path("/usr/bin/chromium")
MATHJAX_LOCAL = HERE / "node_modules" / "mathjax"
# Where the built pages load MathJax 3 from (sphinx.ext.mathjax's MATHJAX_URL,
# https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js); its fonts and
# lazily loaded TeX extensions live under the same prefix.
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/"

# Altair's chart HTML loads vega@6, vega-lite@<exact version> and vega-embed@7
# from jsDelivr (for example ``.../npm/vega-lite@6.4.1?noext``). jsDelivr
# answers a bare package URL with the file its package.json names in
# ``jsdelivr``; the router does the same from node_modules, and only when the
# local copy's version matches what the page asked for.
NPM_CDN = "https://cdn.jsdelivr.net/npm/"
VEGA_PACKAGES = ("vega", "vega-lite", "vega-embed")
_NPM_URL = re.compile(r"(?P<name>[a-z-]+)@(?P<range>[\d.]+)(?P<path>/[^?#]*)?")


def vega_package(url: str) -> re.Match[str] | None:
    """The package, version range and path of a jsDelivr URL of a Vega package."""
    if not url.startswith(NPM_CDN):
        return None
    match = _NPM_URL.fullmatch(unquote(urlsplit(url).path).removeprefix("/npm/"))
    return match if match and match["name"] in VEGA_PACKAGES else None


def local_npm_file(url: str) -> Path | None:
    """The node_modules file that answers a jsDelivr URL of a Vega package,
    or None if the URL names another package, a version we do not hold, or a
    file outside the package."""
    match = vega_package(url)
    if match is None:
        return None
    root = HERE / "node_modules" / match["name"]
    manifest = root / "package.json"
    if not manifest.is_file():
        return None
    package = json.loads(manifest.read_text(encoding="utf-8"))
    wanted, held = match["range"].split("."), package["version"].split(".")
    if held[: len(wanted)] != wanted:  # "6" matches 6.4.0; "6.4.1" only 6.4.1
        return None
    path = (match["path"] or "").lstrip("/") or package["jsdelivr"]
    local = (root / path).resolve()
    return local if local.is_file() and local.is_relative_to(root) else None


# Added to every page before its scripts run: when vega-embed defines the
# global ``vegaEmbed``, wrap it so that every chart's Vega view (the API the
# figure tests read the drawn data from) is kept in ``window.ceCharts``.
CAPTURE_VIEWS_JS = """
(() => {
  window.ceCharts = [];
  let embed;
  Object.defineProperty(window, 'vegaEmbed', {
    configurable: true,
    get: () => embed,
    set: (original) => {
      embed = Object.assign((el, spec, options) => original(el, spec, options)
        .then((result) => {
          window.ceCharts.push({ el, view: result.view, spec });
          return result;
        }), original);
    },
  });
})();
"""

# Waits until every chart on the page (Altair writes each as a div whose id
# starts with altair-viz-) has been drawn by vega-embed, then describes each:
# what it drew and how many bytes of data the page embedded for it.
CHARTS_JS = r"""
async () => {
  const expected = document.querySelectorAll('div[id^="altair-viz-"]').length;
  const deadline = Date.now() + 20000;
  while (window.ceCharts.length < expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    expected,
    charts: window.ceCharts.map(({ el, view, spec }) => {
      const svg = el.querySelector('svg');
      const canvas = el.querySelector('canvas');
      return {
        id: el.id,
        svgMarks: svg ? svg.querySelectorAll('path, rect, line, text').length : 0,
        canvas: canvas ? canvas.width * canvas.height : 0,
        label: view.container()?.getAttribute('aria-label') ?? null,
        dataBytes: JSON.stringify([spec.data ?? null, spec.datasets ?? null]).length,
      };
    }),
  };
}
"""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    # Without these, Chromium phones home at start-up; on a closed network
    # those connections are refused and slow every launch down.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
]

DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
    },
}

# Waits until MathJax (if the page loads it) has typeset everything, then
# describes every formula: Sphinx writes each one as span.math or div.math,
# which MathJax must turn into an mjx-container without an error node.
MATH_JS = r"""
async () => {
  const mj = window.MathJax;
  const loaded = Boolean(mj && mj.startup && mj.startup.promise);
  if (loaded) { await mj.startup.promise; }
  await document.fonts.ready;
  const formulas = [...document.querySelectorAll('span.math, div.math')];
  const short = (s) => s.replace(/\s+/g, ' ').trim().slice(0, 80);
  const unrendered = formulas
    .filter((el) => !el.querySelector('mjx-container'))
    .map((el) => short(el.textContent));
  // TeX errors (merror), and unknown macros, which MathJax's noundefined
  // extension shows as red text instead of failing.
  const errors = [];
  for (const item of loaded ? mj.startup.document.math : []) {
    item.root.walkTree((node) => {
      const text = node.childNodes[0]?.getText?.() ?? '';
      if (node.isKind('merror')) {
        errors.push(`${short(item.math)}: ${node.attributes.get('data-mjx-error')}`);
      } else if (node.isKind('mtext') && node.attributes.get('mathcolor') === 'red'
                 && text.startsWith('\\')) {
        errors.push(`${short(item.math)}: undefined control sequence ${text}`);
      }
    });
  }
  // TeX left as plain text outside code: math MyST did not recognise.
  const walker = document.createTreeWalker(
    document.querySelector('main') || document.body, NodeFilter.SHOW_TEXT);
  const tex =
    /\$\$|\\\(|\\\[|\\(frac|sum|log|hat|mathbf|boldsymbol|begin)\b/;
  const rawTex = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement.closest(
      'pre, code, script, style, textarea, mjx-container, .math, .highlight')) {
      continue;
    }
    if (tex.test(n.textContent)) { rawTex.push(short(n.textContent)); }
  }
  return {
    loaded,
    formulas: formulas.length,
    rendered: document.querySelectorAll('mjx-container').length,
    unrendered, errors, rawTex,
  };
}
"""

# Every image, made to load now (not lazily), with whether it decoded.
IMAGES_JS = """
async () => {
  const imgs = [...document.images];
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map((img) => img.decode().catch(() => null)));
  return imgs.map((img) => ({
    src: img.currentSrc || img.src,
    alt: img.getAttribute('alt'),
    loaded: img.complete && img.naturalWidth > 0,
  }));
}
"""

# axe-core scans the whole page except MathJax's output: thousands of custom
# elements per chapter that inherit the text colour and would double the scan
# time; MathJax ships its own assistive MathML for screen readers.
AXE_CONTEXT = {"exclude": [["mjx-container"]]}
AXE_OPTIONS = {"resultTypes": ["violations"]}

LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map((a) => a.href)"

# Tries to scroll the page sideways and lists visible elements that stick out
# to the right without a scrolling (or clipping) box of their own to hold them.
OVERFLOW_JS = r"""
() => {
  const doc = document.documentElement;
  const width = doc.clientWidth;
  const y = window.scrollY;
  window.scrollTo(10 * width, y);
  const scrolledX = window.scrollX;
  window.scrollTo(0, y);
  // Held: inside a box that scrolls or clips sideways and itself fits.
  const held = (el) => {
    for (let p = el.parentElement; p && p !== doc; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible'
          && p.getBoundingClientRect().right <= width + 1) {
        return true;
      }
    }
    return false;
  };
  const describe = (el) => {
    const cls = [...el.classList].slice(0, 3).map((c) => '.' + c).join('');
    const text = el.textContent.replace(/\s+/g, ' ').trim().slice(0, 60);
    const right = Math.round(el.getBoundingClientRect().right);
    return `<${el.tagName.toLowerCase()}${cls}> ends at x=${right}: "${text}"`;
  };
  const sticking = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= width + 1) { continue; }
    if (getComputedStyle(el).visibility !== 'visible') { continue; }
    // MathJax's assistive MathML is there for screen readers, clipped to 1px.
    if (el.closest('mjx-assistive-mml')) { continue; }
    if (!held(el)) { sticking.push(describe(el)); }
  }
  return {
    width, scrollWidth: doc.scrollWidth, scrolledX, sticking: sticking.slice(0, 10),
  };
}
"""


@dataclass
class Visit:
    """What one page did in one browser window."""

    docname: str
    device: str
    url: str
    status: int | None = None
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    missing_local: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    math: dict = field(default_factory=dict)
    images: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    axe_violations: list[dict] = field(default_factory=list)
    overflow: dict = field(default_factory=dict)
    charts: dict = field(default_factory=dict)
    # Console errors count while the reader's page runs, not while axe's
    # scripts (which fetch stylesheets themselves) inspect it.
    recording: bool = True


class _Ids(HTMLParser):
    """Collects the ids (and anchor names) a page defines, for #fragment links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


class Site:
    """The served book, read by one Chromium; each page is visited once per
    device and the results are shared by the tests that check them."""

    def __init__(self, browser, base_url: str, screenshots: Path) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.browser = browser
        self.base_url = base_url
        self.screenshots = screenshots
        self.axe = Axe()
        self._visits: dict[tuple[str, str], Visit | Exception] = {}
        self._targets: dict[str, tuple[int, frozenset[str]]] = {}
        # Straight to 127.0.0.1, whatever proxy the environment names.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def url(self, path: str) -> str:
        return self.base_url + path

    def _route(self, route, visit: Visit) -> None:
        url = route.request.url
        if url.startswith(self.base_url):
            route.continue_()
        elif vega_package(url):
            local = local_npm_file(url)
            if local is not None:
                route.fulfill(path=local, content_type="text/javascript")
            else:
                visit.missing_local.append(url)
                route.fulfill(status=404, body="not in the local Vega copies")
        elif url.startswith(MATHJAX_CDN):
            relative = unquote(urlsplit(url).path).removeprefix("/npm/mathjax@3/")
            local = (MATHJAX_LOCAL / relative).resolve()
            if local.is_file() and local.is_relative_to(MATHJAX_LOCAL):
                route.fulfill(path=local)
            else:
                visit.missing_local.append(url)
                route.fulfill(status=404, body="not in the local MathJax copy")
        else:
            visit.blocked.append(url)
            route.abort("blockedbyclient")

    def _open(self, visit: Visit):
        context = self.browser.new_context(**DEVICES[visit.device])
        context.route("**/*", lambda route: self._route(route, visit))
        context.add_init_script(CAPTURE_VIEWS_JS)
        page = context.new_page()
        page.set_default_timeout(30_000)

        def on_console(message) -> None:
            if visit.recording and message.type == "error":
                where = message.location.get("url", "")
                visit.console_errors.append(f"{message.text} [{where}]")

        def on_error(error) -> None:
            if visit.recording:
                visit.console_errors.append(f"uncaught {error}")

        page.on("console", on_console)
        page.on("pageerror", on_error)
        response = page.goto(visit.url, wait_until="load")
        visit.status = response.status if response else None
        return context, page

    @contextmanager
    def open(self, docname: str, device: str = "desktop") -> Iterator[tuple]:
        """A fresh window on a page whose charts have been drawn, for a test
        that works the page's controls; yields the visit and the page."""
        visit = Visit(docname, device, self.url(f"{docname}.html"))
        context, page = self._open(visit)
        try:
            visit.charts = page.evaluate(CHARTS_JS)
            yield visit, page
        finally:
            context.close()

    def visit(self, docname: str, device: str) -> Visit:
        """Load a page (once per device) and record everything the tests check."""
        key = (docname, device)
        if key not in self._visits:
            try:
                self._visits[key] = self._read(docname, device)
            except Exception as error:  # remembered: one timeout, not one per test
                self._visits[key] = error
        result = self._visits[key]
        if isinstance(result, Exception):
            raise result
        return result

    def _read(self, docname: str, device: str) -> Visit:
        visit = Visit(docname, device, self.url(f"{docname}.html"))
        context, page = self._open(visit)
        try:
            visit.math = page.evaluate(MATH_JS)
            visit.charts = page.evaluate(CHARTS_JS)
            if device == "desktop":
                visit.images = page.evaluate(IMAGES_JS)
                visit.links = page.evaluate(LINKS_JS)
            else:
                visit.overflow = page.evaluate(OVERFLOW_JS)
            visit.screenshot = (
                self.screenshots / f"{docname.replace('/', '-')}-{device}.png"
            )
            page.screenshot(path=visit.screenshot, full_page=True)
            if device == "desktop":
                visit.recording = False
                results = self.axe.run(page, context=AXE_CONTEXT, options=AXE_OPTIONS)
                visit.axe_violations = results.response["violations"]
        finally:
            context.close()
        return visit

    def search(self, query: str) -> tuple[Visit, list[str]]:
        """Search the book from its search page; return the result links."""
        visit = Visit("search", "desktop", self.url(f"search.html?q={quote(query)}"))
        context, page = self._open(visit)
        try:
            page.wait_for_function(
                "() => /Search finished|did not match/.test("
                "document.querySelector('#search-results')?.textContent ?? '')"
            )
            results = page.evaluate(
                "() => [...document.querySelectorAll('#search-results ul.search li a')]"
                ".map((a) => a.href)"
            )
            visit.screenshot = self.screenshots / "search-desktop.png"
            page.screenshot(path=visit.screenshot, full_page=True)
        finally:
            context.close()
        return visit, results

    def target(self, url: str) -> tuple[int, frozenset[str]]:
        """HTTP status of an internal URL and, for HTML, the ids it defines."""
        url = url.split("#", 1)[0]
        if url not in self._targets:
            try:
                with self._http.open(url, timeout=30) as response:
                    status, body = response.status, response.read()
                    kind = response.headers.get_content_type()
            except urllib.error.HTTPError as error:
                status, body, kind = error.code, b"", ""
                error.close()
            ids: set[str] = set()
            if kind == "text/html":
                parser = _Ids()
                parser.feed(body.decode("utf-8", errors="replace"))
                ids = parser.ids
            self._targets[url] = (status, frozenset(ids))
        return self._targets[url]

    def visits(self) -> list[Visit]:
        return [v for v in self._visits.values() if isinstance(v, Visit)]
