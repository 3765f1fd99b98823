"""The gradient of a loss by central differences, to check analytic ones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def central_differences(
    loss: Callable[[np.ndarray], object], x: np.ndarray, step: float
) -> np.ndarray:
    """The gradient of ``loss`` at ``x``: ``(loss(x + step e) - loss(x - step e))
    / (2 step)`` for each entry ``e`` of ``x``.

    ``loss`` may return an array (the losses of ``reduction="none"``): the
    difference is then taken entry by entry and summed, which is the
    derivative of the summed loss.
    """
    grad = np.empty_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = np.sum(loss(up) - loss(down)) / (2 * step)
    return grad
