"""`label --shard I/N --score-only`: independent scoring processes (a SLURM array, Ray tasks),
then one final `label` that infers nothing and computes one global threshold."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth
from recap_label.demo.tiny_model import TINY_CHECKPOINT, TINY_TOKENIZER

from support import error_line, tree_digest

MODEL = [
    "--checkpoint-dir",
    str(TINY_CHECKPOINT),
    "--tokenizer-path",
    str(TINY_TOKENIZER),
    "--base-image-col",
    "observation.images.base",
    "--lookahead",
    "6",
    "--device",
    "cpu",
    "--num-workers",
    "0",
]
PARTS = Path("meta") / "recap_label" / "values-partial"
pytestmark = pytest.mark.slow  # concurrent model subprocesses: the full suite (`make test`) runs them


@pytest.fixture
def copies(cli, lerobot_home, tmp_path) -> tuple[Path, Path]:
    """Two identical copies of one dataset: one labeled by one process, one by shards."""
    spec = synth.simple_spec(
        "v3.0", episodes=9, length=18, demos=1, png_cameras=1, video_cameras=0, size=16, rows_per_file=50
    )
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", tmp_path / "one", "--no-register")
    cli(
        "copy", tmp_path / "ds", tmp_path / "sharded", "--no-register", "--from-original"
    )  # a second line: both copies of the original
    return tmp_path / "one", tmp_path / "sharded"


def recap(*args, env_extra=None, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    r = subprocess.run([sys.executable, "-m", "recap_label", *map(str, args)], capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def start_shard(ds: Path, i: int, n: int, *extra, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recap_label",
            "label",
            str(ds),
            *MODEL,
            "--shard",
            f"{i}/{n}",
            "--score-only",
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def labels_by_file(root: Path) -> dict[str, list]:
    return {
        p.relative_to(root).as_posix(): pq.read_table(p, columns=["adv_ind"])["adv_ind"].to_pylist()
        for p in sorted((root / "data").rglob("*.parquet"))
    }


def sidecar_values(root: Path) -> list:
    t = pq.read_table(root / "meta" / "recap_label" / "values.parquet").sort_by(
        [("episode_index", "ascending"), ("frame_index", "ascending")]
    )
    return list(
        zip(
            t["episode_index"].to_pylist(), t["frame_index"].to_pylist(), t["value"].to_pylist(), t["label"].to_pylist()
        )
    )


def test_four_concurrent_shards_then_one_label_equal_one_process(cli, copies, tmp_path):
    one, sharded = copies
    t0 = time.perf_counter()
    single = json.loads(recap("label", one, *MODEL, "--json").stdout)
    t_one = time.perf_counter() - t0
    assert single["values_from"] == "inference"

    t0 = time.perf_counter()
    procs = [start_shard(sharded, i, 4) for i in range(1, 5)]
    outs = [p.communicate() for p in procs]
    t_shards = time.perf_counter() - t0
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    reports = [json.loads(out) for out, _ in outs]
    assert sorted(r["shard"] for r in reports) == ["1/4", "2/4", "3/4", "4/4"]
    assert sum(r["episodes"] for r in reports) == 8  # every rollout episode in exactly one shard
    assert max(r["frames"] for r in reports) - min(r["frames"] for r in reports) <= 18  # balanced by frames
    assert labels_by_file(sharded) == labels_by_file(tmp_path / "ds")  # no labels written yet
    notes = json.loads(cli("verify", sharded, "--json").stdout)["notes"]
    assert any("all 4 shards scored" in n for n in notes), notes

    # the final label: every part found, no inference, no torch in the process
    code = (
        "import sys; from recap_label.cli import app\n"
        f"try: app({['label', str(sharded), *MODEL, '--json']!r})\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    final = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert final["values_from"] == "scored parts (4 shards, no inference)"
    assert "HEAVY []" in r.stdout
    assert final["thresholds"] == single["thresholds"]  # one global threshold over all shards
    assert labels_by_file(sharded) == labels_by_file(one)
    assert sidecar_values(sharded) == sidecar_values(one)
    assert not (sharded / PARTS).exists()  # parts folded into the sidecar
    print(f"\n1 process: {t_one:.1f} s; 4 concurrent shards: {t_shards:.1f} s (2 cores)")


def test_killed_shard_rerun_completes_and_changes_nothing_else(cli, copies):
    _, ds = copies
    for i in (1, 3):
        recap("label", ds, *MODEL, "--shard", f"{i}/3", "--score-only")
    before = tree_digest(ds)
    killed = start_shard(ds, 2, 3, env_extra={"RECAP_LABEL_CRASH_AT": "episode-values:1"})
    killed.communicate()
    assert killed.returncode == -9  # SIGKILL after its first part
    after_kill = tree_digest(ds)
    assert {k: v for k, v in before.items() if k in after_kill} == {k: after_kill[k] for k in before if k in after_kill}
    assert set(before) <= set(after_kill)  # others' parts untouched, one new part, no labels
    r = recap("verify", ds, "--json", check=False)
    assert "shards 2 of 3 missing" in " ".join(json.loads(r.stdout)["notes"])
    out = json.loads(recap("label", ds, *MODEL, "--shard", "2/3", "--score-only", "--json").stdout)
    assert out["reused"] == 1 and out["inferred"] == out["episodes"] - 1 and out["missing_shards"] == []
    done = tree_digest(ds)
    assert {k: done[k] for k in before} == before  # nothing else changed
    final = json.loads(recap("label", ds, *MODEL, "--json").stdout)
    assert final["values_from"] == "scored parts (3 shards, no inference)"


def test_missing_shards_are_named(cli, copies):
    _, ds = copies
    recap("label", ds, *MODEL, "--shard", "2/4", "--score-only")
    r = recap("label", ds, *MODEL, check=False)
    assert r.returncode == 2
    assert r.stderr.startswith("Error: shards 1, 3, 4 of 4 have not finished scoring")
    notes = json.loads(recap("verify", ds, "--json", check=False).stdout)["notes"]
    assert any("shards 1, 3, 4 of 4 missing" in n for n in notes)


def test_parts_of_other_settings_are_refused_naming_what_differs(cli, copies):
    _, ds = copies
    for i in (1, 2):
        recap("label", ds, *MODEL, "--no-use-ema", "--shard", f"{i}/2", "--score-only")
    before = tree_digest(ds)
    r = recap("label", ds, *MODEL, check=False)
    assert r.returncode == 2 and "shard parts scored with other settings: ema (False there, True here)" in r.stderr
    assert tree_digest(ds) == before


def test_score_everything_then_dry_run_infers_nothing(cli, copies):
    _, ds = copies
    out = json.loads(recap("label", ds, *MODEL, "--score-only", "--json").stdout)
    assert out["shard"] is None and out["episodes"] == 8 and out["inferred"] == 8
    dry = json.loads(cli("label", ds, *MODEL, "--dry-run", "--json").stdout)
    assert dry["values_from"] == "scored parts (resumed: 8 of 8 episodes were already done, no inference)"


def test_label_and_scoring_keep_out_of_each_others_way(cli, copies):
    _, ds = copies
    # a live scorer (this very process stands in for it) blocks a label commit
    scorers = ds / PARTS / "scorers"
    scorers.mkdir(parents=True)
    me = {"pid": os.getpid(), "pid_start": None, "host": socket.gethostname(), "what": "scoring shard 3/16"}
    (scorers / f"{me['host']}-{me['pid']}.json").write_text(json.dumps(me))
    before = tree_digest(ds)
    r = cli("label", ds, "--value-column", "value_label", code=2)
    assert error_line(r).startswith(
        f"Error: {ds.name} is being scored by 1 process(es): scoring shard 3/16 (pid {os.getpid()}"
    )
    assert tree_digest(ds) == before
    shutil.rmtree(ds / PARTS)
    # a live label (its lock) blocks scoring
    lock = ds / "meta" / "recap_label" / "lock"
    lock.write_text(
        json.dumps({"pid": os.getpid(), "pid_start": None, "host": socket.gethostname(), "command": "label"})
    )
    r = cli("label", ds, *MODEL, "--shard", "1/2", "--score-only", code=2)
    assert error_line(r).startswith(f"Error: {ds.name} is being written by `recap-label label` (pid {os.getpid()})")
    lock.unlink()


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--shard", "0/4", "--score-only"],
            "Error: --shard 0/4: I must be between 1 and N (N >= 1); shards are numbered 1..N",
        ),
        (
            ["--shard", "5/4", "--score-only"],
            "Error: --shard 5/4: I must be between 1 and N (N >= 1); shards are numbered 1..N",
        ),
        (
            ["--shard", "a/b", "--score-only"],
            "Error: --shard must be I/N with whole numbers, e.g. --shard 3/16, got 'a/b'",
        ),
        (
            ["--shard", "1/4"],
            "Error: --shard needs --score-only: each shard only scores its part; the labels are written once, by a "
            "final `label` without --shard",
        ),
        (
            ["--score-only", "--dry-run"],
            "Error: --score-only and --dry-run do not go together: --score-only writes value parts, --dry-run writes "
            "nothing; run them one after the other",
        ),
        (
            ["--episode_shard_index", "1"],
            "Error: --episode_shard_index and --episode_num_shards go together; or use --shard I/N",
        ),
    ],
)
def test_bad_shard_options(cli, copies, args, message):
    _, ds = copies
    before = tree_digest(ds)
    assert error_line(cli("label", ds, *MODEL, *args, code=2)) == message
    assert tree_digest(ds) == before


@pytest.mark.parametrize("source", [["--value-column", "value_label"], ["--values", "v.parquet"]])
def test_shards_need_a_model(cli, copies, source):
    _, ds = copies
    before = tree_digest(ds)
    r = cli("label", ds, *source, "--shard", "1/2", "--score-only", code=2)
    assert (
        error_line(r)
        == "Error: --shard needs --checkpoint-dir: values from --values or --value-column have nothing to score"
    )
    assert tree_digest(ds) == before


def test_pistar_world_shard_flags_and_a_different_n(cli, copies):
    _, ds = copies
    out = json.loads(
        cli(
            "label", ds, *MODEL, "--episode_shard_index", "0", "--episode_num_shards", "2", "--score-only", "--json"
        ).stdout
    )
    assert out["shard"] == "1/2"
    r = cli("label", ds, *MODEL, "--shard", "1/3", "--score-only", code=2)
    assert error_line(r).startswith(
        "Error: this copy is being scored as 2 shards, not 3; give every shard the same N (the split would not tile)"
    )
