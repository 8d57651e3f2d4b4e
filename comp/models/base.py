"""The one interface every model family implements, and the context the harness gives it.

A family is a class with a `Params` dataclass (its defaults are the family's defaults;
`--set key=value` overrides them) and scikit-learn-style methods. The harness owns
everything around it: folds, loops, seeding, storing, scoring, resume and progress.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from comp.data import Competition, Table
from comp.folds import Folds
from comp.progress import Reporter
from comp.store import RunStore
from comp.workspace import Workspace


@dataclass
class FoldContext:
    fold: int
    seed: int
    classes: list[Any]
    class_names: list[str] | None
    workdir: Path
    """This fold's folder in the run store: checkpoints written here survive a crash."""
    workspace: Workspace
    store: RunStore
    reporter: Reporter
    corpus: np.ndarray | None = None
    """Every train and test text, unlabelled: for what may see all text (a tokenizer)."""
    data_hash: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts a model reports (e.g. missing images); summed over folds into run.json."""

    @property
    def n_classes(self) -> int:
        return len(self.classes)


class Model(ABC):
    family: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any):
        self.params = params

    def prepare(self, workspace: Workspace, competition: Competition, folds: Folds) -> None:
        """Called once before a run is created: check what the model consumes and pin it
        in its params (e.g. parent runs by id), so that every fold and a resume agree."""
        return None

    def parents(self) -> list[str]:
        """Runs whose predictions or embeddings this model consumes."""
        return []

    @abstractmethod
    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        """Train on `train`; `valid` (the held-out fold) may only steer early stopping."""

    @abstractmethod
    def predict_proba(self, rows: Table) -> np.ndarray:
        """[len(rows), n_classes] probabilities in the order of ctx.classes."""

    def embed(self, rows: Table) -> np.ndarray | None:
        """Optional [len(rows), dim] embeddings for downstream models."""
        return None

    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray | None]:
        """Both at once: what the harness calls. A family whose embedding falls out of the
        same forward pass (a neural one) overrides this to pass over the rows once."""
        return self.predict_proba(rows), self.embed(rows)


def expand_columns(proba: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    """Place a classifier's columns (for the classes it saw in training) into all classes.

    A fold's training rows can miss a rare class; its column stays zero.
    """
    full = np.zeros((len(proba), n_classes), dtype=np.float32)
    full[:, seen] = proba
    return full
