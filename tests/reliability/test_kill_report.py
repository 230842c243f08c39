"""Interrupted after the commit point: SIGKILL and SIGINT landing while a state-changing command
reports (and, for SIGINT, before and during its commit), for `copy`, `label`, `rollback` and
`rollback --iteration [--delete]`.

Each trial holds the command at a named point (`RECAP_LABEL_SLOW_AT`, recap_label.store.faults),
waits until the process is there (`RECAP_LABEL_SLOW_MARK`), and signals it:
  report    done and durable, nothing printed yet;
  reported  the whole report printed, its completion record not yet dropped;
  locked    (SIGINT) lock taken, before the commit: the message says nothing changed;
  rename    (SIGINT) inside the commit: the interrupt takes effect once the commit and its record
            landed, and the message says what was done.
Then the same command line again: it reports that run (never does the work twice: `rollback`
never undoes a second run, `copy` never makes a `_v2`), and the end state — labels, run history,
registry, `_active`, retired mark, leftovers — equals one uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from recap_label.demo import synth

from support import Cli, cmd, count, labels_by_file, sub_env, tiny_spec, values_file

SPEC = tiny_spec("v2.1", episodes=3, length=12)


def _label_args(ds: Path) -> list:
    """Distinct random V (no ties): every ratio labels differently, so a second rollback shows."""
    return ["--values", values_file(ds, ds.parent / f"values-{ds.name}.parquet"), "--lookahead", "5"]


def _cli(monkeypatch, home: Path, *args, code=0):
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    return Cli()(*args, code=code)


def _world(monkeypatch, parent: Path, command: str) -> list:
    """The state before `command`, built in-process; returns the command's arguments."""
    home = parent / "home"
    src = synth.write_dataset(parent / "vial", SPEC)
    v1, v2 = parent / "vial_vlm_label", parent / "vial_vlm_label_v2"
    if command == "copy":
        return ["copy", src, "--json"]
    _cli(monkeypatch, home, "copy", src)
    if command == "label":
        return ["label", v1, *_label_args(v1), "--json"]
    _cli(monkeypatch, home, "label", v1, *_label_args(v1))
    if command == "rollback":
        _cli(monkeypatch, home, "label", v1, *_label_args(v1), "--positive-ratio", "0.5")
        return ["rollback", v1, "--json"]
    _cli(monkeypatch, home, "copy", "local/vial_vlm_label_active")
    _cli(monkeypatch, home, "label", v2, *_label_args(v2))
    return [
        "rollback",
        "local/vial_vlm_label_v2",
        "--iteration",
        *(["--delete"] if command == "retire-delete" else []),
        "--json",
    ]


def _rel(parent: Path, p: str) -> str:
    real = os.path.realpath(p)
    return os.path.relpath(real, os.path.realpath(parent))


def end_state(parent: Path) -> dict:
    """What one run of a command decides, independent of the folder and the clock."""
    out: dict = {}
    for ds in sorted(p for p in parent.iterdir() if p.is_dir() and p.name != "home"):
        state = ds / "meta" / "recap_label"
        entry: dict = {"labels": labels_by_file(ds), "state": sorted(os.listdir(state)) if state.is_dir() else None}
        if (state / "lineage.json").exists():
            lineage = json.loads((state / "lineage.json").read_text())
            entry["runs"] = [(r["id"], r["kind"], r.get("rolled_back"), r.get("undid")) for r in lineage["runs"]]
            entry["retired"] = bool(lineage.get("retired"))
        out[ds.name] = entry
    local = parent / "home" / "local"
    out["local"] = {
        p.name: _rel(parent, os.readlink(p)) if p.is_symlink() else "file"
        for p in sorted(local.iterdir() if local.is_dir() else [])
    }
    return out


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict:
    """The end state of one uninterrupted run of each command."""
    refs = {}
    with pytest.MonkeyPatch.context() as mp:
        for command in ("copy", "label", "rollback", "retire", "retire-delete"):
            parent = tmp_path_factory.mktemp(f"ref-{command}")
            args = _world(mp, parent, command)
            _cli(mp, parent / "home", *args)
            refs[command] = end_state(parent)
    return refs


