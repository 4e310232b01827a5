"""Evaluation: MSE, multivariate MSE, R² and bias per target, per fold, and intervals.

Everything here is scored in the *transformed* space the model is trained in (e.g.
``log10(c + epsilon)``, see :func:`pipeline.targets.particles.transform`): a target array ``y`` is
``(n, k)``, one column per target variable. Pure numpy/pandas; no dask.

Definitions (``r = y_obs - y_pred``, optional row weights ``w`` normalised to sum 1,
unweighted means when ``w`` is None):

``mse``
    Mean over targets of the per-target MSE, ``mean_j sum_i w_i r_ij**2``.
``r2`` (per target)
    ``1 - sum_i w_i r_ij**2 / sum_i w_i (y_ij - ybar_j)**2`` (``ybar`` weighted). Zero for
    predicting the observed mean, one for a perfect prediction, NaN for a constant target.
``mv_mse`` (multivariate MSE)
    ``sum_i w_i r_i^T S^+ r_i / rank(S)``: the squared Mahalanobis norm of each row's
    residual vector under the covariance ``S`` of the observed targets, averaged over rows
    and divided by the number of target dimensions. ``S`` is the (weighted, ``ddof=0``)
    covariance of the scored rows' observations unless ``cov=`` fixes it (e.g. from the
    training data, to compare scores across folds on one scale). ``S^+`` is the
    pseudo-inverse, so a constant or redundant target is dropped from the norm rather than
    dividing by zero, and ``rank(S)`` replaces ``k``. It is scale-free (invariant to any
    invertible linear recombination of the targets, so to units and to the transform's
    scale) and, with ``S`` from the scored rows, equals exactly 1 for predicting the
    observed mean whatever the correlation of the targets (``trace(S^+ S) = rank(S)``).
    Unlike ``mse`` it does not count twice an error shared by strongly correlated
    targets (two size classes moving together), and it weighs an error against the
    natural spread of the target it hits. This is the multivariate generalisation of
    ``1 - R²`` (Mahalanobis-standardised MSE); ``1 - mv_mse`` is a multivariate R².
``bias`` (per target)
    ``sum_i w_i (pred_ij - obs_ij)``: positive when the model over-predicts.

Intervals are split-conformal (Vovk et al. 2005; Lei et al. 2018): on calibration rows
(out-of-fold predictions) take the residual quantiles with the finite-sample correction;
``pred + q_lo, pred + q_hi`` then covers a new observation with probability at least
``coverage`` when the rows are exchangeable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "interval_coverage",
    "residual_quantiles",
    "score",
    "score_folds",
    "target_covariance",
]

logger = logging.getLogger(__name__)

#: Scores aggregated over folds by :func:`score_folds`.
FOLD_SUMMARY_KEYS: tuple[str, ...] = ("mse", "mv_mse", "r2_mean")


def _as_2d(values: Any, name: str) -> np.ndarray:
    """Return ``values`` as a float (n, k) array (a 1-D array is one target)."""
    array = np.asarray(values, dtype="float64")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a (rows, targets) array, got shape {array.shape}.")
    return array


def _target_names(y_true: Any, k: int, targets: Sequence[str] | None) -> list[str]:
    if targets is not None:
        names = [str(t) for t in targets]
    elif isinstance(y_true, pd.DataFrame):
        names = [str(c) for c in y_true.columns]
    else:
        names = [f"y{j}" for j in range(k)]
    if len(names) != k:
        raise ValueError(f"targets: {len(names)} name(s) {names!r} for {k} target column(s).")
    return names


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    obs = _as_2d(y_true, "y_true")
    pred = _as_2d(y_pred, "y_pred")
    if obs.shape != pred.shape:
        raise ValueError(
            f"y_true has shape {obs.shape} but y_pred has shape {pred.shape}; "
            "pass one prediction per observed row and target, in the same order."
        )
    if not np.isfinite(obs).all():
        raise ValueError(
            "y_true holds NaN or infinite values; score only rows with observations "
            "(transform concentrations with an epsilon so zeros stay finite)."
        )
    return obs, pred


def _weights(weight: Any, n: int) -> np.ndarray:
    if weight is None:
        return np.full(n, 1.0 / max(n, 1))
    w = np.asarray(weight, dtype="float64").reshape(-1)
    if w.shape != (n,):
        raise ValueError(f"weight has {w.size} value(s) for {n} row(s).")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weight must be finite, non-negative and not all zero.")
    return w / w.sum()


def target_covariance(y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Covariance (``ddof=0``) of the targets for ``mv_mse``; NaN with too few rows.

    With no more rows than targets the covariance is singular in directions the rows
    never varied in, and ``mv_mse`` would divide residuals by near-zero variances (826
    on a 10-row, 10-target run): it is then undefined, and every ``mv_mse`` scored with
    this covariance is NaN (printed "-").

    Examples
    --------
    >>> target_covariance(np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])).round(3).tolist()
    [[2.667, 0.667], [0.667, 0.667]]
    >>> bool(np.isnan(target_covariance(np.ones((2, 2)))).all())
    True
    """
    y = np.asarray(y, dtype="float64").reshape(len(y), -1)
    k = y.shape[1]
    if len(y) <= k:
        return np.full((k, k), np.nan)
    return np.atleast_2d(np.cov(y.T, aweights=weight, bias=True))


