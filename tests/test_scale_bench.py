"""Smoke test of `python -m benchmarks.scale_bench --quick`: every command measured beside F."""

from __future__ import annotations

import json

import pytest

from benchmarks import scale_bench


@pytest.mark.slow  # generates 20,000 frames and runs eight commands as subprocesses
def test_quick_scale_bench_measures_every_command(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert scale_bench.main(["--quick", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["frames"] == scale_bench.QUICK_FRAMES and result["floor_s"] > 0
    assert set(result["commands"]) == set(scale_bench.TARGETS)
    for c in result["commands"].values():
        assert (
            c["wall_s"] > 0 and c["maxrss"] > 10e6 and c["of_floor"] == pytest.approx(c["wall_s"] / result["floor_s"])
        )
    rows = scale_bench.rows([result], quick=True)
    assert all(r.get("ok") is None for r in rows)  # no targets at the quick size
    assert "floor F" in capsys.readouterr().out
    assert not list((tmp_path / "cache").glob("scale-*")), "scratch folders are removed"
