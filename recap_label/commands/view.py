"""`view DS`: the chosen episodes' cameras with V, A, the threshold and adv_ind on one timeline,
as an MP4 and/or a Rerun recording (file, spawned viewer or served web viewer). Only reads the
dataset; every bad input is refused before anything is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from recap_label.config import Settings
from recap_label.errors import BadInput
from recap_label.view.cameras import select_cameras
from recap_label.view.episodes import (
    check_episodes,
    episode_series,
    open_source,
    parse_episode_list,
    worst_episodes,
)
from recap_label.view.outputs import (
    check_ports,
    destination,
    stream_live,
    write_mp4,
    write_rrd,
)


@dataclass
class ViewResult:
    dataset: str
    run: str
    compare: str | None
    episodes: list[dict]  # {"episode", "frames", "reason"}
    cameras: list[str]
    value_source: str
    written: list[dict] = field(default_factory=list)  # {"path", "episodes", "frames"}
    url: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def run_view(
    spec: str,
    settings: Settings,
    *,
    episodes: str | None = None,
    worst: int | None = None,
    compare: str | None = None,
    cameras: str | None = None,
    mp4: str | None = None,
    rrd: str | None = None,
    spawn: bool = False,
    serve: tuple[int, int] | None = None,
    on_ready=None,
) -> ViewResult:
    """`on_ready(result)` is called once the files are written and before a --serve blocks."""
    if not (mp4 or rrd or spawn or serve):
        raise BadInput("view needs an output: --mp4 PATH, --rrd PATH, --spawn or --serve")
    if spawn and serve:
        raise BadInput("pass --spawn or --serve, not both")
    if episodes is not None and worst is not None:
        raise BadInput("pass --episodes or --worst, not both")
    if rrd or spawn or serve:
        from recap_label.view.rrd import import_rerun

        import_rerun()  # a missing extra is refused before any work
    src = open_source(spec, settings, compare)
    mp4_dest = destination("--mp4", mp4, ".mp4", src.ds.root) if mp4 else None
    rrd_dest = destination("--rrd", rrd, ".rrd", src.ds.root) if rrd else None
    if serve is not None:
        check_ports(*serve)
    cams = select_cameras(src.ds, cameras)
    notes = list(src.notes)
    if worst is not None:
        picks = [(p.episode, p.reason) for p in worst_episodes(src, worst, settings)]
    elif episodes is not None:
        chosen = parse_episode_list(episodes)
        check_episodes(src, chosen)
        picks = [(e, None) for e in chosen]
    else:
        picks = [(src.rollout_episodes[0], None)]
        notes.append(
            f"showing episode {picks[0][0]}, the first rollout episode; choose with --episodes 3,7 or --worst N"
        )
    if rrd_dest is not None and not rrd_dest.folder and len(picks) > 1:
        raise BadInput(
            f"--rrd {rrd}: a .rrd holds one episode's recording and {len(picks)} episodes are chosen; pass a folder "
            f"(--rrd DIR/) for one file per episode"
        )
    series = [episode_series(src, e, why) for e, why in picks]
    by_episode = {s.episode: s for s in series}
    result = ViewResult(
        str(src.ds.root),
        src.side.run.id,
        src.other.title if src.other else None,
        [{"episode": s.episode, "frames": len(s), "reason": s.reason} for s in series],
        cams,
        src.value_source,
        notes=notes,
    )
    chosen = [s.episode for s in series]
    if mp4_dest is not None:
        for path, eps in mp4_dest.files(src.ds.name, chosen):
            n = write_mp4(src, path, [by_episode[e] for e in eps], cams)
            result.written.append({"path": str(path), "episodes": eps, "frames": n})
    if rrd_dest is not None:
        for path, eps in rrd_dest.files(src.ds.name, chosen):
            write_rrd(src, path, by_episode[eps[0]], cams)
            result.written.append({"path": str(path), "episodes": eps, "frames": len(by_episode[eps[0]])})
    live: list = []  # the live recordings: a served viewer stops with them
    if spawn or serve:
        result.url, live = stream_live(src, series, cams, spawn=spawn, serve=serve)
    if on_ready is not None:
        on_ready(result)
    if serve:
        _wait_until_interrupted()
    del live
    return result


def _wait_until_interrupted() -> None:
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
