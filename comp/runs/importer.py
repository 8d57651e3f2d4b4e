"""`comp import`: predictions made elsewhere (a notebook, another machine) become a run.

Accepted layouts in DIR: `oof.npy` + `test.npy` as in the run store (rows in train/test
file order, columns in the sorted class order), or `oof.parquet` / `oof.csv` and
`test.parquet` / `test.csv` with the id column and one column per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from comp.data.competition import Competition, read_frame
from comp.errors import CompError
from comp.names import plain_name
from comp.project import Project
from comp.runs.fold import checked_proba
from comp.runs.runner import store_precomputed_run
from comp.runs.store import RunRecord

PROBABILITY_TOLERANCE = 1e-3  # how far a row's sum may be from one


def import_run(project: Project, folder: Path, name: str, normalise: bool = False) -> RunRecord:
    """`normalise`: rescale rows that do not sum to one (scores, not probabilities) instead
    of refusing them."""
    plain_name(name, "--name")
    competition = project.competition
    project.folds  # noqa: B018 - no folds, no run: fail before reading the predictions
    if not folder.is_dir():
        raise CompError(f"{folder} is not a folder")
    oof = _read(folder, "oof", competition, competition.train_ids, normalise)
    test = _read(folder, "test", competition, competition.test_ids, normalise)
    return store_precomputed_run(
        project, name=name, model="import",
        params={"source": str(folder.resolve())}, oof=oof, test=test,
    )


def _read(folder: Path, split: str, competition: Competition, ids: np.ndarray,
          normalise: bool) -> np.ndarray:
    expected = (len(ids), competition.n_classes)
    if (folder / f"{split}.npy").exists():
        try:
            array = np.load(folder / f"{split}.npy", allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise CompError(f"cannot read {folder / f'{split}.npy'}: {error}") from None
        if not np.issubdtype(array.dtype, np.floating):
            raise CompError(f"{split}.npy holds {array.dtype} values: predictions must be float "
                            "probabilities, one column per class")
    else:
        tables = [folder / f"{split}.{ext}" for ext in ("parquet", "csv")]
        found = next((p for p in tables if p.exists()), None)
        if found is None:
            raise CompError(f"{folder} has no {split}.npy, {split}.parquet or {split}.csv")
        array = _from_table(read_frame(found, f"imported {split}"), competition, ids, found.name)
    if array.shape != expected:
        raise CompError(f"{split} predictions have shape {array.shape}, expected {expected}")
    sums = np.asarray(array, dtype=np.float64).sum(axis=1)
    off = int((np.abs(sums - 1.0) > PROBABILITY_TOLERANCE).sum())
    if off and not normalise and np.isfinite(sums).all():
        worst = sums[np.argmax(np.abs(sums - 1.0))]
        raise CompError(f"{off} rows of the {split} predictions do not sum to 1 (e.g. {worst:.4g}): "
                        "import probabilities, or pass --normalise to rescale each row")
    try:
        return checked_proba(array, *expected)
    except ValueError as error:
        raise CompError(f"imported {split} predictions: {error}") from None


def _from_table(frame: pl.DataFrame, competition: Competition, ids: np.ndarray, name: str):
    """Rows matched to the workspace's ids, columns to its classes (by their text)."""
    id_column = competition.config.id_column
    if id_column not in frame.columns:
        raise CompError(f"{name} has no id column {id_column!r}")
    class_columns = [str(c) for c in competition.classes]
    missing = [c for c in class_columns if c not in frame.columns]
    if missing:
        raise CompError(f"{name} lacks columns for {len(missing)} classes (e.g. {missing[0]!r})")
    extra = [c for c in frame.columns if c not in class_columns and c != id_column]
    if extra:
        raise CompError(f"{name} has {len(extra)} columns that are neither {id_column!r} nor a class "
                        f"(e.g. {extra[0]!r}): a column per class of the train file, nothing else")
    keys = frame[id_column].cast(pl.String).to_list()
    wanted = np.asarray(ids).astype(str).tolist()
    position = {key: row for row, key in enumerate(keys)}
    if len(position) != len(keys) or position.keys() != set(wanted):
        raise CompError(f"{name}: its {id_column} values are not exactly the workspace's ids")
    values = frame.select(pl.col(c).cast(pl.Float64, strict=False) for c in class_columns)
    return values.to_numpy()[[position[key] for key in wanted]]
