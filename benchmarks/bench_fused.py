"""Time and memory of the fused language-model head against PyTorch's unfused one.

Run as a script (it is not a test: timings belong in a report, not in CI)::

    python benchmarks/bench_fused.py                  # the issue's two shapes
    python benchmarks/bench_fused.py --threads 1      # one thread on each side
    python benchmarks/bench_fused.py --quick          # a seconds-long smoke run

Three contenders for the mean cross-entropy of ``features @ weight.T`` for
integer labels, float32:

- ``ce_tutorial``: :func:`ce_tutorial.linear_cross_entropy`, which works in
  chunks of rows and never holds the ``N x V`` logits; ``return_grad=True``
  for the forward and backward pass;
- ``3 products``: the limit of any fused head, its three matrix products
  alone, ``Z = H W^T``, ``G W`` and ``G^T H``, on the whole batch, in the same
  BLAS with the same threads, into preallocated outputs (``G`` is ``Z`` itself:
  only the time of the products counts); forward only, the first product;
- ``chunked products``: the same three products made the way
  ``linear_cross_entropy`` makes them, in its chunks of rows (an ``R x V``
  buffer, ``G W`` computed transposed, ``G^T H`` added into ``grad_weight``
  one slice of vocabulary rows at a time), and nothing else:
  no exponential, no check. Its ratio to ``3 products`` is what the chunks
  that the memory rule allows cost by themselves; ``ce_tutorial``'s ratio to
  it is the fused head's own work;
- ``torch``: the unfused path of a PyTorch training step on the CPU,
  ``F.cross_entropy(F.linear(h, W), y)`` then ``loss.backward()``; the
  forward-only case runs under ``torch.no_grad()`` (nothing saved for backward,
  the cheapest form PyTorch offers).

**Time.** For each shape, thread mode and pass (forward and backward, forward
only) the two are timed round-robin in one run, alternating which goes first,
with a pause before each call, and the medians are compared as ratios
(ce_tutorial's time divided by torch's, and by the three products': below 1
is faster). The ratio to the products is also taken repeat by repeat, and its
smallest and largest values are printed: on a shared machine the spread says
how far to trust the median. "1 thread" limits
NumPy's BLAS with ``threadpoolctl`` and PyTorch with ``torch.set_num_threads``;
"default" leaves both libraries at their defaults (one thread per CPU). In the
fused head BLAS owns every thread: the package's own pool is not used.

**Memory.** Each measurement runs in a fresh subprocess, which makes the data,
warms the libraries up on a tiny problem, resets the resident-set high-water
mark (``/proc/self/clear_refs``), runs the call once and reads ``VmHWM`` from
``/proc/self/status``. The peak extra memory is the growth of that high-water
mark minus the bytes of the returned gradients, the same for both sides
(``tracemalloc`` cannot see PyTorch's allocations). ``--plot`` draws it against
the vocabulary size ``V``.

The CPU model and flags (AVX2 and AVX-512 machines differ a lot), the BLAS
and the load average are printed with the results, so that the output is a
self-contained record.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

import ce_tutorial
from ce_tutorial import _fused  # the chunk and slice rules

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # torch is optional: it is never in requirements.txt
    torch = None

# The two shapes, and the word-level model of book/language_model.ipynb
# (a batch of 2,048 tokens, 128 hidden features, a vocabulary of 6,405 words).
SHAPES = [(2048, 512, 32000), (4096, 768, 50257), (2048, 128, 6405)]
QUICK_SHAPES = [(64, 16, 500)]
SWEEP_N, SWEEP_D = 2048, 512
SWEEP_V = [4000, 8000, 16000, 32000, 50257]
QUICK_SWEEP = (64, 16, [250, 500])
PASSES = ("forward+backward", "forward")
PAUSE = 0.2  # seconds of rest before each timed call
_TORCH_DEFAULT_THREADS = torch.get_num_threads() if torch is not None else 1

Call = Callable[[], object]


def make_data(n: int, d: int, v: int, seed: int = 0):
    """float32 features (normal) and weights (scaled by 1/sqrt(d), so the
    logits have spread about 1), and uniform labels."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    w *= np.float32(1 / np.sqrt(d))
    y = rng.integers(0, v, size=n)
    return h, w, y


def ours(h, w, y, pass_: str) -> Call:
    if pass_ == "forward":
        return lambda: (ce_tutorial.linear_cross_entropy(h, w, y),)
    return lambda: ce_tutorial.linear_cross_entropy(h, w, y, return_grad=True)


