"""The polars-vs-numpy measurement behind the choice of numpy for `diff` and `verify`."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_analytics_bench_both_ways_agree(tmp_path):
    """On the 21,286-frame reference shape both implementations give the same numbers (run()
    asserts it) and both are timed."""
    from benchmarks.analytics_bench import run

    res = run(tmp_path, repeat=1)
    assert (
        res["frames"] == 21286 and res["diff_numpy_s"] > 0 and res["diff_polars_s"] > 0 and res["polars_import_s"] > 0
    )
