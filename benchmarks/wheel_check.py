"""The wheel works without the repository: build it, install it into a fresh virtualenv, and run
the main job from a folder outside the checkout.

    python -m benchmarks.wheel_check [--work DIR] [--keep]
    make wheel-check

Offline: the wheel is built with the setuptools already installed (`--no-build-isolation`), and
the fresh virtualenv gets only the wheel; its dependencies come from the interpreter running this
script, through a `.pth` line naming that interpreter's site-packages. A `.pth` line only adds the
folder to `sys.path` (the `.pth` files inside it are not run), so an editable install of
recap_label there stays invisible: `recap_label` is imported from the wheel or not at all.

Steps: build the wheel from a copy of the files it is made of (pyproject.toml, README.md,
recap_label/), so the checkout gets no build/ or egg-info; check what it contains; install it;
then, in an empty folder with a LeRobot home of its own: `recap-label --help`, a dataset written
by the installed `python -m recap_label.demo.synth`, `copy`, `label --value-column value_label`,
`verify`; then `python -m recap_label.demo` (what `make demo` runs, with the tiny value model
shipped in the wheel). Prints one line per step; exit 0 when all pass, 1 at the first failure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]  # benchmarks/ sits in the checkout the wheel is built from
WHEEL_SOURCES = ("pyproject.toml", "README.md", "recap_label")


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r


def build_wheel(work: Path) -> Path:
    src = work / "src"
    for name in WHEEL_SOURCES:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(work / "dist"),
        ],
        src,
    )
    wheels = sorted((work / "dist").glob("recap_label-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one recap_label wheel in {work / 'dist'}, found {[w.name for w in wheels]}")
    return wheels[0]


def check_contents(wheel: Path) -> int:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    stray = sorted(t for t in tops if t != "recap_label" and not t.endswith(".dist-info"))
    if stray:
        raise CheckFailed(f"the wheel holds more than the package: {stray}")
    needed = [
        "recap_label/cli.py",
        "recap_label/assets/tiny_tokenizer.model",
        "recap_label/demo/synth.py",
        "recap_label/demo/__main__.py",
    ]
    needed = [
        n for n in needed if not (n == "recap_label/cli.py" and any(x.startswith("recap_label/cli/") for x in names))
    ]
    missing = [n for n in needed if n not in names]
    if missing:
        raise CheckFailed(f"the wheel lacks {missing}")
    if not any(n.startswith("recap_label/assets/tiny_value_ckpt/") for n in names):
        raise CheckFailed("the wheel lacks the tiny checkpoint (recap_label/assets/tiny_value_ckpt/)")
    return len(names)


def fresh_venv(work: Path, wheel: Path) -> Path:
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python = venv / "bin" / "python"
    # pip of this interpreter installs into the new one; the .pth comes after, so pip never sees
    # the dependencies' (or an editable recap_label's) metadata as part of the new environment
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        work,
    )
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip()
    )
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_recap_label_check_deps.pth").write_text("".join(f"{p}\n" for p in deps))
    return venv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.wheel_check", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work", type=Path, default=None, help="folder to work in (default: a new temporary folder, removed after)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)
    work = (args.work or Path(tempfile.mkdtemp(prefix="recap-wheel-check-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def step(name: str, fn):
        t = time.perf_counter()
        out = fn()
        say(f"ok  {name} ({time.perf_counter() - t:.1f} s){': ' + str(out) if out is not None else ''}")
        return out

    try:
        wheel = step("pip wheel . --no-deps", lambda: build_wheel(work))
        step("wheel contents: recap_label only, with assets and demo", lambda: f"{check_contents(wheel)} files")
        venv = step("fresh venv with the wheel, dependencies by .pth", lambda: fresh_venv(work, wheel))
        outside = work / "outside"
        outside.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECAP_LABEL_", "PYTHON", "HF_"))}
        env.update(
            HF_LEROBOT_HOME=str(work / "lerobot-home"),
            COLUMNS="100",
            PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        )
        python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "recap-label")

        def imported_from():
            where = Path(
                run([python, "-c", "import recap_label; print(recap_label.__file__)"], outside, env).stdout.strip()
            )
            if venv not in where.parents:
                raise CheckFailed(f"recap_label was imported from {where}, not from the installed wheel in {venv}")
            return where

        step("import recap_label from the wheel", imported_from)

        def help_():
            out = run([cli, "--help"], outside, env).stdout
            for command in ("copy", "label", "verify", "rollback"):
                if command not in out:
                    raise CheckFailed(f"`recap-label --help` does not list {command}:\n{out}")

        step("recap-label --help", help_)
        step(
            "python -m recap_label.demo.synth rollouts (installed writer)",
            lambda: run(
                [python, "-m", "recap_label.demo.synth", "rollouts", "--episodes", "4", "--length", "40"], outside, env
            ).stdout.splitlines()[-1],
        )
        step(
            "recap-label copy rollouts",
            lambda: run([cli, "copy", "rollouts"], outside, env).stdout.strip().splitlines()[0],
        )
        name = "local/rollouts_vlm_label"
        step(
            f"recap-label label {name} --value-column value_label",
            lambda: (
                run([cli, "label", name, "--value-column", "value_label"], outside, env).stdout.strip().splitlines()[-1]
            ),
        )
        step(
            f"recap-label verify {name}",
            lambda: run([cli, "verify", name], outside, env).stdout.strip().splitlines()[-1],
        )
        demo = work / "demo"
        demo.mkdir()
        step(
            "python -m recap_label.demo (make demo: the tiny model from the wheel's assets)",
            lambda: run([python, "-m", "recap_label.demo"], demo, env, timeout=600).stdout.strip().splitlines()[-1],
        )
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        say(f"FAIL {exc}")
        return 1
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    say(
        f"wheel check passed in {time.perf_counter() - t0:.0f} s"
        + (f" (work folder {work})" if args.keep or args.work else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
