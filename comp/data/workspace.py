"""Where a competition lives: comp.toml, data/, runs/ and submissions/ under one folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from comp.data.config import CONFIG_FILE, CompConfig, load_config


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def locate(cls, path: str | Path | None = None) -> Workspace:
        """--workspace, else $COMP_WORKSPACE, else the current folder."""
        chosen = path or os.environ.get("COMP_WORKSPACE") or "."
        return cls(Path(chosen).resolve())

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def folds_path(self) -> Path:
        return self.runs / "folds.parquet"

    @property
    def submissions(self) -> Path:
        return self.root / "submissions"

    @property
    def cache(self) -> Path:
        """Derived files (hashes, tokenizers) that can always be rebuilt."""
        return self.runs / ".cache"

    def config(self) -> CompConfig:
        return load_config(self.config_path)

    def path(self, relative: str) -> Path:
        """A path from comp.toml, relative to the workspace unless absolute."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate
