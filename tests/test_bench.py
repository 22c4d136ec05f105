"""Benchmark suite smoke test at tiny sizes (the real runs are by hand: benchmarks/README.md)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from int8_support import int8_models
from trt_restore.cli import app


@pytest.fixture(scope="module")
def int8(exported_models, tmp_path_factory):
    return int8_models(exported_models, tmp_path_factory)


def test_bench_smoke_writes_json_markdown_plot(int8, tmp_path):
    root, _ = int8
    result = CliRunner().invoke(app, ["bench", "-m", str(root), "-o", str(tmp_path), "--name", "smoke",
                                      "--sizes", "64,96x64", "--configs", "ort-fp32,ort-int8", "--repeats", "2",
                                      "--warmup", "0", "--scratch", "off", "--gemm-size", "128"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.md").read_text().startswith("# trt-restore benchmark")
    assert (tmp_path / "smoke.png").stat().st_size > 1000
    assert report["gemm"]["fp32_peak_gflops"] > 0 and report["gemm"]["int8_gops"]
    rows = {(r["config"], r["size"]): r for r in report["latency"]}
    assert set(rows) == {(c, s) for c in ("ort-fp32", "ort-int8") for s in ("64", "96x64")}
    for row in rows.values():
        assert row["total"]["n"] == 2 and row["total"]["median"] > 0
        assert {"encode", "mapping", "decode"} <= set(row["stages"])
        assert 0 < row["peak_rss_mb"] < 4096
        assert row["conv_gflop"]["mapping"] > 0 and row["conv_gflops_achieved"]["mapping"] > 0
    assert set(report["ratios"]["ort_int8_vs_ort_fp32_speedup"]) == {"64", "96x64"}
    assert report["tensorrt"].startswith("n/a") or report["environment"]["gpu"]
    assert "QLinearConv" in report["int8_kernel_note"]


def test_bench_refuses_bad_options(int8, tmp_path):
    root, _ = int8
    bad = CliRunner().invoke(app, ["bench", "-m", str(root), "--configs", "tensorrt-fp8"])
    assert bad.exit_code == 2
    missing = CliRunner().invoke(app, ["bench", "-m", str(tmp_path)])
    assert missing.exit_code == 2
