"""fastText supervised classifier on the shared product text: the classic fast baseline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, Model
from comp.typed import Params, Tune, param

_NON_WORD = re.compile(r"[^\w]+")


def fasttext_tokens(text: str) -> str:
    """Lower-cased words separated by single spaces: fastText splits on whitespace only,
    so punctuation glued to a word would otherwise make a new token."""
    return _NON_WORD.sub(" ", text.lower()).strip()


@dataclass
class FastTextParams(Params):
    epoch: int = param(25, ge=1, tune=Tune(5, 50))
    lr: float = param(0.5, gt=0, tune=Tune(0.05, 1.0, log=True))
    wordNgrams: int = param(2, ge=1, le=5, tune=Tune(1, 3))
    dim: int = param(100, ge=1, le=2048, tune=Tune(choices=(50, 100, 200)))
    minCount: int = param(1, ge=1)
    minn: int = param(0, ge=0)
    maxn: int = param(0, ge=0)
    """Character n-grams of minn..maxn letters; maxn=0 turns them off."""
    loss: Literal["softmax", "hs", "ova"] = "softmax"
    bucket: int = param(200_000, ge=1)
    thread: int = param(1, ge=1)
    """fastText's Hogwild training is only reproducible with one thread."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.maxn and self.minn > self.maxn:
            raise CompError(f"minn ({self.minn}) must not exceed maxn ({self.maxn})")


class FastText(Model):
    family = "fasttext"
    Params = FastTextParams

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        import fasttext

        path = ctx.workdir / "fasttext_train.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for label, text in zip(train.y, train.text, strict=True):
                handle.write(f"__label__{label} {fasttext_tokens(text)}\n")
        params = self.params
        self._model = fasttext.train_supervised(
            input=str(path),
            epoch=params.epoch,
            lr=params.lr,
            wordNgrams=params.wordNgrams,
            dim=params.dim,
            minCount=params.minCount,
            minn=params.minn,
            maxn=params.maxn,
            loss=params.loss,
            bucket=params.bucket,
            thread=params.thread,
            seed=ctx.seed,
            verbose=0,
        )
        path.unlink()
        self._n_classes = ctx.n_classes

    def predict_proba(self, rows: Table) -> np.ndarray:
        labels, probs = self._model.predict([fasttext_tokens(t) for t in rows.text], k=-1)
        proba = np.zeros((len(rows), self._n_classes), dtype=np.float32)
        prefix = len("__label__")
        for row, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
            columns = [int(label[prefix:]) for label in row_labels]
            proba[row, columns] = row_probs
        # fastText floors every probability at 1e-5, so rows sum to slightly above one
        return proba / proba.sum(axis=1, keepdims=True)

    def embed(self, rows: Table) -> np.ndarray:
        vectors = [self._model.get_sentence_vector(fasttext_tokens(t)) for t in rows.text]
        return np.asarray(vectors, dtype=np.float32)
