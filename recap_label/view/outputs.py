"""Where `view` writes, checked before any work, and the writing itself: each file appears whole
under its name or not at all (temp file beside it, fsync, rename), never inside the dataset."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from recap_label.errors import BadInput
from recap_label.store.fsutil import write_file_atomic
from recap_label.view.cameras import iter_frames
from recap_label.view.episodes import EpisodeSeries, ViewSource


@dataclass
class Destination:
    """`--mp4 PATH` / `--rrd PATH`: one file, or a folder (`DIR/`) with one file per episode."""

    flag: str
    path: Path
    folder: bool
    suffix: str

    def files(self, dataset: str, episodes: list[int]) -> list[tuple[Path, list[int]]]:
        if not self.folder:
            return [(self.path, episodes)]
        return [(self.path / f"{dataset}_episode_{e:06d}{self.suffix}", [e]) for e in episodes]


def destination(flag: str, text: str, suffix: str, ds_root: Path) -> Destination:
    path = Path(text).expanduser()
    folder = text.endswith(("/", os.sep)) or path.is_dir()
    where = path if folder else path.parent
    if not where.is_dir():
        raise BadInput(f"{flag} {text}: folder {where} does not exist; create it first or pass another path")
    if not os.access(where, os.W_OK | os.X_OK):
        raise BadInput(f"{flag} {text}: folder {where} is not writable; pass another path")
    if not folder and path.suffix.lower() != suffix:
        raise BadInput(f"{flag} {text}: pass a file name ending in {suffix}, or a folder DIR/ for one file per episode")
    real, root = Path(os.path.realpath(where)), Path(os.path.realpath(ds_root))
    if real == root or root in real.parents:
        raise BadInput(
            f"{flag} {text} is inside the dataset {ds_root}; view only reads the dataset, write the file elsewhere"
        )
    return Destination(flag, path, folder, suffix)


def check_ports(*ports: int) -> None:
    """--serve: every port it listens on is free now."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                raise BadInput(
                    f"--serve: port {port} is in use; stop what listens there or pass --port / --grpc-port with a "
                    f"free one"
                ) from None


def write_mp4(src: ViewSource, target: Path, series: list[EpisodeSeries], cameras: list[str]) -> int:
    """One MP4 of `series` in turn; returns its frame count."""
    from recap_label.view import mp4

    title = src.side.title
    other = src.other.title if src.other else None
    streams = (cams for s in series for cams in iter_frames(src.ds, s.episode, cameras, len(s)))
    first = next(streams, None)
    shapes = [f.shape[:2] for f in first] if first is not None else []
    canvas = mp4.Canvas(shapes, sum(len(s) for s in series), other is not None)
    background = mp4.background_image(canvas, series, title, other, src.value_source)

    def frames():
        if first is not None:
            yield first
            yield from streams

    written = []

    def write(tmp: Path) -> None:
        written.append(
            mp4.encode(
                tmp,
                src.ds.fps,
                canvas.width,
                canvas.height,
                mp4.render(canvas, background, title, other, series, frames()),
            )
        )

    write_file_atomic(target, write)
    return written[0]


def write_rrd(src: ViewSource, target: Path, s: EpisodeSeries, cameras: list[str]) -> None:
    from recap_label.view import rrd

    rr = rrd.import_rerun()
    other = src.other.title if src.other else None

    def write(tmp: Path) -> None:
        rec = recording(rr, src, s)
        rec.save(tmp, default_blueprint=rrd.blueprint(rr, cameras, other is not None))
        rrd.log_episode(rec, rr, s, cameras, iter_frames(src.ds, s.episode, cameras, len(s)), other)
        rec.flush()
        rec.disconnect()

    write_file_atomic(target, write)


def recording(rr, src: ViewSource, s: EpisodeSeries):
    from recap_label.view.rrd import application_id

    app = application_id(src.ds.name, s.episode)
    return rr.RecordingStream(app, recording_id=f"{app}-{src.side.run.id}")


def stream_live(
    src: ViewSource, series: list[EpisodeSeries], cameras: list[str], *, spawn: bool, serve: tuple[int, int] | None
) -> tuple[str | None, list]:
    """--spawn: into a (started) Rerun viewer; --serve (web port, gRPC port): into a served web
    viewer. Each episode is its own recording. Returns the web viewer's URL (--serve) and the
    recordings: the server lives as long as the first of them, so the caller keeps them."""
    from recap_label.view import rrd

    rr = rrd.import_rerun()
    other = src.other.title if src.other else None
    bp = rrd.blueprint(rr, cameras, other is not None)
    url = None
    grpc_url = None
    recordings = []
    for s in series:
        rec = recording(rr, src, s)
        recordings.append(rec)
        if serve is not None:
            if grpc_url is None:
                grpc_url = rec.serve_grpc(grpc_port=serve[1], default_blueprint=bp)
                rr.serve_web_viewer(web_port=serve[0], open_browser=False, connect_to=grpc_url)
                from urllib.parse import quote

                url = f"http://localhost:{serve[0]}/?url={quote(grpc_url, safe='')}"
            else:
                rec.connect_grpc(grpc_url, default_blueprint=bp)
        if spawn:
            rec.spawn(default_blueprint=bp)
        rrd.log_episode(rec, rr, s, cameras, iter_frames(src.ds, s.episode, cameras, len(s)), other)
        rec.flush()
    return url, recordings