def theirs(h, w, y, pass_: str) -> Call:
    """PyTorch's unfused head on the same buffers (torch.from_numpy: no copy)."""
    yt = torch.from_numpy(y)
    if pass_ == "forward":

        def forward():
            with torch.no_grad():
                ht, wt = torch.from_numpy(h), torch.from_numpy(w)
                return (F.cross_entropy(F.linear(ht, wt), yt),)

        return forward

    def step():
        ht = torch.from_numpy(h).requires_grad_()
        wt = torch.from_numpy(w).requires_grad_()
        loss = F.cross_entropy(F.linear(ht, wt), yt)
        loss.backward()
        return loss, ht.grad, wt.grad

    return step


def products(h, w, y, pass_: str) -> Call:
    """The three matrix products of the head on the whole batch, nothing else."""
    z = np.empty((h.shape[0], w.shape[0]), dtype=h.dtype)
    grad_h, grad_w = np.empty_like(h), np.empty_like(w)

    def forward():
        np.matmul(h, w.T, out=z)
        return (None,)

    def step():
        np.matmul(h, w.T, out=z)
        np.matmul(z, w, out=grad_h)
        np.matmul(z.T, h, out=grad_w)
        return None, grad_h, grad_w

    return forward if pass_ == "forward" else step


def chunked_products(h, w, y, pass_: str, add_share=None) -> Call:
    """The three products in ``linear_cross_entropy``'s chunks and slices.

    ``add_share(grad_w, g, hc, first)``, if given, replaces the package's way
    of adding a chunk's ``g.T @ hc`` into ``grad_w`` (written by the first
    chunk, added by the others one slice of vocabulary rows at a time).
    """
    (n, d), v = h.shape, w.shape[0]
    rows = _fused.chunk_rows(n, v, h.dtype.itemsize, d)
    step = _fused.vocab_block_rows(rows, v, d)
    buffer = np.empty((min(rows, n), v), dtype=h.dtype)
    partial = np.empty((min(step, v), d), dtype=h.dtype)
    grad_h, grad_w = np.empty_like(h), np.empty_like(w)

    def in_slices(grad_w, g, hc, first: bool) -> None:
        if first:
            np.matmul(g.T, hc, out=grad_w)
            return
        for k in range(0, v, step):
            block = partial[: min(step, v - k)]
            np.matmul(g[:, k : k + step].T, hc, out=block)
            grad_w[k : k + step] += block

    add = in_slices if add_share is None else add_share

    def run(backward: bool):
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            hc = h[start:stop]
            g = buffer[: stop - start]
            np.matmul(hc, w.T, out=g)
            if not backward:
                continue
            _fused._grad_features(g, w, grad_h[start:stop], partial)
            add(grad_w, g, hc, start == 0)
        return (None,) if not backward else (None, grad_h, grad_w)

    return lambda: run(pass_ != "forward")


def contenders(h, w, y, pass_: str, with_products: bool = True) -> dict[str, Call]:
    found = {"ce_tutorial": ours(h, w, y, pass_)}
    if with_products:
        found["3 products"] = products(h, w, y, pass_)
        found["chunked products"] = chunked_products(h, w, y, pass_)
    if torch is not None:
        found["torch"] = theirs(h, w, y, pass_)
    return found


class Threads:
    """A context: ``"1"`` limits both sides to one thread; ``"default"`` not."""

    def __init__(self, mode: str):
        self.mode = mode

    def __enter__(self):
        if self.mode == "1":
            self._limit = threadpool_limits(1, user_api="blas")
            if torch is not None:
                torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.mode == "1":
            self._limit.restore_original_limits()
            if torch is not None:
                torch.set_num_threads(_TORCH_DEFAULT_THREADS)


def _as_numpy(x) -> np.ndarray:
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


