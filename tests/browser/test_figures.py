"""The interactive figures, worked as a reader works them: with the keyboard.

Each figure is an Altair chart whose states were all computed in Python when
the chapter ran; the page only picks the state that matches its controls. For
every figure, a test below loads the page, moves each control to at least
three positions with the arrow keys, reads what the chart draws through the
Vega view API (``reader.CAPTURE_VIEWS_JS`` keeps every chart's view) and
compares it with what ``ce_tutorial`` computes for those positions, here, in
the test. On every page of the book, each chart must draw something, and the
data a page embeds must stay under 1 MB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ce_tutorial import (
    binary_cross_entropy_from_logits,
    cross_entropy,
    cross_entropy_from_logits,
    cross_entropy_grad,
    entropy,
    expected_calibration_error,
    kl_divergence,
    load_digits_split,
    reliability_curve,
    softmax,
)

from .reader import Site
from .test_site import PAGES

pytestmark = pytest.mark.browser

MAX_DATA_BYTES = 1_000_000
# The chapters round the charts' data to 9 decimals (the digits beyond are
# machine noise, which nbval would otherwise compare); JSON carries them exactly.
ATOL = 1e-9

# What a chart draws: the signals of its controls, and the datum of every item
# of every data mark (Vega's role "mark": bars, points, lines, rules, text; not
# axes, legends or groups).
READ_JS = """
async ([index, signals]) => {
  const { view } = window.ceCharts[index];
  await view.runAsync();
  const rows = [];
  const walk = (node) => {
    for (const item of node.items || []) {
      if (node.role === 'mark' && node.marktype !== 'group' && item.datum) {
        rows.push({ ...item.datum });
      }
      walk(item);
    }
  };
  walk(view.scenegraph().root);
  return {
    signals: Object.fromEntries(signals.map((name) => [name, view.signal(name)])),
    rows,
  };
}
"""


class Figure:
    """One chart on an open page: its controls and what it draws."""

    def __init__(self, page, index: int = 0) -> None:
        self.page = page
        self.index = index

    def press(self, control: str, key: str, times: int = 1) -> None:
        """Focus a control (by its signal name) and press a key, like a reader."""
        inputs = self.page.locator(f'.vega-bind input[name="{control}"]')
        target = inputs.first
        if inputs.count() > 1:  # a radio group: focus the chosen button
            target = self.page.locator(f'.vega-bind input[name="{control}"]:checked')
        target.focus()
        for _ in range(times):
            self.page.keyboard.press(key)

    def read(self, *signals: str) -> tuple[dict, list[dict]]:
        result = self.page.evaluate(READ_JS, [self.index, list(signals)])
        return result["signals"], result["rows"]


def unique(rows: list[dict], *keys: str) -> list[tuple]:
    """The distinct values of ``keys`` over the drawn rows, sorted."""
    return sorted({tuple(row.get(key) for key in keys) for row in rows}, key=str)


def assert_close(got, want) -> None:
    np.testing.assert_allclose(np.asarray(got, float), want, rtol=0, atol=ATOL)


# --------------------------------------------------------------------------
# One test per figure


def test_classification_softmax_of_the_car_score(site: Site):
    with site.open("book/classification") as (_, page):
        figure = Figure(page)
        for key, times, z2 in [
            (None, 0, 3.5),
            ("ArrowRight", 3, 5.0),
            ("ArrowLeft", 11, -0.5),
            ("Home", 1, -4.0),
        ]:
            if key:
                figure.press("z2", key, times)
            signals, rows = figure.read("z2")
            assert signals["z2"] == z2
            probs = softmax([1.0, 2.0, z2])
            want = sorted(
                zip(["car", "cat", "dog"], probs[[2, 0, 1]].tolist(), strict=True)
            )
            got = unique(rows, "class", "prob")
            assert [name for name, _ in got] == [name for name, _ in want]
            assert_close([p for _, p in got], [p for _, p in want])
            assert {row["label"] for row in rows} == {f"{p:.3f}" for p in probs}


def test_negative_log_likelihood_point_on_the_curve(site: Site):
    with site.open("book/negative_log_likelihood") as (_, page):
        figure = Figure(page)
        for key, times, chosen in [
            (None, 0, 0.1),
            ("ArrowLeft", 5, 0.05),
            ("ArrowRight", 45, 0.5),
            ("End", 1, 1.0),
        ]:
            if key:
                figure.press("chosen", key, times)
            signals, rows = figure.read("chosen")
            assert signals["chosen"] == chosen
            picked = [row for row in rows if row["prob"] == chosen and "label" in row]
            # the line (all 100 states) and the point, tangent and readout
            assert len(rows) == 100 + 3
            assert len(picked) >= 3 and all(row == picked[0] for row in picked)
            loss = cross_entropy([[chosen, 1 - chosen]], [0])[0]
            state = picked[0]
            assert_close([state["loss"], state["slope"]], [loss, -1 / chosen])
            assert state["label"] == f"loss {loss:.3f}, slope {-1 / chosen:.2f}"


def _expected_focal(y_hat: np.ndarray, gamma: int, omega: int, rate=0.2):
    """Expected focal loss at positive rate ``rate``, from the binary loss."""
    z = np.log(y_hat) - np.log1p(-y_hat)

    def focal(y):
        ce = binary_cross_entropy_from_logits(z, np.full_like(z, y))
        return (-np.expm1(-ce)) ** gamma * ce

    return omega * rate * focal(1.0) + (1 - rate) * focal(0.0)


def test_binary_minimiser_of_the_expected_focal_loss(site: Site):
    fine = np.arange(1, 1000) / 1000
    with site.open("book/binary") as (_, page):
        figure = Figure(page)
        for control, key, times, state in [
            (None, None, 0, (0, 1)),
            ("omega", "ArrowRight", 3, (0, 4)),
            ("gamma", "ArrowRight", 2, (2, 4)),
            ("gamma", "End", 1, (5, 4)),
            ("omega", "Home", 1, (5, 1)),
        ]:
            if control:
                figure.press(control, key, times)
            signals, rows = figure.read("gamma", "omega")
            assert (signals["gamma"], signals["omega"]) == state
            gamma, omega = state
            curve = sorted((r["y_hat"], r["loss"]) for r in rows if "y_hat" in r)
            grid = np.array([x for x, _ in curve])
            assert_close(grid, np.arange(1, 50) / 50)
            assert_close([v for _, v in curve], _expected_focal(grid, gamma, omega))
            best = {row["best"] for row in rows if "best" in row}
            want = fine[np.argmin(_expected_focal(fine, gamma, omega))]
            assert best == {want}
            if gamma == 0:  # the cross-entropy: pos_weight's odds times omega
                odds_best = omega * 0.2 / (omega * 0.2 + 0.8)
                assert want == pytest.approx(odds_best, abs=1e-3)
            assert {r["label"] for r in rows if "best" in r} == {
                f"minimiser {want:.3f}"
            }


def test_information_theory_decomposition(site: Site):
    p = np.array([0.6, 0.3, 0.1])
    with site.open("book/information_theory") as (_, page):
        figure = Figure(page)
        for key, times, T in [
            (None, 0, 1.0),
            ("ArrowLeft", 6, 0.4),
            ("ArrowRight", 16, 2.0),
            ("End", 1, 3.0),
        ]:
            if key:
                figure.press("T", key, times)
            signals, rows = figure.read("T")
            assert signals["T"] == T
            q = softmax(np.log(p) / T)
            bars = {(r["class"], r["who"]): r["prob"] for r in rows if "who" in r}
            assert sorted(bars) == sorted(
                (f"class {j}", who) for j in range(3) for who in "pq"
            )
            assert_close([bars[f"class {j}", "q"] for j in range(3)], q)
            assert_close([bars[f"class {j}", "p"] for j in range(3)], p)
            parts = {r["part"]: r["nats"] for r in rows if "part" in r}
            h_p, kl = entropy(p), kl_divergence(p, q)
            h_pq = cross_entropy(q[None], p[None])[0]
            assert_close([parts["H(p)"], parts["KL(p‖q)"]], [h_p, kl])
            assert_close([parts["H(p,q)"]], [h_pq])
            label = f"H(p,q) = {h_pq:.3f} = {h_p:.3f} + {kl:.3f}"
            assert label in {r.get("label") for r in rows}


def _digits_runs(lrs, steps):
    """The training chapter's runs: its split, initialisation and loop."""
    from threadpoolctl import threadpool_limits

    X_train, X_test, y_train, y_test = load_digits_split()
    runs = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for lr in lrs:
            rng = np.random.default_rng(0)
            W, b = rng.normal(scale=0.01, size=(X_train.shape[1], 10)).T, np.zeros(10)
            history = {"train": [], "test": [], "test_acc": []}
            for step in range(steps + 1):
                Z = X_train @ W.T + b
                Z_test = X_test @ W.T + b
                for part, logits, y in (
                    ("train", Z, y_train),
                    ("test", Z_test, y_test),
                ):
                    history[part].append(cross_entropy_from_logits(logits, y, "mean"))
                history["test_acc"].append(np.mean(Z_test.argmax(axis=1) == y_test))
                if step < steps:
                    G = cross_entropy_grad(Z, y_train)
                    W, b = W - lr * G.T @ X_train, b - lr * G.sum(axis=0)
            runs[lr] = history
    return runs, X_train


