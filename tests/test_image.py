"""The image family trained for real on the tiny demo's 32-pixel photos (CPU, seconds)."""

import dataclasses
import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from comp.errors import CompError
from comp.models import create_model
from comp.models._vision import ImageDataset, build_backbone, image_status, transforms
from comp.models.image import ImageParams
from comp.progress import Reporter
from comp.project import Project
from tests.conftest import comp, finished_run, fold_zero

FAST = ["--set", "backbone=resnet10t", "--set", "image_size=32", "--set", "epochs=1"]


def _decodes(path: str) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # noqa: BLE001
        return False


def _on_disk(paths) -> tuple[int, int]:
    """(missing, corrupt) counted straight from the files, independently of the family."""
    exists = [p for p in paths if os.path.isfile(p)]
    return len(paths) - len(exists), sum(not _decodes(p) for p in exists)


def test_image_trains_through_the_cli_counts_bad_images_and_is_deterministic(tiny):
    comp("run", "image", *FAST, "--set", "emb_dim=16", "--run-id", "a", workspace=tiny)
    record, oof, test = finished_run(tiny, "a", emb_dim=16)
    run = tiny / "runs/a"
    assert record["cv_score"] > 1.2 / len(record["classes"])  # above chance after one tiny epoch

    competition = Project.open(tiny).competition
    train_missing, train_corrupt = _on_disk(competition.train.image_paths)
    test_missing, test_corrupt = _on_disk(competition.test.image_paths)
    assert train_missing >= 1 and train_corrupt == 1  # what the demo writes
    stats = record["stats"]
    assert stats["missing_images"] == train_missing and stats["corrupt_images"] == train_corrupt
    assert stats["test_missing_images"] == test_missing
    assert stats["test_corrupt_images"] == test_corrupt

    comp("run", "image", *FAST, "--set", "emb_dim=16", "--run-id", "b", workspace=tiny)
    np.testing.assert_array_equal(np.load(tiny / "runs/b/oof.npy"), oof)
    np.testing.assert_array_equal(np.load(tiny / "runs/b/emb_test.npy"), np.load(run / "emb_test.npy"))


@pytest.fixture
def fold0(tiny, tmp_path):
    """The tiny competition's fold 0 and a context to fit a model on it in-process."""
    with Reporter.open(quiet=True) as reporter:
        project, train, valid, ctx = fold_zero(tiny, tmp_path, reporter)
        yield project.competition, train, valid, ctx


def _fit(params, train, valid, ctx):
    model = create_model("image", params)
    model.fit(train, valid, ctx)
    return model


