"""Pretrained weights for real, offline: the packaged all-MiniLM-L6-v2 and EfficientNet-Lite0
(installed by `make install`), never mocks of them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from comp.data.demo import DemoSpec
from comp.data.scaffold import init_demo
from comp.data.workspace import Workspace
from comp.errors import CompError
from comp.models._weights import WeightCatalog
from comp.progress import Reporter
from tests.conftest import bare_context, comp, finished_run, fold_zero, one_clear_error, tree_digest

MINILM, LITE0 = "all-MiniLM-L6-v2", "tf_efficientnet_lite0"
TINY_EN = DemoSpec(train_rows=400, test_rows=80, classes=12, image_size=32, seed=3, language="en")


def photograph(name: str) -> Path:
    """A real photograph scikit-image ships inside its package (no download)."""
    folder = Path(next(iter(importlib.util.find_spec("skimage").submodule_search_locations)))
    return folder / "data" / name


@pytest.fixture(scope="module")
def english(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("english") / "ws"
    init_demo(Workspace(root), TINY_EN, force=False)
    comp("folds", workspace=root)
    return root


@pytest.fixture
def reporter():
    with Reporter.open(quiet=True) as opened:
        yield opened


def test_comp_weights_lists_the_packaged_weights(tmp_path):
    listed = json.loads(comp("weights", "--json", workspace=tmp_path).stdout)
    by_name = {w["name"]: w for w in listed}
    assert by_name[MINILM]["kind"] == "text" and Path(by_name[MINILM]["location"], "config.json").is_file()
    assert by_name[LITE0]["kind"] == "image" and by_name[LITE0]["key_format"] == "efficientnet-pytorch"
    assert not (tmp_path / "runs").exists()  # listing writes nothing


def test_weights_named_in_comp_toml_and_the_env_are_listed(tiny, tmp_path):
    folder = WeightCatalog().find(MINILM, "text").location
    (tmp_path / "zoo").mkdir()
    os.symlink(folder, tmp_path / "zoo" / "my-encoder")
    config = tiny / "comp.toml"
    config.write_text(config.read_text() + '\n[weights]\nmine = "my/lite0.pth"\n')
    (tiny / "my").mkdir()
    shutil.copy(WeightCatalog().find(LITE0, "image").location, tiny / "my" / "lite0.pth")
    env = {"COMP_WEIGHTS": str(tmp_path / "zoo")}
    os.environ.update(env)
    try:
        from comp.project import Project

        names = {(w.name, w.kind, w.source.split()[0]) for w in Project.open(tiny).weights.available()}
    finally:
        os.environ.pop("COMP_WEIGHTS")
    assert ("mine", "image", "comp.toml") in names
    assert ("my-encoder", "text", "$COMP_WEIGHTS") in names


def test_minilm_puts_paraphrases_closer_than_unrelated_sentences(tmp_path, reporter):
    from comp.models._text import PadCollate, TextEncoderParams, load_text_backbone

    ctx = bare_context(tmp_path, [0, 1], reporter)
    text = load_text_backbone(MINILM, TextEncoderParams(), ctx)
    assert text.pretrained and text.encoder.pooling == "mean"  # its sentence-transformers pooling
    assert text.max_len == 128  # max_len=128 under the model's own 256
    sentences = ["A man is playing a guitar on stage.", "Someone performs a song with a guitar.",
                 "The stock market fell sharply on Monday."]
    with torch.no_grad():
        vectors = torch.nn.functional.normalize(
            text.encoder.eval()(PadCollate(text.tokenizer.pad_token_id).pad(text.encode(sentences))), dim=1)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated + 0.3, (paraphrase, unrelated)


def test_lite0_with_its_imagenet_head_recognises_real_photographs():
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    from comp.models._vision import load_pretrained

    model = timm.create_model(LITE0, pretrained=False).eval()  # with its 1000-class head
    load_pretrained(model, LITE0, WeightCatalog(), {})
    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        cat = model(transform(Image.open(photograph("chelsea.png")).convert("RGB"))[None]).softmax(1)[0]
        coffee = model(transform(Image.open(photograph("coffee.png")).convert("RGB"))[None]).softmax(1)[0]
    assert int(cat.argmax()) in {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert int(coffee.argmax()) == 967 and float(coffee[967]) > 0.5  # espresso


def test_a_foreign_format_checkpoint_places_every_tensor(tmp_path, reporter):
    """EfficientNet-PyTorch keys (`_conv_stem`, `_blocks.*`) mapped onto timm's Lite0: every
    tensor of the backbone equals the file's; a file with a tensor missing is refused."""
    import timm

    from comp.models._vision import load_checkpoint

    file = WeightCatalog().find(LITE0, "image").location
    theirs = [v for k, v in torch.load(file, map_location="cpu").items()
              if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    backbone = timm.create_model(LITE0, num_classes=0)
    ctx = bare_context(tmp_path, [0, 1], reporter)
    load_checkpoint(backbone, str(file), ctx)
    own = [v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(own) == len(theirs) == 245
    assert all(torch.equal(a, b) for a, b in zip(own, theirs, strict=True))
    assert ctx.stats["checkpoint_missing_keys"] == 0

    broken = torch.load(file, map_location="cpu")
    del broken["_blocks.3._bn1.running_var"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(CompError, match="another architecture"):
        load_checkpoint(timm.create_model(LITE0, num_classes=0), str(tmp_path / "broken.pth"), ctx)


def test_a_name_that_cannot_be_had_offline_is_one_sentence_listing_what_can(english):
    before = tree_digest(english / "runs")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        text = comp("run", "bert", "--set", "backbone=no-such-org/no-such-model", "--fold", "0",
                    workspace=english, check=False)
        image = comp("run", "image", "--set", "backbone=efficientnet_b0", "--set", "pretrained=true",
                     "--fold", "0", workspace=english, check=False)
    finally:
        os.environ.pop("HF_HUB_OFFLINE")
    one_clear_error(text, "no-such-org/no-such-model", MINILM, "comp weights")
    one_clear_error(image, "efficientnet_b0", LITE0)
    assert tree_digest(english / "runs") == before


def test_layerwise_decay_and_frozen_layers_on_the_real_encoder(tmp_path, reporter):
    from comp.models._text import TextEncoderParams, load_text_backbone
    from comp.models._training import layerwise_rates

    ctx = bare_context(tmp_path, [0, 1], reporter)
    text = load_text_backbone(MINILM, TextEncoderParams(freeze_layers=2), ctx)
    model = text.encoder.model
    rates = layerwise_rates(text.encoder, 1e-4, 0.5)
    layers = model.encoder.layer
    assert len(layers) == 6
    assert rates[id(layers[5].output.dense.weight)] == pytest.approx(1e-4)
    assert rates[id(layers[0].output.dense.weight)] == pytest.approx(1e-4 * 0.5 ** 5)
    assert rates[id(model.embeddings.word_embeddings.weight)] == pytest.approx(1e-4 * 0.5 ** 6)
    frozen = {name.split(".")[0] if name.startswith("embeddings") else ".".join(name.split(".")[:3])
              for name, w in model.named_parameters() if not w.requires_grad}
    assert frozen == {"embeddings", "encoder.layer.0", "encoder.layer.1"}


def test_fine_tuned_minilm_beats_the_same_architecture_from_scratch(english, tmp_path, reporter):
    from comp.metrics import METRICS
    from comp.models import create_model

    _, train, valid, ctx = fold_zero(english, tmp_path, reporter)
    scores = {}
    for from_scratch in (False, True):
        model = create_model("bert", {"backbone": MINILM, "from_scratch": from_scratch, "epochs": 3,
                                      "max_len": 32, "body_lr": 2e-4, "lr": 3e-3, "patience": 0})
        model.fit(train, valid, ctx)
        scores[from_scratch] = METRICS["f1_weighted"](valid.y, model.predict_proba(valid))
    assert scores[False] > scores[True] + 0.1, scores


def test_embed_runs_feed_boost_and_tabnn_in_one_shared_space(english):
    comp("run", "embed", "--name", "emb", "--set", f"text_backbone={MINILM}", "--set", "Cs=10,100",
         "--set", f"image_backbone={LITE0}", "--set", "image_size=32", workspace=english)
    record, oof, _ = finished_run(english, next(p.name for p in (english / "runs").glob("emb-*")),
                                  emb_dim=384 + 1280)
    run = english / "runs" / record["id"]
    assert record["cv_score"] > 0.5
    emb_oof = np.load(run / "emb_oof.npy")
    fold_tests = [np.load(run / f"folds/{k}/emb_test.npy") for k in range(5)]
    assert all(np.array_equal(fold_tests[0], t) for t in fold_tests[1:])  # one space for every fold
    cached = [dict(np.load(path)) for path in (english / "runs/.cache").glob("embed-*-train.npz")]
    assert sorted(c["matrix"].shape for c in cached) == [(400, 384), (400, 1280)]  # encoded once
    text = next(c for c in cached if c["matrix"].shape[1] == 384)
    by_row = np.empty_like(text["matrix"])
    by_row[text["index"]] = text["matrix"]
    np.testing.assert_array_equal(emb_oof[:, :384], by_row)

    comp("run", "boost", "--name", "boost_emb", "--set", "from=emb", "--set", "use=emb",
         "--set", "rounds=20", "--set", "threads=1", workspace=english)
    comp("run", "tabnn", "--name", "tabnn_emb", "--set", "from=emb", "--set", "use=emb",
         "--set", "epochs=5", workspace=english)
    board = {e["name"]: e for e in json.loads(comp("leaderboard", "--json", workspace=english).stdout)}
    for name in ("boost_emb", "tabnn_emb"):
        assert board[name]["status"] == "done" and board[name]["parents"] == [record["id"]]
        assert board[name]["cv_score"] > 0.3, board[name]


def test_embed_trains_identical_train_embeddings_in_every_fold(english, tmp_path, reporter):
    from comp.models import create_model
    from comp.project import Project
    from comp.runs.runner import fold_context

    project = Project.open(english)
    train, folds = project.competition.train, project.folds
    embeddings = []
    for fold in (0, 3):
        ctx = fold_context(project, fold=fold, seed=0, workdir=tmp_path / str(fold), run_workdir=tmp_path,
                           reporter=reporter)
        model = create_model("embed", {"text_backbone": MINILM, "Cs": "10"})
        model.fit(train.take(folds.training(fold)), train.take(folds.held_out(fold)), ctx)
        embeddings.append(model.embed(train))
    np.testing.assert_array_equal(embeddings[0], embeddings[1])


def test_huse_with_both_towers_pretrained_and_class_distances_from_the_encoder(english):
    comp("run", "huse", "--fold", "0", "--run-id", "h", "--set", f"text_backbone={MINILM}",
         "--set", f"image_backbone={LITE0}", "--set", "image_pretrained=true", "--set", "image_size=32",
         "--set", "sem_encoder=backbone", "--set", "epochs=1", "--set", "max_len=32",
         "--set", "channels_last=false", workspace=english)
    fold = json.loads((english / "runs/h/folds/0/fold.json").read_text())
    assert fold["stats"]["text_weights"].endswith("model")
    distance = np.load(english / "runs/h/class_distance.npy")
    assert distance.shape == (12, 12) and 0 < distance[~np.eye(12, dtype=bool)].min()
