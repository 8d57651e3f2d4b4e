"""The baseline families trained for real on tiny data, through the one model interface."""

import json

import fasttext
import numpy as np

from tests.conftest import comp


def test_fasttext_fork_predicts_top_k_under_numpy_2(tmp_path):
    path = tmp_path / "train.txt"
    lines = [f"__label__{i % 3} word{i % 3} other{i % 3} common" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    model = fasttext.train_supervised(str(path), epoch=20, minCount=1, thread=1, seed=0, verbose=0)
    labels, probs = model.predict(["word1 other1", "word2 common"], k=3)
    assert [len(row) for row in labels] == [3, 3]
    assert labels[0][0] == "__label__1" and labels[1][0] == "__label__2"
    assert np.allclose([sum(p) for p in probs], 1.0, atol=1e-3)
    all_labels, _ = model.predict("word0", k=-1)
    assert len(all_labels) == 3


def test_fasttext_is_deterministic_with_a_seed(tiny):
    for run_id in ("a", "b"):
        comp("run", "fasttext", "--set", "epoch=5", "--run-id", run_id, workspace=tiny)
    a, b = (np.load(tiny / f"runs/{r}/oof.npy") for r in ("a", "b"))
    np.testing.assert_array_equal(a, b)
    record = json.loads((tiny / "runs/a/run.json").read_text())
    assert record["params"]["thread"] == 1

