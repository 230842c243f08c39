"""Stage-4 value-model checkpoints (pistar's Orbax step folders), read without JAX.

pistar saves `ocp.PyTreeCheckpointer().save(step_dir, {"params", "step", "ema_params"})` with
orbax-checkpoint 0.11.13. On disk (local filesystem):

    step_00005000/
      _CHECKPOINT_METADATA      written last, before the tmp folder is renamed (commit marker)
      _METADATA                 JSON: use_zarr3 and tree_metadata
                                {"('ema_params', 'img', ...)": {key_metadata, value_metadata}}
      manifest.ocdbt            root OCDBT manifest (merged from the per-process databases)
      ocdbt.process_0/{manifest.ocdbt, d/...}, d/...   OCDBT B-tree and data files
      _sharding, array_metadatas/process_0            not needed to read

Each array is a zarr (v2, or v3 when use_zarr3) array under the key "<tree>.<a>.<b>..." inside the
OCDBT key-value store rooted at the step folder; without OCDBT it is a plain folder of that name.
Saves go to `<name>.orbax-checkpoint-tmp-<ts>` and are renamed when finished; on GCS a
`commit_success.txt` file marks completion instead.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from recap_label.errors import CheckpointError, first_line

STEP_NAME = re.compile(r"^step_(\d+)$")
TMP_MARKER = ".orbax-checkpoint-tmp-"
COMMIT_FILES = ("_CHECKPOINT_METADATA", "commit_success.txt")
TREE_METADATA_FILE = "_METADATA"
OCDBT_MANIFEST = "manifest.ocdbt"
_ARRAY_VALUE_TYPES = {"jax.Array", "np.ndarray"}
_CACHE_FORMAT = "recap-label-value-model-v1"


# ---------------------------------------------------------------------------------------------
# Step resolution
# ---------------------------------------------------------------------------------------------


def incomplete_reason(step_dir: Path) -> str | None:
    """Why `step_dir` is not a finished Orbax checkpoint, or None if it is one."""
    if TMP_MARKER in step_dir.name:
        return "an unfinished Orbax save (tmp folder)"
    if not step_dir.is_dir():
        return "not a directory"
    if not any((step_dir / name).is_file() for name in COMMIT_FILES):
        return "no _CHECKPOINT_METADATA commit marker (half-written or partly copied)"
    if not (step_dir / TREE_METADATA_FILE).is_file():
        return "no _METADATA file (half-written or partly copied)"
    has_ocdbt_data = any(step_dir.glob("ocdbt.process_*")) or (step_dir / "d").is_dir()
    if has_ocdbt_data and not (step_dir / OCDBT_MANIFEST).is_file():
        return "no manifest.ocdbt (half-written or partly copied)"
    return None


def _step_number(name: str) -> int | None:
    match = STEP_NAME.match(name)
    return int(match.group(1)) if match else None


def _looks_like_step_dir(path: Path) -> bool:
    return (
        _step_number(path.name) is not None
        or TMP_MARKER in path.name
        or any((path / name).exists() for name in (TREE_METADATA_FILE, *COMMIT_FILES))
    )


def list_steps(checkpoint_dir: Path) -> tuple[list[tuple[int, Path]], list[tuple[Path, str]]]:
    """(complete steps sorted by step number, [(incomplete folder, reason)])."""
    complete: list[tuple[int, Path]] = []
    incomplete: list[tuple[Path, str]] = []
    for child in sorted(checkpoint_dir.iterdir()):
        if not child.is_dir() or not (child.name.startswith("step_") or TMP_MARKER in child.name):
            continue
        number = _step_number(child.name)
        reason = incomplete_reason(child) if number is not None else "an unfinished Orbax save (tmp folder)"
        if reason is None and number is not None:
            complete.append((number, child))
        else:
            incomplete.append((child, reason or "not a step_<number> folder"))
    complete.sort()
    return complete, incomplete


def _requested_number(step: int | str) -> int:
    text = str(step).strip()
    number = _step_number(text) if text.startswith("step_") else (int(text) if text.isdigit() else None)
    if number is None:
        raise CheckpointError(
            f"invalid checkpoint step '{step}'; pass a step number like 5000 or a name like step_00005000"
        )
    return number


def resolve_step_dir(checkpoint_dir: str | Path, step: int | str | None = None) -> Path:
    """The step folder to load: `step` if given, else the latest complete one.

    `checkpoint_dir` is a folder of `step_XXXXXXXX/` checkpoints or one step folder itself.
    Orbax tmp folders and half-written steps are never chosen.
    """
    root = Path(checkpoint_dir).expanduser()
    if not root.exists():
        raise CheckpointError(
            f"checkpoint directory not found: {root}; pass --checkpoint-dir with the folder holding "
            "step_XXXXXXXX checkpoints (or one step folder)"
        )
    if not root.is_dir():
        raise CheckpointError(f"checkpoint path is not a directory: {root}; pass the step folder, not a file in it")

    if _looks_like_step_dir(root):
        if step is not None and _step_number(root.name) not in (None, _requested_number(step)):
            raise CheckpointError(
                f"--checkpoint-dir {root} is itself a step folder but step {step} was requested; "
                "pass the parent folder or drop the step option"
            )
        reason = incomplete_reason(root)
        if reason:
            raise CheckpointError(f"checkpoint {root} is incomplete: {reason}; pick another step")
        return root

    complete, incomplete = list_steps(root)
    if step is not None:
        number = _requested_number(step)
        for folder, reason in incomplete:
            if _step_number(folder.name) == number:
                raise CheckpointError(f"checkpoint {folder} is incomplete: {reason}; pick another step")
        for found, folder in complete:
            if found == number:
                return folder
        available = ", ".join(folder.name for _, folder in complete) or "none"
        raise CheckpointError(f"no checkpoint step {number} in {root} (complete steps: {available}); pick one of those")

    if not complete:
        skipped = "; ".join(f"{folder.name}: {reason}" for folder, reason in incomplete)
        detail = f" (skipped {skipped})" if skipped else ""
        raise CheckpointError(
            f"no complete checkpoint step in {root}{detail}; pass a folder with finished step_XXXXXXXX "
            "checkpoints from train_value.py"
        )
    return complete[-1][1]


# ---------------------------------------------------------------------------------------------
# Reading arrays with tensorstore
# ---------------------------------------------------------------------------------------------


def _read_tree_metadata(step_dir: Path) -> tuple[list[tuple[tuple[str, ...], str]], bool]:
    """([(key path, value_type)], use_zarr3) from the step's _METADATA."""
    path = step_dir / TREE_METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
        entries = []
        for key_text, entry in metadata["tree_metadata"].items():
            key_metadata = entry.get("key_metadata")
            keys = (
                tuple(str(k["key"]) for k in key_metadata)
                if key_metadata
                else tuple(map(str, ast.literal_eval(key_text)))
            )
            entries.append((keys, entry.get("value_metadata", {}).get("value_type", "")))
        return entries, bool(metadata.get("use_zarr3", False))
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {step_dir} has no _METADATA file; it is not an Orbax PyTree checkpoint"
        ) from None
    except (ValueError, KeyError, TypeError, SyntaxError) as exc:
        raise CheckpointError(
            f"cannot parse {path} ({type(exc).__name__}: {exc}); the checkpoint is damaged or not from "
            "orbax-checkpoint 0.11 PyTreeCheckpointer"
        ) from None


