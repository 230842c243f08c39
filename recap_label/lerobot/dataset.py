"""LeRobot datasets on disk (codebase v2.1 and v3.0): metadata, episodes, columns.

No torch here: `copy`, `verify` and `--help` import this module and must start instantly.
Episodes are always grouped by the `episode_index` column, never by file (v3.0 files
hold many episodes; v2.1 files one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from recap_label.errors import DatasetError, first_line

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
INTEGER_COLUMNS = ("episode_index", "frame_index", "index", "task_index")  # int64 in every LeRobot dataset
CAMERA_DTYPES = ("image", "video")


@dataclass(frozen=True)
class VideoRef:
    """Where one camera's frames of one episode live: a file and its time offset in it."""

    path: Path
    from_timestamp: float = 0.0
    to_timestamp: float | None = None


@dataclass(frozen=True)
class Episode:
    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: Path
    videos: dict[str, VideoRef] = field(default_factory=dict)


def resolve_dataset_path(spec: str | Path, lerobot_home: Path) -> Path:
    """A dataset given as a folder path, or as a repo id `local/<name>` under the LeRobot home."""
    text = str(spec)
    candidate = Path(text).expanduser()
    if candidate.exists():
        return candidate
    cached = lerobot_home / text
    if not candidate.is_absolute() and (cached.exists() or cached.is_symlink()):
        if cached.is_symlink() and not cached.exists():
            raise DatasetError(
                f"LeRobot cache entry {cached} is a dangling symlink; if the dataset was moved, re-register it with "
                f"`recap-label register <its folder>`; else remove the entry"
            )
        return cached
    raise DatasetError(_not_found(text, candidate, lerobot_home))


def _not_found(text: str, candidate: Path, lerobot_home: Path) -> str:
    """What was looked for, each place named once, and the likely fix."""
    fix = "pass a LeRobot dataset folder or local/<name>"
    if candidate.is_absolute():
        return f"dataset {text} not found; {fix}"
    if text.startswith("local/"):
        return f"dataset {text} not found in the LeRobot cache ({lerobot_home / 'local'}); {fix}"
    in_cache = lerobot_home / "local" / text
    if "/" not in text and (in_cache.exists() or in_cache.is_symlink()):
        return f"dataset {text} not found: there is no folder {text} here; did you mean local/{text}?"
    return f"dataset {text} not found: no folder {candidate.absolute()}, no cache entry {lerobot_home / text}; {fix}"


def _read_json(path: Path, what: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; the dataset's meta/ folder is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {path} is malformed ({exc}); restore it from the source dataset") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; the dataset's meta/ folder is incomplete") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is malformed ({exc}); restore it from the source dataset") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{path} line {number} is malformed ({exc.msg}); restore it from the source dataset"
            ) from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {number} is not a JSON object; restore it from the source dataset")
        rows.append(row)
    return rows


_FOOTERS: dict[Path, tuple[tuple, pq.FileMetaData]] = {}  # parsed footers of files, by path, while unchanged
_FOOTERS_KEPT = 4096


def parquet_file(path: Path) -> pq.ParquetFile:
    """pq.ParquetFile whose footer is parsed once per process while the file is unchanged (same
    size, mtime, inode, ctime): a file of thousands of row groups costs tens of ms a parse, and
    one command reads its label columns several times."""
    st = os.stat(path)
    key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    known = _FOOTERS.get(Path(path))
    if known is not None and known[0] == key:
        return pq.ParquetFile(path, metadata=known[1])
    pf = pq.ParquetFile(path)
    if len(_FOOTERS) >= _FOOTERS_KEPT:
        _FOOTERS.clear()
    _FOOTERS[Path(path)] = (key, pf.metadata)
    return pf


