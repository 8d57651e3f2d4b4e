"""The whole init → folds → run → leaderboard → submit path through the real CLI."""

import json

import numpy as np
import pandas as pd

from tests.conftest import TINY, comp

CONTRACT_FIELDS = {
    "id", "name", "model", "params", "status", "created_at", "duration_s", "folds_hash",
    "data_hash", "metric", "cv_score", "fold_scores", "classes", "parents",
}


def test_init_folds_run_leaderboard_submit(tmp_path):
    ws = tmp_path / "ws"
    args = ["init", "--demo", "--train-rows", str(TINY.train_rows), "--test-rows",
            str(TINY.test_rows), "--classes", str(TINY.classes), "--image-size", "32"]
    comp(*args, workspace=ws)
    comp("folds", workspace=ws)
    comp("run", "fasttext", "--fold", "all", "--set", "epoch=5", "--name", "ft5", workspace=ws)
    comp("run", "tfidf", "--fold", "all", workspace=ws)

    board = json.loads(comp("leaderboard", "--json", workspace=ws).stdout)
    assert [e["model"] for e in board] != [] and {e["model"] for e in board} == {"fasttext", "tfidf"}
    assert board[0]["cv_score"] >= board[1]["cv_score"]
    assert {e["state"] for e in board} == {"done"}

    train = pd.read_parquet(ws / "data/train.parquet")
    test = pd.read_parquet(ws / "data/test.parquet")
    classes = sorted(train["category_id"].unique().tolist())
    for entry in board:
        run_dir = ws / "runs" / entry["id"]
        record = json.loads((run_dir / "run.json").read_text())
        assert CONTRACT_FIELDS <= set(record)
        assert record["classes"] == classes and record["status"] == "done"
        assert len(record["fold_scores"]) == 5 and record["version"]
        oof, test_proba = np.load(run_dir / "oof.npy"), np.load(run_dir / "test.npy")
        assert oof.dtype == np.float32 and oof.shape == (len(train), len(classes))
        assert test_proba.shape == (len(test), len(classes))
        np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(test_proba.sum(axis=1), 1.0, atol=1e-5)
        assert sorted((run_dir / "folds").iterdir())[0].name == "0"
    ft = next(e for e in board if e["model"] == "fasttext")
    assert ft["name"] == "ft5"
    assert json.loads((ws / "runs" / ft["id"] / "run.json").read_text())["params"]["epoch"] == 5
    assert (ws / "runs" / ft["id"] / "emb_oof.npy").exists()

    table = comp("leaderboard", workspace=ws).stdout
    assert board[0]["id"] in table and "±" in table

    result = comp("submit", workspace=ws)
    best = board[0]["id"]
    submission = pd.read_csv(ws / "submissions" / f"{best}.csv")
    assert list(submission.columns) == ["product_id", "predicted_category_id"]
    assert submission["product_id"].tolist() == test["product_id"].tolist()
    assert set(submission["predicted_category_id"]) <= set(classes)
    provenance = json.loads((ws / "submissions" / f"{best}.json").read_text())
    assert provenance["run_id"] == best and provenance["rows"] == len(test)
    assert str(ws / "submissions") in result.stdout.replace("\n", "")

    again = comp("submit", best, workspace=ws, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    comp("submit", best, "--name", "s01", "--format", "parquet", workspace=ws)
    assert len(pd.read_parquet(ws / "submissions/s01.parquet")) == len(test)


def test_plain_csv_competition_with_string_labels(tmp_path):
    """No id, no images, no JSON: a text column and a string label, test file separate."""
    rng = np.random.default_rng(0)
    words = {"sport": "ball goal team", "tech": "phone chip screen", "food": "bread milk soup"}
    labels = rng.choice(list(words), size=150)
    bodies = [" ".join(rng.choice(words[lab].split() + ["the", "new"], 6)) for lab in labels]
    pd.DataFrame({"body": bodies[:120], "label": labels[:120]}).to_csv(tmp_path / "tr.csv", index=False)
    pd.DataFrame({"body": bodies[120:]}).to_csv(tmp_path / "te.csv", index=False)
    ws = tmp_path / "ws"
    comp("init", "--train", str(tmp_path / "tr.csv"), "--test", str(tmp_path / "te.csv"),
         "--target", "label", "--text", "body", workspace=ws)
    comp("folds", workspace=ws)
    comp("run", "tfidf", "--set", "min_df=1", workspace=ws)
    comp("submit", "--name", "plain", workspace=ws)
    submission = pd.read_csv(ws / "submissions/plain.csv")
    assert list(submission.columns) == ["row", "predicted_label"]
    assert submission["row"].tolist() == list(range(30))
    assert set(submission["predicted_label"]) <= set(words)
    record = json.loads(next((ws / "runs").glob("*/run.json")).read_text())
    assert record["classes"] == sorted(words) and record["cv_score"] > 0.8
