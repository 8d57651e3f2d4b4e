"""The model registry: one file per family in this package, found by its file name.

`create_model("tfidf", {"C": "4"})` imports comp/models/tfidf.py, finds its `Model`
subclass and builds its typed `Params`. Families import only when used, so `comp run
fasttext` never pays for importing torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from comp.errors import CompError
from comp.models._base import Model
from comp.typed import build


def available_models() -> list[str]:
    """Every family: the public modules of this package (shared machinery is private)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def model_class(family: str) -> type[Model]:
    if family not in available_models():
        raise CompError(f"unknown model {family!r} (available: {', '.join(available_models())})")
    module = importlib.import_module(f"{__name__}.{family}")
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Model) and getattr(obj, "family", "") == family
    ]
    if len(classes) != 1:
        raise RuntimeError(f"comp/models/{family}.py must define one Model with family={family!r}")
    return classes[0]


def create_model(family: str, params: Mapping[str, Any] | None = None) -> Model:
    """The family's model with its defaults overridden by `params` (strings or typed values)."""
    cls = model_class(family)
    return cls(build(cls.Params, dict(params or {}), f"{family} parameter"))
