"""What the training benchmarks share: comp's side of a comparison, timed the same way."""

from __future__ import annotations

import time

from comp.data.competition import Table
from comp.metrics import METRICS
from comp.models._base import FoldContext, Model
from comp.runs.fold import seed_everything


def timed_fit(model: Model, ctx: FoldContext, train: Table, valid: Table) -> tuple[float, float]:
    """Seconds `model.fit` takes on the fold, and its held-out weighted F1 afterwards."""
    seed_everything(42)
    started = time.perf_counter()
    model.fit(train, valid, ctx)
    seconds = time.perf_counter() - started
    return seconds, METRICS["f1_weighted"](valid.y, model.predict_proba(valid))
