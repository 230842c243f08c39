from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recap_label.errors import CheckpointError
from recap_label.model import checkpoint as ckpt
from recap_label.model.checkpoint import (
    checkpoint_content_hash,
    load_flat_params,
    load_flat_params_cached,
    resolve_step_dir,
    tree_names,
)
from recap_label.model.network import ValueModel
from recap_label.demo.tiny_model import tiny_config
from recap_label.model.params import ValueModelConfig, expected_shapes


def _copy_step(tiny_step: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(tiny_step, target)
    return target


def _drop_from_metadata(step_dir: Path, predicate) -> None:
    """Rewrite _METADATA without some entries (what a checkpoint lacking them looks like)."""
    path = step_dir / "_METADATA"
    metadata = json.loads(path.read_text())
    metadata["tree_metadata"] = {
        key: entry
        for key, entry in metadata["tree_metadata"].items()
        if not predicate(tuple(k["key"] for k in entry["key_metadata"]))
    }
    path.write_text(json.dumps(metadata))


# --------------------------------------------------------------------------- reading


def test_tiny_checkpoint_written_by_orbax_has_pistar_tree(tiny_step, ema_flat):
    assert tree_names(tiny_step) == {"params", "ema_params", "step"}
    assert set(ema_flat) == set(expected_shapes(tiny_config(vocab_size=400)))
    assert all(a.dtype == np.float32 for a in ema_flat.values())
    assert ValueModelConfig.from_params(ema_flat) == tiny_config(vocab_size=400)


def test_default_uses_ema_params(tiny_step, ema_flat, raw_flat):
    default = load_flat_params(tiny_step)
    assert all(np.array_equal(default[k], ema_flat[k]) for k in ema_flat)
    assert any(not np.array_equal(raw_flat[k], ema_flat[k]) for k in ema_flat)


def test_missing_ema_params_says_no_use_ema(tiny_step, tmp_path):
    step = _copy_step(tiny_step, tmp_path, "step_00000002")
    _drop_from_metadata(step, lambda keys: keys[0] == "ema_params")
    with pytest.raises(CheckpointError, match="--no-use-ema"):
        load_flat_params(step, use_ema=True)
    assert "img/embedding/kernel" in load_flat_params(step, use_ema=False)


def test_missing_parameter_in_checkpoint_is_named(tiny_step, tmp_path):
    step = _copy_step(tiny_step, tmp_path, "step_00000002")
    _drop_from_metadata(step, lambda keys: keys == ("ema_params", "llm", "layer_5", "mlp", "linear"))
    flat = load_flat_params(step)
    with pytest.raises(CheckpointError, match=r"'llm/layer_5/mlp/linear'"):
        ValueModel.from_flat_params(flat)


def test_damaged_array_data_is_a_checkpoint_error(tiny_step, tmp_path):
    step = _copy_step(tiny_step, tmp_path, "step_00000002")
    for data in (step / "ocdbt.process_0" / "d").iterdir():
        data.write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="cannot read parameter") as info:
        load_flat_params(step)
    assert "\n" not in info.value.message


def test_unparseable_metadata(tiny_step, tmp_path):
    step = _copy_step(tiny_step, tmp_path, "step_00000002")
    (step / "_METADATA").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot parse"):
        load_flat_params(step)


def test_plain_zarr_layout_without_ocdbt(tiny_step, ema_flat, raw_flat, tmp_path):
    """orbax with use_ocdbt=False: one zarr folder per array, named '<tree>.<path>'."""
    import tensorstore as ts

    step = tmp_path / "step_00000002"
    step.mkdir()
    for name in ("_METADATA", "_CHECKPOINT_METADATA"):
        shutil.copy(tiny_step / name, step / name)
    for tree, flat in (("params", raw_flat), ("ema_params", ema_flat)):
        for name, array in flat.items():
            path = step / f"{tree}.{name.replace('/', '.')}"
            spec = {
                "driver": "zarr",
                "kvstore": {"driver": "file", "path": str(path) + "/"},
                "metadata": {"shape": list(array.shape), "chunks": list(array.shape) or [1], "dtype": "<f4"},
            }
            store = ts.open(spec, create=True, open=False).result()
            store.write(array).result()
    assert resolve_step_dir(tmp_path) == step
    loaded = load_flat_params(step)
    assert set(loaded) == set(ema_flat)
    assert all(np.array_equal(loaded[k], ema_flat[k]) for k in ema_flat)


# --------------------------------------------------------------------------- step resolution


