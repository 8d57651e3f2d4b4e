"""The synthetic KazanExpress-like competition: schema, determinism, long tail, images."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from comp.data.demo import DemoSpec, DemoSummary, generate_demo
from comp.errors import CompError

SMALL = DemoSpec(train_rows=300, test_rows=60, classes=12, image_size=32, seed=7)
ROOT = "Все категории"

TRAIN_SCHEMA = pa.schema(
    [
        ("product_id", pa.int64()),
        ("category_id", pa.int64()),
        ("text_fields", pa.string()),
        ("shop_id", pa.int64()),
        ("shop_title", pa.string()),
        ("rating", pa.float64()),
        ("sale", pa.bool_()),
        ("category_name", pa.string()),
    ]
)
TEST_SCHEMA = pa.schema(
    [field for field in TRAIN_SCHEMA if field.name not in ("category_id", "category_name")]
)
LIST_FIELDS = ("attributes",)
DICT_FIELDS = ("custom_characteristics", "defined_characteristics", "filters")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, DemoSummary]:
    data_dir = tmp_path_factory.mktemp("small")
    return data_dir, generate_demo(data_dir, SMALL)


def both_splits(data_dir: Path, column: str) -> pd.Series:
    return pd.concat([pd.read_parquet(data_dir / f"{split}.parquet")[column] for split in ("train", "test")])


def file_bytes(data_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(data_dir)): path.read_bytes()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file()
    }


def test_same_seed_gives_identical_files_and_another_seed_differs(small, tmp_path):
    data_dir, _ = small
    again = tmp_path / "again"
    generate_demo(again, SMALL)
    assert file_bytes(again) == file_bytes(data_dir)

    other = tmp_path / "other"
    generate_demo(other, replace(SMALL, seed=SMALL.seed + 1))
    for name in ("train.parquet", "test.parquet"):
        assert (other / name).read_bytes() != (data_dir / name).read_bytes()


def test_tables_have_the_kazanexpress_schema(small):
    data_dir, summary = small
    assert pq.read_schema(data_dir / "train.parquet").remove_metadata() == TRAIN_SCHEMA
    assert pq.read_schema(data_dir / "test.parquet").remove_metadata() == TEST_SCHEMA

    train = pd.read_parquet(data_dir / "train.parquet")
    test = pd.read_parquet(data_dir / "test.parquet")
    assert (len(train), len(test)) == (summary.train_rows, summary.test_rows) == (300, 60)
    for frame in (train, test):
        assert frame["product_id"].dtype == "int64"
        assert frame["shop_id"].dtype == "int64"
        assert frame["rating"].dtype == "float64"
        assert frame["sale"].dtype == "bool"
        assert frame["rating"].between(0.0, 5.0).all()
        assert frame.notna().all().all()


def test_text_fields_are_json_with_the_original_keys_and_types(small):
    data_dir, _ = small
    texts = both_splits(data_dir, "text_fields")
    for text in texts:
        fields = json.loads(text)
        assert list(fields) == ["title", "description", *LIST_FIELDS, *DICT_FIELDS]
        assert isinstance(fields["title"], str) and fields["title"]
        assert isinstance(fields["description"], str)
        assert all(isinstance(value, str) for value in fields["attributes"])
        for key in DICT_FIELDS:
            assert isinstance(fields[key], dict)
            for name, values in fields[key].items():
                assert isinstance(name, str)
                assert values and all(isinstance(value, str) for value in values)
    descriptions = [json.loads(text)["description"] for text in texts]
    assert any(d == "" for d in descriptions), "some descriptions are empty"
    assert any(d.startswith("<p>") for d in descriptions), "the others are HTML"
    assert any("ё" in text or "ы" in text for text in texts), "Cyrillic, not escaped"


def test_product_ids_are_unique_across_train_and_test(small):
    data_dir, _ = small
    ids = both_splits(data_dir, "product_id")
    assert ids.is_unique
    assert ids.between(100_000, 9_999_999).all()
    assert not ids.is_monotonic_increasing


def test_every_leaf_has_train_rows_and_a_3_or_4_level_path(small):
    data_dir, _ = small
    train = pd.read_parquet(data_dir / "train.parquet")
    assert train["category_id"].nunique() == SMALL.classes
    # one name per id and one id per name
    pairs = train[["category_id", "category_name"]].drop_duplicates()
    assert len(pairs) == SMALL.classes == pairs["category_name"].nunique()
    assert set(train["category_id"]) != set(range(SMALL.classes))

    parts = pairs["category_name"].str.split("->")
    assert (parts.str[0] == ROOT).all()
    assert set(parts.str.len()) <= {4, 5}
    assert parts.str[-1].is_unique


def test_full_size_catalogue_has_874_unique_leaves_at_both_depths(tmp_path):
    spec = DemoSpec(train_rows=874, test_rows=10, classes=874, image_size=None, seed=1)
    generate_demo(tmp_path, spec)
    names = pd.read_parquet(tmp_path / "train.parquet")["category_name"]
    assert names.nunique() == 874
    assert names.str.split("->").str[-1].nunique() == 874
    assert set(names.str.count("->")) == {3, 4}


def test_two_classes_are_enough(tmp_path):
    generate_demo(tmp_path, DemoSpec(train_rows=2, test_rows=1, classes=2, image_size=16))
    train = pd.read_parquet(tmp_path / "train.parquet")
    assert sorted(train["category_id"].value_counts()) == [1, 1]


def test_class_sizes_are_long_tailed(tmp_path):
    generate_demo(tmp_path, DemoSpec(train_rows=2000, test_rows=50, classes=40, image_size=None))
    sizes = pd.read_parquet(tmp_path / "train.parquet")["category_id"].value_counts()
    assert len(sizes) == 40
    assert sizes.max() >= 10 * sizes.min()
    assert (sizes <= 3).sum() >= 1


def test_images_are_rgb_jpegs_except_the_missing_and_the_corrupt_one(small):
    data_dir, summary = small
    assert summary.corrupt_images == 1
    assert summary.missing_images >= 2
    assert summary.images_written + summary.missing_images == 360

    missing = {"train": 0, "test": 0}
    corrupt = {"train": 0, "test": 0}
    for split in ("train", "test"):
        for product_id in pd.read_parquet(data_dir / f"{split}.parquet")["product_id"]:
            path = data_dir / "images" / split / f"{product_id}.jpg"
            if not path.exists():
                missing[split] += 1
                continue
            try:
                with Image.open(path) as image:
                    image.load()
            except OSError:
                corrupt[split] += 1
                continue
            assert image.mode == "RGB"
            assert image.size == (32, 32)
    assert missing["train"] >= 1 and missing["test"] >= 1
    assert sum(missing.values()) == summary.missing_images
    assert corrupt == {"train": 1, "test": 0}
    written = list((data_dir / "images").rglob("*.jpg"))
    assert len(written) == summary.images_written


def test_no_images_when_image_size_is_none(tmp_path):
    summary = generate_demo(tmp_path, replace(SMALL, image_size=None))
    assert not (tmp_path / "images").exists()
    assert (summary.images_written, summary.missing_images, summary.corrupt_images) == (0, 0, 0)


def test_regenerating_replaces_images_of_the_previous_data(tmp_path):
    generate_demo(tmp_path, SMALL)
    summary = generate_demo(tmp_path, replace(SMALL, seed=99))
    ids = set(both_splits(tmp_path, "product_id").astype(str))
    on_disk = {path.stem for path in (tmp_path / "images").rglob("*.jpg")}
    assert on_disk <= ids
    assert len(on_disk) == summary.images_written


@pytest.mark.parametrize(
    "spec_changes",
    [{"classes": 1}, {"train_rows": 5, "classes": 6}, {"test_rows": 0}, {"image_size": 4}],
)
def test_impossible_specs_are_refused(spec_changes):
    with pytest.raises(CompError, match="cannot make that demo"):
        replace(SMALL, **spec_changes)


def test_the_english_demo_is_the_same_competition_in_english(small, tmp_path):
    """Same schema, classes, class sizes, shops, numbers and images; only the words differ."""
    import re

    english = generate_demo(tmp_path, replace(SMALL, language="en"))
    russian_dir, russian = small
    assert english == russian
    for split, schema in (("train", TRAIN_SCHEMA), ("test", TEST_SCHEMA)):
        ru, en = (pd.read_parquet(folder / f"{split}.parquet") for folder in (russian_dir, tmp_path))
        assert pq.read_schema(tmp_path / f"{split}.parquet").remove_metadata().equals(schema)
        numbers = ["product_id", "shop_id", "rating", "sale"] + (["category_id"] if split == "train" else [])
        for column in numbers:
            assert ru[column].equals(en[column]), column
        words = " ".join(en["text_fields"]) + " ".join(en.get("category_name", pd.Series([], dtype=str)))
        assert not re.search("[а-яё]", words, re.IGNORECASE)
    paths = pd.read_parquet(tmp_path / "train.parquet")["category_name"]
    assert paths.str.startswith("All categories->").all()
    images = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg"))
    assert images == sorted(p.relative_to(russian_dir) for p in russian_dir.rglob("*.jpg"))
    english_more = DemoSpec(train_rows=874, test_rows=10, classes=874, image_size=None, seed=1, language="en")
    generate_demo(tmp_path / "full", english_more)
    assert pd.read_parquet(tmp_path / "full/train.parquet")["category_name"].nunique() == 874