def time_round_robin(
    calls: dict[str, Call], repeats: int, pause: float = PAUSE
) -> dict[str, list[float]]:
    """Wall times of each call, repeat by repeat; each repeat runs every call
    once, in a rotating order, so that a slow spell of the shared machine hits
    all."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            time.sleep(pause)
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def time_after_products(
    calls: dict, heads: Sequence, repeats: int, pause: float = PAUSE
) -> dict:
    """Wall times of ``calls[head]`` for each head, each call right after one
    of ``calls["3 products"]`` (also timed), the heads' order reversed every
    other repeat. A call that follows the products, which write a full
    ``N x V`` array, measured up to 6 % slower than after another call: this
    order gives every head the same predecessor."""
    times: dict = {name: [] for name in ("3 products", *heads)}
    for r in range(repeats):
        order = list(heads) if r % 2 == 0 else list(heads)[::-1]
        for name in [x for head in order for x in ("3 products", head)]:
            time.sleep(pause)
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def run_shape(
    n: int, d: int, v: int, repeats: int, threads: str, pause: float = PAUSE
) -> list[dict]:
    """One row per pass: medians, the ratio, and how far the answers agree."""
    h, w, y = make_data(n, d, v)
    rows = []
    with Threads(threads):
        for pass_ in PASSES:
            calls = contenders(h, w, y, pass_)
            results = {name: call() for name, call in calls.items()}  # warm-up
            times = time_round_robin(calls, repeats, pause)
            medians = {name: float(np.median(t)) for name, t in times.items()}
            per_repeat = np.array(times["ce_tutorial"]) / np.array(times["3 products"])
            row = {
                "shape": (n, d, v),
                "threads": threads,
                "pass": pass_,
                "seconds": medians,
                "loss": float(results["ce_tutorial"][0]),
                "ratio": None,
                "ratio_products": medians["ce_tutorial"] / medians["3 products"],
                "ratio_chunked": medians["chunked products"] / medians["3 products"],
                "ratio_products_range": (
                    float(per_repeat.min()),
                    float(per_repeat.max()),
                ),
                "max_rel_diff": None,
            }
            results.pop("3 products")
            results.pop("chunked products")
            if "torch" in results:
                row["ratio"] = medians["ce_tutorial"] / medians["torch"]
                diffs = [
                    float(
                        np.max(np.abs(a - _as_numpy(b))) / np.max(np.abs(_as_numpy(b)))
                    )
                    for a, b in zip(
                        results["ce_tutorial"], results["torch"], strict=True
                    )
                ]
                row["max_rel_diff"] = max(diffs)
            rows.append(row)
            del results, calls
            gc.collect()
    return rows


# --- memory, one subprocess per measurement ---------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_in_this_process(name: str, pass_: str, n: int, d: int, v: int) -> dict:
    """Peak extra resident memory of one call, in bytes, minus its gradients."""
    tiny = make_data(8, 4, 16, seed=1)
    for call in contenders(*tiny, pass_, False).values():  # warm up the libraries
        call()
    h, w, y = make_data(n, d, v)
    call = contenders(h, w, y, pass_, False)[name]
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS
    before = _status_kb("VmRSS")
    result = call()
    peak = _status_kb("VmHWM")
    returned = sum(_as_numpy(x).nbytes for x in result[1:])
    return {
        "name": name,
        "pass": pass_,
        "shape": [n, d, v],
        "peak_growth": (peak - before) * 1024,
        "returned": returned,
        "extra": (peak - before) * 1024 - returned,
        "logits": n * v * 4,
    }


def measure(name: str, pass_: str, n: int, d: int, v: int) -> dict:
    """Run :func:`measure_in_this_process` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, pass_, f"{n}x{d}x{v}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


# --- reporting ---------------------------------------------------------------


