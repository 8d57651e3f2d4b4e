"""Image machinery shared by the families with an image backbone (image, huse): reading
photos as data, the timm backbone with its weights and frozen blocks, and its transforms.

Images are opened with PIL and converted to RGB (greyscale, CMYK, palette; transparency
is laid on white). A missing file, or one PIL cannot decode, becomes a blank image of the
normalisation mean (zeros after normalising) and is counted: `missing_images` and
`corrupt_images` over each fold's held-out rows (summed over the folds: every train row
once), `test_missing_images` and `test_corrupt_images` on fold 0.
"""

from __future__ import annotations

import difflib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from rich.markup import escape
from torch import nn

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext
from comp.models._weights import KeyFormat, WeightCatalog, key_format_of, map_state_dict
from comp.typed import Params, param

OK, MISSING, CORRUPT = "ok", "missing", "corrupt"


@dataclass
class BackboneParams(Params):
    """The image backbone and how its input is made; shared by every family with one."""

    backbone: str = "efficientnet_b0"
    """Any timm model name (`timm.list_models()`)."""
    pretrained: bool = False
    """ImageNet weights: local ones from `comp weights` (tf_efficientnet_lite0 offline), else
    timm's source (its cache, else the hub); weights that cannot be had are an error."""
    checkpoint: str | None = None
    """A local weights file (.pth, .bin, .safetensors) loaded into the backbone, non-strict;
    relative paths are relative to the workspace."""
    image_size: int = param(64, ge=8)
    freeze_blocks: int = param(0, ge=0)
    """Freeze the stem and the first N of the backbone's `.blocks` (0: train everything)."""
    channels_last: bool = True
    crop_scale: float = param(0.8, gt=0, le=1)
    """Smallest area fraction kept by the training transform's random resized crop (timm's
    default 0.08 is for long ImageNet schedules; on the demo 0.8 scored best in 5 epochs)."""
    color_jitter: float = param(0.0, ge=0)
    """Brightness, contrast and saturation jitter (timm's default is 0.4); off by default:
    colour often is the signal (a department's palette), 0.2 cost held-out F1 on the demo."""

    def __post_init__(self) -> None:
        super().__post_init__()
        import timm

        if not timm.is_model(self.backbone):
            close = difflib.get_close_matches(self.backbone, timm.list_models(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise CompError(f"unknown timm backbone {self.backbone!r}{hint}")


def open_rgb(path: Any, size: int | None = None) -> tuple[Image.Image | None, str]:
    """The image at `path` as RGB and "ok", or None and "missing" / "corrupt". With `size`,
    a big JPEG is decoded at a reduced scale that keeps at least twice `size` (much faster)."""
    if not isinstance(path, str | os.PathLike) or not str(path) or not os.path.isfile(path):
        return None, MISSING
    try:
        with Image.open(path) as image:
            if size:
                image.draft(None, (2 * size, 2 * size))
            image.load()
            return _to_rgb(image), OK
    except Exception:  # noqa: BLE001 - anything PIL cannot decode is a corrupt image
        return None, CORRUPT


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)  # phone photos stored sideways
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def image_status(paths: np.ndarray, size: int | None = None) -> dict[str, int]:
    """How many of `paths` are missing and how many cannot be decoded, as the dataset
    decodes them (threads: PIL decodes without the GIL)."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        statuses = list(pool.map(lambda p: open_rgb(p, size)[1], paths, chunksize=64))
    return {MISSING: statuses.count(MISSING), CORRUPT: statuses.count(CORRUPT)}


class ImageDataset(torch.utils.data.Dataset):
    """(pixel tensor, label) per row; a missing or corrupt image is a blank one."""

    def __init__(self, paths: np.ndarray, labels: np.ndarray | None, transform, size: int,
                 mean: tuple[float, ...], flip: bool = False):
        self.paths, self.labels, self.transform, self.flip = paths, labels, transform, flip
        self.blank = tuple(round(255 * m) for m in mean)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        return self.read(i)[0]

    def read(self, i: int) -> tuple[Image.Image, str]:
        """The row's image (blank when missing or corrupt) and its status."""
        image, status = open_rgb(self.paths[i], self.size)
        if image is None:
            image = Image.new("RGB", (self.size, self.size), self.blank)
        if self.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image, status

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), -1 if self.labels is None else int(self.labels[i])


