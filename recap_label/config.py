"""One configuration object, resolved once: flags > environment > TOML file > defaults.

Every value remembers where it came from, so `recap-label config` can show the
effective configuration and its provenance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from recap_label.errors import ConfigError, warn

ENV_PREFIX = "RECAP_LABEL_"
_INTERNAL_ENV = {
    "RECAP_LABEL_CRASH_AT",
    "RECAP_LABEL_SLOW_AT",
    "RECAP_LABEL_SLOW_MARK",
}  # the fault-injection tests' (store.faults)
CONFIG_FILE_NAME = "recap-label.toml"

# the values a key may take (checked at resolution for a file or environment value, naming it; a
# flag's value is checked where the command uses it, with the same rule, naming the flag)
TAIL_RULES = ("zero", "last")
SCOPES = ("global", "task")
PRECISIONS = ("auto", "tf32", "bf16", "fp32")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
MAX_LOOKAHEAD = 2**31 - 1  # frames; far beyond any episode, far from int64 overflow
MIN_RATIO = 1e-9  # below it, 100 - 100 * R rounds to 100 (float64 has ~16 digits)
BATCH_SIZE_CUDA, BATCH_SIZE_CPU = 64, 8  # batch_size when not set


def default_num_workers() -> int:
    """Decode workers when not set: none on a 2-core machine (handing batches between processes
    costs more than it gains there, measured), else up to 8, leaving a core for the main process."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


_ALLOWED: dict[str, tuple[Any, str]] = {
    "lookahead": (lambda v: 1 <= v <= MAX_LOOKAHEAD, f"an integer from 1 to {MAX_LOOKAHEAD} (frames)"),
    "positive_ratio": (
        lambda v: MIN_RATIO <= v <= 1.0,
        f"a share in (0, 1], at least {MIN_RATIO:g} (0.3 labels 30 % positive)",
    ),
    "tail_bootstrap": (lambda v: v in TAIL_RULES, "one of " + ", ".join(TAIL_RULES)),
    "threshold_scope": (lambda v: v in SCOPES, "one of " + ", ".join(SCOPES)),
    "precision": (lambda v: v in PRECISIONS, "one of " + ", ".join(PRECISIONS)),
    "device": (lambda v: bool(DEVICE_RE.match(v.strip().lower())), "auto, cpu, cuda or cuda:N"),
    "batch_size": (lambda v: v is None or v >= 1, "an integer >= 1"),
    "num_workers": (lambda v: v is None or v >= 0, "an integer >= 0"),
}


