"""Run it twice at once: one proceeds, the other refuses naming the holder; stale locks recover.

The slow side holds the lock with `RECAP_LABEL_SLOW_AT=<point>:<seconds>` (recap_label.store.faults).
Each race costs a few subprocesses and held locks: the fast tier keeps the label+label race and the
in-process reused-pid case; the rest are `slow`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from recap_label.demo import synth

from support import (
    CHAOS,
    LOOKAHEAD,
    clone,
    cmd,
    count,
    labels_by_file,
    lineage_json,
    run_sub,
    sub_env,
    tiny_spec,
    tree_digest,
)

ROUNDS = 6 if CHAOS else 1


def _start(args, slow=None, home=None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sub_env(home, slow=slow)
    )


def _finish(p: subprocess.Popen) -> tuple[int, str]:
    _, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    return p.returncode, err


def _one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


def _wait_for(path: Path, timeout=20.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.01)


LABEL = lambda d, w: ["label", d, "--values", w["values"], *LOOKAHEAD]  # noqa: E731


@pytest.mark.parametrize("round_", [pytest.param(r, marks=() if r == 0 else pytest.mark.slow) for r in range(ROUNDS)])
@pytest.mark.parametrize("pair", ["label+label", pytest.param("label+rollback", marks=pytest.mark.slow)])
def test_two_writers_started_together_exactly_one_proceeds(world, cli, home, pair, round_):
    w = world
    ds = clone(w["labeled"] if pair == "label+rollback" else w["template"], w["base"] / f"pair-{pair}-{round_}")
    if pair == "label+label":
        argv = [LABEL(ds, w), LABEL(ds, w)]
    else:
        argv = [["label", ds, "--values", w["values"], *LOOKAHEAD, "--positive-ratio", "0.6"], ["rollback", ds]]
    procs = [_start(a, slow="locked:0.8") for a in argv]
    results = [_finish(p) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    (winner,) = [(p, a) for p, a, (rc, _) in zip(procs, argv, results) if rc == 0]
    (err,) = [e for rc, e in results if rc == 2]
    line = _one_error_line(err)
    assert f"is locked by `recap-label {winner[1][0]}` (pid {winner[0].pid} " in line, line
    # the winner's work is whole; the loser changed nothing
    runs = lineage_json(ds)["runs"]
    if pair == "label+label":
        assert labels_by_file(ds) == w["new"] and [r["kind"] for r in runs] == ["label"]
    elif winner[1][0] == "rollback":
        assert labels_by_file(ds) == w["old"] and [r["kind"] for r in runs] == ["label", "rollback"]
    else:
        assert [r["kind"] for r in runs] == ["label", "label"]
    assert not (ds / "meta" / "recap_label" / "lock").exists()
    assert cli("verify", ds, code=None).exit_code == 0
    count("concurrent pairs raced")


@pytest.mark.slow
def test_verify_and_rollback_while_label_is_staging(world, cli, home):
    """While a label run stages its files: rollback refuses naming it, verify says a write is in
    progress (exit 1) and touches nothing; afterwards everything is whole."""
    w = world
    ds = clone(w["template"], w["base"] / "staging")
    writer = _start(LABEL(ds, w), slow="stage:0.3")
    t0 = time.monotonic()
    while not list((ds / "data").rglob(".recap-stage-*")):
        assert time.monotonic() - t0 < 20 and writer.poll() is None, "label never staged"
        time.sleep(0.01)
    before = tree_digest(ds / "data")
    proc = run_sub(["rollback", ds])
    line = _one_error_line(proc.stderr)
    assert proc.returncode == 2 and f"is locked by `recap-label label` (pid {writer.pid} " in line, line
    v = cli("verify", ds, "--json", code=1)
    assert '"no write in progress"' in v.stdout and f"pid {writer.pid}" in v.stdout
    staged_now = {k: v for k, v in tree_digest(ds / "data").items() if not k.split("/")[-1].startswith(".")}
    assert staged_now == {k: v for k, v in before.items() if not k.split("/")[-1].startswith(".")}
    rc, err = _finish(writer)
    assert rc == 0, err
    assert labels_by_file(ds) == w["new"]
    assert cli("verify", ds, code=None).exit_code == 0
    count("concurrent pairs raced", 2)


@pytest.mark.slow
def test_stale_lock_of_a_killed_holder_is_recovered(world, cli, home):
    w = world
    ds = clone(w["template"], w["base"] / "stale")
    holder = _start(LABEL(ds, w), slow="locked:30")
    lock = ds / "meta" / "recap_label" / "lock"
    _wait_for(lock)
    time.sleep(0.1)
    blocked = run_sub(LABEL(ds, w))
    assert blocked.returncode == 2 and f"(pid {holder.pid} " in _one_error_line(blocked.stderr)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock.exists()
    proc = run_sub(LABEL(ds, w))  # the holder is gone: its lock is cleared, the run proceeds
    assert proc.returncode == 0, proc.stderr
    assert labels_by_file(ds) == w["new"] and not lock.exists()
    count("stale locks recovered")


def test_stale_lock_of_a_reused_pid_is_recovered(world, cli, home):
    """The recorded pid now belongs to a different (newer) process: still stale."""
    import json
    import socket

    w = world
    ds = clone(w["template"], w["base"] / "reused")
    lock = ds / "meta" / "recap_label" / "lock"
    lock.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "pid_start": "1",
                "host": socket.gethostname(),
                "command": "label",
                "started": "long ago",
            }
        )
    )
    cli("label", ds, "--values", w["values"], *LOOKAHEAD)
    assert labels_by_file(ds) == w["new"] and not lock.exists()
    count("stale locks recovered")


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_processes_breaking_the_same_stale_lock(world, cli, home, round_):
    """Both find the same dead holder at once; before the folder lock, both removed it and both
    went on writing. Now exactly one proceeds and the other names it."""
    import json
    import socket

    w = world
    ds = clone(w["template"], w["base"] / f"break-{round_}")
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = ds / "meta" / "recap_label" / "lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "label", "started": "then"}))
    procs = [_start(LABEL(ds, w), slow="lock-break:0.6") for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    winner = [p for p, (rc, _) in zip(procs, results) if rc == 0][0]
    (err,) = [e for rc, e in results if rc == 2]
    assert f"(pid {winner.pid} " in _one_error_line(err)
    assert [r["kind"] for r in lineage_json(ds)["runs"]] == ["label"]
    assert labels_by_file(ds) == w["new"] and not lock.exists()
    count("stale locks recovered")
    count("concurrent pairs raced")


@pytest.mark.slow
def test_two_copies_into_the_same_destination(cli, home, tmp_path):
    src = synth.write_dataset(tmp_path / "vial", tiny_spec("v2.1", episodes=3, length=12))
    h = tmp_path / "h"
    procs = [_start(["copy", src], slow="copy-verified:0.4", home=h) for _ in range(2)]
    results = [_finish(p) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes in ([0, 2], [0, 0]), results
    dests = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("vial_vlm_label"))
    if codes == [0, 2]:
        (err,) = [e for rc, e in results if rc == 2]
        _one_error_line(err)
        assert dests == ["vial_vlm_label"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".recap-copy-")]
    for d in dests:
        assert cli("verify", tmp_path / d, code=None).exit_code == 0
    count("concurrent pairs raced")


def test_verify_while_label_commits_says_run_again(world, cli, home):
    """verify reads without the lock; a label run commits between its reads of the data files (each
    read held 0.5 s). verify notices (the files' signatures before and after) and says to run it
    again, instead of failing invariants on a mix of old and new files or calling a file damaged;
    the next verify passes."""
    w = world
    ds = clone(w["labeled"], w["base"] / "verify-under-commit")
    mark = w["base"] / "verify-under-commit.held"
    env = sub_env(None, slow="columns-read:0.5")
    env["RECAP_LABEL_SLOW_MARK"] = str(mark)
    verify = subprocess.Popen(cmd("verify", ds), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(mark)  # the first data file is read
    cli("label", ds, "--values", w["values"], *LOOKAHEAD, "--positive-ratio", "0.6")
    reads_before_commit = len(mark.read_text().splitlines())
    rc, err = _finish(verify)
    assert reads_before_commit < len(list((ds / "data").rglob("*.parquet"))), "the commit did not land mid-read"
    line = _one_error_line(err)
    assert rc == 2 and "changed while verify was reading it" in line and "run verify again" in line, (rc, err)
    assert "restore" not in line and "file(s) were replaced" in line, line
    assert cli("verify", ds, code=None).exit_code == 0
    count("verify under a concurrent commit")
