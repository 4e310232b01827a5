"""The gradient-boosted-trees classifier on handcrafted features: the CNN's baseline.

The baseline the CNN (:mod:`pipeline.images.model`) must beat, built the way the UVP6
embedded classifier (ecotaxa/uvpec) works: the handcrafted shape and grey-level features
of each vignette (:mod:`pipeline.images.handcrafted`) classified by gradient-boosted trees
(xgboost).

- :func:`fit_gbt` -> :class:`GBTClassifier` (``predict`` gives labels and probabilities),
  options in :class:`GBTConfig`.

See Also
--------
pipeline.images.handcrafted : the features (``features_table``, ``features_from_urls``).
pipeline.images.evaluation : the split and metrics shared with the CNN.

Developer note
--------------
*Choices*, by 3 x 5-fold stratified CV on the training 80 % of the uvpec UVP6 vignettes
only (the features' threshold: :mod:`pipeline.images.handcrafted`). The xgboost parameters
tried (depth 3/4/6, learning rate 0.05/0.1, column share 0.3/0.5/0.8, ``min_child_weight``
1/3, no refit, subsample 1) all scored within 0.01 of the defaults in accuracy and balanced
accuracy; unbalanced weights lost 0.013 of balanced accuracy. Caveat: that sample ships its 100
darksphere vignettes also under Copepoda (same files), so no model separates those two
classes there (F1 about 0.25 and 0.45); the 8 other classes score 0.86 accuracy.

*Threads.* xgboost spins its OpenMP threads: on a machine shared with other jobs,
``GBTConfig(n_jobs=1)`` was 10-20x faster than all cores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost
from sklearn.utils.class_weight import compute_sample_weight

from pipeline.config import check_count, check_range
from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.evaluation import classification_metrics, stratified_holdout

__all__ = ["GBTClassifier", "GBTConfig", "fit_gbt"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class GBTConfig:
    """Options of the gradient-boosted-trees classifier (defaults live here only).

    Attributes
    ----------
    n_estimators : int
        Most boosting rounds (early stopping ends sooner).
    learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda
        xgboost's parameters of the same names (``tree_method="hist"``,
        ``objective="multi:softprob"``); module note, *Choices*.
    early_stopping_rounds : int
        Rounds without a better weighted ``mlogloss`` on the validation rows before stopping.
    validation_fraction : float
        Share of the training rows (stratified) held out for early stopping.
    refit : bool
        Refit on all the training rows for the number of rounds early stopping chose.
    balanced : bool
        Weight rows by ``n / (n_classes * class count)`` (every class weighs the same).
    n_jobs : int or None
        xgboost threads (None: all cores; module note, *Threads*).
    seed : int
        Seed of the validation split and of xgboost's subsampling.
    """

    n_estimators: int = 2000
    learning_rate: float = 0.05
    max_depth: int = 4
    min_child_weight: float = 1.0
    subsample: float = 0.8
    colsample_bytree: float = 0.5
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 50
    validation_fraction: float = 0.2
    refit: bool = True
    balanced: bool = True
    n_jobs: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every option; raise ConfigError naming the key and the value."""
        for key in ("n_estimators", "max_depth", "early_stopping_rounds"):
            check_count(f"gbt.{key}", getattr(self, key), 1)
        for key in ("learning_rate", "subsample", "colsample_bytree"):
            check_range(f"gbt.{key}", getattr(self, key), low=0, high=1, low_open=True)
        check_range(
            "gbt.validation_fraction",
            self.validation_fraction,
            low=0,
            high=1,
            low_open=True,
            high_open=True,
        )
        for key in ("min_child_weight", "reg_lambda"):
            check_range(f"gbt.{key}", getattr(self, key), low=0)
        check_count("gbt.n_jobs", self.n_jobs, 1, allow_none=True)


