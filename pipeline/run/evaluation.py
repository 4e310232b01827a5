"""The train step's evaluation beyond the scores: CV variants, diagnostics, intervals.

:func:`resolve_split` turns ``split.block_deg: auto`` / ``split.buffer_km: auto`` into
numbers from the range of the targets' spatial autocorrelation; :func:`cv_variants`
builds the folds of the other cross-validations scored beside the spatial blocks (random
by cast, random by cruise where the casts name one, leave one basin out), all over the
same CV rows; :func:`evaluate_fit` computes everything ``metrics.json`` reports beside
the scores (per-layer skill, per-basin and per-block spread, block-bootstrap
comparisons with every baseline, residual autocorrelation, per-layer conformal
intervals and their conditional coverage and calibration curve, weak targets).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.fields.predict import envelope_of
from pipeline.model.basins import basin_of
from pipeline.model.crossval import CVResult
from pipeline.model.diagnostics import (
    bootstrap_difference,
    group_scores,
    layer_skill,
    residual_autocorrelation,
    variogram,
    variogram_range,
)
from pipeline.model.evaluate import score, target_covariance
from pipeline.model.intervals import (
    calibration_curve,
    coverage_report,
    cross_fold_coverage,
    distance_class,
    interval_bounds,
    mondrian_quantiles,
    nearest_km,
)
from pipeline.model.split import SplitConfig
from pipeline.model.split_variants import basin_folds, random_folds

__all__ = ["cv_variants", "evaluate_fit", "excess_over_ceiling", "resolve_split"]

logger = logging.getLogger(__name__)

#: Block-CV R² below which a target is flagged as without skill (the bar of the published
#: Rhizaria maps, there under random CV).
WEAK_R2 = 0.05

#: Bounds of an automatic block size (degrees).
AUTO_BLOCK_DEG = (2.0, 30.0)

#: Kilometres per degree of latitude.
KM_PER_DEG = 111.2


def _anomalies(y: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Targets minus their layer mean, standardised per target, averaged over targets."""
    out = np.array(y, dtype=float, copy=True)
    for name in np.unique(layer):
        rows = layer == name
        out[rows] -= out[rows].mean(axis=0)
    std = out.std(axis=0)
    return (out / np.where(std > 0, std, 1.0)).mean(axis=1)


def resolve_split(
    split: SplitConfig,
    y: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    layer: np.ndarray,
    *,
    say: Callable[[str], Any] | None = None,
) -> SplitConfig:
    """Replace ``auto`` block size and buffer by numbers from the autocorrelation range.

    The range is the practical range of an exponential variogram fitted to the targets'
    anomalies from their layer mean (standardised and averaged over targets; pooled over
    layers): beyond it two casts are about independent (Roberts et al. 2017). ``auto``
    blocks are that wide (in degrees of latitude, within :data:`AUTO_BLOCK_DEG`) and an
    ``auto`` buffer is the range itself. The choice looks at every row's target
    (including the test rows'): it sets the size of the blocks, not which rows fall in
    which set.

    Parameters
    ----------
    split : SplitConfig
        The run's split; returned unchanged without ``auto``.
    y : array, shape (n, k)
        Transformed targets.
    lat, lon, layer : array, shape (n,)
        Positions and layer of each row.
    say : callable, optional
        Echo of the run (the choice is printed).

    Returns
    -------
    SplitConfig
        With numeric ``block_deg`` and ``buffer_km``.
    """
    if split.block_deg != "auto" and split.buffer_km != "auto":
        return split
    z = _anomalies(np.asarray(y, dtype=float).reshape(len(lat), -1), np.asarray(layer))
    rng_km = variogram_range(variogram(z, lat, lon))
    if not np.isfinite(rng_km):
        rng_km = 1000.0
        logger.warning("split auto: no spatial structure found in the targets; range 1000 km")
    block = split.block_deg
    if block == "auto":
        block = float(np.clip(rng_km / KM_PER_DEG, *AUTO_BLOCK_DEG))
    buffer = split.buffer_km if split.buffer_km != "auto" else float(rng_km)
    if say is not None:
        say(
            f"  split auto: autocorrelation range {rng_km:.0f} km -> blocks of "
            f"{block:.3g} deg, buffer {buffer:.0f} km"
        )
    return dataclasses.replace(split, block_deg=float(block), buffer_km=float(buffer))


