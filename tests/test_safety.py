"""Each defect of the kill-anywhere / crafted-file / stale-cache review, driven through the CLI on
real files: retries that finish instead of repeating, a journal that cannot reach outside the
dataset, a read-only verify, caches that know when they are stale, input refused up front."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recap_label.demo import synth

from support import error_line, labels_by_file, lineage_json, model_args, tree_digest, values_file

STATE = Path("meta") / "recap_label"


def recap(*args, env_extra=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECAP_LABEL_CRASH")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "recap_label", *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.fixture
def copy_(cli, lerobot_home, tmp_path) -> Path:
    spec = synth.simple_spec("v2.1", episodes=5, length=20, demos=1, png_cameras=0, video_cameras=2, size=16)
    synth.write_dataset(tmp_path / "ds", spec)
    cli("copy", tmp_path / "ds", tmp_path / "c", "--no-register")
    return tmp_path / "c"


@pytest.mark.slow
def test_1_rollback_killed_after_its_commit_is_not_done_twice(cli, copy_, tmp_path):
    v = values_file(copy_, tmp_path / "v.parquet")
    cli("label", copy_, "--values", v)
    after_one = labels_by_file(copy_)
    cli("label", copy_, "--values", v, "--positive-ratio", "0.5")
    # killed when the commit journal is already gone (the commit landed), before it exits
    r = recap("rollback", copy_, env_extra={"RECAP_LABEL_CRASH_AT": "done:1"})
    assert r.returncode == -9
    assert labels_by_file(copy_) == after_one
    out = json.loads(cli("rollback", copy_, "--json").stdout)  # the same command line again
    assert out["undone"] == ["run-0002"] and any("finished the interrupted run-0003" in n for n in out["notes"])
    assert labels_by_file(copy_) == after_one  # not run-0001 as well
    assert [r["kind"] for r in lineage_json(copy_)["runs"]] == ["label", "label", "rollback"]
    # the same for label: killed after its commit, the retry does not record a second run
    r = recap("label", copy_, "--values", v, env_extra={"RECAP_LABEL_CRASH_AT": "done:1"})
    assert r.returncode == -9
    out = json.loads(cli("label", copy_, "--values", v, "--json").stdout)
    assert out["run"] == "run-0004" and any("finished the interrupted run-0004" in n for n in out["notes"])
    assert [r["id"] for r in lineage_json(copy_)["runs"]] == ["run-0001", "run-0002", "run-0003", "run-0004"]


def test_4_lock_left_after_a_finished_commit_is_a_warning_not_a_failure(cli, copy_, tmp_path, monkeypatch):
    v = values_file(copy_, tmp_path / "v.parquet")
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self.name == "lock" and self.parent.name == "recap_label":
            raise OSError(errno.EIO, "Input/output error", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    r = cli("label", copy_, "--values", v)  # exit 0: the labels were written
    assert "warning: Input/output error while removing the lock" in r.stderr and "nothing was changed" not in r.stderr
    monkeypatch.setattr(pathlib.Path, "unlink", real_unlink)
    assert lineage_json(copy_)["runs"][-1]["id"] == "run-0001"


def test_4_failed_staging_cleans_up_per_file_and_says_what_is_left(cli, copy_, tmp_path, monkeypatch):
    from recap_label.store import writeback

    v = values_file(copy_, tmp_path / "v.parquet")
    files = sorted((copy_ / "data").rglob("*.parquet"))
    assert len({p.parent for p in files}) >= 1 and len(files) >= 2
    real_rewrite, real_unlink = writeback.rewrite_label_column, pathlib.Path.unlink
    stuck = []

    def rewrite(src, dst, column, values):
        if src == files[-1]:
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_rewrite(src, dst, column, values)

    def unlink(self, missing_ok=False):
        if self.name.startswith(".recap-stage-") and self.parent == files[0].parent and not stuck:
            stuck.append(self)
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(writeback, "rewrite_label_column", rewrite)
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    before = labels_by_file(copy_)
    line = error_line(cli("label", copy_, "--values", v, code=2))
    monkeypatch.setattr(pathlib.Path, "unlink", real_unlink)
    assert "nothing was changed" not in line and f"staged file(s) could not be removed: {stuck[0]}" in line
    staged = [p for p in (copy_ / "data").rglob(".recap-stage-*")]
    assert staged == stuck  # every other staged file was removed
    assert labels_by_file(copy_) == before


@pytest.mark.parametrize(
    "journal, why",
    [
        (
            {
                "run": "run-0001",
                "mode": "redo",
                "entries": [{"target": "../outside.txt", "staged": "../.recap-stage-run-0001-outside.txt"}],
            },
            "is not a plain relative path",
        ),
        (
            {
                "run": "run-0001",
                "mode": "undo",
                "entries": [{"target": "data/../../outside.txt", "staged": "x", "backup": "y"}],
            },
            "is not a plain relative path",
        ),
        (
            {
                "run": "run-0001",
                "mode": "redo",
                "entries": [{"target": "meta/tasks.parquet", "staged": "meta/.recap-stage-run-0001-tasks.parquet"}],
            },
            "which a commit never rewrites",
        ),
        (
            {
                "run": "run-0001",
                "mode": "redo",
                "entries": [
                    {"target": "data/chunk-000/episode_000000.parquet", "staged": "data/chunk-000/evil.parquet"}
                ],
            },
            "is not the staged name",
        ),
        ({"run": "run-0001", "mode": "redo", "entries": {"target": "x"}}, "'entries' is not a list"),
        ({"run": 7, "mode": "redo", "entries": []}, "'run' is 7"),
        (
            {"run": "run-0001", "mode": "redo", "entries": [{"target": "data/chunk-000/episode_000000.parquet"}]},
            "lacks a 'target' or 'staged'",
        ),
        (["not", "an", "object"], "not an object"),
    ],
)
@pytest.mark.parametrize(
    "command", [["verify"], ["verify", "--repair"], ["label", "--value-column", "value_label"], ["rollback"]]
)
@pytest.mark.slow
def test_5_a_crafted_journal_is_refused_before_anything_is_touched(cli, copy_, tmp_path, journal, why, command):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (copy_ / STATE / "journal.json").write_text(json.dumps(journal))
    before = tree_digest(tmp_path)
    line = error_line(cli(command[0], copy_, *command[1:], code=2))
    assert line.startswith("Error: commit journal ") and why in line, line
    assert tree_digest(tmp_path) == before and outside.read_text() == "keep me"


@pytest.mark.slow
def test_6_verify_only_reads_and_repair_finishes(cli, copy_, tmp_path):
    v = values_file(copy_, tmp_path / "v.parquet")
    r = recap("label", copy_, "--values", v, env_extra={"RECAP_LABEL_CRASH_AT": "rename:1"})
    assert r.returncode == -9
    before = tree_digest(copy_)
    out = json.loads(cli("verify", copy_, "--json", code=1).stdout)
    failed = [c for c in out["checks"] if c["status"] == "fail"]
    assert (
        failed[0]["name"] == "no interrupted commit"
        and "run-0001 was interrupted while committing" in failed[0]["detail"]
    )
    assert "verify --repair" in failed[0]["detail"]
    assert tree_digest(copy_) == before  # verify changed nothing
    cli("verify", copy_, "--repair")
    assert not (copy_ / STATE / "journal.json").exists()
    cli("verify", copy_)


@pytest.mark.slow
def test_7_a_damaged_resume_part_is_dropped_and_scored_again(cli, copy_):
    args = model_args()
    r = recap("label", copy_, *args, env_extra={"RECAP_LABEL_CRASH_AT": "episode-values:3"})
    assert r.returncode == -9
    parts = sorted((copy_ / STATE / "values-partial").glob("*/episode-*.parquet"))
    assert len(parts) == 3
    parts[1].write_bytes(parts[1].read_bytes()[:40])  # truncated by a full disk
    out = json.loads(cli("label", copy_, *args, "--json").stdout)
    assert "1 damaged value part(s) dropped and scored again" in out["values_from"]
    assert out["breakdown"]["autonomous"]["none"] == 0


@pytest.mark.slow
def test_8_changed_camera_inputs_are_scored_again(cli, copy_):
    args = model_args()
    cli("label", copy_, *args)
    base = copy_ / "videos" / "chunk-000" / "observation.images.base"
    # replace the base camera of rollout episode 1 in place: episode 2's frames, same length
    shutil.copyfile(base / "episode_000002.mp4", base / "episode_000001.mp4")
    out = json.loads(cli("label", copy_, *args, "--positive-ratio", "0.4", "--json").stdout)
    assert "inference for" in out["values_from"] and "whose inputs changed" in out["values_from"]
    values_now = pq.read_table(copy_ / STATE / "values.parquet").sort_by(
        [("episode_index", "ascending"), ("frame_index", "ascending")]
    )
    again = json.loads(cli("label", copy_, *args, "--positive-ratio", "0.4", "--recompute", "--json").stdout)
    assert again["values_from"] == "inference"
    recomputed = pq.read_table(copy_ / STATE / "values.parquet").sort_by(
        [("episode_index", "ascending"), ("frame_index", "ascending")]
    )
    assert values_now["value"].to_pylist() == recomputed["value"].to_pylist()
    assert cli("label", copy_, *args, "--positive-ratio", "0.4", "--json").stdout.count("sidecar (no inference)") == 1


def test_9_a_same_size_in_place_write_with_mtime_set_back_is_seen(cli, copy_, tmp_path, monkeypatch):
    from recap_label.store import writeback

    v = values_file(copy_, tmp_path / "v.parquet")
    real_commit = writeback.Transaction.commit

    def meddle(txn):
        target = next(s.target for s in txn.staged if s.target.suffix == ".parquet" and "data" in s.target.parts)
        st = target.stat()
        data = target.read_bytes()
        with open(target, "r+b") as f:  # another program rewrites it in place, same size
            f.write(data)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and sets the mtime back
        return real_commit(txn)

    monkeypatch.setattr(writeback.Transaction, "commit", meddle)
    before = labels_by_file(copy_)
    line = error_line(cli("label", copy_, "--values", v, code=2))
    assert "was changed by another program" in line
    assert labels_by_file(copy_) == before


def _rewrite_first_data_file(root: Path, change) -> None:
    path = sorted((root / "data").rglob("*.parquet"))[0]
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def test_10_fps_zero_is_refused(cli, copy_):
    info = copy_ / "meta" / "info.json"
    data = json.loads(info.read_text())
    info.write_text(json.dumps({**data, "fps": 0}))
    assert "'fps' is 0, not a positive number" in error_line(cli("verify", copy_, code=2))


def test_10_a_gap_in_frame_index_is_refused(cli, copy_):
    def gap(t: pa.Table) -> pa.Table:
        fi = t["frame_index"].to_numpy().copy()
        ep = t["episode_index"].to_numpy()
        last = (ep == ep[0]).nonzero()[0][-1]
        fi[last] += 1  # frames 0..18, then 20
        return t.set_column(
            t.schema.get_field_index("frame_index"), "frame_index", pa.array(fi, t.schema.field("frame_index").type)
        )

    _rewrite_first_data_file(copy_, gap)
    line = error_line(cli("label", copy_, "--value-column", "value_label", code=2))
    assert "has no frame_index 19" in line


def test_10_a_data_file_with_an_extra_column_is_refused(cli, copy_):
    _rewrite_first_data_file(copy_, lambda t: t.append_column("stray", pa.array([0] * t.num_rows)))
    line = error_line(cli("label", copy_, "--value-column", "value_label", code=2))
    assert "the data files disagree" in line and "'stray'" in line


def test_10_a_values_file_for_another_dataset_is_refused(cli, copy_, tmp_path):
    v = values_file(copy_, tmp_path / "v.parquet")
    t = pq.read_table(v)
    extra = pa.table(
        {
            "episode_index": pa.array([99], t["episode_index"].type),
            "frame_index": pa.array([0], t["frame_index"].type),
            "value": pa.array([-0.5], t["value"].type),
        }
    )
    pq.write_table(pa.concat_tables([t, extra]), v)
    line = error_line(cli("label", copy_, "--values", v, code=2))
    assert "has values for episode 99, which c does not have" in line


def test_10_a_vanishing_ratio_is_refused(cli, copy_):
    line = error_line(cli("label", copy_, "--value-column", "value_label", "--positive-ratio", "1e-300", code=2))
    assert "is below 1e-09" in line
