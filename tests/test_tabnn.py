"""`tabnn`: every architecture trains through the CLI on real bert and image runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comp.models._features import CategoryCodes
from comp.models.tabnn import TabnnParams, TabularNet
from tests.conftest import comp, finished_run
from tests.test_boost import parent_ids, parents, run_id_of, with_parents  # noqa: F401 - fixtures

TINY_NET = ["--set", "from=bert,image", "--set", "epochs=2", "--set", "batch_size=32", "--set", "n_blocks=1",
            "--set", "d_block=16", "--set", "heads=2", "--set", "categorical_dim=4"]


@pytest.mark.parametrize("arch", ["mlp", "resnet", pytest.param("ftt", marks=pytest.mark.slow)])
def test_each_architecture_trains_and_stores_its_embeddings(parents, arch):  # noqa: F811
    run_id = run_id_of(comp("run", "tabnn", *TINY_NET, "--set", f"arch={arch}", workspace=parents))
    record, oof, test = finished_run(parents, run_id, emb_dim=16)
    ids = parent_ids(parents)
    assert record["parents"] == [ids["bert"], ids["image"]]
    assert len(record["stats"]["epoch_f1"]) >= 1


def test_an_unseen_shop_gets_the_shared_unknown_embedding():
    """Two shops never seen in training are one and the same unknown shop to the network,
    and no known shop is mistaken for it."""
    codes = CategoryCodes().fit(np.array([["shop a"], ["shop b"], ["shop c"]], dtype=object))
    shops = np.array([["new 1"], ["new 2"], ["shop a"], ["shop b"]], dtype=object)
    params = TabnnParams(arch="mlp", n_blocks=1, d_block=8, categorical_dim=3)
    net = TabularNet(params, n_numeric=2, cardinalities=codes.cardinalities, n_classes=4).eval()
    batch = {"numeric": torch.zeros(4, 2), "categorical": torch.from_numpy(codes.transform(shops))}
    with torch.no_grad():
        logits, _ = net(batch)
    np.testing.assert_allclose(logits[0], logits[1])
    assert not np.allclose(logits[2], logits[3])
    assert not np.allclose(logits[0], logits[2]) and not np.allclose(logits[0], logits[3])