def _mv_mse(resid: np.ndarray, obs: np.ndarray, w: np.ndarray, cov: Any) -> float:
    k = obs.shape[1]
    if cov is None:
        cov = target_covariance(obs, w)  # NaN with too few rows: mv_mse is then NaN
    cov = np.atleast_2d(np.asarray(cov, dtype="float64"))
    if cov.shape != (k, k):
        raise ValueError(f"cov has shape {cov.shape}; expected ({k}, {k}) for {k} target(s).")
    if not np.isfinite(cov).all():
        return math.nan
    rank = int(np.linalg.matrix_rank(cov, hermitian=True))
    if rank == 0:
        return math.nan
    inverse = np.linalg.pinv(cov, hermitian=True)
    norms = np.einsum("ij,jk,ik->i", resid, inverse, resid)
    return float(w @ norms / rank)


def score(
    y_true: np.ndarray | pd.DataFrame,
    y_pred: np.ndarray | pd.DataFrame,
    *,
    targets: Sequence[str] | None = None,
    weight: np.ndarray | None = None,
    cov: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score predictions of all targets jointly (transformed space).

    Parameters
    ----------
    y_true, y_pred : array or DataFrame, shape (n, k)
        Observed and predicted targets, same rows and column order (1-D is one target).
    targets : sequence of str, optional
        Target names (default: ``y_true``'s columns, else ``y0, y1, …``).
    weight : array, shape (n,), optional
        Non-negative row weights (e.g. the volume sampled, L); unweighted when None.
    cov : array, shape (k, k), optional
        Covariance of the targets for ``mv_mse``; default: that of ``y_true``.

    Returns
    -------
    dict
        ``mse``, ``mv_mse``, ``r2`` ({target: float}), ``r2_mean``, ``bias``
        ({target: mean pred - obs}), ``mse_by_target`` ({target: float}) and ``n``.
        The definitions are in the module docstring.

    Raises
    ------
    ValueError
        Shapes differ, ``y_true`` is not finite, or weights are invalid.

    See Also
    --------
    score_folds : the same per cross-validation fold, with mean and spread.

    Examples
    --------
    >>> y = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])
    >>> s = score(y, y + [0.5, 0.0], targets=["a", "b"])
    >>> s["mse_by_target"], s["bias"], s["r2"]["b"]
    ({'a': 0.25, 'b': 0.0}, {'a': 0.5, 'b': 0.0}, 1.0)
    >>> round(score(y, np.tile(y.mean(axis=0), (3, 1)))["mv_mse"], 12)
    1.0
    """
    obs, pred = _check_pair(y_true, y_pred)
    n, k = obs.shape
    names = _target_names(y_true, k, targets)
    w = _weights(weight, n)
    resid = obs - pred
    mse_j = w @ resid**2
    var_j = w @ (obs - w @ obs) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        r2_j = np.where(var_j > 0, 1.0 - mse_j / np.where(var_j > 0, var_j, 1.0), np.nan)
    bias_j = w @ (pred - obs)
    return {
        "mse": float(mse_j.mean()) if k else math.nan,
        "mv_mse": _mv_mse(resid, obs, w, cov) if n else math.nan,
        "r2": dict(zip(names, map(float, r2_j), strict=True)),
        "r2_mean": float(np.nanmean(r2_j)) if np.isfinite(r2_j).any() else math.nan,
        "bias": dict(zip(names, map(float, bias_j), strict=True)),
        "mse_by_target": dict(zip(names, map(float, mse_j), strict=True)),
        "n": int(n),
    }


def score_folds(
    y_true: np.ndarray | pd.DataFrame,
    y_pred: np.ndarray | pd.DataFrame,
    folds: np.ndarray,
    *,
    targets: Sequence[str] | None = None,
    weight: np.ndarray | None = None,
    cov: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score out-of-fold predictions per fold, with the mean and spread over folds.

    Parameters
    ----------
    y_true, y_pred : array or DataFrame, shape (n, k)
        Observed targets and out-of-fold predictions of the same rows.
    folds : array of int, shape (n,)
        Fold of each row; negative values (the test set) are left out.
    targets, weight, cov
        As in :func:`score` (``cov`` fixes one ``mv_mse`` scale for every fold).

    Returns
    -------
    dict
        ``folds``: a list of :func:`score` results, one per fold in ascending order, each
        with its ``fold`` number; ``mean`` and ``std`` (``ddof=0``) over folds of ``mse``,
        ``mv_mse`` and ``r2_mean``.

    See Also
    --------
    score : the scores of one set of rows.

    Examples
    --------
    >>> y = np.array([0.0, 1.0, 2.0, 3.0])
    >>> out = score_folds(y, y + [0.0, 0.0, 1.0, 1.0], np.array([0, 0, 1, 1]))
    >>> [f["mse"] for f in out["folds"]], out["mean"]["mse"], out["std"]["mse"]
    ([0.0, 1.0], 0.5, 0.5)
    """
    obs, pred = _check_pair(y_true, y_pred)
    folds = np.asarray(folds).reshape(-1)
    if folds.shape != (obs.shape[0],):
        raise ValueError(f"folds has {folds.size} value(s) for {obs.shape[0]} row(s).")
    names = _target_names(y_true, obs.shape[1], targets)
    w = None if weight is None else np.asarray(weight, dtype="float64").reshape(-1)
    per_fold = []
    for fold in np.unique(folds[folds >= 0]):
        rows = folds == fold
        result = score(
            obs[rows], pred[rows], targets=names, weight=None if w is None else w[rows], cov=cov
        )
        per_fold.append({"fold": int(fold), **result})
    summary = {
        key: np.array([f[key] for f in per_fold], dtype="float64") for key in FOLD_SUMMARY_KEYS
    }
    return {
        "folds": per_fold,
        "mean": {k: float(v.mean()) if v.size else math.nan for k, v in summary.items()},
        "std": {k: float(v.std()) if v.size else math.nan for k, v in summary.items()},
    }


