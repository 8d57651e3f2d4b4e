"""The one interface every model family implements, and what the harness hands it.

A family is a class with a `Params` dataclass (its defaults are the family's defaults,
validated when built: `--set key=value` overrides them) and scikit-learn-style methods.
The harness owns everything around it: folds, loops, seeding, storing, scoring, resume,
threads and progress. A family sees only what it fits on: the rows, a `FoldContext`
(seed, classes, a scratch folder, a cache folder, its parents' arrays), never the
workspace or the run store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from comp.data.competition import Table
from comp.models._weights import WeightCatalog
from comp.progress import Reporter


class ParentRuns(Protocol):
    """Read access to finished runs of the same folds and data, by run id."""

    def resolve(self, ref: str) -> str:
        """The id of the run `ref` (id or unique name), refused unless it is finished on
        the current folds and data."""

    def has(self, run_id: str, name: str) -> bool:
        """Whether the run stored `name` (oof, test, emb_oof, emb_test)."""

    def array(self, run_id: str, name: str) -> np.ndarray:
        """The run's `name` array (rows in train or test file order), memory-mapped."""

    def fold_array(self, run_id: str, fold: int, name: str) -> np.ndarray:
        """What fold model `fold` of the run predicted: valid, test, emb_valid, emb_test."""


@dataclass(frozen=True, kw_only=True)
class RunSetup:
    """What `Model.prepare` may check before a run exists: the train rows and the parents."""

    train: Table
    parents: ParentRuns
    weights: WeightCatalog = field(default_factory=WeightCatalog)
    """Pretrained weights by name (`comp weights`)."""


@dataclass(kw_only=True)
class FoldContext:
    fold: int
    seed: int
    classes: list[Any]
    class_names: list[str] | None
    workdir: Path
    """This fold's scratch folder: checkpoints written here survive a crash."""
    run_workdir: Path
    """Shared by the folds of the run: what is computed once per run (class distances)."""
    cache: Path
    """Derived files that any run on the same data may reuse (tokenizers)."""
    corpus: np.ndarray
    """Every train and test text, unlabelled: for what may see all text (a tokenizer)."""
    data_hash: str
    parents: ParentRuns
    reporter: Reporter
    user_root: Path
    """Relative paths a user writes in parameters (a checkpoint) are relative to this."""
    weights: WeightCatalog = field(default_factory=WeightCatalog)
    """Pretrained weights by name (`comp weights`)."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Counts a model reports (e.g. missing images); summed over folds into run.json."""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def user_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.user_root / candidate


class Model(ABC):
    family: ClassVar[str]
    Params: ClassVar[type]

    def __init__(self, params: Any):
        self.params = params

    def prepare(self, setup: RunSetup) -> None:
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