def read_parquet_table(path: Path, columns: Sequence[str] | None = None, **kwargs) -> pa.Table:
    """pq.read_table with one clear error for unreadable files and missing columns."""
    try:
        if columns is not None:
            with parquet_file(path) as pf:
                names = pf.schema_arrow.names
            twice = [c for c in columns if names.count(c) > 1]  # the dataset reader refused these; so do we
            if twice:
                raise DatasetError(
                    f"cannot read parquet file {path} (column {twice[0]!r} appears {names.count(twice[0])} times); "
                    f"it is damaged, restore it from the source dataset"
                )
            missing = [c for c in columns if c not in names]
            if missing:
                raise DatasetError(
                    f"column {missing[0]!r} is missing from {path}; pass the right column name (columns there: "
                    f"{', '.join(names)})"
                )
        if kwargs:  # filters: the dataset reader
            table = pq.read_table(path, columns=list(columns) if columns is not None else None, **kwargs)
        else:  # one file: ParquetFile reads its column chunks directly, several times faster than read_table
            with parquet_file(path) as pf:
                table = pf.read(columns=list(columns) if columns is not None else None)
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"data file {path} is missing; restore it from the source dataset") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = first_line(exc)
        raise DatasetError(
            f"cannot read parquet file {path} ({first}); it is damaged, restore it from the source dataset"
        ) from None
    for name in INTEGER_COLUMNS:
        if name in table.column_names and not pa.types.is_integer(table.schema.field(name).type):
            raise DatasetError(
                f"column {name!r} of {path} has type {table.schema.field(name).type}; LeRobot stores it as int64, "
                f"restore the file from its source"
            )
        if name in table.column_names and table[name].null_count:
            raise DatasetError(f"column {name!r} of {path} has empty (null) values; restore the file from its source")
    return table


