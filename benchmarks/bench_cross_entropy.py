"""Time and memory of the cross-entropy loss from logits, side by side.

Run as a script (it is not a test: timings belong in a report, not in CI)::

    python benchmarks/bench_cross_entropy.py                 # both thread modes
    python benchmarks/bench_cross_entropy.py --threads 1     # one thread each
    python benchmarks/bench_cross_entropy.py --shapes 20000x1000xfloat32

For each shape it prints one table: the median wall time of ``--repeats``
runs, the ratio of that time to PyTorch's (when torch is installed), how much
faster ``ce_tutorial`` is than each contender, and the peak extra memory seen
by ``tracemalloc`` (NumPy reports its buffers to it; PyTorch does not) and as
the growth of the resident set (Linux only), both in MB and as a percentage of
the logits' size. It also draws the time ratios in a figure (``--plot``).

The contenders all compute the mean loss of integer labels from logits:

- ``ce_tutorial``: :func:`ce_tutorial.cross_entropy_from_logits`, streaming;
- ``naive``: the textbook form, ``-np.log(softmax(z)[range(N), y])``, with
  ``softmax`` as ``exp(z) / exp(z).sum(1)``;
- ``scipy``: ``scipy.special.log_softmax``, then the true classes;
- ``sklearn``: ``scipy.special.softmax``, then ``sklearn.metrics.log_loss``;
- ``torch``: ``torch.nn.functional.cross_entropy`` on the same buffers.

The machine is usually busy with other work, so the contenders are timed
round-robin (each repeat times every contender once, in a rotating order) and
medians are reported: slow spells then hit all contenders alike.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence

import numpy as np
import scipy.special
from sklearn.metrics import log_loss

import ce_tutorial

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional: it is never in requirements.txt
    torch = None

SHAPES = [
    (1_000_000, 10, "float64"),
    (100_000, 1_000, "float32"),
    (2_048, 50_257, "float32"),
]
BASELINE = "torch"
PAUSE = 0.2  # seconds of rest before each timed call

Contender = Callable[[np.ndarray, np.ndarray], float]


def naive_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """The source's approach: full softmax, then -log of the true classes."""
    e = np.exp(logits)
    y_hat = e / e.sum(axis=1, keepdims=True)
    return float(np.mean(-np.log(y_hat[range(len(y_hat)), y])))


def scipy_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """A full log-softmax from scipy, then the true classes."""
    log_p = scipy.special.log_softmax(logits, axis=1)
    return float(-log_p[np.arange(len(y)), y].mean())


def sklearn_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """scikit-learn's log_loss takes probabilities: softmax first."""
    y_hat = scipy.special.softmax(logits, axis=1)
    return float(log_loss(y, y_hat, labels=np.arange(logits.shape[1])))


def ce_tutorial_loss(logits: np.ndarray, y: np.ndarray) -> float:
    return float(ce_tutorial.cross_entropy_from_logits(logits, y, reduction="mean"))


def torch_loss(logits: np.ndarray, y: np.ndarray) -> float:
    # torch.from_numpy shares the buffers: no copy is timed.
    return float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))


