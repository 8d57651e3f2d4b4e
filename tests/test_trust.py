"""Hostile and careless input, replayed through the CLI: one sentence and exit 2 with the
store untouched, or the right result; never a write outside the workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import comp, one_clear_error, tree_digest

FAST_TFIDF = ["run", "tfidf", "--set", "char_max=0", "--set", "min_df=1"]


def refused(workspace: Path, *args: str, says: str = "") -> None:
    """The command fails as a user error must and changes nothing in the workspace's parent
    folder (which holds the workspace: an escape would land there)."""
    before = tree_digest(workspace.parent)
    one_clear_error(comp(*args, workspace=workspace, check=False), says)
    assert tree_digest(workspace.parent) == before, args


@pytest.mark.parametrize("bad", ["../../x", "../x", ".", "..", "a/b", ".cache", "/tmp/abs", "x" * 300])
def test_run_ids_and_names_that_are_not_plain_names_are_refused(tiny, bad):
    refused(tiny, *FAST_TFIDF, "--run-id", bad, says="plain name")
    refused(tiny, *FAST_TFIDF, "--name", bad, says="plain name")


def test_no_command_follows_a_path_out_of_the_workspace(tiny, tmp_path):
    comp(*FAST_TFIDF, "--name", "ok", workspace=tiny)
    comp("submit", "ok", "--name", "s1", workspace=tiny)
    refused(tiny, "report", "--run", "../../x", says="unknown run")
    refused(tiny, "report", "--out", str(tmp_path / "outside.html"), says="outside the workspace")
    refused(tiny, "export", "mlflow", "--store", str(tmp_path / "outside.db"), says="outside the workspace")
    refused(tiny, "public", "../../v", "0.5", says="plain name")
    refused(tiny, "submit", "ok", "--name", "../s2", says="plain name")
    refused(tiny, "reproduce", "../s1", says="plain name")
    provenance = tiny / "submissions" / "s1.json"
    for key, value in (("file", "../../escaped.csv"), ("run_id", "../../runs/x")):
        edited = {**json.loads(provenance.read_text()), key: value}
        original = provenance.read_text()
        provenance.write_text(json.dumps(edited))
        (tiny / "submissions" / "s1.csv").unlink(missing_ok=True)
        refused(tiny, "reproduce", "s1", says="not a plain name")
        provenance.write_text(original)
    assert not (tmp_path / "escaped.csv").exists() and not (tiny.parent / "escaped.csv").exists()


def test_fold_and_seed_mistakes_leave_no_run(tiny):
    refused(tiny, "folds", "--seed", "-3", "--force", says="--seed must be 0 or more")
    refused(tiny, "folds", "--n-folds", "1", "--force", says="at least 2")
    for args, says in ((["--fold", "99"], "out of range"), (["--fold", "-1"], "out of range"),
                       (["--fold", "abc"], "fold number"), (["--seed", "-5"], "--seed")):
        refused(tiny, *FAST_TFIDF, *args, says=says)


def test_many_folds_hold_every_row_out_exactly_once(tiny):
    comp("folds", "--n-folds", "200", "--force", workspace=tiny)
    folds = pd.read_parquet(tiny / "runs" / "folds.parquet")
    assert sorted(folds["fold"].unique()) == list(range(200)) and len(folds) == 400
    result = comp(*FAST_TFIDF, "--fold", "150", "--run-id", "deep", workspace=tiny)
    assert "1/200 folds done" in result.stdout
    record = json.loads((tiny / "runs/deep/run.json").read_text())
    assert record["n_folds"] == 200 and record["folds_done"] == [150]


def test_a_damaged_folds_file_is_one_sentence_and_force_replaces_it(tiny):
    (tiny / "runs" / "folds.parquet").write_bytes(b"not parquet")
    refused(tiny, *FAST_TFIDF, says="damaged")
    comp("folds", "--force", workspace=tiny)
    comp(*FAST_TFIDF, "--fold", "0", workspace=tiny)


def test_a_corrupt_run_record_is_listed_as_corrupt_and_the_rest_still_shows(tiny):
    comp(*FAST_TFIDF, "--run-id", "good", "--fold", "0", workspace=tiny)
    (tiny / "runs" / "bad").mkdir()
    (tiny / "runs" / "bad" / "run.json").write_text('{"id": "bad", "trunc')
    board = {e["id"]: e["state"] for e in json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)}
    assert board == {"good": "partial 1/5", "bad": "corrupt"}
    assert "corrupt" in comp("leaderboard", workspace=tiny).stdout


def test_csv_ids_and_labels_keep_their_leading_zeros(tmp_path):
    rows = 30
    train = pd.DataFrame({"id": [f"{i:06d}" for i in range(rows)],
                          "label": [f"{i % 3:04d}" for i in range(rows)],
                          "text": [f"word{i % 3} item {i}" for i in range(rows)]})
    test = pd.DataFrame({"id": ["000400", "000401"], "text": ["word1 x", "word2 y"]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    workspace = tmp_path / "ws"
    comp("init", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
         "--target", "label", "--text", "text", "--id", "id", workspace=workspace)
    comp("folds", "--n-folds", "3", workspace=workspace)
    comp(*FAST_TFIDF, "--name", "t", workspace=workspace)
    comp("submit", "t", "--name", "s", workspace=workspace)
    submitted = (workspace / "submissions" / "s.csv").read_text().splitlines()
    assert submitted[1].startswith("000400,00") and submitted[2].startswith("000401,00"), submitted


def _import_folder(tiny: Path, name: str, oof: np.ndarray, test: np.ndarray) -> Path:
    folder = tiny / "made" / name
    folder.mkdir(parents=True)
    np.save(folder / "oof.npy", oof)
    np.save(folder / "test.npy", test)
    return folder


def test_import_refuses_what_is_not_probabilities(tiny):
    n_classes = pd.read_parquet(tiny / "data" / "train.parquet")["category_id"].nunique()
    uniform = np.full((400, n_classes), 1.0 / n_classes, np.float32)
    test = np.full((80, n_classes), 1.0 / n_classes, np.float32)
    cases = {
        "ints": (np.ones((400, n_classes), np.int64), test, "int64"),
        "scaled": (uniform * 7, test, "do not sum to 1"),
        "complex": (uniform.astype(np.complex64), test, "complex64"),
        "wide": (np.hstack([uniform[:, :-1], uniform[:, -1:] / 2, uniform[:, -1:] / 2]), test, "shape"),
    }
    for name, (oof, test_array, says) in cases.items():
        refused(tiny, "import", str(_import_folder(tiny, name, oof, test_array)), "--name", name, says=says)
    (tiny / "made" / "broken").mkdir()
    (tiny / "made" / "broken" / "oof.npy").write_bytes(b"\x93NUMPY garbage")
    refused(tiny, "import", str(tiny / "made" / "broken"), "--name", "broken", says="cannot read")
    folder = _import_folder(tiny, "scores", uniform * 7, test)
    assert "imported scores" in comp("import", str(folder), "--name", "scores", "--normalise",
                                     workspace=tiny).stdout


def test_import_refuses_extra_class_columns_by_name(tiny):
    frame = pd.read_parquet(tiny / "data" / "train.parquet")
    classes = sorted(frame["category_id"].unique())
    folder = tiny / "made" / "table"
    folder.mkdir(parents=True)
    test_ids = pd.read_parquet(tiny / "data" / "test.parquet")["product_id"]
    for split, ids in (("oof", frame["product_id"]), ("test", test_ids)):
        columns = {str(c): 1.0 / len(classes) for c in classes}
        table = pd.DataFrame({"product_id": ids, **columns, "9999999": 0.0})
        table.to_csv(folder / f"{split}.csv", index=False)
    refused(tiny, "import", str(folder), "--name", "table", says="'9999999'")


def test_blend_options_out_of_range_are_refused_before_work(tiny):
    comp(*FAST_TFIDF, "--name", "a", workspace=tiny)
    comp(*FAST_TFIDF, "--name", "b", "--set", "C=1", workspace=tiny)
    for args, says in ((["--iterations", "0"], "iterations"), (["--bags", "0"], "bags"),
                       (["--top", "-1"], "top"), (["--weights", "a=nan,b=1"], "finite"),
                       (["--init", "-2"], "init"), (["--name", ".hidden"], "plain name")):
        refused(tiny, "blend", "a", "b", *args, says=says)


def test_a_damaged_prediction_file_is_named(tiny):
    comp(*FAST_TFIDF, "--name", "a", workspace=tiny)
    comp(*FAST_TFIDF, "--name", "b", "--set", "C=1", workspace=tiny)
    oof = next((tiny / "runs").glob("a-*/oof.npy"))
    oof.write_bytes(oof.read_bytes()[:200])
    refused(tiny, "blend", "a", "b", says="oof.npy is damaged")


def test_a_sigterm_marks_the_run_failed_instead_of_running_forever(tiny):
    import signal
    import time

    from tests.conftest import start_comp

    process = start_comp("run", "bert", "--set", "epochs=50", "--set", "patience=0", "--run-id", "killed",
                         workspace=tiny)
    record = tiny / "runs" / "killed" / "run.json"
    deadline = time.monotonic() + 120
    while not (record.exists() and (tiny / "runs/killed/folds/0").exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    saved = json.loads(record.read_text())
    assert saved["status"] == "failed" and "interrupted" in saved["error"]


def test_a_fractional_target_is_refused_unless_confirmed(tmp_path):
    rows = 40
    frame = pd.DataFrame({"text": [f"item {i}" for i in range(rows)], "price": np.linspace(0.5, 9.9, rows)})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.drop(columns="price").to_csv(tmp_path / "test.csv", index=False)
    workspace = tmp_path / "ws"
    result = comp("init", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                  "--target", "price", "--text", "text", workspace=workspace, check=False)
    one_clear_error(result, "fractional numbers", "target_is_classes")
    assert not (workspace / "comp.toml").exists()


def test_a_comp_toml_saved_with_a_bom_is_read(tiny):
    config = tiny / "comp.toml"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    assert comp("leaderboard", workspace=tiny).returncode == 0


def test_list_values_in_a_categorical_column_are_one_sentence(tiny):
    path = tiny / "data" / "train.parquet"
    frame = pd.read_parquet(path)
    frame["shop_id"] = [[int(v)] for v in frame["shop_id"]]
    frame.to_parquet(path)
    refused(tiny, *FAST_TFIDF, says="not single categories")


def test_gc_lists_then_removes_leftovers_and_never_a_finished_run(tiny):
    comp(*FAST_TFIDF, "--run-id", "kept", workspace=tiny)
    failed = comp("run", "tfidf", "--set", "min_df=100000", "--set", "char_max=0", "--run-id", "failed",
                  workspace=tiny, check=False)
    assert failed.returncode == 2
    (tiny / "runs" / "orphan").mkdir()
    (tiny / "runs" / "orphan" / "oof.npy").write_bytes(b"half")
    (tiny / "runs" / "kept" / ".oof.npy.999999999.tmp").write_bytes(b"torn")
    listed = comp("gc", workspace=tiny).stdout
    assert "3 leftovers" in listed and "failed run" in listed and "without run.json" in listed
    assert (tiny / "runs" / "orphan").exists()  # listing removes nothing
    kept = tree_digest(tiny / "runs" / "kept" / "folds")
    assert "removed 3 leftovers" in comp("gc", "--yes", workspace=tiny).stdout
    assert not (tiny / "runs" / "orphan").exists() and not (tiny / "runs" / "failed").exists()
    assert not (tiny / "runs" / "kept" / ".oof.npy.999999999.tmp").exists()
    assert tree_digest(tiny / "runs" / "kept" / "folds") == kept
    assert "0 leftovers" in comp("gc", "--stale", workspace=tiny).stdout
    comp("folds", "--force", "--seed", "7", workspace=tiny)
    assert "stale" in comp("gc", "--stale", workspace=tiny).stdout


@pytest.mark.parametrize("sizes", [["--train-rows", "-5"], ["--classes", "1"], ["--image-size", "5"],
                                   ["--test-rows", "0"], ["--seed", "-1"]])
def test_impossible_demo_sizes_are_one_sentence_and_write_nothing(tmp_path, sizes):
    workspace = tmp_path / "ws"
    one_clear_error(comp("init", "--demo", *sizes, workspace=workspace, check=False), "cannot make that demo")
    assert not workspace.exists() or not any(workspace.iterdir())
