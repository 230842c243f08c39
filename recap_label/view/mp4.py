"""`view --mp4`: the chosen cameras tiled, a header with the frame's numbers and task, and under
them a timeline strip (adv_ind colours, OTHER's labels and the flips with --compare,
intervention, a cursor at the current frame), V, A and the threshold over the timeline, and a
legend. H.264 in yuv420p at the dataset's fps (plays in a browser or a chat app), drawn with
numpy and Pillow, one frame at a time: only the current frame is ever held.

The strip's geometry is public (`Canvas`) so that a test can read labels back from pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from recap_label.view.episodes import EpisodeSeries

LABEL_COLORS = {"positive": (46, 160, 67), "negative": (214, 39, 40), "none": (120, 120, 120), "": (45, 45, 45)}
INTERVENTION = (255, 165, 0)
FLIP = (230, 0, 230)
CURSOR = (255, 255, 255)
BACKGROUND = (18, 18, 18)
EMPTY = (45, 45, 45)
V_COLOR, A_COLOR, THRESHOLD_COLOR, OTHER_V_COLOR = (80, 150, 255), (190, 130, 255), (255, 230, 80), (255, 120, 60)

# tiny cameras are scaled up; wide rigs down by a whole factor (every k-th pixel): the encoder's
# cost grows with the pixels, and three 640-px cameras at 960 px still show what happens
MIN_WIDTH, MAX_WIDTH = 640, 1280
MARGIN = 10
HEADER_H = 64  # three text lines
CURSOR_H = 8
BAND_H = 18
THIN_H = 8
PLOT_H = 120
LEGEND_H = 44  # two rows
CRF = "20"  # x264 quality: flat label colours survive it
PRESET = "ultrafast"  # x264 at its cheapest: the encoder is most of the cost (see benchmarks/view_bench.py)


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


@dataclass
class Band:
    name: str
    y0: int
    y1: int


class Canvas:
    """Where everything goes in a W x H frame: camera tiles, then the strip (cursor row, label
    band, OTHER's band and the flip row with --compare, intervention row), the plot, the legend."""

    def __init__(self, shapes: list[tuple[int, int]], total_frames: int, compare: bool):
        heights = [h for h, _ in shapes]
        tile_h = max(heights) if heights else 0
        widths = [w * tile_h / h for h, w in shapes]
        total = sum(widths)
        scale = 1.0
        if total and total < MIN_WIDTH:
            scale = MIN_WIDTH / total
        elif total > MAX_WIDTH:
            scale = 1 / math.ceil(total / MAX_WIDTH)
        self.tile_h = _even(tile_h * scale) if shapes else 0
        self.tile_sizes = [(_even(w * scale), self.tile_h) for w in widths]  # (width, height)
        self.width = _even(max(sum(w for w, _ in self.tile_sizes), MIN_WIDTH))
        x = (self.width - sum(w for w, _ in self.tile_sizes)) // 2
        self.tile_x = []
        for w, _ in self.tile_sizes:
            self.tile_x.append(x)
            x += w
        y = HEADER_H + self.tile_h + 6
        self.cursor = Band("cursor", y, y + CURSOR_H)
        y = self.cursor.y1
        self.bands = {"label": Band("label", y, y + BAND_H)}
        y += BAND_H
        if compare:
            self.bands["other"] = Band("other", y + 2, y + 2 + BAND_H)
            self.bands["flip"] = Band("flip", y + 4 + BAND_H, y + 4 + BAND_H + THIN_H)
            y += 4 + BAND_H + THIN_H
        self.bands["intervention"] = Band("intervention", y + 2, y + 2 + THIN_H)
        y += 2 + THIN_H + 6
        self.plot = Band("plot", y, y + PLOT_H)
        y += PLOT_H + 4
        self.legend = Band("legend", y, y + LEGEND_H)
        self.height = _even(y + LEGEND_H + 4)
        self.frames = max(total_frames, 1)

    def cell(self, i: int) -> tuple[int, int]:
        """Pixel columns [x0, x1) of timeline position i (at least one column)."""
        span = (self.width - 2 * MARGIN) / self.frames
        x0 = MARGIN + int(math.floor(i * span))
        return x0, max(x0 + 1, MARGIN + int(math.floor((i + 1) * span)))

    def centre(self, i: int) -> int:
        x0, x1 = self.cell(i)
        return (x0 + x1 - 1) // 2


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def background_image(
    canvas: Canvas, series: list[EpisodeSeries], title: str, other_title: str | None, value_source: str
) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = np.empty((canvas.height, canvas.width, 3), np.uint8)
    img[:] = BACKGROUND
    i = 0
    for s in series:
        for j in range(len(s)):
            x0, x1 = canvas.cell(i + j)
            band = canvas.bands["label"]
            img[band.y0 : band.y1, x0:x1] = LABEL_COLORS.get(s.label[j], LABEL_COLORS["none"])
            if "other" in canvas.bands:
                b = canvas.bands["other"]
                img[b.y0 : b.y1, x0:x1] = LABEL_COLORS.get(s.other_label[j], EMPTY)
                b = canvas.bands["flip"]
                img[b.y0 : b.y1, x0:x1] = FLIP if s.flipped[j] else EMPTY
            b = canvas.bands["intervention"]
            img[b.y0 : b.y1, x0:x1] = INTERVENTION if s.human[j] else EMPTY
        i += len(s)

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    small = _font(12)
    plot = canvas.plot
    curves = [
        ("A", A_COLOR, [s.advantage for s in series]),
        ("threshold", THRESHOLD_COLOR, [s.threshold.astype(np.float32) for s in series]),
        ("V", V_COLOR, [s.value for s in series]),
    ]
    if other_title is not None:  # under this side's V: where both are equal, V shows
        curves.insert(0, (f"V {other_title}", OTHER_V_COLOR, [s.other_value for s in series]))
    every = np.concatenate([np.concatenate(c[2]) for c in curves]) if series else np.zeros(0)
    finite = every[np.isfinite(every)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.06 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    y_of = lambda v: plot.y1 - 1 - (v - lo) / (hi - lo) * (plot.y1 - plot.y0 - 1)
    draw.rectangle([MARGIN, plot.y0, canvas.width - MARGIN - 1, plot.y1 - 1], outline=(70, 70, 70))
    if lo < 0 < hi:
        draw.line([(MARGIN, y_of(0.0)), (canvas.width - MARGIN - 1, y_of(0.0))], fill=(60, 60, 60))
    draw.text((MARGIN + 3, plot.y0 + 1), f"{hi:.2f}", fill=(150, 150, 150), font=small)
    draw.text((MARGIN + 3, plot.y1 - 15), f"{lo:.2f}", fill=(150, 150, 150), font=small)
    start = 0
    for k, s in enumerate(series):
        if k:
            x = canvas.cell(start)[0]
            draw.line([(x, plot.y0), (x, plot.y1 - 1)], fill=(200, 200, 200), width=1)  # episode boundary
        draw.text(
            (canvas.cell(start)[0] + 3, plot.y1 - 30 if k % 2 else plot.y0 + 14),
            f"ep {s.episode}",
            fill=(200, 200, 200),
            font=small,
        )
        for _, color, values in curves:
            v = values[k]
            pts = [(canvas.centre(start + j), y_of(float(v[j]))) for j in range(len(s)) if np.isfinite(v[j])]
            if len(pts) > 1:
                draw.line(pts, fill=color, width=2)
            elif pts:
                draw.point(pts, fill=color)
        start += len(s)
    font = _font(13)
    x = MARGIN
    items = [
        (LABEL_COLORS["positive"], "positive"),
        (LABEL_COLORS["negative"], "negative"),
        (LABEL_COLORS["none"], "none"),
        (INTERVENTION, "intervention"),
    ]
    if other_title is not None:
        items.append((FLIP, "flipped"))
    items += [(V_COLOR, f"V ({value_source})"), (A_COLOR, "A"), (THRESHOLD_COLOR, "threshold on A")]
    if other_title is not None:
        items.append((OTHER_V_COLOR, f"V {other_title}"))
    y = canvas.legend.y0 + 4
    for color, text in items:
        step = 15 + int(draw.textlength(text, font=font)) + 14
        if x > MARGIN and x + step - 14 > canvas.width - MARGIN:  # wrap to the second row
            x, y = MARGIN, y + 20
        draw.rectangle([x, y + 2, x + 11, y + 13], fill=color)
        draw.text((x + 15, y), text, fill=(220, 220, 220), font=font)
        x += step
    return np.asarray(pil).copy()


class Stamp:
    """Text drawn by copying pre-rendered glyphs: Pillow's FreeType renders a header line in
    several ms, too slow per frame; the glyphs of one font are few and kept."""

    def __init__(self, size: int):
        self.font = _font(size)
        self.glyphs: dict[str, tuple[np.ndarray, int, int, float]] = {}  # char -> (alpha, dx, dy, advance)

    def _glyph(self, ch: str):
        g = self.glyphs.get(ch)
        if g is None:
            from PIL import Image, ImageDraw

            x0, y0, x1, y1 = self.font.getbbox(ch)
            img = Image.new("L", (max(x1 - x0, 1), max(y1 - y0, 1)), 0)
            ImageDraw.Draw(img).text((-x0, -y0), ch, fill=255, font=self.font)
            g = self.glyphs[ch] = (np.asarray(img, np.float32)[..., None] / 255.0, x0, y0, self.font.getlength(ch))
        return g

    def width(self, text: str) -> float:
        return sum(self._glyph(ch)[3] for ch in text)

    def draw(self, img: np.ndarray, x: float, y: int, text: str, color) -> float:
        """Blend `text` into img (H, W, 3 uint8) at (x, y); returns the x after it."""
        color = np.asarray(color, np.float32)
        for ch in text:
            alpha, dx, dy, advance = self._glyph(ch)
            gx, gy = int(round(x)) + dx, y + dy
            h, w = alpha.shape[:2]
            if gx + w > img.shape[1] or gx < 0:
                break
            region = img[gy : gy + h, gx : gx + w]
            region[:] = (region * (1 - alpha) + color * alpha).astype(np.uint8)
            x += advance
        return x


def _fmt(x: float, spec: str = ".3f") -> str:
    return "-" if not np.isfinite(x) else format(float(x), spec)


def _header(img: np.ndarray, stamp: Stamp, title: str, other_title: str | None, s: EpisodeSeries, j: int) -> None:
    """The frame's numbers, drawn into the header rows of `img`."""
    img[:HEADER_H] = BACKGROUND
    line1 = f"{title}   episode {s.episode}   frame {int(s.frame[j])} ({j + 1}/{len(s)})   t {s.timestamp[j]:.2f} s"
    if s.reason:
        line1 += f"   picked: {s.reason}"
    stamp.draw(img, MARGIN, 4, line1, (235, 235, 235))
    parts = [
        (f"V {_fmt(s.value[j])}", V_COLOR),
        (f"A {_fmt(s.advantage[j])}", A_COLOR),
        (f"threshold {_fmt(s.threshold[j])}", THRESHOLD_COLOR),
        (f"adv_ind {s.label[j]}", LABEL_COLORS.get(s.label[j], LABEL_COLORS["none"])),
    ]
    if s.human[j]:
        parts.append(("intervention", INTERVENTION))
    third = []
    if other_title is not None:
        third.append((f"{other_title}: {s.other_label[j] or '-'}, V {_fmt(s.other_value[j])}", OTHER_V_COLOR))
        if s.flipped[j]:
            third.append(("FLIPPED", FLIP))
    third.append((f"task: {s.task[j]}", (200, 200, 200)))
    for y, line in ((24, parts), (44, third)):
        x = MARGIN
        for text, color in line:
            x = stamp.draw(img, x, y, text, color) + 16


def _tile(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = frame.shape[:2]
    if w == size[0] and h == size[1]:
        return frame
    from PIL import Image

    k = w // size[0]
    if k > 1 and w == k * size[0] and h == k * size[1]:
        # every k-th pixel: one strided copy (a box filter costs as much as the encoder's share)
        return frame[::k, ::k]
    return np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))


def render(
    canvas: Canvas,
    background: np.ndarray,
    title: str,
    other_title: str | None,
    series: list[EpisodeSeries],
    frames: Iterable[list[np.ndarray]],
) -> Iterator[np.ndarray]:
    """The video's frames: one per row of the episodes in turn, `frames` the cameras' frames of each.
    One buffer is redrawn in place (header, tiles, cursor); the consumer copies it before the next."""
    frames = iter(frames)
    img = background.copy()
    stamp = Stamp(15)
    previous = None
    i = 0
    for s in series:
        for j in range(len(s)):
            _header(img, stamp, title, other_title, s, j)
            for cam, x, size in zip(next(frames), canvas.tile_x, canvas.tile_sizes):
                img[HEADER_H : HEADER_H + size[1], x : x + size[0]] = _tile(cam, size)
            if previous is not None:  # the last frame's cursor back to the background under it
                (x0, x1), c = previous
                img[canvas.cursor.y0 : canvas.cursor.y1, x0:x1] = background[canvas.cursor.y0 : canvas.cursor.y1, x0:x1]
                img[canvas.plot.y0 : canvas.plot.y1, c] = background[canvas.plot.y0 : canvas.plot.y1, c]
            x0, x1 = canvas.cell(i)
            if x1 - x0 < 3:  # a visible cursor where cells are narrow
                c = canvas.centre(i)
                x0, x1 = c - 1, c + 2
            img[canvas.cursor.y0 : canvas.cursor.y1, x0:x1] = CURSOR
            img[canvas.plot.y0 : canvas.plot.y1, canvas.centre(i)] = CURSOR
            previous = ((x0, x1), canvas.centre(i))
            yield img
            i += 1


def encode(path: Path, fps: float, width: int, height: int, images: Iterable[np.ndarray]) -> int:
    """H.264 yuv420p at `fps` into `path`; returns the number of frames written."""
    import av

    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": CRF, "preset": PRESET}
        n = 0
        for img in images:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n
