"""The HUSE family: its three losses on hand-made embeddings, and tiny real training (CPU)."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from transformers import BertConfig, BertModel

from comp.models import create_model
from comp.models._losses import cosine_distances, gap_loss, semantic_loss, semantic_mask
from comp.models._text import TextEncoder
from comp.models.huse import HuseNet, HuseParams
from comp.progress import Reporter
from comp.project import Project
from tests.conftest import comp, finished_run, fold_zero

TINY_HUSE = ["--set", "epochs=1", "--set", "image_size=16", "--set", "hidden=32", "--set", "layers=1",
             "--set", "max_len=48", "--set", "vocab_size=2000", "--set", "emb_dim=16", "--set", "shop_dim=4"]
FUSED_DIM = 2 * 16 + 4


# ---------------------------------------------------------------------------------------------
# The losses
# ---------------------------------------------------------------------------------------------


def test_gap_loss_is_zero_for_identical_embeddings_and_positive_otherwise():
    torch.manual_seed(0)
    text = torch.randn(8, 5)
    assert gap_loss(text.clone(), text).item() == pytest.approx(0.0, abs=1e-6)
    assert gap_loss(3.0 * text, text).item() == pytest.approx(0.0, abs=1e-6)  # a distance of directions
    other = torch.randn(8, 5)
    expected = np.mean([1 - np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
                        for a, b in zip(other.numpy(), text.numpy(), strict=True)])
    assert gap_loss(other, text).item() == pytest.approx(expected, rel=1e-5)
    assert gap_loss(other, text).item() > 0.1


def test_semantic_loss_is_zero_when_pairwise_distances_equal_the_class_distances():
    torch.manual_seed(0)
    fused = torch.randn(6, 4)
    labels = torch.tensor([2, 0, 1, 3, 5, 4])
    class_distance = torch.zeros(6, 6)
    class_distance[labels[:, None], labels[None, :]] = cosine_distances(fused)
    assert semantic_loss(fused, labels, class_distance, margin=2.0).item() == pytest.approx(0.0, abs=1e-6)
    shuffled = class_distance[torch.randperm(6)][:, torch.randperm(6)]
    assert semantic_loss(fused, labels, shuffled.fill_diagonal_(0), margin=2.0).item() > 1e-3


def test_sigma_masks_exactly_the_pairs_close_in_both_class_and_embedding():
    distances = torch.tensor([[0.0, 0.2, 0.9], [0.2, 0.0, 0.5], [0.9, 0.5, 0.0]])
    class_distance = torch.tensor([[0.0, 0.8, 0.1], [0.8, 0.0, 0.3], [0.1, 0.3, 0.0]])
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    torch.testing.assert_close(semantic_mask(distances, class_distance, margin=0.6), expected)

    # the loss is the masked squared error averaged over all N² pairs, pair by pair
    torch.manual_seed(1)
    fused, labels = torch.randn(7, 3), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    class_distance = torch.tensor([[0.0, 0.3, 0.9], [0.3, 0.0, 0.6], [0.9, 0.6, 0.0]])
    margin, d = 0.8, cosine_distances(fused)
    total = sum(
        float((d[m, n] - class_distance[labels[m], labels[n]]) ** 2)
        for m in range(7) for n in range(7)
        if class_distance[labels[m], labels[n]] < margin and d[m, n] < margin
    )
    assert semantic_loss(fused, labels, class_distance, margin).item() == pytest.approx(total / 49, rel=1e-5)


def _tiny_net(**overrides) -> tuple[HuseNet, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    p = HuseParams(emb_dim=8, shop_dim=3, dropout=0.0, margin=2.0, **overrides)
    text = TextEncoder(BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=32),
                                 add_pooling_layer=False), "mean")
    image = timm.create_model("resnet10t", num_classes=0)
    net = HuseNet(p, text, False, image, False, n_shops=4, n_classes=3,
                  class_distance=torch.tensor([[0.0, 0.3, 0.9], [0.3, 0.0, 0.6], [0.9, 0.6, 0.0]]))
    batch = {"input_ids": torch.randint(1, 50, (6, 7)), "attention_mask": torch.ones(6, 7, dtype=torch.long),
             "pixel_values": torch.randn(6, 3, 16, 16), "image_missing": torch.tensor([0, 0, 1, 0, 0, 1.0]),
             "shop": torch.tensor([1, 2, 3, 4, 0, 1]), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    return net, batch


@pytest.mark.parametrize(("term", "reaches_shop"), [("class", True), ("sem", True), ("gap", False)])
def test_every_loss_term_is_differentiable_and_reaches_both_towers(term, reaches_shop):
    net, batch = _tiny_net(w_sem=0.5, w_gap=0.25)
    total, terms = net.loss(net(batch), batch)
    assert set(terms) == {"class", "sem", "gap"}
    torch.testing.assert_close(total, terms["class"] + 0.5 * terms["sem"] + 0.25 * terms["gap"])
    terms[term].backward()

    def reached(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    assert reached(net.text_body) and reached(net.body)  # text encoder, image backbone
    assert reached(net.shop) == reaches_shop
    assert net.shop.weight.grad is None or not net.shop.weight.grad[0].any()  # unknown shop stays zero
    assert net.missing_image.grad is not None and net.missing_image.grad.abs().sum() > 0


def test_zero_weights_drop_their_terms_and_learning_rates_follow_the_towers():
    net, batch = _tiny_net(w_sem=0.0, w_gap=0.0, bert_lr=1e-4)
    total, terms = net.loss(net(batch), batch)
    assert set(terms) == {"class"} and torch.equal(total, terms["class"])
    rates = dict((id(part), lr) for part, lr in net.body_learning_rates(lr=1e-2, body_lr=None))
    assert rates == {id(net.body): 1e-2, id(net.text_body): 1e-4}


# ---------------------------------------------------------------------------------------------
# Real training
# ---------------------------------------------------------------------------------------------


def _unknown_shop_rows(workspace, count: int) -> int:
    """Give `count` test rows shops no train row has; returns how many test rows fold 0 has not
    seen in its training rows (counted from the files, independently of the family)."""
    test_path, train_path = workspace / "data/test.parquet", workspace / "data/train.parquet"
    test, train = pd.read_parquet(test_path), pd.read_parquet(train_path)
    test.loc[test.index[:count], "shop_id"] = 10**9 + np.arange(count)
    test.to_parquet(test_path)
    folds = pd.read_parquet(workspace / "runs/folds.parquet")
    seen = set(train.loc[folds["fold"].to_numpy() != 0, "shop_id"])
    return int((~test["shop_id"].isin(seen)).sum())


def _delete_images(workspace, split: str, count: int) -> int:
    """Delete `count` more images of `split`; returns how many are missing now."""
    folder = workspace / "data/images" / split
    for image in sorted(folder.glob("*.jpg"))[:count]:
        image.unlink()
    ids = pd.read_parquet(workspace / f"data/{split}.parquet")["product_id"]
    return sum(not os.path.isfile(folder / f"{i}.jpg") for i in ids)


def test_huse_trains_through_the_cli_with_unknown_shops_and_missing_images_and_blends(tiny):
    unknown_test_shops = _unknown_shop_rows(tiny, 5)
    missing_train, missing_test = _delete_images(tiny, "train", 6), _delete_images(tiny, "test", 3)

    comp("run", "huse", *TINY_HUSE, "--run-id", "h", workspace=tiny)
    record, oof, _ = finished_run(tiny, "h", emb_dim=FUSED_DIM)
    assert record["cv_score"] > 1.5 / len(record["classes"])  # learnt something in one tiny epoch
    stats = record["stats"]
    assert stats["missing_images"] == missing_train and stats["test_missing_images"] == missing_test
    assert stats["test_unknown_shops"] == unknown_test_shops >= 5
    assert set(stats["epoch_loss_terms"]) == {"loss", "class", "sem", "gap"}

    distance = np.load(tiny / "runs/h/class_distance.npy")
    names = Project.open(tiny).competition.class_names
    assert distance.shape == (len(names), len(names))
    np.testing.assert_allclose(distance, distance.T, atol=1e-6)
    assert not np.diag(distance).any()
    parent = [name.rsplit("->", 1)[0] for name in names]
    siblings = np.equal.outer(parent, parent) & ~np.eye(len(names), dtype=bool)
    unrelated = ~np.equal.outer([n.split("->")[1] for n in names], [n.split("->")[1] for n in names])
    assert siblings.any() and distance[siblings].mean() < distance[unrelated].mean() - 0.3

    comp("run", "tfidf", "--run-id", "t", workspace=tiny)
    comp("blend", "h", "t", "--name", "hb", workspace=tiny)
    entries = json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)
    board = {entry["name"]: entry for entry in entries}
    assert board["hb"]["model"] == "blend" and board[record["name"]]["model"] == "huse"
    blend, _, _ = finished_run(tiny, board["hb"]["id"])
    assert set(blend["parents"]) == {"h", "t"}


@pytest.mark.slow  # in `make test-all`: one more huse run
def test_the_ablation_without_sem_and_gap_trains_only_on_classification(tiny):
    comp("run", "huse", *TINY_HUSE, "--set", "w_sem=0", "--set", "w_gap=0", "--fold", "0", "--run-id", "a",
         workspace=tiny)
    fold = json.loads((tiny / "runs/a/folds/0/fold.json").read_text())
    assert set(fold["stats"]["epoch_loss_terms"]) == {"loss", "class"}
    assert not (tiny / "runs/a/class_distance.npy").exists()


@pytest.mark.slow  # in `make test-all`: one more huse run
def test_class_distances_from_the_text_tower_are_stored_once_per_run(tiny):
    comp("run", "huse", *TINY_HUSE, "--set", "sem_encoder=backbone", "--fold", "0", "--run-id", "s",
         workspace=tiny)
    path = tiny / "runs/s/class_distance.npy"
    distance = np.load(path)
    assert distance.shape == (12, 12) and not np.diag(distance).any()
    np.testing.assert_allclose(distance, distance.T, atol=1e-5)
    assert (distance[~np.eye(12, dtype=bool)] > 0).all()
    written = path.stat().st_mtime_ns
    comp("run", "huse", *TINY_HUSE, "--set", "sem_encoder=backbone", "--fold", "1", "--run-id", "s",
         workspace=tiny)
    assert path.stat().st_mtime_ns == written  # fold 1 reused fold 0's


def test_without_class_names_or_shops_huse_trains_and_says_what_it_left_out(tiny, tmp_path):
    def without_shops(table):
        return dataclasses.replace(table, categorical=table.categorical[:, :0], categorical_names=[])

    model = create_model("huse", {"epochs": 1, "image_size": 16, "hidden": 32, "layers": 1, "max_len": 32,
                                  "vocab_size": 2000, "emb_dim": 8})
    with Reporter.open(quiet=True) as reporter:
        project, train, valid, ctx = fold_zero(tiny, tmp_path / "run", reporter)
        ctx = dataclasses.replace(ctx, class_names=None)
        competition = project.competition
        model.fit(without_shops(train), without_shops(valid), ctx)
    assert ctx.stats["semantic_loss"] == "off: no class names"
    assert set(ctx.stats["epoch_loss_terms"]) == {"loss", "class", "gap"}
    proba, embedding = model.predict_with_embedding(without_shops(competition.test))
    assert proba.shape == (len(competition.test), competition.n_classes) and embedding.shape[1] == 2 * 8
    assert not (tmp_path / "run" / "class_distance.npy").exists()


def test_huse_parameter_mistakes_are_clear_errors(tiny):
    result = comp("run", "huse", "--set", "margin=3", "--fold", "0", workspace=tiny, check=False)
    assert result.returncode == 2 and "margin must be at most 2" in result.stderr
    assert "Traceback" not in result.stderr