def cv_variants(
    folds: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    cast: np.ndarray,
    cruise: pd.Series | None,
    split: SplitConfig,
) -> dict[str, np.ndarray]:
    """Folds of the CV variants over the same CV rows as the block split.

    ``random``: whole casts dealt at random (a cast's layers share a fold);
    ``random_cruise``: whole cruises, when the rows name at least ``2 n_folds`` of them;
    ``basins``: leave one basin out (when the CV rows span two basins or more). The block
    split's test rows stay ``-1`` in every variant. Only the variants named in
    ``split.variants`` are made.

    Returns
    -------
    dict of str to array of int
        Variant name to folds, in that order.
    """
    cv = folds >= 0
    inner = dataclasses.replace(split, test_fraction=0.0)
    out: dict[str, np.ndarray] = {}
    base = np.full(folds.shape, -1, dtype=np.int64)
    if "random" in split.variants:
        rand = base.copy()
        rand[cv] = random_folds(int(cv.sum()), config=inner, groups=cast[cv])
        out["random"] = rand
    if cruise is not None and "random_cruise" in split.variants:
        names = cruise.astype(str).to_numpy()
        known = pd.notna(cruise).to_numpy() & (names != "") & (names != "nan")
        if known[cv].all() and len(set(names[cv])) >= 2 * split.n_folds:
            by_cruise = base.copy()
            by_cruise[cv] = random_folds(int(cv.sum()), config=inner, groups=names[cv])
            out["random_cruise"] = by_cruise
    if "basins" in split.variants and len(set(basin_of(lat[cv], lon[cv]).tolist())) >= 2:
        out["basins"] = basin_folds(lat, lon, folds)
    return out


