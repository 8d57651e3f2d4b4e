"""The competition's data in comp's vocabulary: text, images, categorical and numeric columns.

`Competition.load` reads the files that comp.toml names, validates them against it, and
exposes train and test as `Table`s. The text of a product is built once, here, by one
builder that every text model reuses: title first, then description (HTML stripped),
attributes, characteristics, then the plain text columns (shop title).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import string
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp import atomic
from comp.config import CompConfig
from comp.errors import CompError
from comp.workspace import Workspace

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def strip_html(text: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def flatten(value: Any) -> str:
    """Text of one field: strings lose their HTML, lists and dicts become readable lines."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):  # a binary column: undecodable bytes must not end a run
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return strip_html(value)
    if isinstance(value, dict):
        parts = (f"{flatten(k)}: {flatten(v)}" for k, v in value.items())
        return "; ".join(p for p in parts if not p.endswith(": "))
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(p for p in map(flatten, value) if p)
    return str(value)


def build_text(json_value: Any, plain_values: list[Any], json_keys: list[str]) -> str:
    """One product's text: the JSON fields (in `json_keys` order) then the plain columns.

    A JSON value that does not parse is kept as plain text: bad input is data, not a crash.
    A parquet struct column arrives already parsed, as a dict.
    """
    parts: list[str] = []
    fields = json_value
    if isinstance(json_value, str):
        try:
            fields = json.loads(json_value)
        except json.JSONDecodeError:
            pass
    if isinstance(fields, dict):
        keys = json_keys or list(fields)
        parts += [flatten(fields.get(key)) for key in keys]
    else:
        parts.append(flatten(fields))
    parts += [flatten(v) for v in plain_values]
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Table:
    """Rows of one split; `take` selects rows (a fold's train or held-out part)."""

    ids: np.ndarray
    text: np.ndarray  # object array of str
    image_paths: np.ndarray | None  # object array of str, None when the data has no images
    categorical: pd.DataFrame  # str values, "" for missing
    numeric: np.ndarray  # float32 [n, n_numeric], NaN for missing
    numeric_names: list[str] = field(default_factory=list)
    y: np.ndarray | None = None  # class index per row (train only)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: np.ndarray) -> Table:
        return replace(
            self,
            ids=self.ids[rows],
            text=self.text[rows],
            image_paths=None if self.image_paths is None else self.image_paths[rows],
            categorical=self.categorical.iloc[rows].reset_index(drop=True),
            numeric=self.numeric[rows],
            y=None if self.y is None else self.y[rows],
        )


def read_frame(path: Path, what: str) -> pd.DataFrame:
    if not path.exists():
        raise CompError(f"the {what} file {path} does not exist")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        if path.suffix.lower() in {".csv", ".tsv", ".txt"}:
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            return pd.read_csv(path, sep=sep, encoding_errors="replace", low_memory=False)
    except Exception as error:  # noqa: BLE001 - any reader failure is the user's file
        raise CompError(f"cannot read the {what} file {path}: {error}") from None
    raise CompError(f"the {what} file {path} is neither parquet nor CSV")


class Competition:
    """The loaded competition: config, train and test frames, classes and the data hash."""

    def __init__(self, workspace: Workspace, config: CompConfig):
        self.workspace = workspace
        self.config = config
        data = config.data
        self.train_frame = read_frame(workspace.path(data.train), "train")
        self.test_frame = read_frame(workspace.path(data.test), "test")
        _validate(self.train_frame, self.test_frame, config)
        self.warnings = data_warnings(self.train_frame, self.test_frame, config)
        self.classes, self.y = _encode_target(self.train_frame[data.target])

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
    def class_names(self) -> list[str] | None:
        """A readable name per class (most frequent value of data.target_name), if any."""
        column = self.config.data.target_name
        if column is None:
            return None
        names = self.train_frame[column].astype(str).groupby(self.y).agg(lambda s: s.mode()[0])
        return [names.get(i, str(c)) for i, c in enumerate(self.classes)]

    @cached_property
    def data_hash(self) -> str:
        return data_hash(self.workspace, self.config)

    def _table(self, frame: pd.DataFrame, split: str, y: np.ndarray | None) -> Table:
        data = self.config.data
        n = len(frame)
        json_values = frame[data.text_json].tolist() if data.text_json else [None] * n
        plain_columns = [frame[c].tolist() for c in data.text]
        text = [
            build_text(json_values[i], [column[i] for column in plain_columns], data.text_json_keys)
            for i in range(n)
        ]
        categorical = pd.DataFrame(
            {c: _category_strings(frame[c]) for c in data.categorical}, index=pd.RangeIndex(n)
        )
        numeric = np.column_stack(
            [pd.to_numeric(frame[c], errors="coerce").astype("float32") for c in data.numeric]
        ) if data.numeric else np.zeros((len(frame), 0), np.float32)
        return Table(
            ids=_ids(frame, self.config),
            text=np.array(text, dtype=object),
            image_paths=self._image_paths(frame, split),
            categorical=categorical,
            numeric=numeric.astype(np.float32),
            numeric_names=list(data.numeric),
            y=y,
        )

    def _image_paths(self, frame: pd.DataFrame, split: str) -> np.ndarray | None:
        template = self.config.data.image
        if template is None:
            return None
        columns = {name: frame[name].tolist() for name in _template_columns(template)}
        paths = [
            str(self.workspace.path(template.format(
                split=split, row=row, **{n: values[row] for n, values in columns.items()}
            )))
            for row in range(len(frame))
        ]
        return np.array(paths, dtype=object)


