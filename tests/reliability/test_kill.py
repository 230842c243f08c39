"""SIGKILL anywhere: `copy`, `label` and `rollback` killed at every crash point and at seeded
random instants, then checked and finished. The crash points include `report` and `reported`
(killed while reporting, its completion record still there); test_kill_report.py holds each
command there and sends SIGKILL or SIGINT.

Crash points: `RECAP_LABEL_CRASH_AT=*:<n>` kills the n-th file operation of any kind (see
recap_label.store.faults), for n = 1, 2, … until a run gets through untouched: every point of the
command, in order. Random instants: SIGKILL after a seeded delay drawn between the command's first
file operation and its end, both measured just before; a trial whose command finished first (or
died before its first write) is run again with an earlier (later) delay, so the kills land
mid-run; how many did is asserted and tallied.

After every kill: the original is byte-identical; every data parquet of the copy reads, with its
schema, metadata, row groups and non-label columns unchanged, and each file's labels entirely old
or entirely new; `verify` reports (exit 0/1, no traceback); the next `label` / `rollback` / `copy`
finishes the job, and the result equals an uninterrupted run's.

The sweeps are `slow`; `test_label_killed_in_the_middle_of_its_commit` is the fast tier's kill.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from recap_label.demo import synth

from support import (
    CHAOS,
    LOOKAHEAD,
    SEED,
    Cli,
    assert_intact,
    clone,
    cmd,
    count,
    file_state,
    full_digest,
    hidden_leftovers,
    labels_by_file,
    lineage_json,
    run_sub,
    sub_env,
    tiny_spec,
    tree_digest,
    values_file,
)

TIMER_KILLS = 40 if CHAOS else 5
# random instants: tries per trial (bisecting the delay), and the share of trials whose kill must
# land mid-run (after the command's first write, before its end)
ATTEMPTS = 14
MID_RUN_SHARE = 0.8


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


@dataclass
class Attempt:
    """One run of a random-instant trial."""

    trial: Path
    delay: float  # seconds after the start when SIGKILL was due
    rc: int  # -SIGKILL: killed; 0: it finished before the delay
    wrote: bool  # the run had changed something on disk (snapshot differs)
    seconds: float  # from the start to its end (killed or finished)

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL

    @property
    def mid_run(self) -> bool:
        return self.killed and self.wrote

    @property
    def outcome(self) -> str:
        return (
            "killed mid-run" if self.mid_run else "killed before its first write" if self.killed else "finished first"
        )


def _timing(make_trial, args_of, home_of, slow: str | None = None) -> tuple[float, float]:
    """(seconds to the command's first file operation, seconds of a whole run), measured now, two
    runs at a time as the trials run."""

    def timed(name_crash) -> float:
        name, crash = name_crash
        trial = make_trial(name)
        t0 = time.perf_counter()
        proc = run_sub(args_of(trial), home=home_of(trial), crash=crash, slow=slow)
        seconds = time.perf_counter() - t0
        assert proc.returncode == (-signal.SIGKILL if crash else 0), (crash, proc.returncode, proc.stderr)
        return seconds

    with ThreadPoolExecutor(2) as pool:
        first = sum(pool.map(timed, [("time-first-1", "*:1"), ("time-first-2", "*:1")])) / 2
        whole = sum(pool.map(timed, [("time-whole-1", None), ("time-whole-2", None)])) / 2
    return first, max(whole, first)


def _timer_kills(
    make_trial, args_of, home_of, snapshot, kills: int, seed: int, what: str, slow: str | None = None
) -> list[Attempt]:
    """`kills` trials, each SIGKILLed at a seeded instant between the first file operation and the end
    of an uninterrupted run (measured now). A trial that finished first is run again (a fresh clone)
    with an earlier delay, one killed before it wrote anything with a later one, bisecting, up to
    ATTEMPTS runs: the run's end and its first write move with the machine's load, the bisection
    follows them. snapshot(trial) -> digest tells whether a run wrote anything.
    Returns every attempt (each one is a trial to check); asserts the share killed mid-run."""
    first, whole = _timing(make_trial, args_of, home_of, slow)
    rng = random.Random(seed)
    delays = [rng.uniform(first, whole) for _ in range(kills)]

    def one(k_delay) -> list[Attempt]:
        k, delay = k_delay
        early, late = first * 0.5, None  # delays known to be too early / too late for this trial
        attempts: list[Attempt] = []
        for a in range(ATTEMPTS):
            trial = make_trial(f"{k}.{a}")
            before = snapshot(trial)
            proc = subprocess.Popen(
                cmd(*args_of(trial)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=sub_env(home_of(trial), slow=slow),
            )
            t0 = time.perf_counter()
            try:
                proc.wait(timeout=delay)  # it finished before the kill was due
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
            seconds = time.perf_counter() - t0
            assert "Traceback" not in err, err
            assert proc.returncode in (0, -signal.SIGKILL), (proc.returncode, err)
            att = Attempt(trial, delay, proc.returncode, snapshot(trial) != before, seconds)
            attempts.append(att)
            if att.mid_run:
                break
            if att.killed:
                early = delay
            else:
                late = min(delay, seconds)
            if (
                late is not None and late <= early
            ):  # the machine's speed changed under the bisection: start it again from here
                early, late = late * 0.8, None
            delay = (early + late) / 2 if late is not None else delay + max(whole - first, 0.05)
        return attempts

    with ThreadPoolExecutor(2) as pool:
        trials = list(pool.map(one, enumerate(delays)))
    mid = sum(t[-1].mid_run for t in trials)
    attempts = [a for t in trials for a in t]
    count(f"random-instant kills that landed mid-run: {what}", mid)
    count(f"random-instant trials: {what}", len(trials))
    for outcome in ("finished first", "killed before its first write"):
        n = sum(a.outcome == outcome for a in attempts)
        if n:
            count(f"random-instant runs {outcome} (tried again): {what}", n)
    print(
        f"\n{what}: {mid} of {len(trials)} random-instant kills landed mid-run "
        f"(first write at {first:.2f}s, whole run {whole:.2f}s; runs: "
        f"{[(round(a.delay, 3), a.outcome) for a in attempts]})"
    )
    assert mid >= math.ceil(MID_RUN_SHARE * len(trials)), (
        what,
        first,
        whole,
        [[(a.delay, a.outcome) for a in t] for t in trials],
    )
    return attempts


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
            Cli()("label", ref, "--values", values, *LOOKAHEAD)
            worlds[version] = dict(
                base=base,
                src=src,
                src_digest=full_digest(src),
                template=template,
                values=values,
                state=file_state(template),
                old=labels_by_file(template),
                new=labels_by_file(ref),
            )
    return worlds


def _check_label_trial(cli, w: dict, trial: Path, what: str, verify_first: bool) -> None:
    """verify_first: `verify` reports on the killed state (exit 0/1, never a traceback) and
    finishes what it can, then `label`; else `label` straight away. Alternated over the sweep."""
    assert full_digest(w["src"]) == w["src_digest"], what
    assert_intact(trial, w["state"], [w["old"], w["new"]], what)
    if verify_first:
        pending = (trial / "meta" / "recap_label" / "journal.json").exists() or any(
            p.name.startswith((".recap-stage-", ".recap-tmp-", ".recap-old-")) for p in trial.rglob(".recap-*")
        )
        v = cli("verify", trial, "--repair", "--json", code=None)
        assert v.exit_code in (0, 1), (what, v.exit_code, v.stderr)
        assert ("found an interrupted write" in v.stdout) == pending, (what, v.stdout[-600:])
        assert_intact(trial, w["state"], [w["old"], w["new"]], what)
    state = trial / "meta" / "recap_label"
    runs = lineage_json(trial)["runs"] if (state / "lineage.json").exists() else []
    finished = runs and not (state / "lock").exists() and not (state / "report-pending.json").exists()
    if not finished:
        # the next label completes (journal) or discards (staged files) the interrupted commit, then
        # labels; or, killed after its commit (while reporting too), reports that run
        cli("label", trial, "--values", w["values"], *LOOKAHEAD)
    # else killed after its report was printed: it had finished; a rerun would be a second run
    assert labels_by_file(trial) == w["new"], what
    assert [r["kind"] for r in lineage_json(trial)["runs"]] == ["label"], what  # one run, never two
    assert not (state / "report-pending.json").exists(), what
    assert cli("verify", trial, code=None).exit_code == 0, what
    assert hidden_leftovers(trial) == [], (what, hidden_leftovers(trial))
    assert not (trial / "meta" / "recap_label" / "lock").exists(), what


def test_label_killed_in_the_middle_of_its_commit(label_world, cli, home):
    """The fast tier's kill: SIGKILL right after the second staged file replaced its target (journal
    written, the data files part old, part new); verify reports it and finishes the commit, and the
    next label has nothing left to do but agree."""
    w = label_world["v2.1"]
    trial = clone(w["template"], w["base"] / "mid-commit")
    proc = run_sub(["label", trial, "--values", w["values"], *LOOKAHEAD], crash="rename:2")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (trial / "meta" / "recap_label" / "journal.json").exists()
    labels = labels_by_file(trial)
    assert labels != w["old"] and labels != w["new"], "the kill did not land mid-commit"
    _check_label_trial(cli, w, trial, "label rename:2", verify_first=True)
    count("kill points tried: label mid-commit")


@pytest.mark.slow
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


@pytest.mark.slow
def test_label_killed_at_random_instants(label_world, cli, home):
    w = label_world["v2.1"]
    results = _timer_kills(
        lambda k: clone(w["template"], w["base"] / f"lt-{k}"),
        lambda d: ["label", d, "--values", w["values"], *LOOKAHEAD],
        lambda d: None,
        tree_digest,
        TIMER_KILLS,
        SEED + 1,
        "label",
    )
    for k, a in enumerate(results):
        _check_label_trial(
            cli, w, a.trial, f"label killed after {a.delay:.3f}s (rc {a.rc}, {a.outcome})", verify_first=k % 2 == 0
        )
        shutil.rmtree(a.trial)
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
        c("rollback", ref)
        assert labels_by_file(ref) == l1
    return dict(
        base=base, src=w["src"], src_digest=w["src_digest"], template=template, state=file_state(template), l1=l1, l2=l2
    )


def _check_rollback_trial(cli, r: dict, trial: Path, what: str, verify_side: bool) -> None:
    assert full_digest(r["src"]) == r["src_digest"], what
    assert_intact(trial, r["state"], [r["l1"], r["l2"]], what)
    if verify_side:  # on a clone: verify finishes an interrupted commit, which would spare `rollback` its test
        side = clone(trial, trial.with_name(trial.name + "-side"))
        v = cli("verify", side, "--repair", "--json", code=None)
        assert v.exit_code in (0, 1), (what, v.exit_code, v.stderr)
        runs = lineage_json(side)["runs"]
        done = any(run["kind"] == "rollback" for run in runs)
        assert labels_by_file(side) == (r["l1"] if done else r["l2"]), what  # labels agree with the record
        shutil.rmtree(side)
    lock = trial / "meta" / "recap_label" / "lock"
    pending = trial / "meta" / "recap_label" / "report-pending.json"
    finished = (
        not lock.exists()
        and not pending.exists()
        and any(run["kind"] == "rollback" for run in lineage_json(trial)["runs"])
    )
    if not finished:
        # the same command line again, wherever the kill landed (even after its commit point,
        # while the lock still records what it was doing): it finishes the interrupted rollback
        # (journal or intent in the lock) or does it anew, never one run more
        cli("rollback", trial)
    # else killed after its very last step (its report printed, the record dropped): it had
    # finished; a rerun would be a second rollback, which is what the user would be asking for
    assert labels_by_file(trial) == r["l1"], what
    assert not lock.exists() and not pending.exists(), what
    runs = lineage_json(trial)["runs"]
    assert [run["kind"] for run in runs] == ["label", "label", "rollback"], (what, runs)
    assert runs[1].get("rolled_back") and not runs[0].get("rolled_back"), what
    assert cli("verify", trial, code=None).exit_code == 0, what
    assert hidden_leftovers(trial) == [], what


@pytest.mark.slow
def test_rollback_killed_at_every_crash_point(rollback_world, cli, home):
    r = rollback_world
    killed = _sweep_points(lambda n: clone(r["template"], r["base"] / f"rp-{n}"), lambda d: ["rollback", d])
    assert len(killed) >= 10
    for n, trial in killed:
        _check_rollback_trial(cli, r, trial, f"rollback *:{n}", verify_side=n % 2 == 0)
        shutil.rmtree(trial)
    count("kill points tried: rollback crash points", len(killed))


@pytest.mark.slow
def test_rollback_killed_at_random_instants(rollback_world, cli, home):
    r = rollback_world
    results = _timer_kills(
        lambda k: clone(r["template"], r["base"] / f"rt-{k}"),
        lambda d: ["rollback", d],
        lambda d: None,
        tree_digest,
        TIMER_KILLS,
        SEED + 2,
        "rollback",
    )
    for k, a in enumerate(results):
        _check_rollback_trial(
            cli, r, a.trial, f"rollback killed after {a.delay:.3f}s (rc {a.rc}, {a.outcome})", verify_side=k % 2 == 0
        )
        shutil.rmtree(a.trial)
    count("kill points tried: rollback random instants", len(results))


# -- copy --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def copy_world(tmp_path_factory):
    base = tmp_path_factory.mktemp("copy-kill")
    src = synth.write_dataset(base / "src" / "ds", tiny_spec("v2.1", episodes=4, length=16, png=1))
    ref_parent = base / "ref"
    ref_parent.mkdir()
    clone(src, ref_parent / "ds")
    proc = run_sub(["copy", ref_parent / "ds"], home=ref_parent / "home")
    assert proc.returncode == 0, proc.stderr
    ref = ref_parent / "ds_vlm_label"
    skip = {"meta/recap_label/lineage.json"}
    return dict(base=base, src=src, src_digest=full_digest(src), ref_digest=tree_digest(ref, skip), skip=skip)


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
    pending = dest / "meta" / "recap_label" / "copy-pending.json"
    if dest.exists():  # killed after the rename: a complete, verified copy, registered
        assert tree_digest(dest, c["skip"] | {"meta/recap_label/copy-pending.json"}) == c["ref_digest"], what
        assert os.path.realpath(entry) == str(dest.resolve()), what
        assert cli("verify", dest, code=None).exit_code == 0, what
    else:  # killed before: nothing at DEST; at most a cache entry that points to the DEST to be
        assert not entry.exists(), what
        if entry.is_symlink():
            assert os.readlink(entry) == str(dest.absolute()), what
    if not (dest.exists() and not pending.exists()):
        # the same command line again: it finishes the interrupted copy (registration) or makes
        # it anew; never a second copy (a `_v2`) of one request
        cli("copy", src, "--json")
    # else killed after its last step (the pending mark's removal): the copy had finished
    assert not (parent / "ds_vlm_label_v2").exists(), what
    assert not [p for p in parent.iterdir() if p.name.startswith(".recap-copy-")], what
    assert tree_digest(dest, c["skip"]) == c["ref_digest"], what
    assert os.path.realpath(entry) == str(dest.resolve()), what
    assert not os.path.lexists(home_dir / "local" / "ds_vlm_label_active"), what  # not labeled yet: no `_active`
    assert not [p.name for p in (home_dir / "local").iterdir() if ".recap-link-" in p.name], what
    assert lineage_json(dest)["iteration"] == 1 and not pending.exists(), what
    assert full_digest(src) == c["src_digest"], what


@pytest.mark.slow
def test_copy_killed_at_every_crash_point(copy_world, cli, home, monkeypatch):
    c = copy_world
    killed = _sweep_points(lambda n: _make_copy_trial(c, f"cp-{n}"), lambda d: ["copy", d], lambda d: d.parent / "home")
    assert len(killed) >= 12  # every file, verify, lineage write, registration, rename, alias
    for n, src in killed:
        _check_copy_trial(cli, monkeypatch, c, src, f"copy *:{n}")
        shutil.rmtree(src.parent)
    count("kill points tried: copy crash points", len(killed))


@pytest.mark.slow
def test_copy_killed_at_random_instants(copy_world, cli, home, monkeypatch):
    c = copy_world
    results = _timer_kills(
        lambda k: _make_copy_trial(c, f"ct-{k}"),
        lambda d: ["copy", d],
        lambda d: d.parent / "home",
        lambda src: tree_digest(src.parent),
        TIMER_KILLS,
        SEED + 3,
        "copy",
    )
    for a in results:
        _check_copy_trial(cli, monkeypatch, c, a.trial, f"copy killed after {a.delay:.3f}s (rc {a.rc}, {a.outcome})")
        shutil.rmtree(a.trial.parent)
    count("kill points tried: copy random instants", len(results))


# -- rollback --iteration (retire) -------------------------------------------------------------------


def _retire_world(cli, monkeypatch, tmp_path, form: str, delete: bool):
    spec = tiny_spec("v2.1", episodes=3, length=12)

    def make(n) -> Path:  # thread-safe (random-instant trials are made two at a time): subprocesses
        parent = tmp_path / f"r{n}"
        src = synth.write_dataset(parent / "vial", spec)
        for what in (src, parent / "vial_vlm_label"):
            r = run_sub(["copy", what, "--json"], home=parent / "home")
            assert r.returncode == 0, r.stderr
            # labeled, so `_active` moves to it (it never points at an unlabeled copy)
            r = run_sub(
                ["label", json.loads(r.stdout)["dest"], "--value-column", "value_label", "--lookahead", "5"],
                home=parent / "home",
            )
            assert r.returncode == 0, r.stderr
        return parent / "vial_vlm_label_v2"

    def args(v2: Path) -> list:
        return [
            "rollback",
            "local/vial_vlm_label_v2" if form == "local" else v2,
            "--iteration",
            *(["--delete"] if delete else []),
        ]

    return make, args


def _check_retire_trial(cli, monkeypatch, v2: Path, args, delete: bool, what) -> None:
    """The same command line again completes the retirement: `_active` back on v1, local/<v2>
    gone, v2 retired (or deleted, also when half-deleted), nothing temporary left anywhere."""
    parent, h = v2.parent, v2.parent / "home"
    _in_env(monkeypatch, h)
    v1 = parent / "vial_vlm_label"
    alias = h / "local" / "vial_vlm_label_active"
    assert os.path.realpath(alias) in (str(v1.resolve()), str(v2.resolve())), what
    finished = (
        not os.path.lexists(h / "local" / "vial_vlm_label_v2")
        and not [p for p in (h / "local").iterdir() if p.name.startswith(".")]
        and (not v2.exists() if delete else True)
        and os.path.realpath(alias) == str(v1.resolve())
    )
    if not finished:
        cli(*args(v2))
    assert os.path.realpath(alias) == str(v1.resolve()), what
    assert not os.path.lexists(h / "local" / "vial_vlm_label_v2"), what
    if delete:
        assert not v2.exists() and not [p for p in parent.iterdir() if p.name.startswith(".recap-")], what
    else:
        assert lineage_json(v2).get("retired"), what
        assert cli("verify", v2, code=None).exit_code == 0 and hidden_leftovers(v2) == [], what
        assert not (v2 / "meta" / "recap_label" / "lock").exists(), what
    assert cli("verify", v1, code=None).exit_code == 0 and hidden_leftovers(v1) == [], what
    assert not [p.name for p in (h / "local").iterdir() if p.name.startswith(".")], what  # no intent, no temporary link


@pytest.mark.slow
@pytest.mark.parametrize("form, delete", [("path", False), ("path", True), ("local", True), ("local", False)])
def test_retire_killed_at_every_crash_point(cli, home, monkeypatch, tmp_path, form, delete):
    make, args = _retire_world(cli, monkeypatch, tmp_path, form, delete)
    killed = _sweep_points(make, args, lambda d: d.parent / "home")
    assert len(killed) >= (6 if delete else 4)
    for n, v2 in killed:
        _check_retire_trial(cli, monkeypatch, v2, args, delete, f"{form} delete={delete} *:{n}")
    count(f"kill points tried: rollback --iteration{' --delete' if delete else ''} ({form}) crash points", len(killed))


@pytest.mark.slow
@pytest.mark.parametrize("form, delete", [("local", True), ("path", False)])
def test_retire_killed_at_random_instants(cli, home, monkeypatch, tmp_path, form, delete):
    make, args = _retire_world(cli, monkeypatch, tmp_path, form, delete)
    results = _timer_kills(
        make,
        args,
        lambda d: d.parent / "home",
        lambda v2: tree_digest(v2.parent),
        TIMER_KILLS,
        SEED + 4,
        f"rollback --iteration{' --delete' if delete else ''} ({form})",
        # a retirement writes a few small files in a few ms, a window no timer hits twice
        # in a row: every file operation takes 30 ms more, the kills stay at random instants
        slow="*:0.03",
    )
    for a in results:
        _check_retire_trial(cli, monkeypatch, a.trial, args, delete, f"killed after {a.delay:.3f}s ({a.outcome})")
    count(
        f"kill points tried: rollback --iteration{' --delete' if delete else ''} ({form}) random instants", len(results)
    )