def test_training_learning_rate_runs(site: Site):
    runs, X_train = _digits_runs((0.05, 0.5, 5.0), steps=300)
    X_tilde = np.hstack([X_train, np.ones((len(X_train), 1))])
    beta = np.linalg.eigvalsh(X_tilde.T @ X_tilde / len(X_tilde))[-1] / 2
    with site.open("book/training") as (_, page):
        figure = Figure(page)
        for key, times, eta in [
            (None, 0, 0.5),
            ("ArrowRight", 1, 5.0),
            ("ArrowRight", 1, 0.05),  # radio buttons wrap around
            ("ArrowLeft", 2, 0.5),
        ]:
            if key:
                figure.press("eta", key, times)
            signals, rows = figure.read("eta")
            assert signals["eta"] == eta
            run = runs[eta]
            for part in ("train", "test"):
                curve = [r for r in rows if r.get("curve") == f"{part} loss"]
                drawn = sorted((r["step"], r["loss"]) for r in curve)
                assert [s for s, _ in drawn] == list(range(301))
                assert_close([v for _, v in drawn], run[part])
            fell = "yes" if np.all(np.diff(run["train"]) < 0) else "no"
            label = (
                f"η / (2/β) = {eta / (2 / beta):.2f}; final test accuracy "
                f"{run['test_acc'][-1]:.3f}\ntraining loss fell at every step: {fell}"
            )
            assert {r["label"] for r in rows if "label" in r} == {label}


