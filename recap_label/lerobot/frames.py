"""Camera frames of one episode, in frame_index order, as uint8 HWC arrays.

`image` features: PNG bytes stored in the parquet rows. `video` features: the episode's
segment of an mp4, decoded once, sequentially, with PyAV (no per-frame seeks). Frames
are matched to the rows' timestamps (v3.0: shifted by the episode's from_timestamp)
within LeRobot's tolerance, as LeRobot's own loader does.
"""

from __future__ import annotations

import io
from typing import Iterator

import numpy as np

from recap_label.lerobot.dataset import DatasetFiles
from recap_label.errors import DatasetError

# LeRobot's default `tolerance_s` for matching a decoded frame's pts to a query timestamp.
TOLERANCE_S = 1e-4
_SWS_THREADS = True  # PyAV >= 17 accepts reformat(threads=...)


def _rgb(frame) -> np.ndarray:
    """uint8 RGB on this thread. PyAV >= 17 multithreads each frame's colour conversion by default
    (one thread per core): ~0.5-2.8 ms per 224-px frame, against ~0.12 ms on one thread."""
    global _SWS_THREADS
    if _SWS_THREADS:
        try:
            return frame.to_ndarray(format="rgb24", threads=1)
        except TypeError:  # PyAV < 17: no `threads`, single-threaded already
            _SWS_THREADS = False
    return frame.to_ndarray(format="rgb24")


def iter_episode_frames(
    ds: DatasetFiles, episode_index: int, key: str, *, tolerance_s: float = TOLERANCE_S, threads: int | None = None
) -> Iterator[np.ndarray]:
    """Yield the episode's frames of camera `key` (H, W, 3 uint8), one per row, by frame_index.

    `threads`: video decoder threads (None: the codec's automatic choice; 1 in a decode worker
    process, where more threads only contend with the other workers for the cores)."""
    dtype = ds.feature_dtype(key)
    if dtype == "image":
        yield from _iter_png_frames(ds, episode_index, key)
    elif dtype == "video":
        yield from _iter_video_frames(ds, episode_index, key, tolerance_s, threads)
    else:
        cams = ", ".join(ds.camera_keys) or "none"
        raise DatasetError(
            f"camera column {key!r} is not an image or video feature of {ds.root}; cameras there: {cams}"
        )


def decode_png(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"unreadable image at {where} ({exc}); restore the dataset from its source") from None


# PNG decoding releases the GIL: a couple of threads decode ahead, frames are yielded in order.
PNG_THREADS = 2
PNG_AHEAD = 16


def _iter_png_frames(ds: DatasetFiles, episode_index: int, key: str) -> Iterator[np.ndarray]:
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    rows = ds.episode_rows(episode_index, [key])
    cells = rows[key].to_pylist()
    frames = rows["frame_index"].to_pylist()
    for frame, cell in zip(frames, cells):
        if not cell or not cell.get("bytes"):
            where = f"episode {episode_index} frame {frame} ({key})"
            raise DatasetError(
                f"no PNG bytes at {where}; the dataset stores images outside parquet, which recap-label does not read"
            )
    jobs = ((cell["bytes"], f"episode {episode_index} frame {frame} ({key})") for frame, cell in zip(frames, cells))
    with ThreadPoolExecutor(PNG_THREADS) as pool:
        pending: deque = deque()
        for data, where in jobs:
            pending.append(pool.submit(decode_png, data, where))
            if len(pending) >= PNG_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _iter_video_frames(
    ds: DatasetFiles, episode_index: int, key: str, tolerance_s: float, threads: int | None = None
) -> Iterator[np.ndarray]:
    import av  # heavy: imported only when a video is decoded

    ep = ds.episodes[episode_index]
    ref = ep.videos.get(key)
    if ref is None:
        raise DatasetError(
            f"episode {episode_index} has no video for {key!r} in meta/; restore the dataset from its source"
        )
    rows = ds.episode_rows(episode_index, ["timestamp"])
    frame_ids = rows["frame_index"].to_numpy()
    queries = rows["timestamp"].to_numpy().astype(np.float64) + ref.from_timestamp
    if queries.size == 0:
        return
    if not ref.path.is_file():
        raise DatasetError(
            f"video {ref.path} for episode {episode_index} is missing; restore it from the source dataset"
        )
    try:
        container = av.open(str(ref.path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(
            f"cannot open video {ref.path} for episode {episode_index} ({exc}); restore it from the source dataset"
        ) from None
    with container:
        stream = container.streams.video[0]
        if threads is None:
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = threads
        time_base = float(stream.time_base)
        first = float(queries.min())
        if first > 0:
            # one seek to the keyframe before the episode's first frame, then decode forward
            container.seek(max(int(round(first / time_base)) - 1, 0), backward=True, any_frame=False, stream=stream)
        want = 0
        previous: tuple[float, object] | None = None
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                pts = frame.pts * time_base
                while want < queries.size and pts > queries[want] + tolerance_s:
                    # passed the query: the previous frame was the closest candidate
                    if previous is not None and abs(previous[0] - queries[want]) < tolerance_s:
                        yield _rgb(previous[1])
                        want += 1
                    else:
                        raise _missing_frame(ep.index, frame_ids[want], key, queries[want], tolerance_s, ref)
                if want >= queries.size:
                    break
                if abs(pts - queries[want]) < tolerance_s:
                    yield _rgb(frame)
                    want += 1
                    while want < queries.size and abs(pts - queries[want]) < tolerance_s:
                        yield _rgb(frame)  # duplicate timestamps map to one frame
                        want += 1
                    if want >= queries.size:
                        break
                previous = (pts, frame)
        except av.error.FFmpegError as exc:
            raise DatasetError(
                f"video {ref.path} is damaged near episode {episode_index} ({exc}); restore it from the source dataset"
            ) from None
        if want < queries.size:
            raise DatasetError(
                f"video {ref.path} ends before episode {episode_index} frame {int(frame_ids[want])} ({key}, "
                f"t={queries[want]:.4f}s); "
                "the video is shorter than its episode, restore it from the source dataset"
            )


def _missing_frame(episode: int, frame: int, key: str, query: float, tolerance_s: float, ref) -> DatasetError:
    return DatasetError(
        f"no frame within {tolerance_s}s of t={query:.4f}s in {ref.path} for episode {episode} frame {int(frame)} "
        f"({key}); "
        "the video does not match its timestamps, restore it from the source dataset"
    )
