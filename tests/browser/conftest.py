"""Fixtures for the browser tests: the book, freshly built, served on 127.0.0.1
and read by headless Chromium with the network cut off.

The visits themselves, and what they record, are in ``reader.py``.

Environment variables
---------------------
CE_TUTORIAL_REQUIRE_BROWSER=1
    Fail, instead of skip, when Chromium or the MathJax or Vega copies are
    missing.
    ``.ci/run`` sets it, so CI always runs the browser tests.
CE_TUTORIAL_BOOK_OUTPUT=DIR
    Test (and if stale, build) ``DIR/_build/html``, as
    ``jupyter-book build --path-output DIR`` writes it, instead of the
    repository's ``_build/html``.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .reader import CHROMIUM, CHROMIUM_ARGS, HERE, MATHJAX_LOCAL, VEGA_PACKAGES, Site

REPO = HERE.parents[1]
REQUIRE_ENV = "CE_TUTORIAL_REQUIRE_BROWSER"
OUTPUT_ENV = "CE_TUTORIAL_BOOK_OUTPUT"

# What the HTML depends on: when any of these is newer than the last build,
# the fixture rebuilds the book before testing it.
BOOK_INPUTS = ["book", "_config.yml", "_toc.yml", "ce_tutorial", "_ext", "_static"]

ARTIFACTS = REPO / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
REPORT = ARTIFACTS / "browser-report.json"


def _newest_mtime(paths: list[Path]) -> tuple[float, Path | None]:
    """The newest file under paths, ignoring caches and checkpoints."""
    newest, culprit = 0.0, None
    for path in paths:
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        for file in files:
            inside = file.relative_to(path).parts if file != path else ()
            if any(part.startswith((".", "__pycache__")) for part in inside):
                continue
            if file.is_file():
                mtime = file.stat().st_mtime
                if mtime > newest:
                    newest, culprit = mtime, file
    return newest, culprit


def _require_browser() -> None:
    """Skip (or, in CI, fail) when the browser or the MathJax or Vega copies
    are missing."""
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if not (MATHJAX_LOCAL / "es5" / "tex-mml-chtml.js").is_file():
        missing.append(
            f"MathJax 3 in {MATHJAX_LOCAL.relative_to(REPO)} "
            f"(npm ci --prefix {HERE.relative_to(REPO)})"
        )
    vega = [
        name for name in VEGA_PACKAGES if not (HERE / "node_modules" / name).is_dir()
    ]
    if vega:
        missing.append(
            f"{', '.join(vega)} in {HERE.relative_to(REPO)}/node_modules "
            f"(npm ci --prefix {HERE.relative_to(REPO)})"
        )
    if not missing:
        return
    reason = "browser tests need " + " and ".join(missing)
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 makes this a failure", pytrace=False)
    pytest.skip(f"{reason}; set {REQUIRE_ENV}=1 to fail instead")


@pytest.fixture(scope="session")
def built_book() -> Path:
    """The book's HTML, rebuilt first if any input is newer than the last build."""
    _require_browser()
    output = Path(os.environ.get(OUTPUT_ENV, REPO)).resolve()
    html = output / "_build" / "html"
    # Sphinx rewrites .buildinfo at the end of every build that wrote pages.
    stamp = html / ".buildinfo"
    built = stamp.stat().st_mtime if stamp.is_file() else 0.0
    newest, culprit = _newest_mtime([REPO / name for name in BOOK_INPUTS])
    if newest <= built:
        return html
    command = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(REPO),
        "-n",
        "-W",
        "--keep-going",
        # From scratch: Sphinx does not know that the notebooks import
        # ce_tutorial, and an incremental build can leave the bibliography
        # without a citation that a re-read chapter newly links to.
        "--all",
        *(["--path-output", str(output)] if output != REPO else []),
    ]
    print(f"\nbuilding the book ({culprit} is newer than {html}):", *command)
    started = time.time()
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
    )
    if result.returncode != 0:
        log = (result.stdout + result.stderr)[-4000:]
        pytest.fail(f"the book does not build warning-free:\n{log}", pytrace=False)
    # The output is as current as the sources were when the build started;
    # anything edited during the build will trigger the next rebuild.
    os.utime(stamp, (started, started))
    return html


@pytest.fixture(scope="session")
def base_url(built_book: Path) -> Iterator[str]:
    """The built book, served on 127.0.0.1 (a free port) for this session."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture(scope="session")
def site(base_url: str, pytestconfig: pytest.Config) -> Iterator[Site]:
    """The served book in headless Chromium; screenshots go to artifacts/."""
    from playwright.sync_api import sync_playwright

    if SCREENSHOTS.is_dir():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            site = Site(browser, base_url, SCREENSHOTS)
            yield site
        finally:
            browser.close()
    _write_report(site, pytestconfig)


def _write_report(site: Site, config: pytest.Config) -> None:
    """artifacts/browser-report.json, and the totals for the terminal summary."""
    pages = {}
    for visit in site.visits():
        page = pages.setdefault(visit.docname, {})
        page[visit.device] = {
            "status": visit.status,
            "screenshot": str(visit.screenshot.relative_to(REPO)),
            "console_errors": visit.console_errors,
            "blocked_requests": visit.blocked,
        }
        if visit.device == "desktop":
            page["formulas"] = visit.math.get("formulas", 0)
            page["images"] = len(visit.images)
            page["links"] = len(visit.links)
            page["axe"] = [
                {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"])}
                for v in visit.axe_violations
            ]
    ARTIFACTS.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(pages, indent=2) + "\n", encoding="utf-8")
    impacts: dict[str, int] = {}
    for page in pages.values():
        for violation in page.get("axe", []):
            impacts[violation["impact"]] = impacts.get(violation["impact"], 0) + 1
    config.stash[_SUMMARY] = (
        f"{len(pages)} pages, "
        f"{sum(p.get('formulas', 0) for p in pages.values())} formulas, "
        f"{sum(p.get('images', 0) for p in pages.values())} images; "
        "axe violations by impact: "
        + (", ".join(f"{k} {v}" for k, v in sorted(impacts.items())) or "none")
        + f"; screenshots in {SCREENSHOTS.relative_to(REPO)}/, "
        f"details in {REPORT.relative_to(REPO)}"
    )


_SUMMARY = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SUMMARY in config.stash:
        terminalreporter.write_sep("-", "browser tests")
        terminalreporter.write_line(config.stash[_SUMMARY])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist, hand the summary to the controller (see the
    repository's conftest.py), whose terminal the reader sees."""
    config = session.config
    if hasattr(config, "workeroutput") and _SUMMARY in config.stash:
        config.workeroutput["ce_tutorial_browser_summary"] = config.stash[_SUMMARY]