def collate(rows: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.stack([x for x, _ in rows]),
            "labels": torch.tensor([label for _, label in rows])}



def freeze_blocks(backbone: nn.Module, n: int) -> list[str]:
    """Freeze the stem (the backbone's own parameters and its children before `blocks`)
    and `blocks[:n]` (`stages` where a model has no `blocks`: ConvNeXt, RegNet): weights
    and batch-norm statistics. Returns the frozen module names."""
    if n == 0:
        return []
    from timm.utils.model import freeze

    kind = next((k for k in ("blocks", "stages") if isinstance(
        getattr(backbone, k, None), nn.Sequential | nn.ModuleList)), None)
    if kind is None:
        raise CompError(f"freeze_blocks needs a backbone with `.blocks` or `.stages` (EfficientNet, "
                        f"MobileNet, ViT, ConvNeXt, ...); {type(backbone).__name__} has neither")
    blocks = getattr(backbone, kind)
    if n > len(blocks):
        raise CompError(f"freeze_blocks={n}, but the backbone has {len(blocks)} {kind}")
    stem = []
    for name, _ in backbone.named_children():
        if name == kind:
            break
        stem.append(name)
    names = stem + [f"{kind}.{i}" for i in range(n)]
    freeze(backbone, names)
    for weight in backbone.parameters(recurse=False):  # e.g. a ViT's cls_token and pos_embed
        weight.requires_grad = False
    return names


_TIMM_PRETRAINED: dict[tuple[str, int | None], dict[str, torch.Tensor]] = {}
"""Per process: timm's pretrained weights by model, so later folds do not reload them."""


def build_backbone(p: BackboneParams, ctx: FoldContext) -> tuple[nn.Module, bool]:
    """The timm backbone without a classifier, and whether its weights are pretrained."""
    import timm

    create: dict[str, Any] = dict(num_classes=0, drop_rate=0.0)
    backbone = timm.create_model(p.backbone, pretrained=False, **create)
    if backbone.pretrained_cfg.get("fixed_input_size"):  # a ViT: position embeddings per size
        create["img_size"] = p.image_size
        backbone = timm.create_model(p.backbone, pretrained=False, **create)
    if p.pretrained:
        load_pretrained(backbone, p.backbone, ctx.weights, create, ctx)
    if p.checkpoint:
        load_checkpoint(backbone, p.checkpoint, ctx)
    return backbone, p.pretrained or bool(p.checkpoint)


def load_pretrained(backbone: nn.Module, architecture: str, catalog: WeightCatalog,
                    create: dict[str, Any], ctx: FoldContext | None = None) -> None:
    """ImageNet weights for `architecture`: local weights from `comp weights` (mapped from
    their key format, every tensor placed), else timm's own source (its cache, the hub). A
    model whose weights cannot be had is an error, never a silent random initialisation."""
    import timm

    local = catalog.image_weights(architecture)
    if local is not None:
        from timm.models import load_state_dict

        weights = load_state_dict(str(local.location))
        placed = place_weights(backbone, weights, local.key_format, local.location.name)
        if ctx is not None:
            ctx.reporter.log(escape(f"fold {ctx.fold}: {architecture} from {local.source}: all {placed} "
                                    f"tensors placed ({local.key_format} keys), {len(weights) - placed} "
                                    "not used (classifier, batch counters)"))
        return
    key = (architecture, create.get("img_size"))
    if key not in _TIMM_PRETRAINED:
        cfg = backbone.pretrained_cfg
        if not any(cfg.get(k) for k in ("hf_hub_id", "url", "file", "state_dict")):
            raise catalog.unavailable(architecture, "image", "timm knows no pretrained weights for it")
        try:
            _TIMM_PRETRAINED[key] = timm.create_model(architecture, pretrained=True, **create).state_dict()
        except Exception as error:  # noqa: BLE001 - offline, no such weights, a bad file
            reason = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
            raise catalog.unavailable(architecture, "image", reason) from None
    backbone.load_state_dict(_TIMM_PRETRAINED[key])