def _extrapolating(x: pd.DataFrame, train: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows with a feature outside the training rows' envelope (NaN ignored)."""
    lo, hi = np.array(list(envelope_of(x.iloc[train]).values()), dtype=float).T
    values = x.iloc[rows].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return ((values < lo) | (values > hi)).any(axis=1)


def _fold_distances(folds: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Distance (km) of each CV row to the nearest training row of its fold (CV rows only)."""
    cv = np.flatnonzero(folds >= 0)
    out = np.empty(cv.size)
    for k in np.unique(folds[cv]):
        inside = folds[cv] == k
        train = cv[~inside]
        out[inside] = nearest_km(lat[cv[inside]], lon[cv[inside]], lat[train], lon[train])
    return out


def evaluate_fit(
    cv: CVResult,
    y: pd.DataFrame,
    folds: np.ndarray,
    *,
    lat: np.ndarray,
    lon: np.ndarray,
    layer: np.ndarray,
    blocks: np.ndarray,
    x: pd.DataFrame,
    targets: list[str],
    coverage: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Diagnostics of a cross-validated fit and its per-layer conformal quantiles.

    Parameters
    ----------
    cv : CVResult
        The block cross-validation with its baselines and test predictions.
    y : pandas.DataFrame
        Transformed targets of every row.
    folds : array of int
        The block split (``-1`` test rows).
    lat, lon, layer, blocks : array, shape (n,)
        Position, layer and spatial block of each row.
    x : pandas.DataFrame
        Predictors (for the extrapolation flag of the test rows).
    targets : list of str
        Target names.
    coverage : float
        Nominal coverage of the intervals.

    Returns
    -------
    quantiles : dict
        :func:`~pipeline.model.intervals.mondrian_quantiles` of the out-of-fold residuals.
    diagnostics : dict
        ``layer_skill``, ``groups``, ``comparisons``, ``residuals``, ``intervals``,
        ``weak_targets`` (see the module docstring).
    """
    test = folds == -1
    cvr = ~test
    obs = y.to_numpy(dtype=float)
    oof = cv.oof_arrays()
    pred_cv = oof["model"]
    pred_test = np.asarray(cv.test["model"])
    cov = target_covariance(obs[cvr])
    basin = basin_of(lat, lon)
    out: dict[str, Any] = {}

    skill: dict[str, Any] = {}
    if "climatology" in oof:
        skill["cv"] = layer_skill(
            obs[cvr], pred_cv, oof["climatology"], layer[cvr], targets=targets
        )
        if test.any():
            skill["test"] = layer_skill(
                obs[test], pred_test, cv.test["climatology"], layer[test], targets=targets
            )
    out["layer_skill"] = skill

    groups: dict[str, Any] = {
        "cv": {"basin": group_scores(obs[cvr], pred_cv, basin[cvr], targets=targets, cov=cov)}
    }
    if test.any():
        groups["test"] = {
            "basin": group_scores(obs[test], pred_test, basin[test], targets=targets, cov=cov),
            "block": group_scores(
                obs[test], pred_test, blocks[test], targets=targets, cov=cov, min_rows=5
            ),
        }
    out["groups"] = groups

    comparisons: dict[str, Any] = {}
    for name in oof:
        if name == "model":
            continue
        entry = {"cv": bootstrap_difference(obs[cvr], pred_cv, oof[name], blocks[cvr], cov=cov)}
        if test.any():
            entry["test"] = bootstrap_difference(
                obs[test], pred_test, cv.test[name], blocks[test], cov=cov
            )
        comparisons[name] = entry
    out["comparisons"] = comparisons

    out["residuals"] = residual_autocorrelation(
        obs[cvr] - pred_cv, lat[cvr], lon[cvr], layer[cvr], targets=targets
    )
    pooled = score(obs[cvr], pred_cv, targets=targets, cov=cov)
    out["weak_targets"] = {
        "threshold_r2": WEAK_R2,
        "block_cv_r2": pooled["r2"],
        "flagged": [t for t, r2 in pooled["r2"].items() if not (r2 >= WEAK_R2)],
    }

    cv_class = distance_class(_fold_distances(folds, lat, lon))
    quantiles = mondrian_quantiles(
        obs[cvr], pred_cv, layer[cvr], targets=targets, coverage=coverage, strata=cv_class
    )
    intervals: dict[str, Any] = {
        "method": "split-conformal per layer and distance to the nearest training cast "
        "(Mondrian) on out-of-fold residuals",
        "nominal": coverage,
        "n_calibration": quantiles["n"],
        "cv": cross_fold_coverage(
            obs[cvr],
            pred_cv,
            folds[cvr],
            layer[cvr],
            targets=targets,
            coverage=coverage,
            strata=cv_class,
            by={"layer": layer[cvr], "basin": basin[cvr], "distance": cv_class},
            blocks=blocks[cvr],
        ),
    }
    if test.any():
        km = nearest_km(lat[test], lon[test], lat[cvr], lon[cvr])
        test_class = distance_class(km)
        by = {
            "layer": layer[test],
            "basin": basin[test],
            "distance": test_class,
            "extrapolation": np.where(
                _extrapolating(x, np.flatnonzero(cvr), np.flatnonzero(test)), "outside", "inside"
            ),
        }
        lo, hi = interval_bounds(
            pred_test, layer[test], quantiles, targets=targets, strata=test_class
        )
        intervals["test"] = coverage_report(
            obs[test], lo, hi, targets=targets, by=by, blocks=blocks[test]
        )
        intervals["calibration"] = calibration_curve(
            obs[cvr],
            pred_cv,
            layer[cvr],
            obs[test],
            pred_test,
            layer[test],
            targets=targets,
            by={"layer": layer[test], "basin": basin[test]},
            strata_cal=cv_class,
            strata_test=test_class,
        )
    out["intervals"] = intervals
    return quantiles, out


def excess_over_ceiling(model: Mapping[str, Any], ceiling: Mapping[str, Any]) -> dict[str, Any]:
    """Return the model's test error over the noise ceiling's as MSE ratios (1: at it).

    A ceiling over some of the targets only (``ceiling["targets"]``) is compared with the
    model's MSE over the same targets (``model_mse``); its ``mv_mse`` weighs another set of
    targets, so ``mv_mse_ratio`` is NaN then.

    Examples
    --------
    >>> excess_over_ceiling({"test": {"mse": 0.25, "mv_mse": 0.5}},
    ...                     {"test": {"mse": 0.125, "mv_mse": 0.4}})
    {'mse_ratio': 2.0, 'mv_mse_ratio': 1.25}
    >>> model = {"test": {"mse": 0.3, "mse_by_target": {"a": 0.2, "b": 0.4}}}
    >>> excess_over_ceiling(model, {"targets": ["a"], "test": {"mse": 0.1}})
    {'mse_ratio': 2.0, 'mv_mse_ratio': nan, 'targets': ['a'], 'model_mse': 0.2}
    """
    test = dict(model.get("test") or {})
    subset = ceiling.get("targets")
    if subset:
        test = {"mse": float(np.mean([test["mse_by_target"][t] for t in subset]))}
    out = {}
    for key in ("mse", "mv_mse"):
        m = test.get(key, math.nan)
        c = (ceiling.get("test") or {}).get(key, math.nan)
        out[f"{key}_ratio"] = float(m / c) if c and np.isfinite(c) and c > 0 else math.nan
    if subset:
        out["targets"], out["model_mse"] = list(subset), test["mse"]
    return out
