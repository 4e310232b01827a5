"""Baselines the trained model must beat, fitted on the same rows.

:func:`fit_baselines` fits the references of ``TrainConfig.baselines``
(:data:`pipeline.model.train.BASELINES`): the per-layer climatology (:class:`Climatology`),
a linear model (:class:`LinearModel`, ridge least squares on the standardised predictors:
a model that only a world with non-linear ecology can beat by much), one independent
xgboost.dask model per target (:class:`PerTargetModel`) and a multi-output random forest
(:class:`RandomForestModel`, the Clements et al. 2022 approach). Each is a predictor
``predictor(X, layer=None) -> array (n, k)`` in the transformed target space;
:func:`pipeline.model.crossval.cross_validate` fits and scores them in every fold beside
the model.

Developer note
--------------
*Random forest.* It is fitted in the client's process with ``n_jobs=-1`` (scikit-learn
and joblib's threads), not on the dask workers: the training table is small (one row
per profile and layer) and a forest needs all rows in one place.

*Imports.* This module builds on :mod:`pipeline.model.train` (its config, input checks,
device choice and xgboost.dask training) and :mod:`pipeline.model.crossval` builds on both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xgboost
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.model.train import (
    TrainConfig,
    _check_fit_input,
    _config,
    _positions,
    _resolve_device,
    _train,
    predict,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Climatology", "LinearModel", "PerTargetModel", "RandomForestModel", "fit_baselines"]


@dataclass(frozen=True)
class Climatology:
    """Per-layer mean of the training targets (transformed space); overall mean elsewhere.

    Attributes
    ----------
    means : dict of str to array (k,)
        Mean target vector per layer name.
    overall : array (k,)
        Mean target vector of all training rows (rows with no or an unseen layer).

    Examples
    --------
    >>> c = Climatology(means={"0-100m": np.array([1.0])}, overall=np.array([0.5]))
    >>> c(pd.DataFrame(index=range(2)), np.array(["0-100m", "100-500m"])).ravel().tolist()
    [1.0, 0.5]
    """

    means: dict[str, np.ndarray]
    overall: np.ndarray

    def __call__(self, X: pd.DataFrame, layer: np.ndarray | None = None) -> np.ndarray:
        """Predict the climatology of each row's layer, shape (n, k)."""
        out = np.tile(self.overall, (len(X), 1))
        if layer is not None:
            layer = np.asarray(layer).reshape(-1)
            for name, mean in self.means.items():
                out[layer == name] = mean
        return out


@dataclass(frozen=True)
class PerTargetModel:
    """One independent single-output booster per target, stacked column-wise."""

    boosters: tuple[xgboost.Booster, ...]

    def __call__(self, X: pd.DataFrame, layer: np.ndarray | None = None) -> np.ndarray:
        """Predict each target with its own booster, shape (n, k)."""
        return np.column_stack([predict(b, X)[:, 0] for b in self.boosters])

    @property
    def best_iterations(self) -> list[int]:
        """Best iteration of each target's booster."""
        return [int(b.attr("best_iteration")) for b in self.boosters]


@dataclass(frozen=True)
class RandomForestModel:
    """A fitted multi-output scikit-learn estimator over named features (a random forest)."""

    model: RandomForestRegressor | Pipeline
    features: tuple[str, ...]

    def __call__(self, X: pd.DataFrame, layer: np.ndarray | None = None) -> np.ndarray:
        """Predict every target, shape (n, k)."""
        out = self.model.predict(X[list(self.features)].to_numpy(dtype="float64"))
        return np.asarray(out, dtype="float64").reshape(len(X), -1)


#: Ridge penalty of the linear baseline, on standardised predictors (a light one: the
#: baseline is ordinary least squares, kept finite when predictors are collinear).
LINEAR_ALPHA = 1.0


@dataclass(frozen=True)
class LinearModel(RandomForestModel):
    """Ridge regression of every target on the standardised predictors (missing: mean)."""


Predictor = Callable[[pd.DataFrame, "np.ndarray | None"], np.ndarray]


def _fit_climatology(
    Y: pd.DataFrame, w: np.ndarray | None, layer: np.ndarray | None, rows: np.ndarray
) -> Climatology:
    values = Y.to_numpy(dtype="float64")[rows]
    weights = np.ones(rows.size) if w is None else w[rows]
    if weights.sum() <= 0:
        weights = np.ones(rows.size)
    overall = np.average(values, axis=0, weights=weights)
    means: dict[str, np.ndarray] = {}
    if layer is not None:
        lay = layer[rows]
        for name in pd.unique(lay):
            inside = lay == name
            if weights[inside].sum() > 0:
                means[str(name)] = np.average(values[inside], axis=0, weights=weights[inside])
    return Climatology(means=means, overall=overall)


