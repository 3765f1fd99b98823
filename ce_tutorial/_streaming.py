"""Stream over a matrix one block of rows at a time, on one thread or a few.

Every row of logits is independent of the others: its maximum, its sum of
exponentials and its loss need nothing from any other row. So a function that
reduces each row can walk over the matrix in blocks of rows and keep only one
block's worth of scratch memory, instead of a full-size intermediate such as a
``log_softmax`` of the whole batch [1]_. The blocks are sized to stay in the
CPU's cache, so each one is read from main memory once and then worked on
where it is fast to reach.

The same independence lets blocks run at the same time. NumPy's ufuncs and
reductions release the GIL while they loop, so a small pool of Python threads
really does work in parallel. The rows are cut into one contiguous stripe per
thread, and each thread streams over its stripe with its own scratch buffer.
The result of a row never depends on the number of threads.

:func:`set_num_threads` chooses how many threads to use, as
``torch.set_num_threads`` does for PyTorch.

The pool is safe to share and to fork:

- Calls from several threads at once share one pool. A call that needs more
  workers than the pool has replaces it with a bigger one, but the old pool is
  only retired: it is shut down when the last call still using it is done, so
  :func:`set_num_threads` may run while other threads are inside a streamed
  function.
- A child made by ``os.fork`` (or ``multiprocessing`` with the fork start
  method) does not inherit a usable pool: its worker threads stayed behind in
  the parent. The child forgets the pool (``os.register_at_fork``) and makes
  its own when it first needs one.

References
----------
.. [1] E. Wijmans, B. Huval, A. Hertzberg, V. Koltun and P. Krähenbühl,
   "Cut your losses in large-vocabulary language models", arXiv:2411.09009,
   2024.
"""

from __future__ import annotations

import itertools
import numbers
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["get_num_threads", "set_num_threads"]

# A block's scratch buffer is at most BLOCK_BYTES (and at least one row). It is
# written and read back straight away, so it should stay in a cache, but every
# block also costs a few microseconds of Python. On the benchmark machine (512
# KiB of L2 per core, 8 MiB of shared L3), 1 MiB measured fastest: 256 and 512
# KiB cost 2-10% more, most with two threads, and 2 MiB was no better.
BLOCK_BYTES = 1 << 20
# All the threads' blocks together hold at most 1/MAX_BLOCK_FRACTION of the
# rows. For small inputs that bound decides the block size, and keeps the extra
# memory of the streaming loss under a quarter of the logits from ten classes
# up, on every route: the N losses (a tenth of ten-class logits), the buffers,
# and the vectors of block length (true-class logits, row maxima, indices,
# several of them 8 bytes a row even for float32 logits of 40 bytes a row). At
# 16 the rows that all take the loss's fallback route needed up to 0.36x.
MAX_BLOCK_FRACTION = 32
# Below this many elements per thread, starting threads costs more than it
# saves: the work runs on the calling thread.
MIN_ELEMENTS_PER_THREAD = 1 << 17

_num_threads: int | None = None  # None: one per CPU this process may use


class _Pool:
    """A thread pool and the number of calls that are using it right now."""

    def __init__(self, size: int) -> None:
        self.executor = ThreadPoolExecutor(size, thread_name_prefix="ce_tutorial")
        self.size = size
        self.users = 0
        self.retired = False


_pool: _Pool | None = None
_pool_pid = os.getpid()
_pool_lock = threading.Lock()


def _reset_after_fork() -> None:
    """Forget the parent's pool in a forked child.

    Only the thread that called ``fork`` exists in the child: the pool's
    workers, and any lock they held, stay behind in the parent. A child that
    submitted to the inherited pool would wait forever, so it starts afresh
    and makes its own pool when it first needs one.
    """
    global _pool, _pool_lock, _pool_pid
    _pool, _pool_lock, _pool_pid = None, threading.Lock(), os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _available_cpus() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def get_num_threads() -> int:
    """The number of threads the streaming functions may use.

    Parameters
    ----------
    None

    Returns
    -------
    n_threads : int
        The value last given to :func:`set_num_threads`, or, by default, the
        number of CPUs this process may run on.

    Raises
    ------
    Nothing.

    See Also
    --------
    set_num_threads : change it.

    Examples
    --------
    >>> from ce_tutorial import get_num_threads
    >>> get_num_threads() >= 1
    True
    """
    return _available_cpus() if _num_threads is None else _num_threads


