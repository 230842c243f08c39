"""The cameras `view` shows and their frames, streamed: each camera is decoded sequentially by the
label path's decoder (recap_label.lerobot.frames) in its own thread, a few frames ahead, so
memory stays flat however long the episode is, and decoding overlaps drawing and encoding."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np

from recap_label.errors import BadInput, DatasetError
from recap_label.lerobot.dataset import DatasetFiles
from recap_label.lerobot.frames import iter_episode_frames

AHEAD = 4  # frames decoded ahead per camera


def short_name(key: str) -> str:
    """observation.images.front -> front."""
    return key.rsplit(".", 1)[-1]


def select_cameras(ds: DatasetFiles, text: str | None) -> list[str]:
    """--cameras a,b (full keys or their last part), or every camera of the dataset."""
    cams = ds.camera_keys
    if text is None:
        return cams
    out = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        match = [k for k in cams if name in (k, short_name(k))]
        if not match:
            raise BadInput(
                f"--cameras: {name!r} is not a camera of {ds.name}; cameras there: {', '.join(cams) or 'none'}"
            )
        out += [k for k in match if k not in out]
    if not out:
        raise BadInput(f"--cameras {text!r} names no camera; cameras of {ds.name}: {', '.join(cams) or 'none'}")
    return out


_DONE = object()


def _decode_into(ds: DatasetFiles, episode: int, key: str, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for frame in iter_episode_frames(ds, episode, key):
            while not stop.is_set():
                try:
                    out.put(frame, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(_DONE)
    except BaseException as exc:  # handed to the consumer, raised there
        out.put(exc)


def iter_frames(ds: DatasetFiles, episode: int, keys: list[str], length: int) -> Iterator[list[np.ndarray]]:
    """Per row of the episode: one frame of each camera in `keys`."""
    if not keys:
        for _ in range(length):
            yield []
        return
    stop = threading.Event()
    queues = [queue.Queue(AHEAD) for _ in keys]
    threads = [
        threading.Thread(target=_decode_into, args=(ds, episode, k, q, stop), daemon=True) for k, q in zip(keys, queues)
    ]
    for t in threads:
        t.start()
    try:
        for _ in range(length):
            frames = []
            for key, q in zip(keys, queues):
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _DONE:
                    raise DatasetError(
                        f"camera {key} of episode {episode} has fewer frames than the episode's {length} rows; "
                        f"restore the dataset from its source"
                    )
                frames.append(item)
            yield frames
    finally:
        stop.set()
        for q in queues:  # unblock a producer waiting on a full queue
            while not q.empty():
                q.get_nowait()
        for t in threads:
            t.join(timeout=5)
