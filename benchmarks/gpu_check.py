"""One device call that answers the GPU questions, on a bare GPU host, within a time budget.

    PYTHONPATH=<checkout> python -m benchmarks.gpu_check OUT_DIR [--budget-s 480] [--quick]
    make gpu-check [GPU_CHECK_OUT=gpu-check-out]

Needs only what a GPU host typically has (Python, a CUDA build of torch, transformers, numpy,
pyarrow, typer, rich, safetensors, sentencepiece, tensorstore) plus PyAV; runs from the source
tree (no `pip install`), never imports polars, reads nothing from the network. Steps, most
important first, each skipped with a note when its estimate no longer fits the budget:

  env        versions, device, cores; stops here (exit 2) where torch sees no CUDA device
  tests      the `cuda`-marked pytest tests (needs pytest; skipped with a note without it)
  agreement  CUDA vs CPU strict-fp32 V of one full-size random critic per precision, and
             `label` values + labels of the tiny checkpoint on CUDA vs the CPU, per precision
  model      full-size critic (random weights), frames/s, TFLOP/s, peak memory at batch
             32/64/128/256 per precision, eager; then compiled (CUDA graphs) as time allows
  label      `label` end to end on generated 21,286-frame datasets (2 cameras at 224, 3 at
             480x640): wall, frames/s, GPU busy %, load/fetch/infer/write split, workers

Writes OUT_DIR/gpu-check.json and OUT_DIR/gpu-check.txt (the table) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.datasets import default_cache_dir, scratch_copy
from benchmarks.gpu import GpuBusy, bf16_peak, model_inputs, random_model

# benchmarks/ sits in a checkout beside tests/: the cuda tests run from there
CHECKOUT = Path(__file__).resolve().parents[1]
BATCHES = (32, 64, 128, 256)
PRECISIONS = ("tf32", "bf16", "fp32")  # fp32 last in the sweep: slowest
DATA_VERSION = "gpu1"
HEAD, LEFT, RIGHT = (
    "observation.images.head_camera",
    "observation.images.left_wrist_camera",
    "observation.images.right_wrist_camera",
)


class Budget:
    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Report:
    def __init__(self, out_dir: Path, budget: Budget):
        self.out_dir, self.budget = out_dir, budget
        self.env: dict = {}
        self.rows: list[dict] = []
        self.steps: list[dict] = []

    def row(self, step: str, name: str, value, unit: str, detail: str = "", ok: bool | None = None, **data) -> None:
        self.rows.append({"step": step, "name": name, "value": value, "unit": unit, "detail": detail, "ok": ok, **data})

    def step(self, name: str, status: str, note: str = "", seconds: float = 0.0) -> None:
        self.steps.append({"step": name, "status": status, "note": note, "seconds": round(seconds, 1)})
        say(f"[{self.budget.elapsed():5.0f} s] {name}: {status}{' - ' + note if note else ''}")

    def write(self) -> str:
        table = render(self)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "gpu-check.txt").write_text(table + "\n")
        data = {
            "env": self.env,
            "budget_s": self.budget.seconds,
            "wall_s": round(self.budget.elapsed(), 1),
            "steps": self.steps,
            "results": self.rows,
        }
        (self.out_dir / "gpu-check.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        return table


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def render(report: Report) -> str:
    test = "SELF-TEST ON THE CPU (not GPU figures) · " if DEVICE != "cuda" else ""
    lines = [
        f"recap-label gpu-check · {test}{report.env.get('device_name', '?')} · torch {report.env.get('torch', '?')} · "
        f"CUDA {report.env.get('cuda', '-')} · {report.env.get('cores', '?')} cores · {report.budget.elapsed():.0f} "
        f"s of {report.budget.seconds:.0f} s"
    ]
    width = max([len(r["name"]) for r in report.rows] + [20])
    for r in report.rows:
        v = r["value"]
        value = (
            "n/a"
            if v is None
            else (
                f"{v:,.0f}"
                if isinstance(v, (int, float)) and abs(v) >= 100
                else (f"{v:.3g}" if isinstance(v, float) else str(v))
            )
        )
        mark = "" if r["ok"] is None else ("ok" if r["ok"] else "MISS")
        lines.append(f"{r['step']:<10} {r['name']:<{width}} {value:>10} {r['unit']:<12} {mark:<4} {r['detail']}")
    for s in report.steps:
        if s["status"] != "done":
            lines.append(f"{s['step']:<10} {s['status']}: {s['note']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# env


def environment() -> dict:
    import torch

    import recap_label

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cores": os.cpu_count(),
        "source": str(Path(recap_label.__file__).resolve().parents[1]),
        "polars_imported": "polars" in sys.modules,
    }
    from importlib import metadata

    for name in ("av", "pyarrow", "numpy", "transformers", "sentencepiece", "tensorstore", "typer", "rich"):
        try:
            module = __import__(name)
        except ImportError:
            env[name] = None
            continue
        try:
            env[name] = getattr(module, "__version__", None) or metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "?"
    env["device_name"] = "CPU self-test" if DEVICE != "cuda" else None
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


# ---------------------------------------------------------------------------------------------
# tests


def run_cuda_tests(report: Report, timeout: float) -> None:
    try:
        import pytest  # noqa: F401
    except ImportError:
        report.step("tests", "skipped", "pytest is not installed here (pip install pytest, or bring its wheel)")
        return
    tests = CHECKOUT / "tests"
    if not tests.is_dir():
        report.step("tests", "skipped", f"no tests/ folder beside benchmarks/ ({tests})")
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHECKOUT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs", str(tests)],
            cwd=CHECKOUT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        report.step("tests", "stopped", f"the cuda tests ran past {timeout:.0f} s (budget)", time.perf_counter() - t0)
        return
    import re

    tail = [line for line in r.stdout.splitlines() if re.search(r"\d+ (passed|skipped|failed|deselected|error)", line)][
        -1:
    ] or ["(no summary line)"]
    report.row("tests", "pytest -m cuda", r.returncode, "exit code", tail[0], r.returncode == 0)
    (report.out_dir / "cuda-tests.log").write_text(r.stdout + r.stderr)
    report.step("tests", "done", tail[0], time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# the full-size model

DEVICE = "cuda"  # `--self-test-on-cpu` runs every step on the CPU to test this script, never a GPU figure


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**30 if torch.device(device).type == "cuda" else None


def set_precision(model, precision: str) -> None:
    """The encoder dtype of `precision` (weights cast from fp32: the same model in every mode)."""
    import torch

    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    model.img.encoder.to(dtype)
    for layer in model.img.encoder.layers:  # LayerNorm parameters stay fp32 in every mode (as pistar)
        layer.layer_norm1.float()
        layer.layer_norm2.float()
    model.img.dtype = dtype
    model.siglip_dtype = dtype


def forward_values(model, images, mask, tokens, tf32: bool):
    import torch

    from recap_label.model.preprocess import to_model_input
    from recap_label.values.engine import matmul_precision

    with torch.inference_mode(), matmul_precision(tf32):
        return model(to_model_input(images), mask, tokens, tokens != 0)


_FULL: dict = {}


def full_model(device, quick: bool):
    """The full-size random critic (tiny with --quick), built once (~10-20 s of random weights) and
    moved between devices; the steps after the agreement check only time it, so they may find its
    encoder already cast to bf16."""
    import torch

    from recap_label.demo.tiny_model import tiny_config
    from recap_label.model.params import ValueModelConfig

    if quick not in _FULL:
        config = tiny_config() if quick else ValueModelConfig()
        _FULL[quick] = random_model(config, torch.device(device), "fp32")
    return _FULL[quick].to(device)


def check_full_agreement(report: Report, quick: bool) -> None:
    """V of 8 frames of one random full-size critic: CPU strict fp32 vs CUDA per precision."""
    import torch

    from recap_label.model.precision import TOLERANCE

    t0 = time.perf_counter()
    model = full_model(torch.device("cpu"), quick)
    set_precision(model, "fp32")  # the first user: still the fp32 weights
    config = model.config
    images, mask, tokens = model_inputs(config, 8, 2, "cpu", seed=1)
    reference = forward_values(model, images, mask, tokens, False).double().numpy()
    model = model.to(DEVICE)
    gi, gm, gt = images.to(DEVICE), mask.to(DEVICE), tokens.to(DEVICE)
    for precision in device_precisions():
        set_precision(model, precision)
        got = forward_values(model, gi, gm, gt, precision == "tf32").double().cpu().numpy()
        diff = float(abs(got - reference).max())
        report.row(
            "agreement",
            f"full-size V, {DEVICE} {precision} vs CPU fp32",
            diff,
            "max |dV|",
            f"8 frames, 2 cameras; tolerance {TOLERANCE[precision]:g}; V in [{reference.min():.3f}, "
            f"{reference.max():.3f}]",
            diff <= TOLERANCE[precision],
        )
    reset_peak(DEVICE)
    report.step("agreement (full size)", "done", "", time.perf_counter() - t0)


def device_precisions() -> tuple[str, ...]:
    return ("fp32", "bf16", "tf32") if DEVICE == "cuda" else ("fp32", "bf16")  # TF32 is a CUDA mode


def sweep_model(report: Report, budget: Budget, quick: bool, compiled: bool, reserve: float) -> dict:
    """frames/s, TFLOP/s and peak memory per precision and batch; returns the best batch per precision."""
    import torch

    from recap_label.model.params import flops_per_frame

    device = torch.device(DEVICE)
    t0 = time.perf_counter()
    model = full_model(device, quick)
    config = model.config
    flops = flops_per_frame(config, 2)
    peak_tflops = bf16_peak(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    best: dict = {}
    mode = ("compiled (CUDA graphs)" if device.type == "cuda" else "compiled") if compiled else "eager"
    precisions = (
        device_precisions()[-1:] if compiled else device_precisions()
    )  # fp32 first: the encoder is cast down after
    stopped = ""
    for precision in precisions:
        set_precision(model, precision)
        fn = (
            torch.compile(model, mode="reduce-overhead" if device.type == "cuda" else None, dynamic=False)
            if compiled
            else model
        )
        for batch in BATCHES:
            if budget.left() < reserve + (60 if compiled else 10):
                stopped = (
                    f"stopped before {precision} batch {batch}: {budget.left():.0f} s left, {reserve:.0f} s "
                    f"kept for the next steps"
                )
                break
            images, mask, tokens = model_inputs(config, batch, 2, device)
            try:
                reset_peak(device)
                for _ in range(3 if compiled else 1):  # warm-up (compiled: recording the graphs)
                    forward_values(fn, images, mask, tokens, precision == "tf32")
                sync(device)
                iters = 5 if device.type == "cuda" else 1
                t = time.perf_counter()
                for _ in range(iters):
                    forward_values(fn, images, mask, tokens, precision == "tf32")
                sync(device)
                dt = (time.perf_counter() - t) / iters
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                report.row("model", f"{mode} {precision} batch {batch}", None, "frames/s", "CUDA out of memory")
                continue
            fps = batch / dt
            tflops = fps * flops / 1e12
            mem = peak_gib(device)
            share = f" = {100 * tflops / peak_tflops:.0f} % of {peak_tflops:.0f} bf16 peak" if peak_tflops else ""
            report.row(
                "model",
                f"{mode} {precision} batch {batch}",
                fps,
                "frames/s",
                f"{tflops:,.1f} TFLOP/s{share}; peak memory {'n/a' if mem is None else f'{mem:.1f} GiB'}",
                None,
                precision=precision,
                batch=batch,
                compiled=compiled,
                tflops=tflops,
                peak_gib=mem,
            )
            if fps > best.get(precision, (0, 0))[1]:
                best[precision] = (batch, fps)
        if stopped:
            break
    reset_peak(device)
    report.step(f"model ({mode})", "stopped" if stopped else "done", stopped, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------------------------
# label end to end


def ensure_dataset(cache: Path, name: str, spec, budget: Budget, estimate: float) -> Path | None:
    from benchmarks.camera_data import write_camera_dataset

    root = cache / f"{DATA_VERSION}-{name}" / "dataset"
    if (root.parent / "DONE").exists():
        return root
    if budget.left() < estimate:
        return None
    shutil.rmtree(root.parent, ignore_errors=True)
    root.parent.mkdir(parents=True)
    write_camera_dataset(root.parent / "tmp", spec)
    (root.parent / "tmp").rename(root)
    (root.parent / "DONE").write_text(str(spec.total_frames))
    return root


def model_values(
    device: str,
    precision: str,
    batch: int | None,
    workers: int | None,
    base: str,
    wrist: str,
    full: bool,
    cache: Path,
    quick: bool = False,
    right: str | None = None,
):
    from recap_label.config import Settings
    from recap_label.demo.tiny_model import TINY_CHECKPOINT, TINY_TOKENIZER
    from recap_label.values.model_source import ModelValues

    settings = Settings(
        base_image_col=base,
        wrist_image_col=wrist,
        right_wrist_image_col=right,
        model_cache=cache / "models",
        checkpoint_dir=TINY_CHECKPOINT,
        tokenizer_path=TINY_TOKENIZER,
        device=device,
        precision=precision,
        batch_size=batch,
        num_workers=workers,
        json=True,
    )
    source = ModelValues.from_settings(settings)
    if full:
        engine = source.engine
        model = full_model(engine.device, quick)
        set_precision(model, engine.precision)
        engine.use_model(model)
    return settings, source


def label_run(
    report: Report, name: str, root: Path, cams: str, batch: int, workers: int, cache: Path, quick: bool
) -> None:
    from recap_label.commands.label import run_label
    from recap_label.rule import RuleSettings

    work = Path(tempfile.mkdtemp(prefix="label-", dir=cache))
    try:
        scratch = scratch_copy(root, work / "ds")
        settings, source = model_values(
            DEVICE, "auto", batch, workers, HEAD, LEFT, True, cache, quick, RIGHT if cams == "3" else None
        )
        with GpuBusy() as busy:
            t0 = time.perf_counter()
            out = run_label(scratch, settings, RuleSettings(), source, recompute=True, allow_original=True)
            wall = time.perf_counter() - t0
        stats, t = dict(source.stats), out.timings
        frames = int(stats["frames"])
        target = 1000 if cams == "2" else 700
        infer_share = 100 * stats["infer_s"] / max(stats["wall_s"], 1e-9)
        busy_s = f"GPU busy {busy.mean:.0f} % (nvml)" if busy.mean is not None else "GPU busy: no nvml/nvidia-smi here"
        load = t.get("read", 0.0)
        write = t.get("stage", 0.0) + t.get("commit", 0.0)
        report.row(
            "label",
            f"{name}: {frames:,} frames, {cams} cams, batch {batch}, {source.engine.num_workers} workers",
            frames / wall,
            "frames/s",
            f"wall {wall:.1f} s; {busy_s}; load {load:.1f} s, fetch wait {stats['fetch_wait_s']:.1f} s, queue "
            f"{stats['infer_s']:.1f} s "
            f"({infer_share:.0f} % of inference wall), result wait {stats.get('result_wait_s', 0):.1f} s, write "
            f"{write:.2f} s; "
            f"precision {source.engine.precision}; target >= {target} frames/s, GPU busy >= 85 %",
            frames / wall >= target and (busy.mean or 0) >= 85,
            wall_s=wall,
            frames=frames,
            gpu_busy=busy.mean,
            stats=stats,
            timings=t,
            workers=source.engine.num_workers,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_label_agreement(report: Report, cache: Path) -> None:
    """`label` with the tiny checkpoint on CUDA per precision vs the CPU strict-fp32 run: values and labels."""
    import numpy as np
    import pyarrow.parquet as pq

    from recap_label.commands.label import run_label
    from recap_label.demo import synth
    from recap_label.model.precision import TOLERANCE
    from recap_label.rule import RuleSettings

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="agree-", dir=cache))
    try:
        spec = synth.simple_spec("v2.1", episodes=6, length=90, demos=1, png_cameras=1, video_cameras=1, size=48)
        src = synth.write_dataset(work / "src", spec)
        cams = list(spec.cameras)
        runs = {}
        for device, precision in (("cpu", "fp32"), *((DEVICE, p) for p in device_precisions())):
            ds = work / f"run-{len(runs)}-{device}-{precision}"
            shutil.copytree(src, ds)
            settings, source = model_values(device, precision, 16, 0, cams[0], cams[1], False, cache)
            run_label(ds, settings, RuleSettings(), source, recompute=True, allow_original=True)
            values = pq.read_table(ds / "meta" / "recap_label" / "values.parquet")
            order = np.lexsort((values["frame_index"].to_numpy(), values["episode_index"].to_numpy()))
            labels = np.concatenate(
                [
                    pq.read_table(p, columns=[settings.adv_col])[settings.adv_col].to_numpy(zero_copy_only=False)
                    for p in sorted((ds / "data").rglob("*.parquet"))
                ]
            )
            runs[(device, precision)] = (values["value"].to_numpy()[order], labels)
        ref_v, ref_l = runs[("cpu", "fp32")]
        for precision in device_precisions():
            v, labels = runs[(DEVICE, precision)]
            diff = float(np.abs(v - ref_v).max())
            same = float(np.mean(labels == ref_l))
            report.row(
                "agreement",
                f"label (tiny checkpoint), {DEVICE} {precision} vs CPU fp32",
                diff,
                "max |dV|",
                f"{len(v)} frames; labels identical on {100 * same:.2f} % of {len(labels)} rows; tolerance "
                f"{TOLERANCE[precision]:g}",
                diff <= TOLERANCE[precision] and (same == 1.0 or precision != "fp32"),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.step("agreement (label)", "done", "", time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="folder for gpu-check.json, gpu-check.txt and the test log")
    p.add_argument(
        "--budget-s", type=float, default=480.0, help="wall-clock budget of the whole check (default: 480 = 8 minutes)"
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="generated datasets, reused by the next run (default: ~/.cache/recap-label/bench)",
    )
    p.add_argument("--quick", action="store_true", help="tiny model and datasets (a smoke test of the check itself)")
    p.add_argument(
        "--self-test-on-cpu",
        action="store_true",
        help="run every step on the CPU (with --quick: the test of this script; its figures are not GPU figures)",
    )
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = "cpu" if args.self_test_on_cpu else "cuda"
    budget = Budget(args.budget_s)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(args.out_dir, budget)
    try:
        import torch
    except ImportError as exc:
        say(f"Error: gpu-check needs torch ({exc}); install a CUDA build of torch")
        return 2
    report.env = environment()
    report.step(
        "env",
        "done",
        f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}, PyAV {report.env.get('av')}",
    )
    missing = [
        m
        for m in ("av", "pyarrow", "sentencepiece", "tensorstore", "typer", "rich", "transformers")
        if report.env.get(m) is None
    ]
    if missing:
        report.step("env", "stopped", f"missing modules: {', '.join(missing)}")
        print(report.write())
        say(f"Error: gpu-check needs {', '.join(missing)}; install them (PyAV as a wheel: pip install av-*.whl)")
        return 2
    if DEVICE == "cuda" and not torch.cuda.is_available():
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "torch sees no CUDA device"
        report.step("cuda", "stopped", f"CUDA is not available ({why}); everything after this point needs a GPU")
        print(report.write())
        say(
            f"Error: gpu-check needs a CUDA device, and {why} (torch {torch.__version__}); run it on a GPU host: "
            "PYTHONPATH=<checkout> python -m benchmarks.gpu_check OUT_DIR"
        )
        return 2
    cache = (args.cache_dir or default_cache_dir()).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    # a step still running when the budget is spent is interrupted like a Ctrl-C: `label` stops
    # cleanly (its partial values stay resumable), the report says so and is written
    import _thread
    import threading

    watchdog = threading.Timer(max(1.0, budget.left()), _thread.interrupt_main)
    watchdog.daemon = True
    watchdog.start()
    out_of_time = []

    def attempt(name: str, estimate: float, fn) -> None:
        if out_of_time:
            report.step(name, "skipped", "the budget is spent")
            return
        if budget.left() < estimate:
            report.step(name, "skipped", f"needs ~{estimate:.0f} s, {budget.left():.0f} s of the budget left")
            return
        t0 = time.perf_counter()
        try:
            fn()
        except KeyboardInterrupt:
            out_of_time.append(name)
            why = "the budget ran out" if budget.left() <= 1 else "interrupted"
            report.step(
                name,
                "stopped",
                f"{why} during this step, after {time.perf_counter() - t0:.0f} s",
                time.perf_counter() - t0,
            )
        except Exception as exc:  # a failing step is reported; the others still run
            report.step(
                name,
                "failed",
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                time.perf_counter() - t0,
            )

    from recap_label.demo import synth

    attempt("tests", 60, lambda: run_cuda_tests(report, timeout=max(30.0, min(150.0, budget.left() - 300))))
    attempt("agreement (label)", 40, lambda: check_label_agreement(report, cache))
    attempt("agreement (full size)", 30, lambda: check_full_agreement(report, args.quick))
    best: dict = {}
    attempt("model (eager)", 60, lambda: best.update(sweep_model(report, budget, args.quick, False, reserve=180)))
    batch = best.get("tf32", (128, 0))[0]
    cores = os.cpu_count() or 1
    if args.quick:
        two = synth.simple_spec("v2.1", episodes=3, length=50, demos=0, png_cameras=0, video_cameras=2, size=224)
        three = synth.simple_spec("v2.1", episodes=3, length=50, demos=0, png_cameras=0, video_cameras=3, size=64)
        three.cameras = {k: synth.CameraSpec("video", 480, 640) for k in three.cameras}
    else:
        two = synth.reference_spec("v2.1", cameras={k: synth.CameraSpec("video", 224, 224) for k in (HEAD, LEFT)})
        three = synth.reference_spec(
            "v2.1", cameras={k: synth.CameraSpec("video", 480, 640) for k in (HEAD, LEFT, RIGHT)}
        )
    two.cameras = dict(zip((HEAD, LEFT), two.cameras.values()))
    three.cameras = dict(zip((HEAD, LEFT, RIGHT), three.cameras.values()))

    def label_step(name, spec, cams, gen_estimate, workers):
        root = ensure_dataset(cache, f"{'quick' if args.quick else 'full'}-{name}", spec, budget, gen_estimate + 60)
        if root is None:
            report.step(
                f"label {name}",
                "skipped",
                f"generating the dataset needs ~{gen_estimate:.0f} s; {budget.left():.0f} s left",
            )
            return
        label_run(report, name, root, cams, batch, workers, cache, args.quick)
        report.step(f"label {name}", "done")

    attempt("label 2x224", 60, lambda: label_step("2x224", two, "2", 45, min(8, cores - 1)))
    attempt("label 3x480x640", 90, lambda: label_step("3x480x640", three, "3", 120, max(1, cores - 1)))
    attempt("model (compiled)", 90, lambda: sweep_model(report, budget, args.quick, True, reserve=15))
    watchdog.cancel()
    print(report.write())
    return 0


if __name__ == "__main__":
    sys.exit(main())
