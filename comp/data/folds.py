"""The fixed folds every run is trained and scored on.

Folds are made once (`comp folds`), stored in runs/folds.parquet, and identified by a
content hash that each run records; blending and resuming refuse runs on other folds.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from comp import atomic
from comp.data.competition import Competition
from comp.data.workspace import Workspace
from comp.errors import CompError


@dataclass(frozen=True)
class Folds:
    ids: np.ndarray
    fold: np.ndarray  # int32 fold number per train row, in train file order

    @property
    def n_folds(self) -> int:
        return int(self.fold.max()) + 1

    @property
    def hash(self) -> str:
        return folds_hash(self.ids, self.fold)

    def held_out(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.fold == k)

    def training(self, k: int) -> np.ndarray:
        return np.flatnonzero(self.fold != k)

    def write(self, path: Path, id_column: str) -> None:
        buffer = io.BytesIO()
        pl.DataFrame({id_column: self.ids, "fold": self.fold}).write_parquet(buffer)
        atomic.write_bytes(path, buffer.getvalue())


def make_folds(y: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Stratified fold assignment that never drops a class.

    Each class's rows are shuffled and dealt to folds in turn, continuing from where the
    previous class stopped, so fold sizes differ by at most one row. Classes are dealt
    largest first (ties in random order): the rare classes come last and consecutively,
    so classes rarer than `n_folds` are spread evenly over the folds.
    """
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    shuffled = rng.permutation(len(classes))
    order = shuffled[np.argsort(-counts[shuffled], kind="stable")]
    fold = np.empty(len(y), dtype=np.int32)
    offset = 0
    for cls in classes[order]:
        rows = rng.permutation(np.flatnonzero(y == cls))
        fold[rows] = (offset + np.arange(len(rows))) % n_folds
        offset = (offset + len(rows)) % n_folds
    return fold


def folds_hash(ids: np.ndarray, fold: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.asarray(ids).astype(str).astype("U").tobytes())
    fold = np.asarray(fold)
    # folds were once stored as int8: hashing up to 127 folds as int8 keeps older runs' hashes
    digest.update(fold.astype(np.int8 if fold.max(initial=0) < 128 else np.int32).tobytes())
    return digest.hexdigest()[:16]


def hash_of_file(path: Path) -> str:
    """The folds hash of a stored folds file."""
    frame = _read(path)
    return folds_hash(frame[:, 0].to_numpy(), frame["fold"].to_numpy())


def _read(path: Path) -> pl.DataFrame:
    try:
        frame = pl.read_parquet(path)
    except Exception:  # noqa: BLE001 - any reader failure is a damaged file
        frame = None
    if frame is None or frame.width < 2 or "fold" not in frame.columns:
        raise CompError(f"{path} is damaged (not a folds table): run `comp folds --force` to remake it")
    return frame


def load_folds(workspace: Workspace, competition: Competition) -> Folds:
    """The stored folds, checked against the current train file."""
    if not workspace.folds_path.exists():
        raise CompError("no folds yet: run `comp folds` first")
    frame = _read(workspace.folds_path)
    id_column = competition.config.id_column
    if id_column not in frame.columns or "fold" not in frame.columns:
        raise CompError(f"{workspace.folds_path} lacks the columns {id_column!r} and 'fold'")
    fold = frame["fold"]
    n_folds = int(fold.max()) + 1 if len(fold) and fold.dtype.is_integer() else 0
    if (not fold.dtype.is_integer() or fold.null_count() or int(fold.min()) < 0 or n_folds < 2
            or len(np.unique(fold.to_numpy())) != n_folds):
        raise CompError(f"{workspace.folds_path} is damaged (fold numbers must be 0..K-1, each used): "
                        "run `comp folds --force` to remake it")
    folds = Folds(ids=frame[id_column].to_numpy(), fold=fold.to_numpy().astype(np.int32))
    train_ids = competition.train_ids
    if len(folds.ids) != len(train_ids) or not np.array_equal(
        folds.ids.astype(str), train_ids.astype(str)
    ):
        raise CompError(
            "runs/folds.parquet does not match the train file (rows or ids differ): "
            "run `comp folds --force` to remake folds for the new data"
        )
    return folds


def create_folds(competition: Competition, n_folds: int, seed: int) -> Folds:
    """Stratified folds for the competition's train rows (not stored: `Folds.write`)."""
    if n_folds < 2:
        raise CompError(f"--n-folds must be at least 2, got {n_folds}")
    if seed < 0:
        raise CompError(f"--seed must be 0 or more, got {seed}")
    if n_folds > len(competition.y):
        raise CompError(f"{n_folds} folds is more than the {len(competition.y)} train rows")
    folds = Folds(ids=competition.train_ids, fold=make_folds(competition.y, n_folds, seed))
    if len(folds.fold) != len(competition.y) or (np.bincount(folds.fold, minlength=n_folds) == 0).any():
        raise CompError(f"cannot hold out every train row exactly once in {n_folds} non-empty folds")
    return folds