def _array_spec(step_dir: Path, storage_name: str, use_zarr3: bool) -> dict:
    root = step_dir.resolve()
    if (root / OCDBT_MANIFEST).is_file():
        kvstore = {"driver": "ocdbt", "base": f"file://{root}", "path": storage_name}
    else:
        kvstore = {"driver": "file", "path": str(root / storage_name) + "/"}
    return {"driver": "zarr3" if use_zarr3 else "zarr", "kvstore": kvstore}


def tree_names(step_dir: str | Path) -> set[str]:
    """Top-level items of the checkpoint tree, e.g. {"params", "ema_params", "step"}."""
    entries, _ = _read_tree_metadata(Path(step_dir))
    return {keys[0] for keys, _ in entries}


EMBEDDING_PARAM = ("llm", "embedder", "input_embedding")


def embedding_rows(step_dir: str | Path, use_ema: bool = True) -> int | None:
    """Rows of the checkpoint's token embedding table (the vocabulary it was trained with), from
    the array's metadata only; None when it cannot be told (loading the weights then says why)."""
    import tensorstore as ts

    step_dir = Path(step_dir)
    entries, use_zarr3 = _read_tree_metadata(step_dir)
    keys = ("ema_params" if use_ema else "params", *EMBEDDING_PARAM)
    if keys not in {k for k, _ in entries}:
        return None
    try:
        shape = ts.open(_array_spec(step_dir, ".".join(keys), use_zarr3), open=True, read=True).result().shape
    except Exception:  # damaged or incomplete: load_flat_params names the parameter
        return None
    return int(shape[0]) if len(shape) == 2 else None


