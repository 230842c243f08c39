"""Faults that are not crashes: disk full and permission denied at each write, a file changed by
someone else between staging and commit, a clock that jumps.

We run as root, so chmod blocks nothing: the errors are injected in-process, at the n-th call of
any of the write-side functions (os.replace/rename/link/symlink/mkdir/fsync, os.open with O_CREAT,
open() for writing, pyarrow's write_table/ParquetWriter), for n = 1 … N (N = the calls of an
uninterrupted run). Each → exactly one `Error:` line, exit 2, and the dataset (and the copy's
parent folder and the LeRobot cache) byte-identical to before; or, where the fault lands after
the commit point and only durability housekeeping failed, exit 0 and the full result.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import errno
import io
import os
import random
import time

import pyarrow.parquet as pq
import pytest

from recap_label.store import lineage as lineage_mod

from support import CHAOS, LOOKAHEAD, SEED, clone, count, error_line, labels_by_file, lineage_json, tree_digest


class Injector:
    """Counts write-side calls; raises OSError(err) at call number `fail_at`."""

    def __init__(self, fail_at: int | None = None, err: int = errno.ENOSPC):
        self.fail_at, self.err, self.calls, self.fired = fail_at, err, 0, None

    def hit(self, what: str, target="") -> None:
        self.calls += 1
        if self.calls == self.fail_at:
            self.fired = what
            raise OSError(self.err, os.strerror(self.err), str(target))

    def install(self, mp: pytest.MonkeyPatch) -> "Injector":
        def wrap(name, real, pick=lambda *a, **k: True):
            def f(*a, **k):
                if pick(*a, **k):
                    self.hit(name, next((x for x in a if isinstance(x, (str, os.PathLike))), ""))
                return real(*a, **k)

            return f

        for name in ("replace", "rename", "link", "symlink", "mkdir", "fsync"):
            mp.setattr(os, name, wrap(f"os.{name}", getattr(os, name)))
        mp.setattr(os, "open", wrap("os.open(O_CREAT)", os.open, lambda path, flags, *a, **k: bool(flags & os.O_CREAT)))
        writing = lambda file, mode="r", *a, **k: any(c in mode for c in "wxa+")  # noqa: E731
        mp.setattr(builtins, "open", wrap("open(w)", builtins.open, writing))
        mp.setattr(io, "open", wrap("io.open(w)", io.open, writing))
        mp.setattr(pq, "write_table", wrap("pq.write_table", pq.write_table))
        mp.setattr(pq, "ParquetWriter", wrap("pq.ParquetWriter", pq.ParquetWriter))
        return self


def _plan(n_calls: int, seed: int) -> list[tuple[int, int]]:
    """(n, errno) pairs: every call in chaos mode with both errors, else a spread of ~24 calls."""
    errs = (errno.ENOSPC, errno.EACCES)
    if CHAOS:
        return [(n, e) for n in range(1, n_calls + 1) for e in errs]
    return [(n, errs[(n + seed) % 2]) for n in range(1, n_calls + 1)]


def _sweep(cli, make, run, snapshot, expect_done, what: str, plan=None) -> int:
    """make(k) -> trial; run(trial) -> CLI result; snapshot(trial) -> digest;
    expect_done(trial) asserts the full result.
    plan(n_calls) -> the (n, errno) faults to inject; by default _plan's sweep."""
    trial = make(0)
    with pytest.MonkeyPatch.context() as mp:
        inj = Injector().install(mp)
        r = run(trial)
    assert r.exit_code == 0, r.stderr
    n_calls = inj.calls
    assert n_calls > 5, n_calls
    tried = 0
    for k, (n, err) in enumerate(plan(n_calls) if plan else _plan(n_calls, SEED), 1):
        trial = make(k)
        before = snapshot(trial)
        with pytest.MonkeyPatch.context() as mp:
            inj = Injector(n, err).install(mp)
            r = run(trial)
        where = f"{what}: {errno.errorcode[err]} at call {n}/{n_calls} ({inj.fired})"
        assert inj.fired, where
        if r.exit_code == 2:
            line = error_line(r)
            assert ("disk full" in line) if err == errno.ENOSPC else ("permission denied" in line), (where, line)
            assert snapshot(trial) == before, where
        else:
            assert r.exit_code == 0, (where, r.exit_code, r.stderr)
            expect_done(trial)
            count(f"faults after the commit point (durability only, run completed): {what}")
        tried += 1
    count(f"faults injected: {what}", tried)
    return tried


def _label_sweep(cli, w: dict, name: str, plan=None) -> int:
    make = lambda k: clone(w["template"], w["base"] / f"{name}-{k}")  # noqa: E731

    def done(trial):
        assert labels_by_file(trial) == w["new"]
        assert cli("verify", trial, code=None).exit_code == 0

    tried = _sweep(
        cli,
        make,
        lambda t: cli("label", t, "--values", w["values"], *LOOKAHEAD, code=None),
        tree_digest,
        done,
        "label",
        plan,
    )
    assert tree_digest(w["src"]) == w["src_digest"]
    return tried


