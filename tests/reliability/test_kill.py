"""SIGKILL anywhere: `copy`, `label` and `rollback` killed at every crash point and at seeded
random instants, then checked and finished.

Crash points: `RECAP_LABEL_CRASH_AT=*:<n>` kills the n-th file operation of any kind (see
recap_label.store.faults), for n = 1, 2, … until a run gets through untouched: every point of the
command, in order. Random instants: a timer SIGKILLs the subprocess after a seeded delay drawn
over the length of an uninterrupted run.

After every kill: the original is byte-identical; every data parquet of the copy reads, with its
schema, metadata, row groups and non-label columns unchanged, and each file's labels entirely old
or entirely new; `verify` reports (exit 0/1, no traceback); the next `label` / `rollback` / `copy`
finishes the job, and the result equals an uninterrupted run's.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recap_label.devtools import synth

from _rel import (  # noqa: F401
    LOOKAHEAD, CHAOS, SEED, Cli, assert_intact, cli, clone, cmd, count, file_state, full_digest, hidden_leftovers, home,
    labels_by_file, lineage, run_sub, sub_env, tally, tiny_spec, tree_digest, values_file,
)

TIMER_KILLS = 40 if CHAOS else 5


def _in_env(monkeypatch, home: Path):
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))


def _sweep_points(make_trial, args_of, home_of=lambda d: None) -> list[tuple[int, Path]]:
    """Run the command with `*:n` for n = 1, 2, … (two at a time) until a run is not killed.
    Returns [(n, trial folder)] of the killed runs."""
    killed, n, done = [], 1, False
    with ThreadPoolExecutor(2) as pool:
        while not done:
            batch = [(k, make_trial(k)) for k in (n, n + 1)]
            procs = list(pool.map(lambda kt: run_sub(args_of(kt[1]), home=home_of(kt[1]), crash=f"*:{kt[0]}"), batch))
            for (k, trial), proc in zip(batch, procs):
                assert "Traceback" not in proc.stderr, proc.stderr
                if proc.returncode == -signal.SIGKILL:
                    killed.append((k, trial))
                else:
                    assert proc.returncode == 0, (k, proc.stderr)
                    done = True
            n += 2
            assert n < 400, "crash point sweep does not end"
    return killed


def _timer_kills(make_trial, args_of, home_of, duration: float, kills: int, seed: int) -> list[tuple[float, Path, int]]:
    rng = random.Random(seed)
    delays = [rng.uniform(0.0, duration * 1.05) for _ in range(kills)]

    def one(k_delay):
        k, delay = k_delay
        trial = make_trial(k)
        proc = subprocess.Popen(cmd(*args_of(trial)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sub_env(home_of(trial)))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert "Traceback" not in err, err
        assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, err)
        return delay, trial, proc.returncode

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, enumerate(delays)))


def _timed(args, home=None) -> float:
    t0 = time.perf_counter()
    proc = run_sub(args, home=home)
    assert proc.returncode == 0, proc.stderr
    return time.perf_counter() - t0


# -- label -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def label_world(tmp_path_factory):
    """A source, its copy (the template every trial clones), a values file, and the labels of an
    uninterrupted run."""
    base = tmp_path_factory.mktemp("label-kill")
    worlds = {}
    versions = ["v2.1", "v3.0"] if CHAOS else ["v2.1"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(base / "home"))
        for version in versions:
            tag = version.replace(".", "")
            spec = tiny_spec(version, episodes=5, length=24, rows_per_file=40 if version == "v3.0" else None)
            src = synth.write_dataset(base / f"src{tag}", spec)
            Cli()("copy", src, base / f"copy{tag}", "--no-register")
            template = base / f"copy{tag}"
            values = values_file(template, base / f"values{tag}.parquet")
            ref = clone(template, base / f"ref{tag}")
            duration = _timed(["label", ref, "--values", values, *LOOKAHEAD])
            worlds[version] = dict(
                base=base, src=src, src_digest=full_digest(src), template=template, values=values, duration=duration,
                state=file_state(template), old=labels_by_file(template), new=labels_by_file(ref),
            )
    return worlds


def _check_label_trial(cli, w: dict, trial: Path, what: str, verify_first: bool) -> None:
    """verify_first: `verify` reports on the killed state (exit 0/1, never a traceback) and
    finishes what it can, then `label`; else `label` straight away. Alternated over the sweep."""
    assert full_digest(w["src"]) == w["src_digest"], what
    assert_intact(trial, w["state"], [w["old"], w["new"]], what)
    if verify_first:
        pending = (trial / "meta" / "recap_label" / "journal.json").exists() or any(
            p.name.startswith((".recap-stage-", ".recap-tmp-", ".recap-old-")) for p in trial.rglob(".recap-*"))
        v = cli("verify", trial, "--repair", "--json", code=None)
        assert v.exit_code in (0, 1), (what, v.exit_code, v.stderr)
        assert ("found an interrupted write" in v.stdout) == pending, (what, v.stdout[-600:])
        assert_intact(trial, w["state"], [w["old"], w["new"]], what)
    # the next label completes (journal) or discards (staged files) the interrupted commit, then labels
    cli("label", trial, "--values", w["values"], *LOOKAHEAD)
    assert labels_by_file(trial) == w["new"], what
    assert cli("verify", trial, code=None).exit_code == 0, what
    assert hidden_leftovers(trial) == [], (what, hidden_leftovers(trial))
    assert not (trial / "meta" / "recap_label" / "lock").exists(), what


@pytest.mark.parametrize("version", ["v2.1", "v3.0"] if CHAOS else ["v2.1"])
def test_label_killed_at_every_crash_point(label_world, cli, home, version):
    w = label_world[version]
    tag = version.replace(".", "")
    killed = _sweep_points(
        lambda n: clone(w["template"], w["base"] / f"lp{tag}-{n}"),
        lambda d: ["label", d, "--values", w["values"], *LOOKAHEAD],
    )
    assert len(killed) >= 15  # lock, stage × files, backup, journal, rename × files, done, …
    for n, trial in killed:
        _check_label_trial(cli, w, trial, f"label *:{n}", verify_first=n % 2 == 0)
        shutil.rmtree(trial)
    count("kill points tried: label crash points", len(killed))


def test_label_killed_at_random_instants(label_world, cli, home):
    w = label_world["v2.1"]
    results = _timer_kills(
        lambda k: clone(w["template"], w["base"] / f"lt-{k}"),
        lambda d: ["label", d, "--values", w["values"], *LOOKAHEAD], lambda d: None,
        w["duration"], TIMER_KILLS, SEED + 1,
    )
    for k, (delay, trial, rc) in enumerate(results):
        _check_label_trial(cli, w, trial, f"label killed after {delay:.3f}s (rc {rc})", verify_first=k % 2 == 0)
        shutil.rmtree(trial)
    count("kill points tried: label random instants", len(results))


# -- rollback ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rollback_world(label_world, tmp_path_factory):
    """The label template after two label runs (ratio 0.3, then 0.5); L1/L2 their labels."""
    w = label_world["v2.1"]
    base = tmp_path_factory.mktemp("rollback-kill")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_LEROBOT_HOME", str(base / "home"))
        template = clone(w["template"], base / "two-runs")
        c = Cli()
        c("label", template, "--values", w["values"], *LOOKAHEAD)
        l1 = labels_by_file(template)
        c("label", template, "--values", w["values"], *LOOKAHEAD, "--positive-ratio", "0.5")
        l2 = labels_by_file(template)
        assert l1 != l2
        ref = clone(template, base / "ref")
        duration = _timed(["rollback", ref])
        assert labels_by_file(ref) == l1
    return dict(base=base, src=w["src"], src_digest=w["src_digest"], template=template, state=file_state(template), l1=l1, l2=l2, duration=duration)


def _check_rollback_trial(cli, r: dict, trial: Path, what: str, verify_side: bool) -> None:
    assert full_digest(r["src"]) == r["src_digest"], what
    assert_intact(trial, r["state"], [r["l1"], r["l2"]], what)
    if verify_side:  # on a clone: verify finishes an interrupted commit, which would spare `rollback` its test
        side = clone(trial, trial.with_name(trial.name + "-side"))
        v = cli("verify", side, "--repair", "--json", code=None)
        assert v.exit_code in (0, 1), (what, v.exit_code, v.stderr)
        runs = lineage(side)["runs"]
        done = any(run["kind"] == "rollback" for run in runs)
        assert labels_by_file(side) == (r["l1"] if done else r["l2"]), what  # labels agree with the record
        shutil.rmtree(side)
    lock = trial / "meta" / "recap_label" / "lock"
    finished = not lock.exists() and any(run["kind"] == "rollback" for run in lineage(trial)["runs"])
    if not finished:
        # the same command line again, wherever the kill landed (even after its commit point,
        # while the lock still records what it was doing): it finishes the interrupted rollback
        # (journal or intent in the lock) or does it anew, never one run more
        cli("rollback", trial)
    # else killed after its very last step (the lock's removal): it had finished; a rerun would
    # be a second rollback, which is what the user would be asking for
    assert labels_by_file(trial) == r["l1"], what
    assert not lock.exists(), what
    runs = lineage(trial)["runs"]
    assert [run["kind"] for run in runs] == ["label", "label", "rollback"], (what, runs)
    assert runs[1].get("rolled_back") and not runs[0].get("rolled_back"), what
    assert cli("verify", trial, code=None).exit_code == 0, what
    assert hidden_leftovers(trial) == [], what


def test_rollback_killed_at_every_crash_point(rollback_world, cli, home):
    r = rollback_world
    killed = _sweep_points(lambda n: clone(r["template"], r["base"] / f"rp-{n}"), lambda d: ["rollback", d])
    assert len(killed) >= 10
    for n, trial in killed:
        _check_rollback_trial(cli, r, trial, f"rollback *:{n}", verify_side=n % 2 == 0)
        shutil.rmtree(trial)
    count("kill points tried: rollback crash points", len(killed))


def test_rollback_killed_at_random_instants(rollback_world, cli, home):
    r = rollback_world
    results = _timer_kills(lambda k: clone(r["template"], r["base"] / f"rt-{k}"), lambda d: ["rollback", d], lambda d: None,
                           r["duration"], TIMER_KILLS, SEED + 2)
    for k, (delay, trial, rc) in enumerate(results):
        _check_rollback_trial(cli, r, trial, f"rollback killed after {delay:.3f}s (rc {rc})", verify_side=k % 2 == 0)
        shutil.rmtree(trial)
    count("kill points tried: rollback random instants", len(results))


# -- copy --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def copy_world(tmp_path_factory):
    base = tmp_path_factory.mktemp("copy-kill")
    src = synth.write_dataset(base / "src" / "ds", tiny_spec("v2.1", episodes=4, length=16, png=1))
    ref_parent = base / "ref"
    ref_parent.mkdir()
    clone(src, ref_parent / "ds")
    duration = _timed(["copy", ref_parent / "ds"], home=ref_parent / "home")
    ref = ref_parent / "ds_vlm_label"
    skip = {"meta/recap_label/lineage.json"}
    return dict(base=base, src=src, src_digest=full_digest(src), ref_digest=tree_digest(ref, skip), skip=skip, duration=duration)


def _make_copy_trial(c: dict, name: str) -> Path:
    parent = c["base"] / name
    parent.mkdir()
    clone(c["src"], parent / "ds")
    (parent / "home").mkdir()
    return parent / "ds"


def _check_copy_trial(cli, monkeypatch, c: dict, src: Path, what: str) -> None:
    parent, home_dir = src.parent, src.parent / "home"
    dest, entry = parent / "ds_vlm_label", home_dir / "local" / "ds_vlm_label"
    _in_env(monkeypatch, home_dir)
    assert full_digest(src) == c["src_digest"], what
    visible = sorted(p.name for p in parent.iterdir() if not p.name.startswith("."))
    assert visible in (["ds", "home"], ["ds", "ds_vlm_label", "home"]), (what, visible)
    if dest.exists():  # killed after the rename: a complete, verified copy, registered
        assert tree_digest(dest, c["skip"]) == c["ref_digest"], what
        assert os.path.realpath(entry) == str(dest.resolve()), what
        assert cli("verify", dest, code=None).exit_code == 0, what
    else:  # killed before: nothing at DEST; at most a cache entry that points to the DEST to be
        assert not entry.exists(), what
        if entry.is_symlink():
            assert os.readlink(entry) == str(dest.absolute()), what
    cli("copy", src, "--json")  # the next copy works
    assert not [p for p in parent.iterdir() if p.name.startswith(".recap-copy-")], what
    newest = parent / ("ds_vlm_label_v2" if (parent / "ds_vlm_label_v2").exists() else "ds_vlm_label")
    for d in {dest, newest}:
        assert tree_digest(d, c["skip"]) == c["ref_digest"], what
        assert os.path.realpath(home_dir / "local" / d.name) == str(d.resolve()), what
    assert os.path.realpath(home_dir / "local" / "ds_vlm_label_active") == str(newest.resolve()), what
    assert full_digest(src) == c["src_digest"], what


def test_copy_killed_at_every_crash_point(copy_world, cli, home, monkeypatch):
    c = copy_world
    killed = _sweep_points(lambda n: _make_copy_trial(c, f"cp-{n}"), lambda d: ["copy", d], lambda d: d.parent / "home")
    assert len(killed) >= 12  # every file, verify, lineage write, registration, rename, alias
    for n, src in killed:
        _check_copy_trial(cli, monkeypatch, c, src, f"copy *:{n}")
        shutil.rmtree(src.parent)
    count("kill points tried: copy crash points", len(killed))


def test_copy_killed_at_random_instants(copy_world, cli, home, monkeypatch):
    c = copy_world
    results = _timer_kills(lambda k: _make_copy_trial(c, f"ct-{k}"), lambda d: ["copy", d], lambda d: d.parent / "home",
                           c["duration"], TIMER_KILLS, SEED + 3)
    for delay, src, rc in results:
        _check_copy_trial(cli, monkeypatch, c, src, f"copy killed after {delay:.3f}s (rc {rc})")
        shutil.rmtree(src.parent)
    count("kill points tried: copy random instants", len(results))


# -- rollback --iteration (retire) -------------------------------------------------------------------


def test_retire_killed_at_every_crash_point(cli, home, monkeypatch, tmp_path):
    spec = tiny_spec("v2.1", episodes=3, length=12)

    def make(n: int) -> Path:
        parent = tmp_path / f"r{n}"
        src = synth.write_dataset(parent / "vial", spec)
        _in_env(monkeypatch, parent / "home")
        cli("copy", src, "--json")
        cli("copy", parent / "vial_vlm_label", "--json")
        return parent / "vial_vlm_label_v2"

    killed = _sweep_points(make, lambda d: ["rollback", d, "--iteration"], lambda d: d.parent / "home")
    assert len(killed) >= 3
    for n, v2 in killed:
        parent, h = v2.parent, v2.parent / "home"
        _in_env(monkeypatch, h)
        v1 = parent / "vial_vlm_label"
        alias = h / "local" / "vial_vlm_label_active"
        assert os.path.realpath(alias) in (str(v1.resolve()), str(v2.resolve())), n
        cli("rollback", v2, "--iteration")
        assert os.path.realpath(alias) == str(v1.resolve()), n
        assert not os.path.lexists(h / "local" / "vial_vlm_label_v2"), n
        assert lineage(v2).get("retired"), n
        assert cli("verify", v1, code=None).exit_code == 0 and cli("verify", v2, code=None).exit_code == 0, n
        assert hidden_leftovers(v2) == [] and hidden_leftovers(v1) == [], n
    count("kill points tried: rollback --iteration crash points", len(killed))
