"""Import PyTorch for the tests that check what the book says about it.

torch is not in ``requirements.txt``: the book never runs it. These tests run
when torch is importable and skip with a reason otherwise. ``.ci/run`` installs
the CPU build and sets ``CE_TUTORIAL_REQUIRE_TORCH=1``, which turns a missing
torch into a failure, so in CI they always run.

Use it at the top of a test module::

    from .torch_support import import_torch

    torch = import_torch()
"""

from __future__ import annotations

import os
import types

import pytest

REQUIRE_ENV = "CE_TUTORIAL_REQUIRE_TORCH"


def import_torch() -> types.ModuleType:
    """Return the ``torch`` module, or skip the calling module without it."""
    try:
        import torch
    except ImportError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            raise RuntimeError(
                f"{REQUIRE_ENV}=1 but torch cannot be imported ({exc}); "
                "install it with: .venv/bin/python -m pip install torch==2.13.0"
            ) from exc
        pytest.skip(
            "torch is not installed (it is not a requirement); "
            "`.venv/bin/python -m pip install torch==2.13.0` runs these tests",
            allow_module_level=True,
        )
    torch.set_num_threads(1)  # reproducible reductions, and no oversubscription
    return torch
