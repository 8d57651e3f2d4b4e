import json

import numpy as np
import pandas as pd

from comp.data.competition import Competition
from comp.data.config import CompConfig, DataConfig, load_config, write_config
from comp.data.text import build_text, strip_html
from comp.data.workspace import Workspace


def test_text_builder_order_html_and_structures():
    fields = json.dumps({
        "description": "<p>Мягкая&nbsp;ткань</p><ul><li>хлопок</li></ul>",
        "title": "Футболка мужская",
        "attributes": ["белая", "размер M"],
        "filters": {"Цвет": ["белый", "серый"], "Пусто": []},
    }, ensure_ascii=False)
    text = build_text(fields, ["ООО Ромашка"], ["title", "description", "attributes", "filters"])
    assert text.split("\n") == [
        "Футболка мужская", "Мягкая ткань хлопок", "белая, размер M",
        "Цвет: белый, серый", "ООО Ромашка",
    ]


def test_bad_json_and_missing_values_are_data_not_crashes():
    assert build_text("{not json", [None, float("nan")], []) == "{not json"
    assert build_text(None, [], []) == ""
    assert strip_html("<b>a</b>&amp;<br/>b") == "a & b"


def test_config_round_trip(tmp_path):
    config = CompConfig(name="x", data=DataConfig(train="a.csv", test="b.csv", target="y",
                                                  text=["t1", "t2"]))
    write_config(tmp_path / "comp.toml", config)
    assert load_config(tmp_path / "comp.toml") == config


def test_integer_and_string_labels_sorted_classes(tmp_path):
    for labels in ([30, 4, 4, 30, 100], ["b", "a", "b", "c", "a"]):
        pd.DataFrame({"t": list("vwxyz"), "y": labels}).to_parquet(tmp_path / "tr.parquet")
        pd.DataFrame({"t": ["q"]}).to_parquet(tmp_path / "te.parquet")
        config = CompConfig(data=DataConfig(train="tr.parquet", test="te.parquet", target="y",
                                            text=["t"]))
        competition = Competition(Workspace(tmp_path), config)
        assert competition.classes == sorted(set(labels))
        assert [competition.classes[i] for i in competition.y] == labels
        assert np.array_equal(competition.train_ids, np.arange(5))
