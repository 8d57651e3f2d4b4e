"""Malformed data: each case is one clear error, or is handled as data, and the store stays intact.

Competitions are written here, a few dozen rows each, straight as parquet or CSV files.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from comp.data.competition import Competition
from comp.data.config import CompConfig, DataConfig, write_config
from comp.data.text import build_text, strip_html
from comp.data.workspace import Workspace
from comp.project import Project
from tests.conftest import assert_store_intact, comp, one_clear_error

FAST_TFIDF = ["run", "tfidf", "--set", "char_max=0", "--set", "min_df=1"]
WORDS = ["платье", "кабель", "чехол", "крем", "лампа", "носки"]
MEGABYTE = 1 << 20


def _frames(n_train: int = 40, n_classes: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small, learnable KazanExpress-shaped competition: the word in the title is the class."""
    rng = np.random.default_rng(0)

    def rows(n: int, first_id: int) -> pd.DataFrame:
        labels = np.arange(n) % n_classes
        return pd.DataFrame({
            "product_id": np.arange(first_id, first_id + n),
            "category_id": labels + 100,
            "text_fields": [json.dumps({"title": f"{WORDS[c]} {i}", "description": "<p>товар</p>"},
                                       ensure_ascii=False) for i, c in enumerate(labels)],
            "category_name": [f"Все категории->{WORDS[c]}" for c in labels],
            "shop_title": [f"shop {i % 4}" for i in range(n)],
            "shop_id": rng.integers(0, 4, n),
            "rating": rng.random(n),
        })

    train, test = rows(n_train, 0), rows(12, 10_000)
    return train, test.drop(columns=["category_id", "category_name"])


def _config(suffix: str = "parquet", **overrides) -> CompConfig:
    data = {"train": f"data/train.{suffix}", "test": f"data/test.{suffix}", "id": "product_id",
            "target": "category_id", "target_name": "category_name", "text_json": "text_fields",
            "text_json_keys": ["title", "description"], "text": ["shop_title"],
            "categorical": ["shop_id"], "numeric": ["rating"], **overrides}
    return CompConfig(data=DataConfig(**data), name="ugly")


def _write(workspace, train: pd.DataFrame, test: pd.DataFrame, config: CompConfig | None = None):
    (workspace / "data").mkdir(parents=True, exist_ok=True)
    config = config or _config()
    for frame, relative in ((train, config.data.train), (test, config.data.test)):
        if relative.endswith(".csv"):
            frame.to_csv(workspace / relative, index=False)
        else:
            frame.to_parquet(workspace / relative, index=False)
    write_config(workspace / "comp.toml", config)
    return workspace


def _runs_are_refused(workspace, *fragments) -> None:
    one_clear_error(comp("folds", workspace=workspace, check=False), *fragments)
    assert not (workspace / "runs/folds.parquet").exists()


# ---------------------------------------------------------------------------------------------
# The text builder and the loader, property-based (in process)
# ---------------------------------------------------------------------------------------------

MISSING = st.sampled_from([None, math.nan, "", [], {}])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)
FEW = settings(max_examples=60, deadline=None)


@FEW
@given(JSON_VALUES)
def test_a_parsed_json_value_gives_the_same_text_as_its_json_string(value):
    """A parquet struct column (already a dict) and a JSON string column read alike."""
    keys = list(value)[:2] if isinstance(value, dict) else []
    as_string = build_text(json.dumps(value), [], keys)
    assert isinstance(as_string, str)
    assert build_text(value, [], keys) == as_string


@FEW
@given(st.recursive(MISSING, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["title", "description"]), inner, max_size=2)))
def test_missing_values_anywhere_give_no_text(value):
    assert build_text(json.dumps(value), [None, math.nan], ["title", "description"]) == ""
    assert build_text(value, [None], ["title", "description"]) == ""


@FEW
@given(st.text(), st.binary())
def test_any_text_or_bytes_is_text_never_a_crash(text, raw):
    assert isinstance(build_text(text, [], []), str)
    assert build_text(None, [raw], []) == strip_html(raw.decode("utf-8", errors="replace"))


def _column(present, size: int):
    """A column of one type (as parquet holds them) with None and NaN anywhere."""
    return st.lists(st.one_of(st.none(), st.just(math.nan), present), min_size=size, max_size=size)


# No shrinking: it rewrites the parquet files for minutes; a failure shows the example as drawn.
@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_missing_values_in_every_column_load_as_empty_text_and_nan(tmp_path, data):
    train, test = _frames(n_train=8)
    shop_ids = data.draw(st.sampled_from([st.integers(0, 3), st.text(min_size=1, max_size=3)]))
    drawn_shops = []
    for frame in (train, test):
        n = len(frame)
        frame["text_fields"] = data.draw(_column(st.text(max_size=8), n))
        frame["shop_title"] = data.draw(_column(st.text(max_size=8), n))
        drawn_shops.append(data.draw(_column(shop_ids, n)))
        frame["shop_id"] = drawn_shops[-1]
        frame["rating"] = data.draw(_column(st.floats(-1e6, 1e6), n))
    competition = Competition(Workspace(_write(tmp_path, train, test)), _config())
    for table, frame, shops in zip((competition.train, competition.test), (train, test), drawn_shops,
                                   strict=True):
        assert all(isinstance(t, str) for t in table.text)
        assert (np.isnan(table.numeric[:, 0]) == frame["rating"].isna().to_numpy()).all()
        expected = ["" if v is None or v != v else str(v) for v in shops]  # 7, never 7.0
        assert list(table.categorical[:, 0]) == expected


