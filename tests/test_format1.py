"""Copies made by recap-label 0.1.0 (lineage format 1, before the typed records) keep working:
verify, rollback (one run and back to the copy), relabel, and the run list.

The fixture (tests/fixtures/format1) is a real copy written by that version: four runs, the
last a rollback; see its README for the commands that made it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support import lineage_json

FORMAT1 = Path(__file__).resolve().parent / "fixtures" / "format1"


def labels_by_file(root: Path) -> dict[str, list]:
    return {
        p.relative_to(root).as_posix(): pq.read_table(p, columns=["adv_ind"])["adv_ind"].to_pylist()
        for p in sorted((root / "data").rglob("*.parquet"))
    }


def prior_labels(copy: Path, run: str) -> dict[str, list]:
    t = pq.read_table(copy / "meta" / "recap_label" / "runs" / run / "prior_labels.parquet").to_pydict()
    out: dict[str, list] = {}
    for f, label in zip(t["file"], t["label"]):
        out.setdefault(f, []).append(label)
    return out


@pytest.fixture
def old_copy(tmp_path, lerobot_home) -> Path:
    src, copy = tmp_path / "src", tmp_path / "copy"
    shutil.copytree(FORMAT1 / "src", src)
    shutil.copytree(FORMAT1 / "copy", copy)
    lineage = copy / "meta" / "recap_label" / "lineage.json"
    lineage.write_text(lineage.read_text().replace("/tmp/f1/src", str(src)))
    return copy


def test_fixture_is_format_1(old_copy):
    record = lineage_json(old_copy)
    assert record["format"] == 1
    assert [(r["id"], r["kind"]) for r in record["runs"]] == [
        ("run-0001", "label"),
        ("run-0002", "label"),
        ("run-0003", "label"),
        ("run-0004", "rollback"),
    ]


def test_verify_list_rollback_and_relabel_an_old_copy(cli, old_copy):
    # run-0002 (value_label, many exact ties) is active, but the values sidecar is run-0003's (rolled
    # back), so the ties cannot be told apart: only the share check fails, as it did in 0.1.0
    checks = json.loads(cli("verify", old_copy, "--json", code=1).stdout)["checks"]
    assert [c["name"] for c in checks if c["status"] == "fail"] == ["autonomous positive share = target"]
    assert all(c["status"] == "pass" for c in checks if c["name"] != "autonomous positive share = target")
    listed = json.loads(cli("rollback", old_copy, "--list", "--json").stdout)
    assert [r["id"] for r in listed] == ["run-0001", "run-0002", "run-0003", "run-0004"]
    assert listed[2]["rolled_back"] == "run-0004"

    after_run_0002 = labels_by_file(old_copy)
    before_0003 = prior_labels(old_copy, "run-0003")  # the files run-0003 rewrote, as run-0002 left them
    assert before_0003 and all(after_run_0002[f] == labels for f, labels in before_0003.items())
    out = json.loads(cli("rollback", old_copy, "--json").stdout)
    assert out["undone"] == ["run-0002"]
    before_0002 = prior_labels(old_copy, "run-0002")  # back to run-0001's labels
    now = labels_by_file(old_copy)
    assert before_0002 and all(now[f] == labels for f, labels in before_0002.items())
    cli("verify", old_copy)

    # relabel as run-0002 did: the same labels again, recorded as a new run in the new format
    cli("label", old_copy, "--value-column", "value_label", "--positive-ratio", "0.5", "--lookahead", "5")
    assert labels_by_file(old_copy) == after_run_0002
    record = lineage_json(old_copy)
    assert record["format"] == 3 and record["original"] is None  # written back in the current shape
    assert [r["id"] for r in record["runs"]] == ["run-0001", "run-0002", "run-0003", "run-0004", "run-0005", "run-0006"]
    assert record["runs"][1]["rolled_back"] == "run-0005" and record["runs"][5]["kind"] == "label"
    cli("verify", old_copy)

    # all the way back to the copy: the source's labels
    cli("rollback", old_copy, "--to", "copy")
    src = Path(record["source"]["path"])
    assert labels_by_file(old_copy) == labels_by_file(src)


def test_an_old_hand_named_copy_belongs_to_its_original(cli, old_copy, tmp_path):
    """A format-1 record has no `original`: it comes from the source the first copy was made from,
    not from the folder name (`copy` is no `src_vlm_label*`)."""
    src = tmp_path / "src"
    its = json.loads(cli("iterations", src, "--json").stdout)
    assert its["base"] == "src" and [r["path"] for r in its["iterations"]] == [str(old_copy)]
    assert json.loads(cli("iterations", old_copy, "--json").stdout)["iterations"] == its["iterations"]
    r = cli("copy", src, code=2)
    assert "src already has iteration copies (copy)" in r.stderr and "(makes src_vlm_label_v2)" in r.stderr
