"""The bert family and the shared training loop, trained for real on tiny data (CPU)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from comp.metrics import METRICS
from comp.models._training import FoldData, FoldModule, Trainer, TrainParams
from comp.progress import Reporter
from tests.conftest import bare_context, comp, finished_run

TINY_BERT = ["--set", "epochs=2", "--set", "hidden=32", "--set", "layers=1", "--set", "max_len=48",
             "--set", "vocab_size=2000"]


def test_bert_trains_through_the_cli_with_embeddings_and_a_cached_tokenizer(tiny):
    comp("run", "bert", *TINY_BERT, "--set", "emb_dim=16", "--run-id", "a", workspace=tiny)
    record, oof, _ = finished_run(tiny, "a", emb_dim=16)
    n_classes = len(record["classes"])
    assert record["cv_score"] > 1.5 / n_classes  # learnt something in two tiny epochs

    tokenizers = list((tiny / "runs/.cache").glob("tokenizer-*"))
    assert len(tokenizers) == 1
    built = (tokenizers[0] / "tokenizer.json").stat().st_mtime_ns
    comp("run", "bert", *TINY_BERT, "--set", "emb_dim=16", "--run-id", "b", workspace=tiny)
    assert list((tiny / "runs/.cache").glob("tokenizer-*")) == tokenizers
    assert (tokenizers[0] / "tokenizer.json").stat().st_mtime_ns == built
    # same seed, same data: the same predictions
    np.testing.assert_array_equal(np.load(tiny / "runs/b/oof.npy"), oof)


class _Linear(FoldModule):
    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.body = nn.Linear(n_features, n_classes)

    def forward(self, batch):
        return self.body(batch["x"]), batch["x"]


class _Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def test_early_stopping_restores_the_best_epoch(tmp_path):
    """Held-out labels are what the model predicts at start; training on noise then makes
    every epoch worse, so the best epoch is the first and it must be the one returned."""
    torch.manual_seed(0)
    n, n_features, n_classes = 256, 8, 4
    x = torch.randn(n, n_features)
    module = _Linear(n_features, n_classes)
    with torch.no_grad():
        truth = module({"x": x})[0].argmax(dim=1)
    noise = torch.randint(0, n_classes, (n,))
    data = FoldData(train=_Rows(x, noise), valid=_Rows(x, truth),
                    collate=torch.utils.data.default_collate)
    params = TrainParams(epochs=6, batch_size=32, lr=0.05, patience=0, warmup=0.0)
    with Reporter.open(quiet=True) as reporter:
        ctx = bare_context(tmp_path, list(range(n_classes)), reporter)
        best = Trainer(params, ctx).fit(module, data, truth.numpy())
        proba, _ = Trainer(params, ctx).predict(best, data.valid, data.collate)
    history = ctx.stats["epoch_f1"]
    assert len(history) == 6 and history[-1] < max(history)
    assert METRICS["f1_weighted"](truth.numpy(), proba) == pytest.approx(max(history), abs=1e-6)


def test_two_processes_share_a_fold_through_accelerate(tiny):
    """gloo DDP on two CPU processes: `--cpu --num_processes 2` starts only one, this form two."""
    env = {**os.environ, "COMP_WORKSPACE": str(tiny)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "comp", "run", "bert", "--fold", "0",
               "--run-id", "ddp", *TINY_BERT]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    fold = json.loads((tiny / "runs/ddp/folds/0/fold.json").read_text())
    assert fold["world_size"] == 2
    valid = np.load(tiny / "runs/ddp/folds/0/valid.npy")
    assert valid.shape[0] == fold["n_valid"]
    np.testing.assert_allclose(valid.sum(axis=1), 1.0, atol=1e-5)
    record = json.loads((tiny / "runs/ddp/run.json").read_text())
    assert record["folds_done"] == [0]  # one run, not one per process
    assert len([p for p in (tiny / "runs").iterdir() if (p / "run.json").exists()]) == 1