class DatasetFiles:
    """The files of a LeRobot dataset folder, read-only: info, episodes, data and video paths. Not LeRobot's own
    torch `LeRobotDataset` (which decodes frames for training). Open with `DatasetFiles.open(path)`."""

    def __init__(self, root: Path, info: dict):
        self.root = root
        self.info = info
        self.version: str = info["codebase_version"]
        self.fps: int = info["fps"]
        self.features: dict[str, dict] = info["features"]
        self._schemas: dict[Path, tuple[tuple, pa.Schema]] = {}  # schema() of unchanged files

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> "DatasetFiles":
        root = Path(root)
        if not root.exists():
            raise DatasetError(f"dataset path {root} does not exist; pass a LeRobot dataset folder")
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder; pass a LeRobot dataset folder")
        info_path = root / "meta" / "info.json"
        if not info_path.is_file():
            raise DatasetError(
                f"{root} is not a LeRobot dataset (no meta/info.json); pass the dataset root, the folder holding "
                f"meta/ and data/"
            )
        info = _read_json(info_path, "meta/info.json")
        if not isinstance(info, dict):
            raise DatasetError(
                f"meta/info.json {info_path} is malformed (not a JSON object); restore it from the source dataset"
            )
        version = info.get("codebase_version")
        if version not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"unsupported codebase_version {version!r} in {info_path}; recap-label reads v2.1 and v3.0 "
                "(convert older datasets with LeRobot's converter)"
            )
        for key, kind in (("fps", (int, float)), ("features", dict), ("data_path", str)):
            if not isinstance(info.get(key), kind) or isinstance(info.get(key), bool):
                raise DatasetError(
                    f"meta/info.json {info_path} is malformed: {key!r} is missing or has the wrong type; restore it "
                    f"from the source dataset"
                )
        fps = info["fps"]
        if not (fps > 0 and fps == fps and fps != float("inf")):
            raise DatasetError(
                f"meta/info.json {info_path} is malformed: 'fps' is {fps!r}, not a positive number; restore it from "
                f"the source dataset"
            )
        for name, feat in info["features"].items():
            if not isinstance(feat, dict) or not isinstance(feat.get("dtype"), str):
                raise DatasetError(
                    f"meta/info.json {info_path} is malformed: feature {name!r} has no dtype; restore it from the "
                    f"source dataset"
                )
        chunks = info.get("chunks_size", 1000)
        if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1:
            raise DatasetError(
                f"meta/info.json {info_path} is malformed: 'chunks_size' is {chunks!r}, not a positive integer; "
                f"restore it from the source dataset"
            )
        if info.get("video_path") is not None and not isinstance(info["video_path"], str):
            raise DatasetError(
                f"meta/info.json {info_path} is malformed: 'video_path' is not a string; restore it from the source "
                f"dataset"
            )
        ds = cls(root, info)
        ds.episodes  # validate episode metadata eagerly: bad input fails before any work
        ds.tasks
        total = info.get("total_episodes")
        if isinstance(total, int) and not isinstance(total, bool) and total != len(ds.episodes):
            raise DatasetError(
                f"meta/ lists {len(ds.episodes)} episodes but {info_path} says total_episodes = {total}; the "
                f"dataset's meta/ folder is inconsistent, restore it from the source dataset"
            )
        if not ds.episodes:
            raise DatasetError(
                f"{root} lists no episodes in meta/; the dataset is empty or its meta/ folder is incomplete"
            )
        return ds

    def _format_path(self, key: str, **fields) -> str:
        """info[key] (data_path / video_path) with its placeholders filled, or a clear error."""
        template = self.info[key]
        try:
            return template.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise DatasetError(
                f"meta/info.json {self.root / 'meta' / 'info.json'} is malformed: {key} {template!r} has a "
                f"placeholder recap-label cannot fill ({exc!r}); "
                f"a {self.version} dataset uses {', '.join('{' + f + '}' for f in fields)}; restore it from the "
                f"source dataset"
            ) from None

    # -- metadata --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in CAMERA_DTYPES]

    def feature_dtype(self, key: str) -> str | None:
        feat = self.features.get(key)
        return feat.get("dtype") if feat else None

    @cached_property
    def tasks(self) -> dict[int, str]:
        if self.version == "v2.1":
            path = self.root / "meta" / "tasks.jsonl"
            try:
                rows = _read_jsonl(path)
            except DatasetError as exc:
                raise DatasetError(exc.message.replace(f"{path} is", f"tasks file {path} is", 1)) from None
            try:
                return {int(r["task_index"]): str(r["task"]) for r in rows}
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{path} is malformed (needs task_index and task); restore it from the source dataset"
                ) from None
        path = self.root / "meta" / "tasks.parquet"
        try:
            table = read_parquet_table(path)
        except DatasetError as exc:
            raise DatasetError(exc.message if "tasks.parquet" in exc.message else f"{path}: {exc.message}") from None
        names = table.column_names
        text_col = "__index_level_0__" if "__index_level_0__" in names else ("task" if "task" in names else None)
        if "task_index" not in names or text_col is None:
            raise DatasetError(
                f"{path} is malformed (needs task_index and the task text); restore it from the source dataset"
            )
        try:
            return dict(
                zip((int(i) for i in table["task_index"].to_pylist()), (str(t) for t in table[text_col].to_pylist()))
            )
        except (TypeError, ValueError):
            raise DatasetError(
                f"{path} is malformed (task_index must be integers); restore it from the source dataset"
            ) from None

    @cached_property
    def episodes(self) -> dict[int, Episode]:
        episodes = self._episodes_v21() if self.version == "v2.1" else self._episodes_v30()
        return dict(sorted(episodes.items()))

    def _episodes_v21(self) -> dict[int, Episode]:
        path = self.root / "meta" / "episodes.jsonl"
        chunks = int(self.info.get("chunks_size", 1000))
        video_path = self.info.get("video_path")
        out: dict[int, Episode] = {}
        for row in _read_jsonl(path):
            try:
                ep, length = _int(row["episode_index"]), _int(row["length"])
                tasks = tuple(str(t) for t in row.get("tasks", []))
            except (KeyError, TypeError, ValueError):
                raise DatasetError(
                    f"{path} is malformed (each line needs episode_index and length); restore it from the source "
                    f"dataset"
                ) from None
            _check_episode_row(path, out, ep, length)
            data_file = self.root / self._format_path("data_path", episode_chunk=ep // chunks, episode_index=ep)
            videos = {}
            for key in self.camera_keys:
                if self.features[key]["dtype"] == "video" and video_path:
                    rel = self._format_path("video_path", episode_chunk=ep // chunks, video_key=key, episode_index=ep)
                    videos[key] = VideoRef(self.root / rel, 0.0, None)
            out[ep] = Episode(ep, length, tasks, data_file, videos)
        return out

    def _episodes_v30(self) -> dict[int, Episode]:
        files = sorted((self.root / "meta" / "episodes").rglob("*.parquet"))
        if not files:
            raise DatasetError(
                f"{self.root / 'meta' / 'episodes'} has no parquet files; the dataset's meta/ folder is incomplete"
            )
        video_path = self.info.get("video_path")
        out: dict[int, Episode] = {}
        for path in files:
            names = pq.read_schema(path).names if _readable(path) else []
            wanted = [c for c in names if not c.startswith("stats/")]
            table = read_parquet_table(path, wanted)
            need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
            for col in need:
                if col not in table.column_names:
                    raise DatasetError(
                        f"{path} is malformed (column {col!r} missing); restore it from the source dataset"
                    )
            rows = table.to_pylist()
            for row in rows:
                try:
                    ep, length = _int(row["episode_index"]), _int(row["length"])
                    chunk_index, file_index = _int(row["data/chunk_index"]), _int(row["data/file_index"])
                    tasks = tuple(str(t) for t in (row.get("tasks") or []))
                except (KeyError, TypeError, ValueError):
                    raise DatasetError(
                        f"{path} is malformed (episode_index, length, data/chunk_index and data/file_index must be "
                        f"integers); restore it from the source dataset"
                    ) from None
                _check_episode_row(path, out, ep, length)
                data_file = self.root / self._format_path("data_path", chunk_index=chunk_index, file_index=file_index)
                videos = {}
                for key in self.camera_keys:
                    if self.features[key]["dtype"] != "video" or not video_path:
                        continue
                    prefix = f"videos/{key}/"
                    if prefix + "chunk_index" not in row:
                        raise DatasetError(
                            f"{path} is malformed (no video location for {key!r}); restore it from the source dataset"
                        )
                    try:
                        v_chunk, v_file = _int(row[prefix + "chunk_index"]), _int(row[prefix + "file_index"])
                        start = float(row.get(prefix + "from_timestamp") or 0.0)
                        end = row.get(prefix + "to_timestamp")
                        end = None if end is None else float(end)
                    except (KeyError, TypeError, ValueError):
                        raise DatasetError(
                            f"{path} is malformed (the video location of {key!r} is not numeric); restore it from "
                            f"the source dataset"
                        ) from None
                    rel = self._format_path("video_path", video_key=key, chunk_index=v_chunk, file_index=v_file)
                    videos[key] = VideoRef(self.root / rel, start, end)
                out[ep] = Episode(ep, length, tasks, data_file, videos)
        return out

    @cached_property
    def data_files(self) -> list[Path]:
        """Every data parquet, in episode order, each once."""
        seen: dict[Path, None] = {}
        for ep in self.episodes.values():
            seen.setdefault(ep.data_file, None)
        for path in seen:
            if not path.is_file():
                raise DatasetError(f"data file {path} listed in meta/ is missing; restore it from the source dataset")
        return list(seen)

    def missing_files(self) -> list[Path]:
        """The data and video files meta/ names (every episode's, every camera's) that are not on disk."""
        named: dict[Path, None] = {}
        for ep in self.episodes.values():
            named.setdefault(ep.data_file, None)
            for ref in ep.videos.values():
                named.setdefault(ref.path, None)
        return [p for p in named if not p.is_file()]

    def require_complete(self) -> None:
        """Refuse a dataset with a file missing, before any work that would need it."""
        missing = self.missing_files()
        if missing:
            raise DatasetError(
                f"{self.root.name} is incomplete: {missing_summary(self.root, missing)}; restore them from the "
                f"source dataset (or make a new copy)"
            )

    def schema(self, path: Path) -> pa.Schema:
        """The file's Arrow schema; kept while the file is unchanged (its footer is parsed once: with
        thousands of row groups that costs tens of milliseconds a time)."""
        try:
            st = os.stat(path)
            key = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            known = self._schemas.get(path)
            if known is not None and known[0] == key:
                return known[1]
            with parquet_file(path) as pf:
                schema = pf.schema_arrow
            self._schemas[path] = (key, schema)
            return schema
        except (pa.ArrowException, OSError) as exc:
            raise DatasetError(
                f"cannot read parquet file {path} ({first_line(exc)}); it is damaged, restore it from the source "
                f"dataset"
            ) from None

    # -- columns ---------------------------------------------------------------------------

    def read_columns(self, columns: Iterable[str], files: Sequence[Path] | None = None) -> pa.Table:
        """The given columns of every data file, concatenated in file order (cheap: column pruning).

        Whenever episode_index is read, each file's rows per episode are checked against meta/
        (which episodes the file holds, and their lengths)."""
        cols = list(dict.fromkeys(columns))
        paths = list(files if files is not None else self.data_files)
        tables = [read_parquet_table(p, cols) for p in paths]
        if not tables:
            return pa.table({c: pa.array([], pa.int64()) for c in cols})
        for p, t in zip(paths, tables):
            self._check_types(p, t.schema)
            if "episode_index" in cols:
                self._check_rows(p, t["episode_index"])
        try:
            return pa.concat_tables(tables)
        except pa.ArrowInvalid:
            first = tables[0].schema
            for p, t in zip(paths[1:], tables[1:]):
                for f in t.schema:
                    if f.name in first.names and not first.field(f.name).type.equals(f.type):
                        raise DatasetError(
                            f"column {f.name!r} is {f.type} in {p} but {first.field(f.name).type} in {paths[0]}; "
                            "the data files disagree on column types, restore the dataset from its source"
                        ) from None
            kinds = {str(t.schema) for t in tables}
            raise DatasetError(
                f"data files disagree on column types ({len(kinds)} different schemas); restore the dataset from its "
                f"source"
            ) from None

    @cached_property
    def _reference_schema(self) -> pa.Schema | None:
        return self.schema(self.data_files[0]) if self.data_files else None

    def _check_types(self, path: Path, schema: pa.Schema) -> None:
        """Every data file stores each column with the same type as the first data file."""
        ref = self._reference_schema
        if ref is None:
            return
        for f in schema:
            i = ref.get_field_index(f.name)
            if i >= 0 and not ref.field(i).type.equals(f.type):
                raise DatasetError(
                    f"column {f.name!r} is {f.type} in {path} but {ref.field(i).type} in {self.data_files[0]}; "
                    "the data files disagree on column types, restore the dataset from its source"
                )

    @cached_property
    def _rows_by_file(self) -> dict[Path, dict[int, int]]:
        out: dict[Path, dict[int, int]] = {}
        for ep in self.episodes.values():
            out.setdefault(ep.data_file, {})[ep.index] = ep.length
        return out

    def _check_rows(self, path: Path, episode_index) -> None:
        """The rows of data file `path` hold exactly the episodes meta/ places there, with their lengths."""
        expected = self._rows_by_file.get(path)
        if expected is None:
            return  # a file that meta/ does not list (read on purpose by the caller)
        ids, counts = np.unique(np.asarray(episode_index.to_numpy()), return_counts=True)
        actual = dict(zip(ids.tolist(), counts.tolist()))
        if actual == expected:
            return
        for ep, n in actual.items():
            if ep not in expected:
                raise DatasetError(
                    f"{path} holds {n} row(s) of episode {ep}, which meta/ does not place in this file; the dataset "
                    f"is inconsistent, restore it from its source"
                )
        for ep, length in expected.items():
            if actual.get(ep, 0) != length:
                raise DatasetError(
                    f"episode {ep} has {actual.get(ep, 0)} row(s) in {path} but meta/ gives length {length}; the "
                    f"dataset is inconsistent, restore it from its source"
                )

    def episode_rows(self, episode_index: int, columns: Sequence[str]) -> pa.Table:
        """The rows of one episode, sorted by frame_index."""
        ep = self.episodes[episode_index]
        cols = list(dict.fromkeys([*columns, "episode_index", "frame_index"]))
        table = read_parquet_table(ep.data_file, cols, filters=[("episode_index", "=", episode_index)])
        order = np.argsort(table["frame_index"].to_numpy(), kind="stable")
        return table.take(pa.array(order))


def missing_summary(root: Path, missing: list[Path]) -> str:
    """'2 files that meta/ names are missing (videos/a.mp4, videos/b.mp4)', at most 3 named."""
    names = ", ".join(p.relative_to(root).as_posix() for p in missing[:3]) + (
        f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    )
    n = len(missing)
    return f"{n} file{'' if n == 1 else 's'} that meta/ names {'is' if n == 1 else 'are'} missing ({names})"


def _int(value) -> int:
    """An integer from metadata: ints and integral floats; never bools, None, text or NaN."""
    if isinstance(value, bool) or value is None:
        raise TypeError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    if not isinstance(value, int):
        raise TypeError(value)
    return value


def _check_episode_row(path: Path, seen: dict, ep: int, length: int) -> None:
    if ep < 0:
        raise DatasetError(
            f"{path} lists episode_index {ep}; episode indices are >= 0, restore it from the source dataset"
        )
    if ep in seen:
        raise DatasetError(
            f"{path} lists episode {ep} twice; the dataset's meta/ folder is inconsistent, restore it from the "
            f"source dataset"
        )
    if length < 1:
        raise DatasetError(
            f"{path} gives episode {ep} length {length}; an episode has at least one frame, restore the meta/ folder "
            f"from the source dataset"
        )


def _readable(path: Path) -> bool:
    try:
        pq.read_schema(path)
        return True
    except (pa.ArrowException, OSError):
        return False


@dataclass(frozen=True)
class EpisodeGroups:
    """Rows of a concatenated table grouped by episode, each group sorted by frame_index.

    `order[starts[i]:stops[i]]` are the row positions of episode `ids[i]`.
    """

    order: np.ndarray
    ids: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return self.stops - self.starts


def first_duplicate(episode_index: np.ndarray, frame_index: np.ndarray, order: np.ndarray | None = None) -> int | None:
    """Row of the first (episode_index, frame_index) pair that occurs twice, else None.
    `order`: the rows' lexsort by (episode, frame), when already computed."""
    order = np.lexsort((frame_index, episode_index)) if order is None else order
    eps, frames = np.asarray(episode_index)[order], np.asarray(frame_index)[order]
    dup = np.flatnonzero((eps[1:] == eps[:-1]) & (frames[1:] == frames[:-1]))
    return int(order[dup[0]]) if dup.size else None


def group_episodes(episode_index: np.ndarray, frame_index: np.ndarray) -> EpisodeGroups:
    """Group rows by episode_index (never by file) and sort each group by frame_index.

    Raises DatasetError on a duplicate (episode_index, frame_index) pair.
    """
    episode_index = np.asarray(episode_index, dtype=np.int64)
    frame_index = np.asarray(frame_index, dtype=np.int64)
    order = np.lexsort((frame_index, episode_index))
    i = first_duplicate(episode_index, frame_index, order)
    if i is not None:
        raise DatasetError(
            f"episode {int(episode_index[i])} has frame_index {int(frame_index[i])} twice; the dataset is "
            f"inconsistent, restore it from its source"
        )
    eps = episode_index[order]
    if eps.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return EpisodeGroups(order, empty, empty, empty)
    boundaries = np.flatnonzero(eps[1:] != eps[:-1]) + 1
    starts = np.concatenate([[0], boundaries]).astype(np.int64)
    stops = np.concatenate([boundaries, [eps.size]]).astype(np.int64)
    return EpisodeGroups(order, eps[starts], starts, stops)
