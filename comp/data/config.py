"""The competition definition, `comp.toml`: where the data is and what its columns mean.

It maps any data set onto comp's vocabulary (target, text fields, image, categorical and
numeric columns), so a new competition needs a config, not code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from comp.errors import CompError
from comp.metrics import METRICS
from comp.typed import Params, build, param

CONFIG_FILE = "comp.toml"


@dataclass(frozen=True)
class DataConfig:
    train: str
    test: str
    target: str
    id: str | None = None
    """Identifier column; None means the row number (called `row`) identifies a product."""
    target_name: str | None = None
    """Optional column with a readable name of each class (KazanExpress: category_name)."""
    text: list[str] = field(default_factory=list)
    """Plain text columns, appended after the JSON fields in this order."""
    text_json: str | None = None
    """One column holding a JSON object whose values are expanded into text (HTML stripped)."""
    text_json_keys: list[str] = field(default_factory=list)
    """Order of the JSON keys in the text; empty means every key in the order stored."""
    image: str | None = None
    """Image path template relative to the workspace: {split}, {row} and any column, e.g.
    data/images/{split}/{product_id}.jpg, or "{path}" for a column holding paths."""
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    target_is_classes: bool = False
    """A float target with fractional values is refused (comp classifies, and each value
    would be its own class); true treats every distinct value as a class anyway."""


@dataclass(frozen=True)
class CVConfig:
    metric: str = "f1_weighted"
    n_folds: int = 5
    seed: int = 42


@dataclass(frozen=True)
class ExecutorConfig(Params):
    """Where the folds of a run train: `local` (in this process, one after another) or
    `ray` (each fold a Ray task with these resources; docs/scale.md)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None
    """A running Ray cluster: "auto" (the one `ray start` made here) or "ray://HOST:PORT";
    none starts a private cluster on this machine for the command."""
    cpus_per_fold: int = param(1, ge=1)
    """CPUs a fold task reserves; its torch and BLAS threads are capped to them."""
    gpus_per_fold: float = param(0, ge=0)
    max_retries: int = param(2, ge=0)
    """How often a fold whose worker died (a killed process, a lost node) is trained again."""


@dataclass(frozen=True)
class CompConfig:
    data: DataConfig
    cv: CVConfig = field(default_factory=CVConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    name: str = "competition"
    weights: dict[str, str] = field(default_factory=dict)
    """Pretrained weights by name: a Hugging Face folder or a weights file, relative to the
    workspace (`comp weights` lists them with the packaged ones)."""

    @property
    def id_column(self) -> str:
        return self.data.id or "row"


def load_config(path: Path) -> CompConfig:
    """Read and validate comp.toml; every problem is reported as one clear sentence."""
    if not path.exists():
        raise CompError(
            f"no {CONFIG_FILE} in {path.parent}: run `comp init --demo` or `comp init --train ...`"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # an editor's BOM is not TOML
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CompError(f"{path.name} is not valid TOML: {error}") from None
    config = build(CompConfig, raw, path.name)
    _check(config, path.name)
    return config


def _check(config: CompConfig, where: str) -> None:
    if config.cv.metric not in METRICS:
        raise CompError(
            f"{where}: unknown metric {config.cv.metric!r} (known: {', '.join(METRICS)})"
        )
    if config.cv.seed < 0:
        raise CompError(f"{where}: cv.seed must be 0 or more, got {config.cv.seed}")
    if config.cv.n_folds < 2:
        raise CompError(f"{where}: cv.n_folds must be at least 2, got {config.cv.n_folds}")
    data = config.data
    if not data.text and not data.text_json:
        raise CompError(f"{where}: [data] needs text columns (text = [...]) or a text_json column")
    if data.text_json_keys and not data.text_json:
        raise CompError(f"{where}: data.text_json_keys is set but data.text_json is not")


def write_config(path: Path, config: CompConfig) -> None:
    """Write comp.toml; values are formatted as TOML by hand to avoid another dependency."""
    lines = [
        "# comp competition definition: every key is described in docs/configuration.md of comp's repository",
        f"name = {_toml(config.name)}",
    ]
    for section in ("data", "cv"):
        lines += ["", f"[{section}]"]
        for key, value in dataclasses.asdict(getattr(config, section)).items():
            if value is not None:
                lines.append(f"{key} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are a subset of TOML basic-string escapes
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")