def default_lerobot_home(env: Mapping[str, str] | None = None) -> Path:
    """LeRobot's own rule: $HF_LEROBOT_HOME, else $HF_HOME/lerobot, else ~/.cache/huggingface/lerobot."""
    env = os.environ if env is None else env
    if env.get("HF_LEROBOT_HOME"):
        return Path(env["HF_LEROBOT_HOME"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "lerobot"
    return _cache_root(env) / "huggingface" / "lerobot"


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    return _cache_root(os.environ if env is None else env) / "recap-label"


def _cache_root(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CACHE_HOME")
    return Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()


@dataclass
class Settings:
    """Settings shared by every command. Field names are also the TOML keys and, upper-cased
    with the RECAP_LABEL_ prefix, the environment variable names."""

    lerobot_home: Path = field(default_factory=default_lerobot_home)
    # columns
    human_col: str = "intervention"
    adv_col: str = "adv_ind"
    reward_col: str = "reward_label"
    base_image_col: str | None = None
    wrist_image_col: str | None = None
    right_wrist_image_col: str | None = None
    mc_value_col: str = "value_label"  # the Monte-Carlo value the value-model check compares V with
    # the labeling rule (see rule.py)
    lookahead: int = 50
    positive_ratio: float = 0.3
    tail_bootstrap: str = "zero"
    threshold_scope: str = "global"
    # the value model and where it runs
    checkpoint_dir: Path | None = None
    checkpoint_step: str | None = None
    tokenizer_path: Path | None = None
    device: str = "auto"
    batch_size: int | None = None  # None: 64 on CUDA, 8 on the CPU
    num_workers: int | None = None  # None: 0 on <= 2 cores, else min(8, cores - 1)
    precision: str = "auto"
    model_cache: Path = field(default_factory=lambda: default_cache_dir() / "models")
    json: bool = False
    # where each value came from: "default", "env RECAP_LABEL_X", "file PATH", "flag --x"
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def with_overrides(self, **flags: Any) -> "Settings":
        """A copy with command-line flag values applied (None means "not given")."""
        new = dataclasses.replace(self, sources=dict(self.sources))
        for name, value in flags.items():
            if value is None:
                continue
            if name not in _FIELD_TYPES:
                raise KeyError(name)
            setattr(new, name, _coerce(name, value, f"--{name.replace('_', '-')}"))
            new.sources[name] = f"flag --{name.replace('_', '-')}"
        return new

    @staticmethod
    def default(name: str) -> Any:
        """The built-in default of a key, as help texts show it."""
        return _DEFAULTS[name]

    def effective(self, name: str) -> Any:
        """The value a command uses, as JSON: a key left unset that has a rule of its own resolved
        (num_workers from the cores, batch_size from the device; {"cuda": 64, "cpu": 8} while the
        device is auto), paths as text, None where nothing is set."""
        value = getattr(self, name)
        if name == "num_workers" and value is None:
            return default_num_workers()
        if name == "batch_size" and value is None:
            device = self.device.strip().lower()
            if device == "cpu":
                return BATCH_SIZE_CPU
            if device.startswith("cuda"):
                return BATCH_SIZE_CUDA
            return {"cuda": BATCH_SIZE_CUDA, "cpu": BATCH_SIZE_CPU}
        return str(value) if isinstance(value, Path) else value

    def shown(self, name: str) -> str:
        """`effective` as a person writes it."""
        value = self.effective(name)
        if value is None:
            return "(not set)"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return ", ".join(f"{v} on {k.upper() if k == 'cuda' else 'the ' + k.upper()}" for k, v in value.items())
        return f"{value:g}" if isinstance(value, float) else str(value)

    def as_rows(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for display: the effective values."""
        return [(name, self.shown(name), self.sources.get(name, "default")) for name in _FIELD_TYPES]

    def to_json(self) -> dict:
        """`recap-label config --json`: every key's effective value (JSON-typed: integers, numbers,
        true/false, null when not set) and where it came from."""
        return {
            name: {"value": self.effective(name), "source": self.sources.get(name, "default")} for name in _FIELD_TYPES
        }


_FIELD_TYPES = {f.name: f.type for f in fields(Settings) if f.name != "sources"}
_DEFAULTS = {
    f.name: f.default for f in fields(Settings) if f.name != "sources" and f.default is not dataclasses.MISSING
}


def _coerce(name: str, value: Any, origin: str) -> Any:
    """`value` as the key's type, and (from a file or the environment) within what it allows."""
    out = _typed(name, value, origin)
    allowed = _ALLOWED.get(name)
    if allowed is not None and not origin.startswith("--") and out is not None:
        ok, what = allowed
        if (isinstance(out, float) and not math.isfinite(out)) or not ok(out):
            raise ConfigError(f"{origin}: {name} must be {what}, got {_as_written(out)}; fix the value")
    return out


def _as_written(value: Any) -> str:
    """A value as a TOML file writes it: "text", true, 30, 0.3."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _typed(name: str, value: Any, origin: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind in ("Path", "Path | None"):
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError
            return None if value == "" and kind != "Path" else Path(value).expanduser()
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in {
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            }:
                return value.strip().lower() in {"1", "true", "yes", "on"}
            raise TypeError
        if kind in ("int", "int | None"):
            if isinstance(value, bool) or isinstance(value, float):
                raise TypeError
            return None if value == "" and kind != "int" else int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind in ("str", "str | None"):
            if not isinstance(value, str):
                raise TypeError
            return value if value != "" or kind == "str" else None
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{origin}: {name} must be {_describe(kind)}, got {_as_written(value)}; fix the value")


def _describe(kind: str) -> str:
    kind = kind.removesuffix(" | None")
    return {"Path": "a path", "bool": "true or false", "int": "an integer", "float": "a number"}.get(kind, "a string")


def _find_config_file(explicit: Path | None, cwd: Path) -> tuple[Path, Mapping[str, Any]] | None:
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist; pass an existing TOML file to --config")
        return explicit, _load_toml(explicit)
    local = cwd / CONFIG_FILE_NAME
    if local.is_file():
        return local, _load_toml(local)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        table = _load_toml(pyproject).get("tool", {}).get("recap-label")
        if table is not None:
            return pyproject, table
    return None


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix its syntax") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}); check its permissions") from None


def resolve_settings(
    *,
    config_path: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build the effective Settings: defaults, then file, then environment, then flags."""
    env = os.environ if env is None else env
    settings = Settings(lerobot_home=default_lerobot_home(env), model_cache=default_cache_dir(env) / "models")
    settings.sources = {name: "default" for name in _FIELD_TYPES}
    if "HF_LEROBOT_HOME" in env:
        settings.sources["lerobot_home"] = "env HF_LEROBOT_HOME"

    found = _find_config_file(config_path, cwd or Path.cwd())
    if found is not None:
        path, table = found
        label = f"{path}" if path.name != "pyproject.toml" else f"{path} [tool.recap-label]"
        for key, value in table.items():
            name = key.replace("-", "_")
            if name not in _FIELD_TYPES:
                known = ", ".join(sorted(_FIELD_TYPES))
                raise ConfigError(f"unknown key {key!r} in config file {label}; known keys: {known}")
            setattr(settings, name, _coerce(name, value, f"config file {label}"))
            settings.sources[name] = f"file {label}"

    for var in sorted(env):
        if (
            var.startswith(ENV_PREFIX)
            and var.removeprefix(ENV_PREFIX).lower() not in _FIELD_TYPES
            and var not in _INTERNAL_ENV
        ):
            known = ", ".join(ENV_PREFIX + n.upper() for n in sorted(_FIELD_TYPES))
            warn(f"unknown environment variable {var} is ignored; known: {known}")
    for name in _FIELD_TYPES:
        var = ENV_PREFIX + name.upper()
        if var in env:
            setattr(settings, name, _coerce(name, env[var], f"environment variable {var}"))
            settings.sources[name] = f"env {var}"

    return settings.with_overrides(**(flags or {}))
