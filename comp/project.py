"""A workspace opened once: its config, data, folds and run store, each loaded when first used.

Every command works on one `Project`, so the competition is parsed, the folds checked and
the store opened once per command, and a command that needs only the store (the
leaderboard) never parses the data.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from comp.data.config import CompConfig
from comp.data.hashing import data_hash, stored_folds_hash
from comp.data.workspace import Workspace
from comp.errors import CompError
from comp.runs.store import RunStore

if TYPE_CHECKING:
    from comp.data.competition import Competition
    from comp.data.folds import Folds
    from comp.models._weights import WeightCatalog

# The tables and folds are imported where first used: they bring polars, and the
# commands that need only the store and the hashes (the leaderboard) start without it.


class Project:
    def __init__(self, workspace: Workspace):
        self.workspace = workspace

    @classmethod
    def open(cls, path: str | Path | None = None) -> Project:
        """--workspace, else $COMP_WORKSPACE, else the current folder."""
        return cls(Workspace.locate(path))

    @cached_property
    def config(self) -> CompConfig:
        return self.workspace.config()

    @cached_property
    def competition(self) -> Competition:
        from comp.data.competition import Competition

        return Competition(self.workspace, self.config)

    @cached_property
    def folds(self) -> Folds:
        from comp.data.folds import load_folds

        return load_folds(self.workspace, self.competition)

    @cached_property
    def weights(self) -> WeightCatalog:
        """Pretrained weights by name: comp.toml's [weights] (when there is a comp.toml),
        $COMP_WEIGHTS, the weights packages, the Hugging Face cache."""
        from comp.models._weights import WeightCatalog

        local = self.config.weights if self.workspace.config_path.exists() else {}
        return WeightCatalog(local, self.workspace.root)

    @cached_property
    def store(self) -> RunStore:
        return RunStore(self.workspace.runs)

    @cached_property
    def data_hash(self) -> str | None:
        """The data files' hash without parsing them (None when a file is missing)."""
        if "competition" in self.__dict__:
            return self.competition.data_hash
        try:
            return data_hash(self.workspace, self.config)
        except CompError:
            return None

    @cached_property
    def folds_hash(self) -> str | None:
        """The stored folds' hash, unchecked against the train file (None before `comp folds`)."""
        return stored_folds_hash(self.workspace)

    def make_folds(self, n_folds: int, seed: int, force: bool) -> tuple[Folds, bool]:
        """Make and store the fixed folds; returns them and whether the file changed.

        Folds never change under existing runs unless forced: those runs would no longer be
        comparable with new ones, and blending would refuse them.
        """
        from comp.data.folds import create_folds

        made = create_folds(self.competition, n_folds, seed)
        try:
            old_hash = self.folds_hash
        except CompError:  # a damaged folds file: only --force replaces it
            if not force:
                raise
            old_hash = None
        if old_hash == made.hash:
            return made, False
        if old_hash is not None:
            users = [r.id for r in self.store.all() if r.folds_hash == old_hash]
            if users and not force:
                raise CompError(
                    f"runs/folds.parquet already exists and {len(users)} runs use it "
                    f"(e.g. {users[0]}); new folds would make them incomparable: pass --force"
                )
        made.write(self.workspace.folds_path, self.config.id_column)
        self.__dict__.pop("folds_hash", None)
        self.__dict__["folds"] = made
        return made, True