def _category_strings(values: pd.Series) -> np.ndarray:
    """Categories as strings, "" for missing. Integer codes stay integers when a missing value
    made the column float, so shop 7 is "7" in both files, never "7.0" in one of them."""
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype("string").fillna("").astype(str).to_numpy()


def data_hash(workspace: Workspace, config: CompConfig) -> str:
    """Content hash of both data files and of the column mapping: runs on other data differ.

    Needs no parsing of the files, so the leaderboard can check runs against it cheaply.
    """
    data = config.data
    digest = hashlib.sha256()
    for relative in (data.train, data.test):
        path = workspace.path(relative)
        if not path.exists():
            raise CompError(f"the data file {path} does not exist")
        digest.update(_file_sha256(path, workspace.cache).encode())
    mapping = {k: v for k, v in vars(data).items() if k not in {"train", "test"}}
    digest.update(json.dumps(mapping, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _ids(frame: pd.DataFrame, config: CompConfig) -> np.ndarray:
    if config.data.id is None:
        return np.arange(len(frame))
    return frame[config.data.id].to_numpy()


def _encode_target(target: pd.Series) -> tuple[list, np.ndarray]:
    """Sorted class list (the column order of every run) and each row's class index."""
    values = target.to_numpy()
    if pd.api.types.is_float_dtype(target) and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)
    elif not pd.api.types.is_integer_dtype(target):
        values = target.astype(str).to_numpy()
    classes, y = np.unique(values, return_inverse=True)
    return [_plain(c) for c in classes], y.astype(np.int64)


def _validate(train: pd.DataFrame, test: pd.DataFrame, config: CompConfig) -> None:
    data = config.data
    problems: list[str] = []
    needed = [data.target, data.id, data.target_name, data.text_json, *data.text,
              *data.categorical, *data.numeric, *_template_columns(data.image)]
    for frame, split in ((train, "train"), (test, "test")):
        for column in dict.fromkeys(c for c in needed if c):
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
    missing_target = int(train[data.target].isna().sum())
    if missing_target:
        raise CompError(f"{missing_target} train rows have no target ({data.target!r})")
    if train[data.target].nunique() < 2:
        raise CompError(f"the target {data.target!r} has fewer than 2 classes in train")
    if data.id is not None:
        for frame, split in ((train, "train"), (test, "test")):
            missing_ids = int(frame[data.id].isna().sum())
            if missing_ids:
                raise CompError(f"{missing_ids} {split} rows have no id ({data.id!r})")
            duplicated = frame[data.id][frame[data.id].duplicated()]
            if len(duplicated):
                raise CompError(
                    f"the {split} file repeats ids in {data.id!r} (e.g. {_plain(duplicated.iloc[0])!r})"
                )
    for frame, split in ((train, "train"), (test, "test")):
        for column in data.numeric:
            _check_numeric(frame[column], f"the {split} file's numeric column {column!r}")


def _check_numeric(values: pd.Series, what: str) -> None:
    """Refuse text in a numeric column (a mislabelled column); missing values are fine."""
    present = values.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    not_numbers = present[numbers.isna()]
    if len(not_numbers):
        raise CompError(
            f"{what} has {len(not_numbers)} values that are not numbers "
            f"(e.g. {_plain(not_numbers.iloc[0])!r}): list it under categorical instead"
        )


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, for messages: 7, not np.int64(7)."""
    return value.item() if isinstance(value, np.generic) else value


def data_warnings(train: pd.DataFrame, test: pd.DataFrame, config: CompConfig) -> list[str]:
    """Legal but suspicious data, for the commands that set a competition up to show.

    Ids shared by train and test are not refused: some data sets number each file's rows
    from zero; in others they are the same product twice, a leak worth knowing about.
    """
    data = config.data
    if data.id is None:
        return []
    shared = np.intersect1d(train[data.id].astype(str).to_numpy(), test[data.id].astype(str).to_numpy())
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


def _file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so reruns do not re-read big files."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_path = cache_dir / "file_hashes.json"
    cache: dict[str, str] = {}
    if cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text())
        except (json.JSONDecodeError, OSError):
            cache = {}
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
        if cache_dir.parent.exists():
            atomic.write_json(cache_path, cache)
    return cache[key]