# ---------------------------------------------------------------------------------------------
# End to end: ugly but valid data trains; invalid data is refused in one sentence
# ---------------------------------------------------------------------------------------------


def test_ugly_csv_trains_with_tfidf_and_fasttext(tmp_path):
    """Bad JSON, empty cells in every column, bytes that are not UTF-8, a 1 MB description, a
    class with a single row and ids shared with test, in one CSV competition."""
    train, test = _frames()
    train.loc[0, "text_fields"] = '{"title": "платье без конца'  # truncated JSON: kept as text
    train.loc[1, "text_fields"] = "[1, 2, null]"  # valid JSON, not an object
    train.loc[2, "text_fields"] = json.dumps({"title": "кабель", "description": "x " * (MEGABYTE // 2)})
    train.loc[3, ["text_fields", "shop_title", "shop_id", "rating"]] = None
    test.loc[0, ["text_fields", "shop_title", "shop_id", "rating"]] = None
    train.loc[4, "category_id"] = 999  # the only row of its class
    test.loc[1, "product_id"] = 7  # also a train id
    _write(tmp_path, train, test, _config("csv"))
    test_csv = tmp_path / "data/test.csv"
    test_csv.write_bytes(test_csv.read_bytes().replace(b"shop 2", b"shop \xff\xfe 2"))

    folds = comp("folds", workspace=tmp_path)
    assert "warning: 1 test ids in 'product_id' are also train ids (e.g. '7')" in folds.stderr
    comp(*FAST_TFIDF, "--run-id", "tfidf", workspace=tmp_path)
    comp("run", "fasttext", "--set", "epoch=2", "--run-id", "fasttext", workspace=tmp_path)

    board = assert_store_intact(tmp_path)
    assert {e["id"]: e["state"] for e in board} == {"tfidf": "done", "fasttext": "done"}
    competition = Project.open(tmp_path).competition
    assert 999 in competition.classes and competition.n_classes == 4
    assert len(competition.train.text[2]) > MEGABYTE // 2  # nothing silently dropped
    assert "\ufffd" in competition.test.text[2]  # undecodable bytes replaced, not fatal
    assert competition.train.text[0].startswith('{"title": "платье без конца')
    assert competition.train.text[3] == "" and competition.train.categorical[3, 0] == ""
    assert math.isnan(competition.train.numeric[3, 0])


def _with(frame: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
    frame = frame.astype({column: object})
    frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize(
    ("spoil", "fragments"),
    [
        (lambda tr, te: (_with(tr, "product_id", 9, 0), te),
         ["train file repeats ids in 'product_id' (e.g. 0)"]),
        (lambda tr, te: (tr, te.assign(product_id=5)), ["test file repeats ids"]),
        (lambda tr, te: (_with(tr, "product_id", 3, None), te), ["1 train rows have no id"]),
        (lambda tr, te: (tr.iloc[:0], te), ["the train file has no rows"]),
        (lambda tr, te: (tr, te.iloc[:0]), ["the test file has no rows"]),
        (lambda tr, te: (tr.assign(category_id=7), te), ["fewer than 2 classes"]),
        (lambda tr, te: (_with(tr, "category_id", 5, None), te), ["1 train rows have no target"]),
        (lambda tr, te: (tr, te.assign(category_name="a->b")), ["target column 'category_name'", "leak"]),
        (lambda tr, te: (tr.assign(rating=tr.rating.astype(str).where(tr.index > 0, "high")), te),
         ["train file's numeric column 'rating' has 1 values that are not numbers (e.g. 'high')"]),
        (lambda tr, te: (tr.drop(columns=["shop_title"]), te), ["no column 'shop_title'"]),
    ],
    ids=["duplicate-train-ids", "duplicate-test-ids", "missing-id", "empty-train", "empty-test",
         "single-class", "missing-label", "class-names-in-test", "text-in-numeric",
         "missing-column"],
)
def test_invalid_data_is_one_sentence(tmp_path, spoil, fragments):
    _runs_are_refused(_write(tmp_path, *spoil(*_frames())), *fragments)


def test_a_file_that_is_not_parquet_is_one_sentence(tmp_path):
    _write(tmp_path, *_frames())
    (tmp_path / "data/train.parquet").write_bytes(b"PAR1 but not really" + bytes(100))
    _runs_are_refused(tmp_path, "cannot read the train file")
