"""Hypothesis strategies shared by the test modules.

Every strategy draws small arrays (at most 8 rows and 8 classes) so that the
property tests stay fast; the streaming tests build their large inputs by hand.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_ROWS = 8
MAX_CLASSES = 8


def finite_floats(bound: float = 50.0, dtype=np.float64) -> st.SearchStrategy:
    """Finite floats in ``[-bound, bound]``, exactly representable in ``dtype``."""
    width = np.finfo(dtype).bits
    return st.floats(
        min_value=-bound,
        max_value=bound,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
        width=width,
    )


@st.composite
def shapes(draw, min_rows: int = 1, min_classes: int = 1) -> tuple[int, int]:
    """A matrix shape ``(n_samples, n_classes)``."""
    n = draw(st.integers(min_rows, MAX_ROWS))
    c = draw(st.integers(min_classes, MAX_CLASSES))
    return n, c


@st.composite
def logits(
    draw,
    dtype=np.float64,
    bound: float = 50.0,
    min_rows: int = 1,
    min_classes: int = 1,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Finite logits of shape (n_samples, n_classes), or of ``shape``."""
    if shape is None:
        shape = draw(shapes(min_rows=min_rows, min_classes=min_classes))
    return draw(hnp.arrays(dtype, shape, elements=finite_floats(bound, dtype)))


@st.composite
def nd_logits(draw, dtype=np.float64, bound: float = 50.0) -> np.ndarray:
    """Finite logits of 1 to 3 dimensions, every axis of length 1 to 4."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    return draw(hnp.arrays(dtype, shape, elements=finite_floats(bound, dtype)))


@st.composite
def labels_for(draw, n_samples: int, n_classes: int) -> np.ndarray:
    """Integer labels of shape (n_samples,) in ``[0, n_classes)``."""
    return draw(
        hnp.arrays(np.int64, (n_samples,), elements=st.integers(0, n_classes - 1))
    )


@st.composite
def logits_and_labels(
    draw, dtype=np.float64, bound: float = 50.0, min_classes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Logits of shape (N, C) and integer labels of shape (N,)."""
    z = draw(logits(dtype=dtype, bound=bound, min_classes=min_classes))
    return z, draw(labels_for(*z.shape))


@st.composite
def confident_logits_and_labels(
    draw, dtype=np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true class leads the others by a margin of up to 100.

    Confident, correct predictions are where ``logsumexp(z) - z_y`` is tiny and
    rounding could push a loss below zero.
    """
    z, y = draw(logits_and_labels(dtype=dtype, bound=20.0))
    margin = draw(finite_floats(bound=100.0, dtype=dtype).map(abs))
    rows = np.arange(z.shape[0])
    z[rows, y] = z.max(axis=1) + margin
    return z, y


def normalise(weights: np.ndarray) -> np.ndarray:
    """Scale the rows of positive ``weights`` so that they sum to 1."""
    return weights / weights.sum(axis=-1, keepdims=True)


@st.composite
def distributions(
    draw,
    shape: tuple[int, ...] | None = None,
    min_weight: float = 0.0,
    min_classes: int = 1,
) -> np.ndarray:
    """Probability distributions along the last axis, in float64.

    Drawn as non-negative weights normalised by hand. With ``min_weight=0``
    some entries are exactly zero (but never a whole row); with a positive
    ``min_weight`` every probability is at least ``min_weight / (C + 0.5)``.
    """
    if shape is None:
        shape = draw(shapes(min_classes=min_classes))
    weight = st.floats(min_value=min_weight, max_value=1.0, allow_subnormal=False)
    w = draw(hnp.arrays(np.float64, shape, elements=weight))
    # Give every row some mass: a row of zeros is not a distribution.
    w[..., 0] += 0.5
    return normalise(w)


@st.composite
def logits_and_targets(draw, bound: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of shape (N, C) and target distributions of the same shape."""
    z = draw(logits(bound=bound))
    return z, draw(distributions(shape=z.shape))


reductions = st.sampled_from(["none", "mean", "sum"])