def residual_quantiles(
    y_true: np.ndarray | pd.DataFrame,
    y_pred: np.ndarray | pd.DataFrame,
    *,
    targets: Sequence[str] | None = None,
    coverage: float = 0.9,
) -> dict[str, tuple[float, float]]:
    """Split-conformal residual quantiles per target (finite-sample corrected).

    With ``n`` calibration residuals ``r = obs - pred`` sorted ascending and
    ``alpha = 1 - coverage``, ``q_lo`` is the ``floor((n + 1) alpha / 2)``-th and
    ``q_hi`` the ``ceil((n + 1) (1 - alpha / 2))``-th smallest residual (``-inf``/``inf``
    when that rank falls outside ``1..n``). Each tail then misses a new exchangeable row
    with probability at most ``alpha / 2``, so ``[pred + q_lo, pred + q_hi]`` covers it
    with probability at least ``coverage``.

    Parameters
    ----------
    y_true, y_pred : array or DataFrame, shape (n, k)
        Calibration observations and their out-of-fold (never in-sample) predictions.
    targets : sequence of str, optional
        Target names (default: ``y_true``'s columns, else ``y0, y1, …``).
    coverage : float
        Nominal coverage, in (0, 1).

    Returns
    -------
    dict of str to (float, float)
        ``(q_lo, q_hi)`` per target: add them to a prediction for its interval.

    See Also
    --------
    interval_coverage : the fraction of observations inside such intervals.

    Examples
    --------
    >>> r = np.arange(1.0, 20.0)  # residuals 1..19, n = 19
    >>> residual_quantiles(r, np.zeros(19), coverage=0.8)
    {'y0': (2.0, 18.0)}
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage: {coverage!r} must lie in (0, 1), e.g. 0.9.")
    obs, pred = _check_pair(y_true, y_pred)
    n, k = obs.shape
    names = _target_names(y_true, k, targets)
    alpha = 1.0 - coverage
    rank_lo = math.floor((n + 1) * alpha / 2.0 + 1e-9)
    rank_hi = math.ceil((n + 1) * (1.0 - alpha / 2.0) - 1e-9)
    resid = np.sort(obs - pred, axis=0)
    out = {}
    for j, name in enumerate(names):
        lo = float(resid[rank_lo - 1, j]) if rank_lo >= 1 else -math.inf
        hi = float(resid[rank_hi - 1, j]) if rank_hi <= n else math.inf
        out[name] = (lo, hi)
    if rank_lo < 1 or rank_hi > n:
        logger.info(
            "conformal: %d calibration row(s) too few for coverage %g; unbounded interval",
            n,
            coverage,
        )
    return out


def interval_coverage(
    y_true: np.ndarray | pd.DataFrame,
    lower: np.ndarray | pd.DataFrame,
    upper: np.ndarray | pd.DataFrame,
    *,
    targets: Sequence[str] | None = None,
) -> dict[str, float]:
    """Fraction of observations inside ``[lower, upper]``, per target.

    Parameters
    ----------
    y_true, lower, upper : array or DataFrame, shape (n, k)
        Observations and interval bounds (e.g. ``pred + q_lo``, ``pred + q_hi``).
    targets : sequence of str, optional
        Target names (default: ``y_true``'s columns, else ``y0, y1, …``).

    Returns
    -------
    dict of str to float
        Empirical coverage per target.

    See Also
    --------
    residual_quantiles : conformal bounds to build the intervals from.

    Examples
    --------
    >>> interval_coverage(np.array([0.0, 1.0, 5.0, 2.0]), np.zeros(4), np.full(4, 2.0))
    {'y0': 0.75}
    """
    obs, low = _check_pair(y_true, lower)
    _, high = _check_pair(y_true, upper)
    names = _target_names(y_true, obs.shape[1], targets)
    inside = (obs >= low) & (obs <= high)
    return dict(zip(names, map(float, inside.mean(axis=0)), strict=True))