def test_tta_changes_predictions_but_not_shapes_and_embeddings_default_to_the_backbone(fold0):
    competition, train, valid, ctx = fold0
    model = _fit({"backbone": "resnet10t", "image_size": 32, "epochs": 1}, train, valid, ctx)
    plain, plain_emb = model.predict_with_embedding(competition.test)
    assert plain.shape == (len(competition.test), competition.n_classes)
    assert plain_emb.shape == (len(competition.test), 512)  # resnet10t's pooled features
    model.params = dataclasses.replace(model.params, tta=True)
    flipped, flipped_emb = model.predict_with_embedding(competition.test)
    assert flipped.shape == plain.shape and flipped_emb.shape == plain_emb.shape
    np.testing.assert_allclose(flipped.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(flipped, plain, atol=1e-4)


def test_freeze_blocks_keeps_the_stem_and_first_blocks_of_a_checkpoint(fold0, tmp_path):
    competition, train, valid, ctx = fold0
    torch.manual_seed(1)
    start = timm.create_model("efficientnet_b0", num_classes=1000).state_dict()  # with a classifier
    torch.save(start, tmp_path / "start.pth")
    params = {"backbone": "efficientnet_b0", "image_size": 32, "epochs": 1, "freeze_blocks": 3,
              "checkpoint": str(tmp_path / "start.pth"), "lr": 1e-2}
    model = _fit(params, train, valid, ctx)
    trained = model._module.body.state_dict()
    assert ctx.stats["checkpoint_missing_keys"] == 0  # the classifier was skipped, not missing
    frozen = [k for k in trained if k.split(".")[0] in {"conv_stem", "bn1"}
              or k.startswith(("blocks.0.", "blocks.1.", "blocks.2."))]
    trainable = [k for k in trained if k.startswith("blocks.6.") and k.endswith("weight")]
    assert frozen and trainable
    for key in frozen:  # weights and batch-norm running statistics
        torch.testing.assert_close(trained[key], start[key], rtol=0, atol=0, msg=key)
    assert any(not torch.equal(trained[k], start[k]) for k in trainable)
    assert not any(p.requires_grad for p in model._module.body.blocks[2].parameters())
    assert all(p.requires_grad for p in model._module.body.blocks[3].parameters())


def test_freeze_blocks_and_backbone_mistakes_are_clear_errors(fold0):
    competition, train, valid, ctx = fold0
    with pytest.raises(CompError, match="`.blocks` or `.stages`"):
        _fit({"backbone": "resnet10t", "freeze_blocks": 1, "image_size": 32}, train, valid, ctx)
    with pytest.raises(CompError, match="has 7 blocks"):
        _fit({"freeze_blocks": 8, "image_size": 32}, train, valid, ctx)
    with pytest.raises(CompError, match="did you mean efficientnet_b0"):
        build_backbone(ImageParams(backbone="efficentnet_b0"), ctx)
    no_images = dataclasses.replace(train, image_paths=None)
    with pytest.raises(CompError, match="needs images: comp.toml has no data.image"):
        _fit({}, no_images, valid, ctx)


def test_greyscale_cmyk_palette_and_transparent_images_load_as_rgb(tmp_path):
    size = 24
    paths = {
        "grey": tmp_path / "grey.jpg", "cmyk": tmp_path / "cmyk.jpg", "rgba": tmp_path / "rgba.png",
        "palette": tmp_path / "palette.png", "grey_alpha": tmp_path / "la.png",
        "missing": tmp_path / "missing.jpg", "corrupt": tmp_path / "corrupt.jpg",
    }
    Image.new("L", (40, 30), 90).save(paths["grey"])
    Image.new("CMYK", (30, 40), (0, 255, 255, 0)).save(paths["cmyk"])  # red
    rgba = Image.new("RGBA", (20, 20), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 10, 20))  # left half transparent black
    rgba.save(paths["rgba"])
    palette = Image.new("P", (20, 20), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(paths["palette"], transparency=0)
    Image.new("LA", (20, 20), (50, 128)).save(paths["grey_alpha"])
    paths["corrupt"].write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    files = np.array([str(p) for p in paths.values()], dtype=object)

    _, evaluate, mean = transforms(timm.create_model("resnet10t", num_classes=0),
                                   ImageParams(image_size=size))
    dataset = ImageDataset(files, None, evaluate, size, mean)
    images = {name: dataset.load(i) for i, name in enumerate(paths)}
    assert all(image.mode == "RGB" for image in images.values())
    assert images["grey"].getpixel((5, 5)) == (90, 90, 90)
    red, green, blue = images["cmyk"].getpixel((5, 5))
    assert red > 200 and green < 50 and blue < 50
    assert images["rgba"].getpixel((2, 2)) == (255, 255, 255)  # transparency laid on white
    assert images["rgba"].getpixel((15, 2)) == (0, 0, 255)
    assert images["palette"].getpixel((2, 2)) == (0, 255, 0)
    for name in ("missing", "corrupt"):  # blank: the normalisation mean, zeros once normalised
        assert images[name].size == (size, size)
        assert torch.allclose(dataset[list(paths).index(name)][0], torch.zeros(3, size, size),
                              atol=0.02)
    for i in range(len(dataset)):
        pixels, label = dataset[i]
        assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32 and label == -1
    assert image_status(files) == {"missing": 1, "corrupt": 1}


def test_big_jpegs_decode_reduced_and_exif_rotation_is_applied(tmp_path):
    big, turned = tmp_path / "big.jpg", tmp_path / "turned.jpg"
    Image.new("RGB", (800, 600), (200, 30, 30)).save(big)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, shown rotated by 90 degrees
    Image.new("RGB", (40, 20), (30, 200, 30)).save(turned, exif=exif)
    files = np.array([str(big), str(turned)], dtype=object)
    _, evaluate, mean = transforms(timm.create_model("resnet10t", num_classes=0),
                                   ImageParams(image_size=32))
    dataset = ImageDataset(files, None, evaluate, 32, mean)
    reduced = dataset.load(0)
    assert 64 <= min(reduced.size) and reduced.size[0] < 800  # JPEG draft: 1/4 scale here
    assert dataset.load(1).size == (20, 40)