def describe_machine() -> str:
    """The CPU model and flags from lscpu, and the library versions."""
    info = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in text.splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = info.get("Flags", "").split()
    simd = [f for f in flags if f.startswith(("avx", "fma", "sse4"))]
    import threadpoolctl

    blas = [
        f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
        for i in threadpoolctl.threadpool_info()
    ]
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    parts = [
        f"CPU: {info.get('Model name', 'unknown')}, family {info.get('CPU family')} "
        f"model {info.get('Model')}, {os.cpu_count()} CPUs",
        f"SIMD flags: {' '.join(simd) or 'unknown'}",
        f"python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"torch {torch.__version__ if torch is not None else 'absent'} "
        f"(default threads {_TORCH_DEFAULT_THREADS})",
        f"thread pools: {'; '.join(blas)}",
        f"load average (1, 5, 15 min) at the start: {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
    return "\n".join(parts)


def format_rows(rows: Sequence[dict]) -> str:
    lines = [
        f"{'N x d x V':>16} {'threads':>7} {'pass':>16} {'ours s':>8} "
        f"{'3 prod s':>8} {'torch s':>8} {'ours/3prod':>10} {'(range)':>11} "
        f"{'chunked/3prod':>13} "
        f"{'ours/torch':>10} {'max rel diff':>12}"
    ]
    for row in rows:
        n, d, v = row["shape"]
        t = row["seconds"]
        torch_s = f"{t['torch']:8.3f}" if "torch" in t else f"{'n/a':>8}"
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        low, high = row["ratio_products_range"]
        diff = "n/a" if row["max_rel_diff"] is None else f"{row['max_rel_diff']:.1e}"
        lines.append(
            f"{f'{n}x{d}x{v}':>16} {row['threads']:>7} {row['pass']:>16} "
            f"{t['ce_tutorial']:8.3f} {t['3 products']:8.3f} {torch_s} "
            f"{row['ratio_products']:10.2f} {f'{low:.2f}-{high:.2f}':>11} "
            f"{row['ratio_chunked']:13.2f} "
            f"{ratio:>10} {diff:>12}"
        )
    return "\n".join(lines)


def format_memory(records: Sequence[dict]) -> str:
    lines = [
        f"{'name':>12} {'pass':>16} {'N x d x V':>18} {'extra MB':>9} "
        f"{'of logits':>9} {'gradients MB':>12}"
    ]
    for r in records:
        n, d, v = r["shape"]
        lines.append(
            f"{r['name']:>12} {r['pass']:>16} {f'{n}x{d}x{v}':>18} "
            f"{r['extra'] / 1e6:9.1f} {r['extra'] / r['logits']:9.3f} "
            f"{r['returned'] / 1e6:12.1f}"
        )
    return "\n".join(lines)


def plot(records: Sequence[dict], path: str) -> None:
    """Peak extra memory against V for both sides, with the logits' size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = os.path.join(
        os.path.dirname(__file__), "..", "book", "ce_tutorial.mplstyle"
    )
    plt.style.use(style)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    vs = sorted({r["shape"][2] for r in records})
    n = records[0]["shape"][0]
    d = records[0]["shape"][1]
    ax.plot(vs, [n * v * 4 / 1e6 for v in vs], "k--", label="one N x V float32 array")
    for name, marker in (("torch", "o"), ("ce_tutorial", "s")):
        mine = sorted(
            (r for r in records if r["name"] == name), key=lambda r: r["shape"][2]
        )
        if mine:
            ax.plot(
                [r["shape"][2] for r in mine],
                [max(r["extra"], 1) / 1e6 for r in mine],
                marker=marker,
                label=f"{name}: peak extra beyond the gradients",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(vs, [f"{v:,}" for v in vs])
    lo, hi = ax.get_ylim()
    ticks = [
        t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if lo <= t <= hi
    ]
    ax.set_yticks(ticks, [f"{t:,}" for t in ticks])
    ax.set_ylim(lo, hi)
    ax.minorticks_off()
    ax.set_xlabel(f"vocabulary size V (N = {n:,}, d = {d}, float32)")
    ax.set_ylabel("peak extra resident memory (MB)")
    ax.set_title("Forward and backward of the LM head: memory beyond the gradients")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", choices=["1", "default", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 1 repeat")
    parser.add_argument("--plot", default="benchmarks/fused_memory.png")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--shape",
        action="append",
        metavar="NxDxV",
        help="time this shape instead of the default ones (repeatable)",
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        name, pass_, shape = args.memory_child
        n, d, v = (int(k) for k in shape.split("x"))
        print(json.dumps(measure_in_this_process(name, pass_, n, d, v)))
        return 0

    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shape:
        shapes = [tuple(int(k) for k in shape.split("x")) for shape in args.shape]
    repeats, pause = (1, 0.0) if args.quick else (args.repeats, PAUSE)
    modes = ["1", "default"] if args.threads == "both" else [args.threads]
    print(describe_machine(), flush=True)
    rows = []
    print()
    for mode in modes:
        for shape in shapes:
            new = run_shape(*shape, repeats, mode, pause)
            # the header once, then each shape's rows as soon as they are measured
            table = format_rows(new)
            print(table if not rows else table.split("\n", 1)[1], flush=True)
            rows.extend(new)
    if args.no_memory:
        return 0
    names = ["ce_tutorial"] + (["torch"] if torch is not None else [])
    records = [measure(name, p, *s) for s in shapes for p in PASSES for name in names]
    n, d, sweep = QUICK_SWEEP if args.quick else (SWEEP_N, SWEEP_D, SWEEP_V)
    sweep_records = [
        measure(name, "forward+backward", n, d, v) for v in sweep for name in names
    ]
    print()
    print(format_memory(records))
    print()
    print(format_memory(sweep_records))
    if args.plot:
        plot(sweep_records, args.plot)
        print(f"\nfigure: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
