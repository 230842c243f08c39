"""Smoke test of `python -m benchmarks.bench --quick`: every section runs at a tiny size."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench


@pytest.mark.slow
def test_quick_bench_runs_every_section(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["quick"] and result["env"]["torch"] and result["env"]["cores"]
    sections = {r["section"].split()[0] for r in result["results"]}
    assert sections == {"1", "2", "3", "4", "5", "6", "7", "8"}
    by_name = {r["name"]: r for r in result["results"]}
    assert by_name["sequential / random access"]["value"] > 0
    assert all(r["value"] is None or r["value"] >= 0 for r in result["results"])
    assert "recap-label benchmarks" in capsys.readouterr().out
    # the data is generated once and reused
    assert any((tmp_path / "cache").glob("*/DONE"))
    assert not list((tmp_path / "cache").glob("work-*")), "scratch copies are removed"
