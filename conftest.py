"""How `make test` shares the tests between pytest-xdist's workers.

`make test` runs ``pytest -n <CPUs + 1> --dist loadscope``, and this file
makes each file one unit of work, which xdist runs on one worker, in order:
each notebook (nbval runs its cells one after another in one kernel), each
test module and each package module's doctests. The browser tests are one
unit however many files they span: they share one Chromium, one served copy
of the book and one report. They spend most of their time waiting for the
browser, so the extra worker runs them beside the others, not after them.
"""

from __future__ import annotations

import pytest

BROWSER_TESTS = "tests/browser/"


def unit_of_work(nodeid: str) -> str:
    """The unit of work of a test: its file, or "browser" for a browser test."""
    path = nodeid.split("::", 1)[0]
    return "browser" if path.startswith(BROWSER_TESTS) else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # Also for plain `-n N` (dist "load"), which would otherwise send one
    # notebook's cells to different kernels.
    if config.getvalue("dist") not in ("load", "loadscope", "loadfile"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    return ByFile(config, log)


# The browser tests' one-line summary (pages, formulas, axe violations) is
# written by the worker that ran them; the terminal is the controller's.
BROWSER_SUMMARY = "ce_tutorial_browser_summary"
_SUMMARY = pytest.StashKey[str]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    summary = getattr(node, "workeroutput", {}).get(BROWSER_SUMMARY)
    if summary:
        node.config.stash[_SUMMARY] = summary


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SUMMARY in config.stash:
        terminalreporter.write_sep("-", "browser tests")
        terminalreporter.write_line(config.stash[_SUMMARY])