def set_num_threads(n_threads: int | None) -> int:
    """Choose how many threads the streaming functions may use.

    :func:`softmax`, :func:`log_softmax`, :func:`logsumexp` and
    :func:`cross_entropy_from_logits` split large inputs into stripes of rows
    and work on the stripes in parallel. Small inputs always run on the
    calling thread. The results do not depend on the number of threads.

    Parameters
    ----------
    n_threads : int or None
        At least 1; 1 runs everything on the calling thread. ``None`` restores
        the default, one thread per CPU this process may run on. More threads
        than CPUs only adds overhead.

    Returns
    -------
    previous : int
        The number of threads in use before the call, so that it can be
        restored.

    Raises
    ------
    TypeError
        If ``n_threads`` is not an integer or None.
    ValueError
        If ``n_threads < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from ce_tutorial import cross_entropy_from_logits, set_num_threads
    >>> previous = set_num_threads(1)  # e.g. to compare with one-thread PyTorch
    >>> print(cross_entropy_from_logits(np.zeros((2, 4)), [0, 3], reduction="mean"))
    1.3862943611198906
    >>> _ = set_num_threads(previous)
    """
    global _num_threads
    if n_threads is not None:
        if isinstance(n_threads, bool | np.bool_) or not isinstance(
            n_threads, numbers.Integral
        ):
            raise TypeError(f"n_threads must be an integer or None, got {n_threads!r}")
        if n_threads < 1:
            raise ValueError(f"n_threads must be at least 1, got {n_threads}")
        n_threads = int(n_threads)
    previous = get_num_threads()
    _num_threads = n_threads
    return previous


def _acquire(n_threads: int) -> _Pool:
    """A pool of at least ``n_threads`` workers, held until :func:`_release`.

    The pool is created once and replaced by a bigger one when more threads
    are asked for. A replaced pool is only retired: it is shut down when the
    last call using it releases it, so that growing the pool (or
    :func:`set_num_threads` racing with calls in other threads) never breaks a
    call in flight. A pool inherited through ``fork`` is never used (see
    :func:`_reset_after_fork`; the process id is checked too, for forks that
    bypass the hook).
    """
    global _pool, _pool_pid
    with _pool_lock:
        if _pool_pid != os.getpid():
            _pool, _pool_pid = None, os.getpid()
        if _pool is None or _pool.size < n_threads:
            old, _pool = _pool, _Pool(n_threads)
            if old is not None:
                old.retired = True
                if old.users == 0:
                    old.executor.shutdown(wait=False)
        _pool.users += 1
        return _pool


def _release(pool: _Pool) -> None:
    """Stop using ``pool``; shut it down if it was retired and is now idle."""
    with _pool_lock:
        pool.users -= 1
        if pool.retired and pool.users == 0:
            pool.executor.shutdown(wait=False)


def block_size(
    n_rows: int,
    n_cols: int,
    itemsize: int,
    n_threads: int = 1,
    fraction: int = MAX_BLOCK_FRACTION,
) -> int:
    """The number of rows in one block (at least 1).

    All ``n_threads`` threads' blocks together hold at most ``1/fraction`` of
    the rows.
    """
    rows = BLOCK_BYTES // max(1, n_cols * itemsize)
    cap = -(-n_rows // (fraction * n_threads))
    return max(1, min(rows, cap))


def stream_rows(
    n_rows: int,
    n_cols: int,
    dtype: np.dtype,
    kernel: Callable[[int, int, np.ndarray | None], None],
    *,
    scratch: bool = True,
    fraction: int = MAX_BLOCK_FRACTION,
) -> None:
    """Call ``kernel(start, stop, work)`` on blocks that cover every row once.

    ``work`` is a scratch array of shape ``(stop - start, n_cols)`` and
    ``dtype``, private to the thread running the kernel (None if ``scratch``
    is false); the kernel writes its results for rows ``start:stop`` into
    arrays of its own. If kernels raise, the exception of the first failing
    block is re-raised, exactly as a single thread walking the rows in order
    would raise it. The blocks of all threads together hold at most
    ``1/fraction`` of the rows: a kernel that needs more block-sized arrays
    than the usual few asks for a larger ``fraction``.
    """
    n_threads = min(
        get_num_threads(), max(1, n_rows * n_cols // MIN_ELEMENTS_PER_THREAD)
    )
    rows = block_size(n_rows, n_cols, dtype.itemsize, n_threads, fraction)
    starts = range(0, n_rows, rows)
    n_threads = min(n_threads, len(starts))
    first_failure = [n_rows]  # the first row of the earliest failing block
    lock = threading.Lock()

    def walk(stripe: range) -> None:
        work = np.empty((rows, n_cols), dtype=dtype) if scratch else None
        for start in stripe:
            if first_failure[0] < start:  # an earlier block raised: stop early
                return
            stop = min(start + rows, n_rows)
            try:
                kernel(start, stop, None if work is None else work[: stop - start])
            except BaseException:
                with lock:
                    first_failure[0] = min(first_failure[0], start)
                raise

    if n_threads <= 1:
        walk(starts)
        return
    # Stripe k gets the k-th of n_threads nearly equal runs of blocks.
    bounds = np.linspace(0, len(starts), n_threads + 1).round().astype(int)
    stripes = [starts[i:j] for i, j in itertools.pairwise(bounds)]
    pool = _acquire(n_threads)
    try:
        futures = [pool.executor.submit(walk, s) for s in stripes]
        # Wait for every stripe, then raise from the first one that failed:
        # the stripes are in row order, so that is the first bad row.
        errors = [f.exception() for f in futures]
    finally:
        _release(pool)
    for error in errors:
        if error is not None:
            raise error