def load_package(path: str, name: str = "ce_tutorial_baseline"):
    """Import the ``ce_tutorial`` package of another checkout under ``name``.

    ``path`` is the checkout's root (the folder holding ``ce_tutorial/``), e.g.
    ``git archive main | tar -x -C /tmp/main`` gives ``/tmp/main``. Both
    versions then run side by side in one process, on the same arrays.
    """
    import importlib.util

    init = os.path.join(path, "ce_tutorial", "__init__.py")
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[os.path.dirname(init)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def baseline_contender(path: str) -> Contender:
    """The mean loss of the ``ce_tutorial`` checked out at ``path``."""
    package = load_package(path)

    def baseline_loss(logits: np.ndarray, y: np.ndarray) -> float:
        loss = package.cross_entropy_from_logits(logits, y, reduction="mean")
        return float(loss)

    return baseline_loss


def contenders() -> dict[str, Contender]:
    """Every contender available here, ce_tutorial first."""
    found = {
        "ce_tutorial": ce_tutorial_loss,
        "naive": naive_loss,
        "scipy": scipy_loss,
        "sklearn": sklearn_loss,
    }
    if torch is not None:
        found["torch"] = torch_loss
    return found


def make_data(
    n: int, c: int, dtype: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits like a trained model's: normal, spread 2, plus a boost of 4 on
    the true class; labels uniform over the classes."""
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c), dtype=np.float64)
    logits *= 2.0
    y = rng.integers(0, c, size=n)
    logits[np.arange(n), y] += 4.0
    return logits.astype(dtype, copy=False), y


def set_threads(mode: str) -> None:
    """``"1"``: one thread on every side; ``"default"``: each library's default."""
    packages = [ce_tutorial]
    if "ce_tutorial_baseline" in sys.modules:  # --compare-with
        packages.append(sys.modules["ce_tutorial_baseline"])
    if mode == "1":
        for package in packages:
            package.set_num_threads(1)
        if torch is not None:
            torch.set_num_threads(1)
    else:
        for package in packages:
            package.set_num_threads(None)
        if torch is not None:
            torch.set_num_threads(_TORCH_DEFAULT_THREADS)


_TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch is not None else 1


def _rss_high_water_kb() -> int | None:
    """The peak resident set size (VmHWM) in kB, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_high_water() -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def peak_memory(
    fn: Contender, logits: np.ndarray, y: np.ndarray
) -> tuple[int, int | None]:
    """Peak extra bytes of one call: (tracemalloc, resident-set growth)."""
    gc.collect()
    rss = None
    if _reset_rss_high_water():
        before = _rss_kb()
        fn(logits, y)
        peak = _rss_high_water_kb()
        rss = None if peak is None else max(0, peak - before) * 1024
    gc.collect()
    tracemalloc.start()
    try:
        fn(logits, y)
        _, traced = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return traced, rss


def time_round_robin(
    fns: dict[str, Contender],
    logits: np.ndarray,
    y: np.ndarray,
    repeats: int,
    pause: float = PAUSE,
) -> dict[str, float]:
    """Median wall time of each contender; each repeat runs all of them once.

    ``pause`` seconds of rest before each call let the previous contender's
    worker threads (PyTorch's OpenMP threads spin for a while after a
    parallel region) go idle, so they do not slow down the next one.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            time.sleep(pause)
            start = time.perf_counter()
            fns[name](logits, y)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def run_shape(
    n: int,
    c: int,
    dtype: str,
    repeats: int,
    threads: str,
    fns: dict[str, Contender] | None = None,
    memory: bool = True,
    pause: float = PAUSE,
) -> list[dict]:
    """One row per contender for one shape and thread mode."""
    fns = contenders() if fns is None else fns
    set_threads(threads)
    logits, y = make_data(n, c, dtype)
    losses = {name: fn(logits, y) for name, fn in fns.items()}  # also a warm-up
    medians = time_round_robin(fns, logits, y, repeats, pause)
    rows = []
    for name, fn in fns.items():
        traced, rss = peak_memory(fn, logits, y) if memory else (None, None)
        rows.append(
            {
                "shape": (n, c, dtype),
                "threads": threads,
                "name": name,
                "loss": losses[name],
                "seconds": medians[name],
                "traced_bytes": None if name == "torch" else traced,
                "rss_bytes": rss,
                "logits_bytes": logits.nbytes,
            }
        )
    base = medians.get(BASELINE)
    ours = medians["ce_tutorial"]
    for row in rows:
        row["vs_torch"] = None if base is None else row["seconds"] / base
        row["ce_speedup"] = row["seconds"] / ours
    return rows


def _mb_pct(value: int | None, total: int) -> str:
    if value is None:
        return "n/a"
    return f"{value / 2**20:8.1f} MB {100 * value / total:5.1f}%"


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table for the rows of one shape and thread mode."""
    n, c, dtype = rows[0]["shape"]
    size = rows[0]["logits_bytes"]
    threads = rows[0]["threads"]
    lines = [
        f"shape {n:,} x {c:,} {dtype} ({size / 2**20:.0f} MB of logits), "
        f"threads: {threads}",
        f"{'contender':<12} {'median s':>9} {'vs torch':>9} {'ce faster':>9} "
        f"{'peak (tracemalloc)':>20} {'peak (RSS growth)':>20} {'mean loss':>12}",
    ]
    for row in rows:
        vs = "n/a" if row["vs_torch"] is None else f"{row['vs_torch']:.2f}x"
        lines.append(
            f"{row['name']:<12} {row['seconds']:9.3f} {vs:>9} "
            f"{row['ce_speedup']:8.2f}x "
            f"{_mb_pct(row['traced_bytes'], size):>20} "
            f"{_mb_pct(row['rss_bytes'], size):>20} {row['loss']:12.6f}"
        )
    return "\n".join(lines)


def plot(results: Sequence[Sequence[dict]], path: str) -> None:
    """Bar chart: each contender's time relative to ce_tutorial, per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["name"] for row in results[0]]
    labels = [
        f"{r[0]['shape'][0]:,} x {r[0]['shape'][1]:,}\n{r[0]['shape'][2]}\n"
        f"threads: {r[0]['threads']}"
        for r in results
    ]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(names)
    x = np.arange(len(results))
    for k, name in enumerate(names):
        ratios = [
            next(r["ce_speedup"] for r in rs if r["name"] == name) for rs in results
        ]
        ax.bar(x + (k - (len(names) - 1) / 2) * width, ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("median time / ce_tutorial's time")
    ax.set_title(
        "Cross-entropy from logits: time relative to ce_tutorial (lower is faster)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_shape(text: str) -> tuple[int, int, str]:
    n, c, dtype = text.lower().split("x")
    return int(n), int(c), dtype


def describe_machine() -> str:
    """A line or two on the software and hardware the numbers come from."""
    parts = [
        f"python {sys.version.split()[0]}",
        f"numpy {np.__version__}",
        f"scipy {scipy.__version__}",
    ]
    import sklearn

    parts.append(f"scikit-learn {sklearn.__version__}")
    if torch is not None:
        parts.append(
            f"torch {torch.__version__} (default threads {_TORCH_DEFAULT_THREADS})"
        )
    parts.append(f"ce_tutorial threads by default: {ce_tutorial.get_num_threads()}")
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    openblas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    return (
        f"{cpu}, {os.cpu_count()} CPUs; "
        + ", ".join(parts)
        + f"; OPENBLAS variables: {openblas or 'none'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", choices=["1", "default", "both"], default="both")
    parser.add_argument(
        "--shapes",
        nargs="*",
        type=parse_shape,
        default=SHAPES,
        help="shapes as NxCxDTYPE, e.g. 2048x50257xfloat32",
    )
    parser.add_argument("--plot", default="benchmarks/results.png")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--compare-with",
        metavar="PATH",
        help="also time the ce_tutorial of the checkout at PATH, as 'baseline'",
    )
    args = parser.parse_args(argv)
    fns = contenders()
    if args.compare_with:
        fns = {"ce_tutorial": fns.pop("ce_tutorial")}
        fns["baseline"] = baseline_contender(args.compare_with)
        if torch is not None:
            fns["torch"] = torch_loss
    modes = ["1", "default"] if args.threads == "both" else [args.threads]
    print(describe_machine())
    results = []
    for mode in modes:
        for n, c, dtype in args.shapes:
            rows = run_shape(
                n, c, dtype, args.repeats, mode, fns, memory=not args.no_memory
            )
            results.append(rows)
            print()
            print(format_table(rows), flush=True)
    if args.plot:
        plot(results, args.plot)
        print(f"\nfigure: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