def test_calibration_temperature_over_the_reliability_diagram(site: Site):
    from threadpoolctl import threadpool_limits

    X_train, X_test, y_train, y_test = load_digits_split()
    with threadpool_limits(limits=1, user_api="blas"):
        rng = np.random.default_rng(0)
        W, b = rng.normal(scale=0.01, size=(X_train.shape[1], 10)).T, np.zeros(10)
        for _ in range(10):  # the calibration chapter's step-10 model
            G = cross_entropy_grad(X_train @ W.T + b, y_train)
            W, b = W - 0.5 * G.T @ X_train, b - 0.5 * G.sum(axis=0)
        logits = X_test @ W.T + b
    with site.open("book/calibration") as (_, page):
        figure = Figure(page)
        for key, times, T in [
            (None, 0, 1.0),
            ("ArrowLeft", 11, 0.45),
            ("ArrowLeft", 4, 0.25),
            ("ArrowRight", 35, 2.0),
        ]:
            if key:
                figure.press("T", key, times)
            signals, rows = figure.read("T")
            assert signals["T"] == T
            y_hat = softmax(logits / T)
            conf, acc, count = reliability_curve(y_hat, y_test, n_bins=15)
            bins = [(r["conf"], r["acc"], r["count"]) for r in rows if "conf" in r]
            want = sorted(zip(conf, acc, count, strict=True))
            assert_close(sorted(bins), want)
            ece = expected_calibration_error(y_hat, y_test)
            nll = cross_entropy_from_logits(logits / T, y_test, "mean")
            label = f"ECE {ece:.3f}, NLL {nll:.3f}"
            assert {r["label"] for r in rows if "label" in r} == {label}