def place_weights(backbone: nn.Module, weights: dict[str, torch.Tensor], key_format: KeyFormat,
                  what: str) -> int:
    """`weights` (keys in `key_format`) loaded into `backbone`, which must have every tensor
    placed (an error names what would stay random); how many were placed."""
    mapped = map_state_dict(backbone.state_dict(), weights, key_format)
    missing = backbone.load_state_dict(mapped, strict=False).missing_keys
    if missing:
        raise CompError(f"{what} leaves {len(missing)} tensors of {type(backbone).__name__} random "
                        f"(e.g. {missing[0]})")
    return len(mapped)


def build_frozen_backbone(p: BackboneParams, ctx: FoldContext) -> tuple[nn.Module, bool]:
    """`build_backbone` with its first `p.freeze_blocks` blocks frozen."""
    backbone, pretrained = build_backbone(p, ctx)
    frozen = freeze_blocks(backbone, p.freeze_blocks)
    if frozen and not pretrained:
        ctx.reporter.log(f"fold {ctx.fold}: freeze_blocks={p.freeze_blocks} freezes "
                         "randomly initialised weights (no pretrained or checkpoint)")
    return backbone, pretrained


def load_checkpoint(backbone: nn.Module, checkpoint: str, ctx: FoldContext) -> None:
    """A file in timm's keys loads non-strict: keys of another shape (a classifier) are
    dropped, missing keys reported. One in EfficientNet-PyTorch's keys is mapped tensor by
    tensor, and must place every tensor."""
    from timm.models import load_state_dict

    path = ctx.user_path(checkpoint)
    if not path.is_file():
        raise CompError(f"the checkpoint {path} does not exist")
    try:
        weights = load_state_dict(str(path))
    except Exception as error:  # noqa: BLE001 - any reader failure is the user's file
        raise CompError(f"cannot read the checkpoint {path}: {error}") from None
    own = backbone.state_dict()
    key_format = key_format_of(weights)
    if key_format != "timm":
        placed = place_weights(backbone, weights, key_format, path.name)
        ctx.reporter.log(escape(f"fold {ctx.fold}: checkpoint {path.name}: all {placed} tensors "
                                f"placed ({key_format} keys mapped)"))
        ctx.stats["checkpoint_missing_keys"] = 0
        return
    fitting = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    if not fitting:
        raise CompError(f"no weight of the checkpoint {path} fits the backbone "
                        f"{type(backbone).__name__} (another architecture?)")
    result = backbone.load_state_dict(fitting, strict=False)
    skipped = len(weights) - len(fitting)
    missing = result.missing_keys
    shown = f" (e.g. {', '.join(missing[:3])})" if missing else ""
    ctx.reporter.log(escape(f"fold {ctx.fold}: checkpoint {path.name}: {len(fitting)} tensors loaded, "
                            f"{skipped} skipped (unknown or other shape), {len(missing)} missing{shown}"))
    ctx.stats["checkpoint_missing_keys"] = len(missing)


def check_images(rows: Table, who: str) -> None:
    """The rows have images, else one clear error."""
    if rows.image_paths is None:
        raise CompError(f"{who} needs images: comp.toml has no data.image")


def transforms(backbone: nn.Module, p: BackboneParams):
    """timm's train and eval transforms at `image_size`, with the backbone's mean and std."""
    from timm.data import create_transform, resolve_data_config

    config = resolve_data_config({}, model=backbone)
    size = (3, p.image_size, p.image_size)
    common = dict(input_size=size, mean=config["mean"], std=config["std"],
                  interpolation=config["interpolation"])
    train = create_transform(**common, is_training=True, scale=(p.crop_scale, 1.0),
                             hflip=0.5, color_jitter=p.color_jitter)
    evaluate = create_transform(**common, is_training=False, crop_pct=1.0)
    return train, evaluate, tuple(config["mean"])




def count_bad_images(paths: np.ndarray, size: int, ctx: FoldContext, prefix: str) -> None:
    """Missing and corrupt images into ctx.stats (`prefix` "test_" for the test set) and the log."""
    counts = image_status(paths, size)
    ctx.stats[f"{prefix}missing_images"] = counts[MISSING]
    ctx.stats[f"{prefix}corrupt_images"] = counts[CORRUPT]
    if counts[MISSING] or counts[CORRUPT]:
        what = "test" if prefix else "held-out"
        ctx.reporter.log(f"fold {ctx.fold}: {counts[MISSING]} missing and {counts[CORRUPT]} "
                         f"corrupt of {len(paths)} {what} images: blank images used")
