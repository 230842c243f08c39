"""Inference progress on stderr, for a person at a terminal and for a log file alike.

On a terminal: a rich bar (frames done/total, frames/s, ETA, GPU memory on CUDA). Off a terminal
(`| tee log`, `nohup`, a SLURM job): one plain line at a steady rhythm, `PLAIN_EVERY_S` apart,
plus a line when inference starts and ends. The ETA is the frames left divided by the rate shown
(the average since the start), so the two always agree. `quiet` (--json) prints nothing.
"""

from __future__ import annotations

import sys
import time

PLAIN_EVERY_S = 15.0  # off a terminal: one line this often
PREFIX = "progress: "  # every plain line starts with it (easy to filter out of a log)


def say(message: str, quiet: bool = False) -> None:
    """One plain progress line on stderr (checkpoint loading, start and end of inference)."""
    if not quiet:
        sys.stderr.write(f"{PREFIX}{message}\n")
        sys.stderr.flush()


def clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def rate_and_eta(done: int, total: int, elapsed: float) -> tuple[float, float | None]:
    """(frames/s since the start, seconds left at that rate; None before the first frame)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    return rate, ((total - done) / rate if rate > 0 else None)


class Progress:
    """Progress of `total` frames; `advance(n)` after each batch, `close()` at the end (also on error)."""

    def __init__(self, total: int, device, quiet: bool, every_s: float | None = None):
        self.total, self.device, self.quiet = total, device, quiet
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.bar = None
        self.plain = False
        self.done = 0
        self.elapsed: float | None = None  # set by close()
        self.t0 = time.perf_counter()
        self.next_at = self.t0 + self.every_s
        if quiet:
            return
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            self.plain = True
            say(f"inference of {total:,} frames on {self._device_name()} started (a line every {self.every_s:g} s)")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn

        self.bar = Bar(
            TextColumn("infer"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[mem]}"),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("infer", total=total, rate="", eta="", mem="")
        self.bar.start()

    def _device_name(self) -> str:
        return str(self.device)

    def _memory(self) -> str:
        if getattr(self.device, "type", None) != "cuda":
            return ""
        import torch

        return f"GPU {torch.cuda.max_memory_allocated(self.device) / 2**30:.1f} GiB"

    def advance(self, n: int) -> None:
        if self.quiet:
            return
        self.done += n
        now = time.perf_counter()
        rate, eta = rate_and_eta(self.done, self.total, now - self.t0)
        shown_eta = "ETA " + ("-:--:--" if eta is None else clock(eta))
        if self.bar is not None:
            self.bar.update(self.task, advance=n, rate=f"{rate:,.1f} frames/s", eta=shown_eta, mem=self._memory())
        elif self.plain and now >= self.next_at:
            while (
                self.every_s > 0 and self.next_at <= now
            ):  # a steady rhythm: every_s after the last due time, not after the last line
                self.next_at += self.every_s
            mem = self._memory()
            say(
                f"infer {self.done:,}/{self.total:,} frames ({100 * self.done / max(self.total, 1):.1f} %) · "
                f"{rate:,.1f} frames/s · {shown_eta}" + (f" · {mem}" if mem else "")
            )

    def close(self) -> None:
        """Stop; `elapsed` is then the inference's one wall-clock measurement (the engine reports
        it too, so the last progress line and the label report give the same frames/s)."""
        if self.elapsed is None:
            self.elapsed = time.perf_counter() - self.t0
        elapsed = self.elapsed
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
        elif self.plain:
            self.plain = False
            rate, _ = rate_and_eta(self.done, self.total, elapsed)
            what = "done" if self.done >= self.total else f"stopped at {self.done:,}/{self.total:,} frames"
            say(f"inference {what}: {self.done:,} frames in {clock(elapsed)} ({rate:,.1f} frames/s)")