@dataclass(frozen=True)
class GBTClassifier:
    """A fitted gradient-boosted-trees classifier (the result of :func:`fit_gbt`).

    Attributes
    ----------
    model : xgboost.XGBClassifier
    classes : tuple of str
        Class names, in the order of the probability columns (sorted).
    feature_names : tuple of str
        The columns of ``X`` it was fitted on (``predict`` selects them by name).
    n_rounds : int
        Boosting rounds kept (chosen by early stopping).
    validation : dict
        :func:`classification_metrics` on the internal validation rows.
    config : GBTConfig
    """

    model: xgboost.XGBClassifier
    classes: tuple[str, ...]
    feature_names: tuple[str, ...]
    n_rounds: int
    validation: dict[str, Any] = field(repr=False)
    config: GBTConfig = field(repr=False)

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Labels and class probabilities of the rows of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame
            Holding at least :attr:`feature_names` (NaN allowed: xgboost's missing value).

        Returns
        -------
        labels : numpy.ndarray
            (n,) ``object`` array of class names (the most probable).
        proba : numpy.ndarray
            (n, len(classes)) probabilities, columns in :attr:`classes` order.
        """
        proba = self.model.predict_proba(_design(X, self.feature_names))
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)], proba


def _design(X: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    missing = [c for c in names if c not in X.columns]
    if missing:
        raise InputFormatError(
            f"X lacks feature column(s) {missing[:10]} ({len(missing)} in all); pass the "
            "columns of features_table/features_from_urls (FEATURE_NAMES)."
        )
    frame = X[list(names)]
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise InputFormatError(
            f"X columns {bad[:10]} are not numeric; select the feature columns, e.g. "
            "X[list(FEATURE_NAMES)]."
        )
    return frame.to_numpy(dtype=np.float32)


_XGB_KEYS = ("learning_rate", "max_depth", "min_child_weight", "subsample", "colsample_bytree")


def _xgb(cfg: GBTConfig, n_classes: int, n_rounds: int, *, stop: bool) -> xgboost.XGBClassifier:
    return xgboost.XGBClassifier(
        n_estimators=n_rounds,
        tree_method="hist",
        objective="multi:softprob",
        num_class=n_classes,
        eval_metric="mlogloss",
        early_stopping_rounds=cfg.early_stopping_rounds if stop else None,
        reg_lambda=cfg.reg_lambda,
        n_jobs=cfg.n_jobs,
        random_state=cfg.seed,
        **{key: getattr(cfg, key) for key in _XGB_KEYS},
    )


def fit_gbt(X: pd.DataFrame, y: Sequence[str], *, config: GBTConfig | None = None) -> GBTClassifier:
    """Fit the gradient-boosted-trees classifier on handcrafted features.

    A stratified ``validation_fraction`` of the given (training) rows stops the boosting
    early; with ``refit`` the model is then refitted on all given rows for that many
    rounds. Rows are weighted so that every class weighs the same (``balanced``). Give it
    the training part only: the test part must stay unseen.

    Parameters
    ----------
    X : pandas.DataFrame
        Numeric features, one row per image (:func:`features_table`); every column is used.
    y : sequence of str
        Class of each row (at least 2 classes, each with at least 2 rows).
    config : GBTConfig, optional

    Returns
    -------
    GBTClassifier

    Raises
    ------
    InputFormatError
        When ``X`` and ``y`` differ in length or ``X`` has non-numeric columns.
    ConfigError
        When there are fewer than 2 classes or a class has a single row.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"area_px": np.r_[rng.normal(10, 1, 30), rng.normal(20, 1, 30)]})
    >>> y = ["small"] * 30 + ["large"] * 30
    >>> clf = fit_gbt(X, y, config=GBTConfig(n_estimators=50, n_jobs=1))
    >>> clf.predict(pd.DataFrame({"area_px": [9.0, 21.0]}))[0].tolist()
    ['small', 'large']
    """
    cfg = config or GBTConfig()
    labels = np.asarray(y).astype(str)
    if len(labels) != len(X):
        raise InputFormatError(
            f"fit_gbt: X has {len(X)} rows but y has {len(labels)}; give one class per row."
        )
    names = tuple(str(c) for c in X.columns)
    data = _design(X, names)
    classes, codes = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"fit_gbt: y holds {len(classes)} class(es); need at least 2.")
    fit_idx, val_idx = stratified_holdout(
        labels, test_fraction=cfg.validation_fraction, seed=cfg.seed
    )
    weights = compute_sample_weight("balanced", codes) if cfg.balanced else np.ones(len(codes))
    start = time.perf_counter()
    model = _xgb(cfg, len(classes), cfg.n_estimators, stop=True)
    model.fit(
        data[fit_idx],
        codes[fit_idx],
        sample_weight=weights[fit_idx],
        eval_set=[(data[val_idx], codes[val_idx])],
        sample_weight_eval_set=[weights[val_idx]],
        verbose=False,
    )
    n_rounds = int(model.best_iteration) + 1
    pred = classes[model.predict_proba(data[val_idx], iteration_range=(0, n_rounds)).argmax(1)]
    validation = classification_metrics(labels[val_idx], pred, classes)
    if cfg.refit:  # else the early-stopped model predicts with its best rounds
        model = _xgb(cfg, len(classes), n_rounds, stop=False)
        model.fit(data, codes, sample_weight=weights, verbose=False)
    logger.info(
        "fit_gbt: %d rows, %d features, %d classes; early stopping chose %d rounds "
        "(validation balanced accuracy %.3f); %s in %.1f s",
        len(labels),
        len(names),
        len(classes),
        n_rounds,
        validation["balanced_accuracy"],
        "refitted on all rows" if cfg.refit else "fitted on the non-validation rows",
        time.perf_counter() - start,
    )
    return GBTClassifier(model, tuple(classes.tolist()), names, n_rounds, validation, cfg)
