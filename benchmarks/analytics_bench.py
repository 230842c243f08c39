"""polars vs pyarrow/numpy for the analytics of `diff` and `verify` (issue: keep the faster).

    python -m benchmarks.analytics_bench [--repeat 7] [--scale 1] [--workdir DIR]

Generates two label runs' worth of a dataset shaped like the RECAP reference run
(synth.reference_spec without cameras: 10 rollouts, 21,286 frames, v2.1) as two iteration
copies, then times the same work both ways, in one process, median of --repeat runs:

- diff core: read episode/frame/task/intervention/label of both datasets, join them on
  (episode_index, frame_index), the 3x3 confusion matrix by intervention, flips per episode and
  per task.
- verify scan: read the label columns of one dataset, label counts overall, by intervention
  and per episode.

polars' own import time is reported apart (a CLI process pays it once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.demo import synth
from recap_label.stats import confusion

CLASSES = ("positive", "negative", "none")
COLS = ["episode_index", "frame_index", "task_index", "intervention", "adv_ind"]


def make_pair(workdir: Path, scale: int = 1) -> tuple[list[Path], list[Path]]:
    """Two datasets of the reference shape (its episodes `scale` times over) whose label columns
    differ (random labels)."""
    spec = synth.reference_spec("v2.1", cameras={})
    spec = replace(spec, episodes=spec.episodes * scale)
    roots = []
    for i, name in enumerate(("ref_vlm_label", "ref_vlm_label_v2")):
        root = synth.write_dataset(workdir / name, spec)
        rng = np.random.default_rng(i)
        for path in sorted((root / "data").rglob("*.parquet")):
            t = pq.read_table(path)
            labels = rng.choice(np.array(["positive", "negative"], dtype=object), t.num_rows, p=[0.3, 0.7])
            human = (
                np.asarray(t["intervention"].to_numpy(), dtype=bool)
                if not pa.types.is_list(t["intervention"].type)
                else None
            )
            if human is not None:
                labels[human] = "positive"
            t = t.set_column(t.schema.get_field_index("adv_ind"), "adv_ind", pa.array(labels, pa.string()))
            pq.write_table(t, path)
        roots.append(root)
    return [sorted((r / "data").rglob("*.parquet")) for r in roots]


def _read_numpy(files: list[Path]) -> dict[str, np.ndarray]:
    t = pa.concat_tables(pq.read_table(p, columns=COLS) for p in files)
    return {
        c: (np.asarray(t[c].to_numpy(zero_copy_only=False), dtype=object) if c == "adv_ind" else t[c].to_numpy())
        for c in COLS
    }


def diff_numpy(a_files: list[Path], b_files: list[Path]) -> dict:
    a, b = _read_numpy(a_files), _read_numpy(b_files)
    ka = (a["episode_index"].astype(np.int64) << 32) | a["frame_index"]
    kb = (b["episode_index"].astype(np.int64) << 32) | b["frame_index"]
    _, ia, ib = np.intersect1d(ka, kb, assume_unique=True, return_indices=True)
    la, lb, human = a["adv_ind"][ia], b["adv_ind"][ib], a["intervention"][ia].astype(bool)
    out = {
        "all": confusion(la, lb, CLASSES),
        "h1": confusion(la[human], lb[human], CLASSES),
        "h0": confusion(la[~human], lb[~human], CLASSES),
    }
    changed = la != lb
    for name, ids in (("episode", a["episode_index"][ia]), ("task", a["task_index"][ia])):
        uniq, inv = np.unique(ids, return_inverse=True)
        out[name] = dict(zip(uniq.tolist(), np.bincount(inv, weights=changed).astype(int).tolist()))
    return out


def diff_polars(a_files: list[Path], b_files: list[Path]) -> dict:
    import polars as pl

    a = pl.scan_parquet([str(p) for p in a_files]).select(COLS)
    b = pl.scan_parquet([str(p) for p in b_files]).select(
        ["episode_index", "frame_index", pl.col("adv_ind").alias("b")]
    )
    j = (
        a.join(b, on=["episode_index", "frame_index"], how="inner")
        .with_columns((pl.col("adv_ind") != pl.col("b")).alias("changed"))
        .collect()
    )
    out = {}
    counts = j.group_by(["intervention", "adv_ind", "b"]).len()
    for name, sel in (("all", None), ("h1", 1), ("h0", 0)):
        m = np.zeros((3, 3), dtype=np.int64)
        rows = counts if sel is None else counts.filter(pl.col("intervention") == sel)
        for la, lb, n in rows.select(["adv_ind", "b", "len"]).iter_rows():
            m[CLASSES.index(la), CLASSES.index(lb)] += n
        out[name] = m
    for name, col in (("episode", "episode_index"), ("task", "task_index")):
        g = j.group_by(col).agg(pl.col("changed").sum()).sort(col)
        out[name] = dict(zip(g[col].to_list(), g["changed"].to_list()))
    return out


def scan_numpy(files: list[Path]) -> dict:
    a = _read_numpy(files)
    human = a["intervention"].astype(bool)
    uniq, inv = np.unique(a["episode_index"], return_inverse=True)
    out = {}
    for c in CLASSES:
        hit = a["adv_ind"] == c
        out[c] = (int(hit.sum()), int((hit & human).sum()), np.bincount(inv, weights=hit).astype(int).tolist())
    return out


def scan_polars(files: list[Path]) -> dict:
    import polars as pl

    g = (
        pl.scan_parquet([str(p) for p in files])
        .select(COLS)
        .group_by(["episode_index", "adv_ind"])
        .agg(pl.len().alias("n"), pl.col("intervention").sum().alias("h"))
        .collect()
    )
    out = {}
    for c in CLASSES:
        s = g.filter(pl.col("adv_ind") == c).sort("episode_index")
        out[c] = (int(s["n"].sum()), int(s["h"].sum()), s["n"].to_list())
    return out


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(workdir: Path, repeat: int, scale: int = 1) -> dict:
    a_files, b_files = make_pair(workdir, scale)
    t0 = time.perf_counter()
    import polars  # noqa: F401

    import_s = time.perf_counter() - t0
    same = {
        k: np.array_equal(v, w) if isinstance(v, np.ndarray) else v == w
        for (k, v), w in zip(diff_numpy(a_files, b_files).items(), diff_polars(a_files, b_files).values())
    }
    assert all(same.values()), same  # both compute the same thing
    frames = sum(pq.ParquetFile(p).metadata.num_rows for p in a_files)
    return {
        "frames": frames,
        "repeat": repeat,
        "polars_version": polars.__version__,
        "polars_import_s": import_s,
        "diff_numpy_s": _median_s(lambda: diff_numpy(a_files, b_files), repeat),
        "diff_polars_s": _median_s(lambda: diff_polars(a_files, b_files), repeat),
        "scan_numpy_s": _median_s(lambda: scan_numpy(a_files), repeat),
        "scan_polars_s": _median_s(lambda: scan_polars(a_files), repeat),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument(
        "--scale", type=int, default=1, help="the reference episodes this many times over (10: 212,860 frames)"
    )
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(args.workdir or Path(tmp), args.repeat, args.scale)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
