"""File modes on real files: `copy` keeps the source's modes as `cp -rL` does, `label` and `rollback`
rewrites keep each file's mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from recap_label.demo import synth
from support import data_files, tiny_spec, values_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_002():
    """A team umask (group write allowed) for the test's duration."""
    old = os.umask(0o002)
    yield 0o002
    os.umask(old)


def test_copy_keeps_source_modes_like_cp_rL(cli, lerobot_home, tmp_path, umask_002):
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    info, first = src / "meta" / "info.json", data_files(src)[0]
    os.chmod(info, 0o600)  # private metadata stays private
    os.chmod(first, 0o664)  # group-writable data stays group-writable
    os.chmod(src / "meta", 0o750)
    os.chmod(data_files(src)[-1], 0o444)  # read-only: the copy gets the owner's write bit, to be labeled
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    assert mode(dest / "meta" / "info.json") == 0o600
    assert mode(dest / first.relative_to(src)) == 0o664
    assert mode(dest / "meta") == 0o750
    assert mode(dest / data_files(src)[-1].relative_to(src)) == 0o644
    # what the umask forbids, cp -rL leaves out too
    os.umask(0o077)
    cli("copy", src, tmp_path / "private_copy", "--no-register", "--from-original", "--json")
    assert mode(tmp_path / "private_copy" / first.relative_to(src)) == 0o600


def test_label_and_rollback_keep_each_files_mode(cli, lerobot_home, tmp_path):
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    files = data_files(dest)
    for p in files:
        os.chmod(p, 0o664)  # the group may write, although the umask (022) would not allow it
    os.chmod(files[-1], 0o640)
    before = {p: (mode(p), p.stat().st_uid, p.stat().st_gid) for p in files}
    inodes = {p: p.stat().st_ino for p in files}
    cli("label", dest, "--values", values_file(dest), "--lookahead", "5", "--json")
    assert any(p.stat().st_ino != inodes[p] for p in files)  # files were rewritten
    assert {p: (mode(p), p.stat().st_uid, p.stat().st_gid) for p in files} == before
    cli("rollback", dest)
    assert {p: mode(p) for p in files} == {p: m for p, (m, _, _) in before.items()}


def test_label_and_rollback_keep_each_files_owner_where_permitted(cli, lerobot_home, tmp_path):
    """Root may give the rewritten file its old owner and group back (a teammate's file stays theirs)."""
    if os.geteuid() != 0:
        pytest.skip("only root may give a file another owner")
    src = synth.write_dataset(tmp_path / "ds", tiny_spec())
    cli("copy", src, "--json")
    dest = tmp_path / "ds_vlm_label"
    files = data_files(dest)
    for p in files:
        os.chown(p, 65534, 65534)  # nobody:nogroup
    inodes = {p: p.stat().st_ino for p in files}
    cli("label", dest, "--values", values_file(dest), "--lookahead", "5", "--json")
    assert any(p.stat().st_ino != inodes[p] for p in files)  # files were rewritten
    assert {(p.stat().st_uid, p.stat().st_gid) for p in files} == {(65534, 65534)}
    cli("rollback", dest)
    assert {(p.stat().st_uid, p.stat().st_gid) for p in files} == {(65534, 65534)}