def load_flat_params(step_dir: str | Path, use_ema: bool = True) -> dict[str, np.ndarray]:
    """The `ema_params` (default) or `params` tree as {"img/embedding/kernel": float32 array, ...}.

    Only the requested tree is read, array by array, so host memory holds one tree.
    """
    import tensorstore as ts

    step_dir = Path(step_dir)
    entries, use_zarr3 = _read_tree_metadata(step_dir)
    tree = "ema_params" if use_ema else "params"
    wanted = [keys for keys, value_type in entries if keys[0] == tree and value_type in _ARRAY_VALUE_TYPES]
    if not wanted:
        if use_ema:
            raise CheckpointError(
                f"checkpoint {step_dir} has no ema_params; pass --no-use-ema to label with its raw params"
            )
        raise CheckpointError(f"checkpoint {step_dir} has no params tree; it is not a pistar value-model checkpoint")

    context = ts.Context({"cache_pool": {"total_bytes_limit": 64 << 20}})
    opened = []
    for keys in wanted:
        spec = _array_spec(step_dir, ".".join(keys), use_zarr3)
        opened.append((keys, ts.open(spec, open=True, read=True, context=context)))
    flat: dict[str, np.ndarray] = {}
    for keys, future in opened:
        name = "/".join(keys[1:])
        try:
            array = np.asarray(future.result().read().result())
        except Exception as exc:  # tensorstore raises ValueError/OSError with long status text
            first = first_line(exc)
            raise CheckpointError(
                f"cannot read parameter '{name}' from {step_dir} ({first}); the checkpoint is "
                "damaged or incomplete, pick another step"
            ) from None
        if array.dtype != np.float32 and array.dtype.kind in "fV":  # bf16 arrives as a numpy void-like dtype
            array = array.astype(np.float32)
        flat[name] = array
    return flat


# ---------------------------------------------------------------------------------------------
# Content hash and safetensors cache
# ---------------------------------------------------------------------------------------------


_HASHED_CONTENT_FILES = {
    "_METADATA",
    "_CHECKPOINT_METADATA",
    "manifest.ocdbt",
    ".zarray",
    "zarr.json",
    "commit_success.txt",
}


def checkpoint_content_hash(step_dir: str | Path) -> str:
    """Cheap identity of a step folder: metadata and manifest contents plus every file's path and size.

    Independent of where the folder lives, so a copied checkpoint keeps its hash.
    """
    step_dir = Path(step_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in step_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(step_dir).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0".encode())
        if path.name in _HASHED_CONTENT_FILES:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_path(cache_dir: str | Path, content_hash: str, use_ema: bool) -> Path:
    return Path(cache_dir) / f"value-model-{content_hash[:32]}-{'ema' if use_ema else 'params'}.safetensors"


def save_flat_safetensors(
    flat: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write atomically (store.fsutil.write_file_atomic), with the umask's permissions."""
    from safetensors.numpy import save_file

    from recap_label.store.fsutil import write_file_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(a) for name, a in flat.items()}
    write_file_atomic(path, lambda tmp: save_file(arrays, str(tmp), metadata=metadata))
    return path


def load_flat_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays backed by a read-only-shared memory map of the file (no second copy in RAM)."""
    from safetensors import safe_open

    # framework="pt" maps the file; .numpy() is a zero-copy view of that mapping.
    with safe_open(str(path), framework="pt") as handle:
        return {name: handle.get_tensor(name).numpy() for name in handle.keys()}


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def load_flat_params_cached(
    step_dir: str | Path,
    use_ema: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, np.ndarray], str]:
    """(flat params, content hash); with `cache_dir`, converted trees are reused across runs.

    The cache file is keyed by the step's content hash and the EMA flag; a damaged cache file
    is rebuilt.
    """
    step_dir = Path(step_dir)
    content_hash = checkpoint_content_hash(step_dir)
    if cache_dir is None:
        return load_flat_params(step_dir, use_ema), content_hash
    cached = cache_path(cache_dir, content_hash, use_ema)
    if cached.is_file():
        try:
            if safetensors_metadata(cached).get("content_hash") == content_hash:
                return load_flat_safetensors(cached), content_hash
        except Exception:  # truncated or foreign file: rebuild it below
            pass
    flat = load_flat_params(step_dir, use_ema)
    metadata = {
        "format": _CACHE_FORMAT,
        "content_hash": content_hash,
        "tree": "ema_params" if use_ema else "params",
        "source": str(step_dir.resolve()),
    }
    try:
        save_flat_safetensors(flat, cached, metadata)
    except OSError:
        pass  # a read-only or full cache folder must not stop labeling
    return flat, content_hash
