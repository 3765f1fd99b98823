"""A smoke run of the benchmark harness in benchmarks/, on tiny shapes.

The harness itself is a script (``python benchmarks/bench_cross_entropy.py``);
here it runs once on inputs small enough for CI, to check that every
contender shows up in the table and agrees with ce_tutorial. No timing is
asserted: timings on a shared machine are not a test.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import pytest

import ce_tutorial

HARNESS = pathlib.Path(__file__).parent.parent / "benchmarks" / "bench_cross_entropy.py"


def _load_script(path: pathlib.Path):
    """Import a script in benchmarks/ as a module (the folder is no package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_script(HARNESS)


@pytest.fixture(autouse=True)
def restore_threads():
    previous = ce_tutorial.get_num_threads()
    yield
    ce_tutorial.set_num_threads(previous)


@pytest.mark.parametrize(
    ("shape", "rtol"),
    [((3000, 12, "float64"), 1e-12), ((400, 600, "float32"), 1e-5)],
    ids=["float64", "float32"],
)
@pytest.mark.parametrize("threads", ["1", "default"])
def test_tiny_run_has_every_row_and_agrees(bench, shape, rtol, threads):
    rows = bench.run_shape(*shape, repeats=1, threads=threads, pause=0.0)
    names = [row["name"] for row in rows]
    assert names == list(bench.contenders())
    assert {"ce_tutorial", "naive", "scipy", "sklearn"} <= set(names)

    ours = rows[0]["loss"]
    for row in rows:
        assert row["loss"] == pytest.approx(ours, rel=rtol), row["name"]
        assert row["seconds"] > 0
    assert rows[0]["ce_speedup"] == 1.0

    # The streaming loss needs far less than the full-matrix forms, and at
    # most a quarter of the logits, even for these small inputs, where the
    # losses and the per-block vectors weigh most.
    traced = {row["name"]: row["traced_bytes"] for row in rows}
    assert traced["ce_tutorial"] <= 0.25 * rows[0]["logits_bytes"]
    assert traced["ce_tutorial"] < traced["naive"]
    assert traced["ce_tutorial"] < traced["scipy"]

    table = bench.format_table(rows)
    for name in names:
        assert name in table
    assert f"{shape[0]:,} x {shape[1]:,} {shape[2]}" in table


def test_make_data_is_seeded_and_labels_in_range(bench):
    z1, y1 = bench.make_data(50, 9, "float32", seed=3)
    z2, y2 = bench.make_data(50, 9, "float32", seed=3)
    assert z1.dtype == np.float32
    assert np.array_equal(z1, z2)
    assert np.array_equal(y1, y2)
    assert y1.min() >= 0
    assert y1.max() < 9


def test_parse_shape(bench):
    assert bench.parse_shape("2048x50257xfloat32") == (2048, 50257, "float32")


ACCURACY = HARNESS.parent / "accuracy_cross_entropy.py"


def test_tiny_accuracy_run_prints_every_case_and_ce_tutorial_is_within_bounds(capsys):
    module = _load_script(ACCURACY)
    assert module.main(["--rows", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cases = [line.split() for line in lines if line.startswith("float")]
    n_cases = len(module.DTYPES) * len(module.CLASSES) * len(module.SCALES)
    assert len(cases) == n_cases
    # columns: dtype classes scale | abs rel | abs rel
    plain_longdouble = np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps
    for case in cases:
        if case[0] == "float64" and plain_longdouble:
            continue  # no reference more precise than float64 on this platform
        ours_abs = float(case[4])
        assert 0 <= ours_abs <= 4, case  # the bound the package's tests use


FUSED = HARNESS.parent / "bench_fused.py"


def test_fused_harness_smoke_run_agrees_with_torch_when_present():
    fused = _load_script(FUSED)
    rows = fused.run_shape(64, 16, 500, repeats=1, threads="1", pause=0.0)
    assert [row["pass"] for row in rows] == list(fused.PASSES)
    h, w, y = fused.make_data(64, 16, 500)
    want = float(ce_tutorial.linear_cross_entropy(h, w, y))
    for row in rows:
        assert row["loss"] == pytest.approx(want, rel=1e-6)
        assert row["seconds"]["3 products"] > 0 and row["ratio_products"] > 0
        assert row["seconds"]["chunked products"] > 0 and row["ratio_chunked"] > 0
        low, high = row["ratio_products_range"]
        assert low <= row["ratio_products"] <= high
        if fused.torch is not None:
            assert row["max_rel_diff"] < 1e-5
            assert row["ratio"] > 0
    assert "64x16x500" in fused.format_rows(rows)
    # The chunked products compute what the whole-batch ones do (G = Z in both).
    whole = fused.products(h, w, y, "forward+backward")()
    chunked = fused.chunked_products(h, w, y, "forward+backward")()
    for a, b in zip(chunked[1:], whole[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    if not os.access("/proc/self/clear_refs", os.W_OK):
        return  # the resident-set measurement needs Linux's /proc
    record = fused.measure_in_this_process(
        "ce_tutorial", "forward+backward", 64, 16, 500
    )
    assert record["returned"] == (64 + 500) * 16 * 4  # both gradients, float32
    assert record["logits"] == 64 * 500 * 4


def test_compare_fused_loads_an_old_module_beside_the_new():
    compare = _load_script(HARNESS.parent / "compare_fused.py")
    old = compare.load_old(str(pathlib.Path(ce_tutorial.__file__).parent / "_fused.py"))
    assert old is not compare.new
    line = compare.compare(old, 64, 16, 500, threads=1, repeats=1)
    fields = line.split()
    assert fields[0] == "64x16x500" and fields[1] == "1"
    assert float(fields[-2]) == 0.0  # the same code gives the same answers


def test_sweep_chunk_fraction_restores_the_rule():
    sweep = _load_script(HARNESS.parent / "sweep_chunk_fraction.py")
    rule = sweep._fused.MAX_CHUNK_FRACTION
    line = sweep.sweep(64, 16, 500, [11, 4], threads=1, repeats=1)
    assert "N/11: 6 rows" in line and "N/4: 16 rows" in line
    assert sweep._fused.MAX_CHUNK_FRACTION == rule  # the experiment left no trace
    h, w, y = sweep.make_data(64, 16, 500)
    assert 0 < sweep.memory_share(h, w, y, 4) < 1


def test_accumulating_gemm_matches_the_package_and_restores_it():
    gemm = _load_script(HARNESS.parent / "accumulating_gemm.py")
    try:
        gemm.numpy_sgemm()
    except RuntimeError as error:
        pytest.skip(str(error))  # NumPy linked to another BLAS (e.g. Accelerate)
    saved = gemm._fused._accumulate
    h, w, y = gemm.make_data(64, 16, 500)
    _, grad_h, grad_w = ce_tutorial.linear_cross_entropy(h, w, y, return_grad=True)
    _, acc_h, acc_w = gemm.ours_beta1(h, w, y)()
    assert gemm._fused._accumulate is saved  # the experiment left no trace
    np.testing.assert_array_equal(acc_h, grad_h)
    np.testing.assert_allclose(
        acc_w, grad_w, rtol=1e-5, atol=1e-6 * np.abs(grad_w).max()
    )
    _, chunk_h, chunk_w = gemm.chunked_beta1(h, w, y)()
    logits = h @ w.T  # chunked_beta1 makes the three products and nothing else
    for got, expected in ((chunk_h, logits @ w), (chunk_w, logits.T @ h)):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
    with pytest.raises(ValueError, match="grad_w must be C-contiguous float32"):
        gemm.add_product(grad_w.astype(np.float64), h @ w.T, h, 1.0)
    line = gemm.compare(64, 16, 500, threads=1, repeats=1)
    assert line.split()[0] == "64x16x500"
