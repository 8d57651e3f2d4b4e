import json

import numpy as np
import pytest

from comp import atomic
from comp.runs.store import FoldOutput, RunRecord, RunStore


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    atomic.write_json(path, {"status": "done"})

    def crash(*_):
        raise OSError("disk died mid-rename")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError):
        atomic.write_json(path, {"status": "half"})
    assert json.loads(path.read_text()) == {"status": "done"}


def test_npy_round_trip_is_exact(tmp_path):
    array = np.random.default_rng(0).random((7, 3)).astype(np.float32)
    atomic.save_npy(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)


def test_fold_is_done_only_once_its_record_lands(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    output = FoldOutput(valid_proba=np.eye(3, dtype=np.float32), test_proba=np.eye(3))
    real_write_json = atomic.write_json

    def die_before_fold_json(path, obj):
        if path.name == "fold.json":
            raise KeyboardInterrupt
        real_write_json(path, obj)

    monkeypatch.setattr(atomic, "write_json", die_before_fold_json)
    with pytest.raises(KeyboardInterrupt):
        store.write_fold("r", 0, output, {"fold": 0})
    assert (store.fold_dir("r", 0) / "valid.npy").exists()
    assert not store.fold_done("r", 0)


def test_run_record_round_trip_and_lookup_by_name(tmp_path):
    store = RunStore(tmp_path)
    record = RunRecord(
        id="tfidf-abc", name="baseline", model="tfidf", params={"C": 4.0}, status="done",
        created_at="2026-01-01T00:00:00+00:00", duration_s=1.5, folds_hash="f", data_hash="d",
        metric="f1_weighted", cv_score=0.8, fold_scores=[0.8, 0.8], classes=[3, 7],
    )
    store.run_dir(record.id).mkdir(parents=True)
    store.save(record)
    assert store.load("tfidf-abc") == record
    assert store.resolve("baseline") == record
    (tmp_path / "half-made").mkdir()  # a run folder without run.json is not a run
    assert [r.id for r in store.all()] == ["tfidf-abc"]