def _fit_linear(
    X: pd.DataFrame, Y: pd.DataFrame, w: np.ndarray | None, rows: np.ndarray
) -> LinearModel:
    model = make_pipeline(
        SimpleImputer(strategy="mean", keep_empty_features=True),
        StandardScaler(),
        Ridge(alpha=LINEAR_ALPHA),
    )
    model.fit(
        X.iloc[rows].to_numpy(dtype="float64"),
        Y.to_numpy(dtype="float64")[rows],
        ridge__sample_weight=None if w is None else w[rows],
    )
    return LinearModel(model=model, features=tuple(str(c) for c in X.columns))


def _fit_forest(
    X: pd.DataFrame, Y: pd.DataFrame, w: np.ndarray | None, rows: np.ndarray, config: TrainConfig
) -> RandomForestModel:
    forest = RandomForestRegressor(
        n_estimators=config.rf_n_estimators,
        min_samples_leaf=config.rf_min_samples_leaf,
        n_jobs=-1,
        random_state=config.seed,
    )
    label = Y.to_numpy(dtype="float64")[rows]
    forest.fit(
        X.iloc[rows].to_numpy(dtype="float64"),
        label[:, 0] if label.shape[1] == 1 else label,
        sample_weight=None if w is None else w[rows],
    )
    return RandomForestModel(model=forest, features=tuple(str(c) for c in X.columns))


def _fit_baselines(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    w: np.ndarray | None,
    layer: np.ndarray | None,
    train: np.ndarray,
    valid: np.ndarray | None,
    config: TrainConfig,
    device: str,
    rounds: Sequence[int] | None = None,
    fit_rows: np.ndarray | None = None,
    boost_weight: np.ndarray | None = None,
) -> dict[str, Predictor]:
    """Fit each baseline on ``train`` (the early-stopped ones on ``fit_rows``)."""
    out: dict[str, Predictor] = {}
    for name in config.baselines:
        if name == "climatology":
            out[name] = _fit_climatology(Y, w, layer, train)
        elif name == "linear":
            out[name] = _fit_linear(X, Y, w, train)
        elif name == "per_target":
            boosters = tuple(
                _train(
                    client,
                    X,
                    Y.iloc[:, [j]],
                    w if boost_weight is None else boost_weight,
                    train if fit_rows is None else fit_rows,
                    valid,
                    config,
                    device,
                    None if rounds is None else rounds[j],
                )
                for j in range(Y.shape[1])
            )
            out[name] = PerTargetModel(boosters=boosters)
        elif name == "random_forest":
            out[name] = _fit_forest(X, Y, w, train, config)
    return out


def fit_baselines(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    *,
    train: np.ndarray,
    valid: np.ndarray | None = None,
    layer: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    config: TrainConfig | None = None,
) -> dict[str, Predictor]:
    """Fit the baselines of ``config.baselines`` on the same rows as the model.

    Parameters
    ----------
    client : distributed.Client
        Client of the cluster (the per-target boosters train there).
    X, Y, train, valid, weight, config
        As in :func:`pipeline.model.train.fit_model`.
    layer : array of str, optional
        Layer name of each row (for the climatology; overall mean without it).

    Returns
    -------
    dict of str to callable
        ``predictor(X, layer=None) -> array (n, k)`` per baseline name:
        ``"climatology"`` (:class:`Climatology`, weighted per-layer mean of the training
        rows), ``"linear"`` (:class:`LinearModel`, ridge on standardised predictors,
        missing values imputed with the training mean), ``"per_target"``
        (:class:`PerTargetModel`, one xgboost.dask model per
        target with the same hyperparameters, each early-stopped on ``valid``) and
        ``"random_forest"`` (:class:`RandomForestModel`, scikit-learn
        ``RandomForestRegressor``, multi-output, fitted in this process with
        ``n_jobs=-1``).

    See Also
    --------
    pipeline.model.train.fit_model : the model these are compared with.
    """
    config = _config(config)
    w, lay = _check_fit_input(X, Y, weight=weight, layer=layer)
    rows = _positions(train, len(X), "train")
    valid_rows = None if valid is None else _positions(valid, len(X), "valid")
    device = "cpu" if "per_target" not in config.baselines else _resolve_device(client, config)
    return _fit_baselines(client, X, Y, w, lay, rows, valid_rows, config, device)