def _spiral_models():
    """The spiral chapter's data, and both models at every recorded step."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    radius = np.linspace(0.0, 1.0, 100)
    arms = [4 * k + 4 * radius + rng.normal(scale=0.2, size=100) for k in range(3)]
    X = np.concatenate(
        [np.column_stack([radius * np.sin(t), radius * np.cos(t)]) for t in arms]
    )
    y = np.repeat(np.arange(3), 100)

    def start(rows, cols, seed):
        return np.random.default_rng(seed).normal(scale=0.01, size=(cols, rows)).T

    def linear(params, X):
        return X @ params[0].T + params[1]

    def network(params, X):
        return np.maximum(X @ params[0].T + params[1], 0) @ params[2].T + params[3]

    def linear_grads(params):
        G = cross_entropy_grad(linear(params, X), y)
        return [G.T @ X, G.sum(axis=0)]

    def network_grads(params):
        U = X @ params[0].T + params[1]
        A = np.maximum(U, 0)
        G = cross_entropy_grad(A @ params[2].T + params[3], y)
        G_U = (G @ params[2]) * (U > 0)
        return [G_U.T @ X, G_U.sum(axis=0), G.T @ A, G.sum(axis=0)]

    models = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, logits, grads, params in [
            ("linear", linear, linear_grads, [start(3, 2, 0), np.zeros(3)]),
            (
                "network",
                network,
                network_grads,
                [start(100, 2, 1), np.zeros(100), start(3, 100, 2), np.zeros(3)],
            ),
        ]:
            for step in range(2001):
                if step % 250 == 0:
                    models[name, step] = (logits, params)
                params = [p - g for p, g in zip(params, grads(params), strict=True)]
    return X, y, models


def test_spiral_decision_regions_as_training_goes(site: Site):
    X, y, models = _spiral_models()
    axis = np.linspace(-1.05, 1.05, 21).round(3)
    plane = np.array([(u, v) for v in axis for u in axis])
    with site.open("book/spiral") as (_, page):
        figure = Figure(page)
        for control, key, times, state in [
            (None, None, 0, ("network", 2000)),
            ("step", "ArrowLeft", 4, ("network", 1000)),
            ("model", "ArrowLeft", 1, ("linear", 1000)),
            ("step", "Home", 1, ("linear", 0)),
            ("step", "ArrowRight", 1, ("linear", 250)),
            ("model", "ArrowRight", 1, ("network", 250)),
        ]:
            if control:
                figure.press(control, key, times)
            signals, rows = figure.read("model", "step")
            assert (signals["model"], signals["step"]) == state
            logits, params = models[state]
            regions = sorted(
                (r["x0"], r["x1"], r["k"]) for r in rows if "model" in r and "k" in r
            )
            predicted = logits(params, plane).argmax(axis=1)
            assert regions == sorted(
                zip(*plane.T.tolist(), predicted.tolist(), strict=True)
            )
            dots = sorted((r["x0"], r["x1"], r["k"]) for r in rows if "model" not in r)
            assert dots == sorted(zip(*X.round(3).T.tolist(), y.tolist(), strict=True))
            Z = logits(params, X)
            loss = cross_entropy_from_logits(Z, y, "mean")
            accuracy = np.mean(Z.argmax(axis=1) == y)
            label = f"loss {loss:.3f}, accuracy {accuracy:.3f}"
            assert {r["label"] for r in rows if "label" in r} == {label}


FIGURE_TESTS: dict[str, Callable] = {
    "book/classification": test_classification_softmax_of_the_car_score,
    "book/negative_log_likelihood": test_negative_log_likelihood_point_on_the_curve,
    "book/binary": test_binary_minimiser_of_the_expected_focal_loss,
    "book/information_theory": test_information_theory_decomposition,
    "book/training": test_training_learning_rate_runs,
    "book/calibration": test_calibration_temperature_over_the_reliability_diagram,
    "book/spiral": test_spiral_decision_regions_as_training_goes,
}


# --------------------------------------------------------------------------
# Every page


@pytest.fixture(params=PAGES)
def page(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_chart_renders(site: Site, page: str):
    charts = site.visit(page, "desktop").charts
    assert len(charts["charts"]) == charts["expected"], "charts vega-embed never drew"
    for chart in charts["charts"]:
        assert chart["svgMarks"] > 0 or chart["canvas"] > 0, f"{chart['id']} is empty"
        assert (chart["label"] or "").strip(), f"{chart['id']} has no description"


def test_every_chart_has_a_figure_test(site: Site, page: str):
    if site.visit(page, "desktop").charts["expected"]:
        assert page in FIGURE_TESTS, f"{page} has a chart that no test here works"


def test_embedded_data_stays_under_1_mb(site: Site, page: str):
    charts = site.visit(page, "desktop").charts["charts"]
    total = sum(chart["dataBytes"] for chart in charts)
    assert total < MAX_DATA_BYTES, f"{page} embeds {total:,} bytes of chart data"


def test_figure_pages_have_charts(site: Site):
    for name in FIGURE_TESTS:
        assert site.visit(name, "desktop").charts["expected"] >= 1, name
