"""Gradient boosting on the outputs of earlier runs plus the tabular columns (step 3 of the
reference solution): LightGBM, CatBoost or py-boost.

Features come from comp.models._features (parents' out-of-fold embeddings or probabilities,
reduced in each fold, and the tabular columns). Every engine trains a multiclass model on
the fold's training rows, early-stopped on its held-out rows (the only use of them). The
categorical columns (shop id) are native categoricals where the engine has them:
LightGBM's `categorical_feature`, CatBoost's `cat_features` (ordered target statistics,
computed on the training rows only); py-boost sees their in-fold integer codes.

Many classes multiply the cost: LightGBM grows one tree per class per round (874 trees a
round at the real scale), CatBoost one symmetric tree with a vector of class values per
round, py-boost one multi-output tree per round on the GPU (`SketchBoost`, whose split
search looks at `sketch_outputs` projected gradient columns instead of all classes). The
defaults (few leaves, a high learning rate, row and feature subsampling, early stopping)
keep the demo quick; benchmarks/boost.py measures each engine per fold at the real shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from comp.data.competition import Table
from comp.errors import CompError
from comp.models._base import FoldContext, expand_columns
from comp.models._features import FeatureMatrix, FeatureParams, FoldFeatures, SecondLevelModel
from comp.typed import Tune, param

Engine = Literal["lightgbm", "catboost", "pyboost"]


@dataclass
class BoostParams(FeatureParams):
    engine: Engine = "lightgbm"
    rounds: int = param(500, ge=1)
    """Most boosting rounds; early stopping on the held-out rows usually ends sooner."""
    learning_rate: float = param(0.1, gt=0, tune=Tune(0.02, 0.3, log=True))
    early_stopping: int = param(20, ge=1)
    """Rounds without a better held-out log loss before stopping."""
    leaves: int = param(15, ge=2, tune=Tune(7, 63))
    """LightGBM's num_leaves."""
    depth: int = param(4, ge=1, le=16)
    """CatBoost's and py-boost's tree depth."""
    min_leaf: int = param(20, ge=1, tune=Tune(5, 100, log=True))
    subsample: float = param(0.8, gt=0, le=1, tune=Tune(0.5, 1.0))
    colsample: float = param(0.8, gt=0, le=1, tune=Tune(0.3, 1.0))
    l2: float = param(1.0, ge=0, tune=Tune(1e-3, 10, log=True))
    max_bin: int = param(63, ge=2)
    sketch_outputs: int = param(5, ge=1)
    """py-boost: gradient columns its split search looks at (SketchBoost)."""
    threads: int = param(0, ge=0)
    """CPU threads for LightGBM and CatBoost; 0: all cores."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.engine == "pyboost":
            require_cuda()


def require_cuda() -> None:
    """py-boost trains on a CUDA GPU through cupy only: fail before any work without one."""
    try:
        import cupy

        found = cupy.cuda.runtime.getDeviceCount() > 0
    except (ImportError, RuntimeError):
        found = False
    if not found:
        raise CompError("engine=pyboost needs a CUDA GPU with cupy installed and this machine has "
                        "none: use engine=lightgbm or engine=catboost")


class Boost(SecondLevelModel):
    family = "boost"
    Params = BoostParams


    def fit(self, train: Table, valid: Table, ctx: FoldContext) -> None:
        p = self.params
        self._features = FoldFeatures(p, ctx)
        train_x = self._features.fit_transform(train)
        valid_x = self._features.transform(valid)
        # labels as indices into the classes this fold's training rows have (a rare class
        # can be missing); held-out rows of other classes cannot steer early stopping
        self._seen = np.unique(train.y)
        known = np.isin(valid.y, self._seen)
        train_y = np.searchsorted(self._seen, train.y)
        valid_y = np.searchsorted(self._seen, valid.y[known])
        fit = ENGINES[p.engine]
        self._predict, rounds = fit(p, ctx.seed, train_x, train_y, _rows(valid_x, known), valid_y,
                                    len(self._seen))
        self._n_classes = ctx.n_classes
        ctx.stats["rounds"] = rounds

    def predict_proba(self, rows: Table) -> np.ndarray:
        proba = self._predict(self._features.transform(rows))
        return expand_columns(proba, self._seen, self._n_classes)


def _rows(x: FeatureMatrix, mask: np.ndarray) -> FeatureMatrix:
    return FeatureMatrix(x.numeric[mask], x.categorical[mask], x.cardinalities)


def _dense(x: FeatureMatrix) -> np.ndarray:
    """Numeric and categorical columns side by side; the categorical ones last."""
    return np.hstack([x.numeric, x.categorical.astype(np.float32)])


def fit_lightgbm(p: BoostParams, seed, train_x, train_y, valid_x, valid_y, n_classes):
    import lightgbm as lgb

    n_numeric = train_x.numeric.shape[1]
    categorical = list(range(n_numeric, n_numeric + train_x.categorical.shape[1]))
    params = {
        "objective": "multiclass", "num_class": n_classes, "learning_rate": p.learning_rate,
        "num_leaves": p.leaves, "min_data_in_leaf": p.min_leaf, "lambda_l2": p.l2,
        "bagging_fraction": p.subsample, "bagging_freq": 1, "feature_fraction": p.colsample,
        "max_bin": p.max_bin, "num_threads": p.threads, "seed": seed, "deterministic": True,
        "force_col_wise": True, "verbose": -1,
    }
    train_set = lgb.Dataset(_dense(train_x), train_y, categorical_feature=categorical, free_raw_data=False)
    callbacks, valid_sets = [], []
    if len(valid_y):
        valid_sets = [lgb.Dataset(_dense(valid_x), valid_y, reference=train_set)]
        callbacks = [lgb.early_stopping(p.early_stopping, verbose=False)]
    booster = lgb.train(params, train_set, num_boost_round=p.rounds, valid_sets=valid_sets,
                        callbacks=callbacks)
    rounds = booster.best_iteration or p.rounds
    return lambda x: booster.predict(_dense(x), num_iteration=rounds), rounds


def fit_catboost(p: BoostParams, seed, train_x, train_y, valid_x, valid_y, n_classes):
    from catboost import CatBoostClassifier, Pool

    def pool(x: FeatureMatrix, y=None) -> Pool:
        frame = pd.concat([pd.DataFrame(x.numeric), pd.DataFrame(x.categorical)], axis=1, ignore_index=True)
        categorical = list(range(x.numeric.shape[1], frame.shape[1]))
        return Pool(frame, y, cat_features=categorical)

    model = CatBoostClassifier(
        loss_function="MultiClass", classes_count=n_classes, iterations=p.rounds,
        learning_rate=p.learning_rate, depth=p.depth, min_data_in_leaf=p.min_leaf,
        l2_leaf_reg=p.l2, bootstrap_type="Bernoulli", subsample=p.subsample, rsm=p.colsample,
        border_count=p.max_bin, thread_count=p.threads or -1, random_seed=seed,
        early_stopping_rounds=p.early_stopping if len(valid_y) else None,
        use_best_model=bool(len(valid_y)), allow_writing_files=False, verbose=False,
    )
    model.fit(pool(train_x, train_y), eval_set=pool(valid_x, valid_y) if len(valid_y) else None)
    return lambda x: model.predict_proba(pool(x)), model.tree_count_


def fit_pyboost(p: BoostParams, seed, train_x, train_y, valid_x, valid_y, n_classes):
    from py_boost import SketchBoost

    model = SketchBoost(
        "crossentropy", ntrees=p.rounds, lr=p.learning_rate, max_depth=p.depth,
        min_data_in_leaf=p.min_leaf, lambda_l2=p.l2, subsample=p.subsample, colsample=p.colsample,
        max_bin=p.max_bin, es=p.early_stopping, seed=seed, verbose=-1,
        sketch_outputs=min(p.sketch_outputs, n_classes),
    )
    eval_sets = [{"X": _dense(valid_x), "y": valid_y}] if len(valid_y) else None
    # py-boost infers the number of classes from the labels: every seen class is in train_y
    model.fit(_dense(train_x), train_y, eval_sets=eval_sets)
    return lambda x: model.predict(_dense(x)), getattr(model, "best_round", p.rounds)


ENGINES = {"lightgbm": fit_lightgbm, "catboost": fit_catboost, "pyboost": fit_pyboost}
"""Each engine: (params, seed, train features, labels, held-out features, labels, number of
classes) → (predict: features → probabilities, boosting rounds kept)."""