def interrupt(parent: Path, args: list, sig: int, point: str) -> tuple[int, str, str]:
    """Run `args` held at `point`, send `sig` once it is there; (exit code, stdout, stderr)."""
    mark = parent / "held-at"
    # held long enough to be signalled there; a rename is held briefly, as each file of the commit is
    env = sub_env(parent / "home", slow=f"{point}:{0.5 if point == 'rename' else 20}")
    env["RECAP_LABEL_SLOW_MARK"] = str(mark)
    proc = subprocess.Popen(cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.monotonic()
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < 60, f"never reached {point}"
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    mark.unlink()
    assert "Traceback" not in err, err
    return proc.returncode, out, err


DONE = {  # the Ctrl-C message after the commit point names what was done
    "copy": "copied ",
    "label": "labeled ",
    "rollback": "rolled back run-0002",
    "retire": "retired vial_vlm_label_v2",
    "retire-delete": "retired vial_vlm_label_v2 and deleted its folder",
}
AGAIN = {  # the rerun's note: that run, reported, not done again
    "copy": "finished an interrupted copy",
    "label": "finished the interrupted run-0001",
    "rollback": "finished the interrupted run-0003",
    "retire": "finished the interrupted retirement",
    "retire-delete": "finished the interrupted retirement",
}


def _trial(monkeypatch, tmp_path, references, command: str, sig: int, point: str) -> None:
    parent = tmp_path / f"{command}-{point}-{sig}"
    parent.mkdir()
    args = _world(monkeypatch, parent, command)
    before = end_state(parent)
    rc, out, err = interrupt(parent, args, sig, point)
    what = (command, point, signal.Signals(sig).name, rc, err)
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL, what
    else:
        assert rc == 130, what
        (line,) = [ln for ln in err.splitlines() if ln.startswith("Error: ")]
        if point == "locked":
            said = "no label was written" if command == "label" else "nothing was changed"
            assert f"interrupted before the commit: {said}" in line, what
            assert end_state(parent) == before, what  # true: nothing changed
        else:
            assert DONE[command] in line and "interrupted while reporting" in line, what
            assert "run the same command again" in line, what
    if point == "reported":
        json.JSONDecoder().raw_decode(out)  # the whole report was printed before the interrupt (then its error)
    again = _cli(monkeypatch, parent / "home", *args)
    if point != "locked":
        assert AGAIN[command] in again.stdout, (what, again.stdout)
    assert end_state(parent) == references[command], what


COMMANDS = ["copy", "label", "rollback", "retire", "retire-delete"]


def test_rollback_ctrl_c_while_reporting_then_again(monkeypatch, tmp_path, references, home):
    """The fast tier's case (issue 20, item 4): Ctrl-C after the commit, before the report: the
    message says what was done; running again, as told, reports it and does not undo run-0001."""
    _trial(monkeypatch, tmp_path, references, "rollback", signal.SIGINT, "report")
    count("interrupted while reporting: rollback SIGINT report")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["report", "reported"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize("command", COMMANDS)
def test_interrupted_while_reporting(monkeypatch, tmp_path, references, home, command, sig, point):
    _trial(monkeypatch, tmp_path, references, command, sig, point)
    count(f"interrupted while reporting: {signal.Signals(sig).name} at {point}")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["locked", "rename"])
@pytest.mark.parametrize("command", ["label", "rollback"])
def test_ctrl_c_before_and_during_the_commit(monkeypatch, tmp_path, references, home, command, point):
    """Before the commit: nothing changed, and the rerun does the work once; during it: the commit
    completes first, then the interrupt says what was done."""
    _trial(monkeypatch, tmp_path, references, command, signal.SIGINT, point)
    count(f"Ctrl-C {'before' if point == 'locked' else 'during'} the commit")


def test_an_error_while_reporting_says_what_was_done(monkeypatch, tmp_path, references, home):
    """An error after the commit point (here: stdout is a full disk, so the report cannot be
    printed) does not read as if nothing happened: the line names what was done first; the same
    command again reports it and does not undo a second run."""
    parent = tmp_path / "error-while-reporting"
    parent.mkdir()
    args = _world(monkeypatch, parent, "rollback")
    with open("/dev/full", "w") as full:
        proc = subprocess.run(cmd(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=sub_env(parent / "home"))
    assert proc.returncode == 2, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error: ")]
    assert line.startswith("Error: rolled back run-0002 (") and "; then: " in line, proc.stderr
    assert "run the same command again for its report" in line and "Traceback" not in proc.stderr
    again = _cli(monkeypatch, parent / "home", *args)
    assert AGAIN["rollback"] in again.stdout
    assert end_state(parent) == references["rollback"]