def test_latest_complete_step_ignores_tmp_and_half_written(tiny_step, tmp_path):
    _copy_step(tiny_step, tmp_path, "step_00000001")
    two = _copy_step(tiny_step, tmp_path, "step_00000002")
    _copy_step(tiny_step, tmp_path, "step_00000009.orbax-checkpoint-tmp-1700000000")
    no_commit = _copy_step(tiny_step, tmp_path, "step_00000007")
    (no_commit / "_CHECKPOINT_METADATA").unlink()
    no_manifest = _copy_step(tiny_step, tmp_path, "step_00000008")
    (no_manifest / "manifest.ocdbt").unlink()
    (tmp_path / "step_00000006").mkdir()  # created, nothing written yet
    (tmp_path / "notes.txt").write_text("not a step")
    assert resolve_step_dir(tmp_path) == two


def test_latest_is_numeric_not_lexicographic(tiny_step, tmp_path):
    _copy_step(tiny_step, tmp_path, "step_900")
    big = _copy_step(tiny_step, tmp_path, "step_1000")
    assert resolve_step_dir(tmp_path) == big


def test_explicit_step(tiny_step, tmp_path):
    one = _copy_step(tiny_step, tmp_path, "step_00000001")
    _copy_step(tiny_step, tmp_path, "step_00000002")
    assert resolve_step_dir(tmp_path, 1) == one
    assert resolve_step_dir(tmp_path, "1") == one
    assert resolve_step_dir(tmp_path, "step_00000001") == one
    with pytest.raises(CheckpointError, match="no checkpoint step 5 .*step_00000001, step_00000002"):
        resolve_step_dir(tmp_path, 5)
    with pytest.raises(CheckpointError, match="invalid checkpoint step"):
        resolve_step_dir(tmp_path, "latest-ish")


def test_explicit_incomplete_step_is_refused(tiny_step, tmp_path):
    _copy_step(tiny_step, tmp_path, "step_00000002")
    half = _copy_step(tiny_step, tmp_path, "step_00000003")
    (half / "_CHECKPOINT_METADATA").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_step_dir(tmp_path, 3)
    with pytest.raises(CheckpointError, match="incomplete"):
        resolve_step_dir(half)


def test_step_folder_itself(tiny_step):
    assert resolve_step_dir(tiny_step) == tiny_step
    assert resolve_step_dir(tiny_step, 2) == tiny_step
    with pytest.raises(CheckpointError, match="itself a step folder"):
        resolve_step_dir(tiny_step, 3)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as info:
        resolve_step_dir(tmp_path / "missing")
    assert "--checkpoint-dir" in info.value.message


def test_no_complete_step(tiny_step, tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint step"):
        resolve_step_dir(tmp_path)
    _copy_step(tiny_step, tmp_path, "step_00000004.orbax-checkpoint-tmp-17")
    with pytest.raises(CheckpointError, match="no complete checkpoint step.*tmp folder"):
        resolve_step_dir(tmp_path)


def test_a_file_is_not_a_checkpoint_dir(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a directory"):
        resolve_step_dir(path)


# --------------------------------------------------------------------------- hash and cache


def test_content_hash_is_location_independent_and_sensitive(tiny_step, tmp_path):
    copy = _copy_step(tiny_step, tmp_path, "step_00000002")
    assert checkpoint_content_hash(copy) == checkpoint_content_hash(tiny_step)
    _drop_from_metadata(copy, lambda keys: keys[0] == "step")
    assert checkpoint_content_hash(copy) != checkpoint_content_hash(tiny_step)


def test_safetensors_cache_roundtrip(tiny_step, ema_flat, raw_flat, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first, digest = load_flat_params_cached(tiny_step, True, cache)
    raw, _ = load_flat_params_cached(tiny_step, False, cache)
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"value-model-{digest[:32]}-ema.safetensors", f"value-model-{digest[:32]}-params.safetensors"]

    def no_orbax(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(ckpt, "load_flat_params", no_orbax)
    again, digest_again = load_flat_params_cached(tiny_step, True, cache)
    assert digest_again == digest
    assert all(np.array_equal(again[k], ema_flat[k]) for k in ema_flat)
    raw_again, _ = load_flat_params_cached(tiny_step, False, cache)
    assert all(np.array_equal(raw_again[k], raw_flat[k]) for k in raw_flat)
    model = ValueModel.from_flat_params(again, siglip_dtype=torch.float32)  # mmap-backed arrays load fine
    assert model.config == tiny_config(vocab_size=400)


def test_damaged_cache_is_rebuilt(tiny_step, ema_flat, tmp_path):
    cache = tmp_path / "cache"
    _, digest = load_flat_params_cached(tiny_step, True, cache)
    path = ckpt.cache_path(cache, digest, True)
    path.write_bytes(path.read_bytes()[:100])
    flat, _ = load_flat_params_cached(tiny_step, True, cache)
    assert all(np.array_equal(flat[k], ema_flat[k]) for k in ema_flat)
    assert ckpt.safetensors_metadata(path)["content_hash"] == digest
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_cache_does_not_fail(tiny_step, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o500)
    try:
        flat, _ = load_flat_params_cached(tiny_step, True, cache)
    finally:
        os.chmod(cache, 0o700)
    assert "img/embedding/kernel" in flat
