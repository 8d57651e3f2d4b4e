"""The competition's data in comp's vocabulary: text, images, categorical and numeric columns.

`Competition` reads the files that comp.toml names (with polars: only the columns the
config names, lazily), validates them against it, and exposes train and test as `Table`s.
The text of a product is built once, here, by comp.data.text.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from comp.data.config import CompConfig
from comp.data.hashing import data_hash
from comp.data.text import build_texts
from comp.data.workspace import Workspace
from comp.errors import CompError


@dataclass(frozen=True)
class Table:
    """Rows of one split; `take` selects rows (a fold's train or held-out part)."""

    index: np.ndarray  # each row's position in its split's file
    ids: np.ndarray
    text: np.ndarray  # object array of str
    image_paths: np.ndarray | None  # object array of str, None when the data has no images
    categorical: np.ndarray  # object array of str [n, n_categorical], "" for missing
    categorical_names: list[str]
    numeric: np.ndarray  # float32 [n, n_numeric], NaN for missing
    numeric_names: list[str]
    y: np.ndarray | None = None  # class index per row (train only)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> Table:
        return replace(
            self,
            index=self.index[rows],
            ids=self.ids[rows],
            text=self.text[rows],
            image_paths=None if self.image_paths is None else self.image_paths[rows],
            categorical=self.categorical[rows],
            numeric=self.numeric[rows],
            y=None if self.y is None else self.y[rows],
        )


def read_frame(path: Path, what: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A parquet or CSV file as a polars frame (only `columns` of it, where they exist).

    CSV cells are read as text, then a column whose every value is a plain integer (no
    leading zero, no sign) becomes integers: an id `000400` stays `000400`."""
    if not path.exists():
        raise CompError(f"the {what} file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            lazy = pl.scan_parquet(path)
        elif suffix in {".csv", ".tsv", ".txt"}:
            lazy = pl.scan_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema=False,
                               encoding="utf8-lossy")
        else:
            raise CompError(f"the {what} file {path} is neither parquet nor CSV")
        if columns is not None:
            present = set(lazy.collect_schema().names())
            lazy = lazy.select([c for c in dict.fromkeys(columns) if c in present])
        frame = lazy.collect()
    except CompError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure is the user's file
        raise CompError(f"cannot read the {what} file {path}: {' '.join(str(error).split())}") from None
    if suffix in {".parquet", ".pq"}:  # pandas stores its index as a column: not data
        return frame.drop([c for c in frame.columns if c.startswith("__index_level_")])
    return frame.with_columns(pl.col(c).cast(pl.Int64) for c in frame.columns if _plain_integers(frame[c]))


def _plain_integers(column: pl.Series) -> bool:
    present = column.drop_nulls()
    return len(present) > 0 and bool(present.str.contains(r"^(0|[1-9][0-9]{0,17})$").all())


class Competition:
    """The loaded competition: config, train and test frames, classes and the data hash."""

    def __init__(self, workspace: Workspace, config: CompConfig):
        self.workspace = workspace
        self.config = config
        data = config.data
        needed = _needed_columns(config)
        self.train_frame = read_frame(workspace.path(data.train), "train", needed)
        self.test_frame = read_frame(workspace.path(data.test), "test", needed)
        _validate(self.train_frame, self.test_frame, config)
        self.warnings = data_warnings(self.train_frame, self.test_frame, config)
        self.classes, self.y = _encode_target(self.train_frame[data.target], data.target_is_classes)

    @classmethod
    def load(cls, workspace: Workspace) -> Competition:
        return cls(workspace, workspace.config())

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def train_ids(self) -> np.ndarray:
        return _ids(self.train_frame, self.config)

    @property
    def test_ids(self) -> np.ndarray:
        return _ids(self.test_frame, self.config)

    @cached_property
    def train(self) -> Table:
        return self._table(self.train_frame, "train", self.y)

    @cached_property
    def test(self) -> Table:
        return self._table(self.test_frame, "test", None)

    @cached_property
    def corpus(self) -> np.ndarray:
        """Every train and test text, unlabelled."""
        return np.concatenate([self.train.text, self.test.text])

    @cached_property
    def class_names(self) -> list[str] | None:
        """A readable name per class (its most frequent data.target_name), if any; ties go
        to the first name in sorted order."""
        column = self.config.data.target_name
        if column is None:
            return None
        counts = (
            pl.DataFrame({"y": self.y, "name": self.train_frame[column].cast(pl.String).fill_null("None")})
            .group_by("y", "name").len()
            .sort(["y", "len", "name"], descending=[False, True, False])
            .unique("y", keep="first", maintain_order=True)
        )
        names = dict(zip(counts["y"].to_list(), counts["name"].to_list(), strict=True))
        return [names.get(i, str(c)) for i, c in enumerate(self.classes)]

    @cached_property
    def data_hash(self) -> str:
        return data_hash(self.workspace, self.config)

    def _table(self, frame: pl.DataFrame, split: str, y: np.ndarray | None) -> Table:
        data = self.config.data
        n = len(frame)
        text = build_texts(
            frame[data.text_json].to_list() if data.text_json else None,
            [frame[c].to_list() for c in data.text], data.text_json_keys, n,
        )
        categorical = (
            frame.select(_category_strings(frame[c]) for c in data.categorical).to_numpy().astype(object)
            if data.categorical else np.zeros((n, 0), dtype=object)
        )
        numeric = (
            frame.select(pl.col(c).cast(pl.Float32, strict=False).fill_null(float("nan"))
                         for c in data.numeric).to_numpy()
            if data.numeric else np.zeros((n, 0))
        )
        return Table(
            index=np.arange(n),
            ids=_ids(frame, self.config),
            text=np.array(text, dtype=object),
            image_paths=self._image_paths(frame, split),
            categorical=categorical,
            categorical_names=list(data.categorical),
            numeric=np.ascontiguousarray(numeric, dtype=np.float32),
            numeric_names=list(data.numeric),
            y=y,
        )

    def _image_paths(self, frame: pl.DataFrame, split: str) -> np.ndarray | None:
        template = self.config.data.image
        if template is None:
            return None
        columns = {name: frame[name].to_list() for name in _template_columns(template)}
        paths = [
            str(self.workspace.path(template.format(
                split=split, row=row, **{n: values[row] for n, values in columns.items()}
            )))
            for row in range(len(frame))
        ]
        return np.array(paths, dtype=object)


def _needed_columns(config: CompConfig) -> list[str]:
    data = config.data
    named = [data.target, data.id, data.target_name, data.text_json, *data.text, *data.categorical,
             *data.numeric, *_template_columns(data.image)]
    return list(dict.fromkeys(c for c in named if c))


def _category_strings(values: pl.Series) -> pl.Series:
    """Categories as strings, "" for missing. Integer codes stay integers when a missing value
    made the column float, so shop 7 is "7" in both files, never "7.0" in one of them."""
    if values.dtype.is_nested():
        raise CompError(f"the categorical column {values.name!r} holds {values.dtype} values, not "
                        "single categories: list it under text instead")
    if values.dtype.is_float():
        finite = values.drop_nulls().drop_nans()
        if (finite % 1 == 0).all():
            values = values.fill_nan(None).cast(pl.Int64)
    return values.cast(pl.String).fill_null("")


def _ids(frame: pl.DataFrame, config: CompConfig) -> np.ndarray:
    if config.data.id is None:
        return np.arange(len(frame))
    return frame[config.data.id].to_numpy()


def _encode_target(target: pl.Series, target_is_classes: bool) -> tuple[list, np.ndarray]:
    """Sorted class list (the column order of every run) and each row's class index."""
    as_number = target.cast(pl.Float64, strict=False) if target.dtype == pl.String else target
    numeric = as_number.dtype.is_float() and as_number.null_count() == target.null_count()
    if numeric and not (as_number % 1 == 0).all() and not target_is_classes:  # CSV numbers are text
        raise CompError(f"the target {target.name!r} holds fractional numbers ({target.n_unique()} distinct "
                        f"values in {len(target)} rows), but comp classifies: set "
                        "data.target_is_classes = true in comp.toml to make each value a class")
    if target.dtype.is_float() and (target % 1 == 0).all():
        values = target.cast(pl.Int64).to_numpy()
    elif target.dtype.is_integer():
        values = target.to_numpy()
    else:
        values = target.cast(pl.String).to_numpy().astype(object)
    classes, y = np.unique(values, return_inverse=True)
    return [_plain(c) for c in classes], y.astype(np.int64)


def _missing(column: pl.Series) -> int:
    nan = int(column.is_nan().sum()) if column.dtype.is_float() else 0
    return column.null_count() + nan


def _validate(train: pl.DataFrame, test: pl.DataFrame, config: CompConfig) -> None:
    data = config.data
    problems: list[str] = []
    for frame, split in ((train, "train"), (test, "test")):
        for column in _needed_columns(config):
            if split == "test" and column in {data.target, data.target_name}:
                continue
            if column not in frame.columns:
                problems.append(f"the {split} file has no column {column!r} named in comp.toml")
    for column in dict.fromkeys(c for c in (data.target, data.target_name) if c):
        if column in test.columns:
            problems.append(f"the test file has the target column {column!r}: it would leak")
    if problems:
        raise CompError("; ".join(problems))
    if len(train) == 0 or len(test) == 0:
        raise CompError(f"the {'train' if len(train) == 0 else 'test'} file has no rows")
    missing_target = _missing(train[data.target])
    if missing_target:
        raise CompError(f"{missing_target} train rows have no target ({data.target!r})")
    if train[data.target].n_unique() < 2:
        raise CompError(f"the target {data.target!r} has fewer than 2 classes in train")
    if data.id is not None:
        for frame, split in ((train, "train"), (test, "test")):
            ids = frame[data.id]
            missing_ids = _missing(ids)
            if missing_ids:
                raise CompError(f"{missing_ids} {split} rows have no id ({data.id!r})")
            duplicated = ids.filter(ids.is_duplicated())
            if len(duplicated):
                raise CompError(
                    f"the {split} file repeats ids in {data.id!r} (e.g. {duplicated[0]!r})"
                )
    for frame, split in ((train, "train"), (test, "test")):
        for column in data.numeric:
            _check_numeric(frame[column], f"the {split} file's numeric column {column!r}")


def _check_numeric(values: pl.Series, what: str) -> None:
    """Refuse text in a numeric column (a mislabelled column); missing values are fine."""
    if values.dtype.is_numeric() or values.dtype in (pl.Boolean, pl.Null):
        return
    present = values.drop_nulls()
    if present.dtype != pl.String:
        raise CompError(f"{what} holds {present.dtype} values, not numbers")
    not_numbers = present.filter(present.cast(pl.Float64, strict=False).is_null())
    if len(not_numbers):
        raise CompError(
            f"{what} has {len(not_numbers)} values that are not numbers "
            f"(e.g. {not_numbers[0]!r}): list it under categorical instead"
        )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, for messages: 7, not np.int64(7)."""
    return value.item() if isinstance(value, np.generic) else value


def data_warnings(train: pl.DataFrame, test: pl.DataFrame, config: CompConfig) -> list[str]:
    """Legal but suspicious data, for the commands that set a competition up to show.

    Ids shared by train and test are not refused: some data sets number each file's rows
    from zero; in others they are the same product twice, a leak worth knowing about.
    """
    data = config.data
    if data.id is None:
        return []
    shared = np.intersect1d(train[data.id].cast(pl.String).to_numpy(),
                            test[data.id].cast(pl.String).to_numpy())
    if not len(shared):
        return []
    return [
        f"{len(shared)} test ids in {data.id!r} are also train ids (e.g. {_plain(shared[0])!r}): "
        "if they are the same products, their labels leak into the test set"
    ]


def _template_columns(template: str | None) -> list[str]:
    if template is None:
        return []
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    return [n for n in names if n not in {"split", "row"}]
