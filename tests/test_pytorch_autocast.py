"""What the stability chapter says about PyTorch's autocast on the CPU.

``book/stability.ipynb`` says that CPU autocast, whose default dtype is
bfloat16, keeps the loss in float32: ``cross_entropy`` and ``nll_loss`` return
float32 while ``softmax`` and ``log_softmax`` return bfloat16. (Its statement
about CUDA, that all four run in float32, quotes PyTorch's autocast operator
reference and cannot be run on this machine.)
"""

from __future__ import annotations

import json

import pytest

from .test_prose import page_path
from .torch_support import import_torch

torch = import_torch()
F = torch.nn.functional


def _stability_prose() -> str:
    notebook = json.loads(page_path("book/stability").read_text(encoding="utf-8"))
    return " ".join(
        " ".join("".join(cell["source"]).split())
        for cell in notebook["cells"]
        if cell["cell_type"] == "markdown"
    )


def test_the_chapter_makes_the_claim():
    prose = _stability_prose()
    assert "Autocast on the CPU, which uses `bfloat16` by default" in prose
    assert "`cross_entropy` and `nll_loss` return `float32`" in prose
    assert "`softmax` and `log_softmax` return `bfloat16`" in prose


@pytest.fixture
def autocast_logits():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(8, 5, generator=generator)
    weight = torch.randn(4, 5, generator=generator)
    target = torch.randint(0, 4, (8,), generator=generator)
    with torch.autocast("cpu"):
        yield features @ weight.T, target


def test_cpu_autocast_computes_the_logits_in_bfloat16(autocast_logits):
    logits, _ = autocast_logits
    assert logits.dtype == torch.bfloat16


@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_cpu_autocast_keeps_the_softmax_in_bfloat16(autocast_logits, op):
    logits, _ = autocast_logits
    assert op(logits, dim=-1).dtype == torch.bfloat16


def test_cpu_autocast_computes_the_loss_in_float32(autocast_logits):
    logits, target = autocast_logits
    assert F.cross_entropy(logits, target).dtype == torch.float32
    log_probs = F.log_softmax(logits, dim=-1)
    assert F.nll_loss(log_probs, target).dtype == torch.float32
