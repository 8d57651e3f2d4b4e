"""Word and character n-gram TF-IDF with a linear classifier: the strong classic baseline.

Vectorisers are fitted on the fold's training rows only, so no held-out vocabulary or
document frequency leaks into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, Model, expand_columns
from comp.typed import Params, Tune, param


@dataclass
class TfidfParams(Params):
    word_ngrams: int = param(2, ge=1, le=5, tune=Tune(1, 3))
    char_min: int = param(2, ge=1)
    char_max: int = param(5, ge=0, le=10, tune=Tune(choices=(0, 4, 5, 6)))
    """0 disables the character vectoriser."""
    max_features: int = param(200_000, ge=1)
    min_df: int = param(2, ge=1, tune=Tune(1, 5))
    classifier: Literal["logreg", "sgd"] = "logreg"
    C: float = param(10.0, gt=0, tune=Tune(0.1, 100, log=True))
    """Inverse regularisation strength."""
    max_iter: int = param(300, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.char_max and self.char_min > self.char_max:
            raise CompError(f"char_min ({self.char_min}) must not exceed char_max ({self.char_max})")


class Tfidf(Model):
    family = "tfidf"
    Params = TfidfParams

    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, SGDClassifier

        p = self.params
        common = {"min_df": p.min_df, "max_features": p.max_features, "sublinear_tf": True,
                  "lowercase": True, "dtype": np.float32}
        self._vectorizers = [TfidfVectorizer(ngram_range=(1, p.word_ngrams), **common)]
        if p.char_max:
            self._vectorizers.append(
                TfidfVectorizer(analyzer="char_wb", ngram_range=(p.char_min, p.char_max), **common)
            )
        features = sp.hstack([v.fit_transform(train.text) for v in self._vectorizers]).tocsr()
        if p.classifier == "logreg":
            self._classifier = LogisticRegression(C=p.C, max_iter=p.max_iter)
        else:
            self._classifier = SGDClassifier(
                loss="log_loss", alpha=1.0 / (p.C * len(train)), max_iter=p.max_iter,
                random_state=ctx.seed,
            )
        self._classifier.fit(features, train.y)
        self._n_classes = ctx.n_classes

    def predict_proba(self, rows: Table) -> np.ndarray:
        features = sp.hstack([v.transform(rows.text) for v in self._vectorizers]).tocsr()
        proba = self._classifier.predict_proba(features)
        return expand_columns(proba, self._classifier.classes_, self._n_classes)