def test_disk_full_and_permission_denied_at_two_calls_of_label(world, cli, home):
    """The fast tier's sample of the sweep below: disk full at the middle write-side call of `label`,
    permission denied at a seeded one."""

    def plan(n_calls):
        return [((n_calls + 1) // 2, errno.ENOSPC), (random.Random(SEED).randint(1, n_calls), errno.EACCES)]

    assert _label_sweep(cli, world, "fl-sample", plan) == 2


@pytest.mark.slow
def test_disk_full_and_permission_denied_during_label(world, cli, home):
    _label_sweep(cli, world, "fl")


@pytest.mark.slow
def test_disk_full_and_permission_denied_during_rollback(world, cli, home):
    w = world
    make = lambda k: clone(w["labeled"], w["base"] / f"fr-{k}")  # noqa: E731

    def done(trial):
        assert labels_by_file(trial) == w["old"]
        assert [r["kind"] for r in lineage_json(trial)["runs"]] == ["label", "rollback"]

    _sweep(cli, make, lambda t: cli("rollback", t, code=None), tree_digest, done, "rollback")
    assert tree_digest(w["src"]) == w["src_digest"]


@pytest.mark.slow
def test_disk_full_and_permission_denied_during_copy(world, cli, home, monkeypatch):
    w = world

    def make(k):
        parent = w["base"] / f"fc-{k}"
        parent.mkdir()
        clone(w["src"], parent / "ds")
        (parent / "home").mkdir()
        return parent / "ds"

    def run(src):
        monkeypatch.setenv("HF_LEROBOT_HOME", str(src.parent / "home"))
        return cli("copy", src, code=None)

    def done(src):
        dest = src.parent / "ds_vlm_label"
        assert cli("verify", dest, code=None).exit_code == 0
        assert os.path.realpath(src.parent / "home" / "local" / "ds_vlm_label") == str(dest.resolve())

    _sweep(cli, make, run, lambda src: tree_digest(src.parent), done, "copy")


@pytest.mark.slow
def test_disk_full_and_permission_denied_during_retire(world, cli, home, monkeypatch):
    w = world

    def make(k):
        parent = w["base"] / f"fi-{k}"
        clone(w["src"], parent / "vial")
        monkeypatch.setenv("HF_LEROBOT_HOME", str(parent / "home"))
        cli("copy", parent / "vial", "--json")
        cli("label", parent / "vial_vlm_label", "--value-column", "value_label", "--lookahead", "5")
        cli("copy", parent / "vial_vlm_label", "--json")
        cli(
            "label", parent / "vial_vlm_label_v2", "--value-column", "value_label", "--lookahead", "5"
        )  # `_active` moves to v2
        return parent / "vial_vlm_label_v2"

    def run(v2):
        monkeypatch.setenv("HF_LEROBOT_HOME", str(v2.parent / "home"))
        return cli("rollback", v2, "--iteration", code=None)

    def done(v2):
        assert os.path.realpath(v2.parent / "home" / "local" / "vial_vlm_label_active") == str(
            (v2.parent / "vial_vlm_label").resolve()
        )

    _sweep(cli, make, run, lambda v2: tree_digest(v2.parent), done, "rollback --iteration")


# -- someone else changes a file between staging and commit ---------------------------------------------


@pytest.mark.parametrize("command", ["label", "rollback"])
@pytest.mark.parametrize("victim", [0, -1])
def test_file_changed_between_staging_and_commit_is_refused(world, cli, home, monkeypatch, command, victim):
    from recap_label.store import writeback

    w = world
    trial = clone(w["template"] if command == "label" else w["labeled"], w["base"] / f"chg-{command}-{victim}")
    real_commit = writeback.Transaction.commit
    changed = {}

    def meddle(txn):
        target = [s.target for s in txn.staged if s.target.suffix == ".parquet" and "data" in s.target.parts][victim]
        pq.write_table(pq.read_table(target), target)  # same content, new file: another program rewrote it
        changed[target.relative_to(trial).as_posix()] = target.read_bytes()
        return real_commit(txn)

    before = tree_digest(trial)
    monkeypatch.setattr(writeback.Transaction, "commit", meddle)
    args = ["label", trial, "--values", w["values"], *LOOKAHEAD] if command == "label" else ["rollback", trial]
    line = error_line(cli(*args, code=2))
    assert "was changed by another program" in line
    after = tree_digest(trial)
    (rel,) = changed
    assert {k: v for k, v in after.items() if k != rel} == {k: v for k, v in before.items() if k != rel}
    monkeypatch.setattr(writeback.Transaction, "commit", real_commit)
    cli(*args)  # and once nobody meddles, it goes through
    assert labels_by_file(trial) == (w["new"] if command == "label" else w["old"])
    count("faults injected: file changed before commit")


# -- a clock that jumps -----------------------------------------------------------------------------------


class JumpyClock:
    """time.time and datetime.now that jump a day back, a year forward, to 1970, to 2100…"""

    JUMPS = [-86400.0, 3.2e7, -1.7e9, 4.1e9, -3600.0, 0.0, 1e6, -2e7]

    def __init__(self, seed: int):
        self.real = time.time
        self.k = seed

    def time(self) -> float:
        self.k += 1
        return max(1.0, self.real() + self.JUMPS[self.k % len(self.JUMPS)])

    def install(self, mp: pytest.MonkeyPatch) -> None:
        clock = self

        class FakeDatetime(_dt.datetime):
            @classmethod
            def now(cls, tz=None):
                return _dt.datetime.fromtimestamp(clock.time(), tz)

        class FakeDt:
            datetime = FakeDatetime
            timezone = _dt.timezone

        mp.setattr(time, "time", self.time)
        real_strftime, real_localtime = time.strftime, time.localtime
        mp.setattr(
            time,
            "strftime",
            lambda fmt, t=None: real_strftime(fmt, t if t is not None else real_localtime(self.time())),
        )
        mp.setattr(lineage_mod, "_dt", FakeDt)


def test_clock_jumps_change_nothing(world, cli, home, monkeypatch):
    """Runs are ordered by sequence, never by time: label, label, rollback, rollback with a clock
    jumping back and forth give exactly the labels of a steady clock, and rollback undoes the right runs."""
    w = world
    trial = clone(w["template"], w["base"] / "clock")
    steady = clone(w["template"], w["base"] / "clock-ref")
    steps = [
        ("label", "--values", w["values"], *LOOKAHEAD),
        ("label", "--values", w["values"], *LOOKAHEAD, "--positive-ratio", "0.6"),
        ("rollback",),
        ("rollback",),
    ]
    for k, step in enumerate(steps):
        with pytest.MonkeyPatch.context() as mp:
            JumpyClock(SEED + k).install(mp)
            cli(step[0], trial, *step[1:])
        cli(step[0], steady, *step[1:])
        assert labels_by_file(trial) == labels_by_file(steady), step
        count("faults injected: clock jumps")
    assert labels_by_file(trial) == w["old"]
    runs = lineage_json(trial)["runs"]
    assert [r["id"] for r in runs] == ["run-0001", "run-0002", "run-0003", "run-0004"]
    assert runs[2]["undid"] == ["run-0002"] and runs[3]["undid"] == ["run-0001"]
    assert cli("verify", trial, code=None).exit_code == 0


def test_torn_lock_is_cleared_whatever_the_clock_says(world, cli, home, monkeypatch):
    """A lock file left empty by a killed writer: cleared at once, with the clock in 1970 or in 2100
    (the old rule, 'older than 5 s by mtime', refused for a clock behind and guessed for one ahead)."""
    w = world
    for k, shift in enumerate((-1.7e9, 0.0, 4e9)):
        trial = clone(w["template"], w["base"] / f"torn-{k}")
        lock = trial / "meta" / "recap_label" / "lock"
        lock.write_text("")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(time, "time", lambda s=shift, real=time.time: real() + s)
            cli("label", trial, "--values", w["values"], *LOOKAHEAD)
        assert labels_by_file(trial) == w["new"] and not lock.exists()
        count("faults injected: clock jumps")


def test_file_changed_between_reading_and_staging_is_refused(world, tmp_path):
    """Transaction.stage_labels(signature=…) refuses a file rewritten after its labels were computed
    (labeling.py passes it once the proposed patch is applied)."""
    from recap_label.errors import UnsafeWriteError
    from recap_label.store.writeback import Transaction, file_signature

    trial = clone(world["template"], tmp_path / "ds")
    target = sorted((trial / "data").rglob("*.parquet"))[1]
    sig = file_signature(target)
    labels = pq.read_table(target)["adv_ind"].to_pylist()
    before = tree_digest(trial)
    pq.write_table(pq.read_table(target), target)  # another program rewrites it
    before[target.relative_to(trial).as_posix()] = tree_digest(trial)[target.relative_to(trial).as_posix()]
    txn = Transaction(trial, "run-0001")
    with pytest.raises(UnsafeWriteError, match="changed by another program"):
        txn.stage_labels(target, "adv_ind", labels, signature=sig)
    assert tree_digest(trial) == before
    count("faults injected: file changed before commit")


def test_failed_rename_without_hard_links_is_completed_by_the_next_run(world, cli, home, tmp_path):
    """On a file system without hard links there are no undo links: a rename that fails half-way
    keeps the journal (redo), says so in one line, and the next run completes the commit."""
    w = world
    trial = clone(w["template"], tmp_path / "ds")
    real_replace = os.replace
    calls = []

    def no_links(*a, **k):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(a[0]))

    def replace(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 3:  # 1: the journal, 2: the first rename, 3: the second rename
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "link", no_links)
        mp.setattr(os, "replace", replace)
        line = error_line(cli("label", trial, "--values", w["values"], *LOOKAHEAD, code=2))
    assert "permission denied" in line and "journal was kept" in line, line
    for rel, labels in labels_by_file(trial).items():  # each file entirely old or new meanwhile
        assert labels in (w["old"][rel], w["new"][rel]), rel
    cli("label", trial, "--values", w["values"], *LOOKAHEAD)
    assert labels_by_file(trial) == w["new"]
    assert cli("verify", trial, code=None).exit_code == 0
    count("faults injected: rename without undo links")
