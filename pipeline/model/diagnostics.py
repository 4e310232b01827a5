"""Diagnostics of a fit beyond one score: skill by layer, group spread, bootstrap, autocorrelation.

Everything is scored in the transformed target space, like :mod:`pipeline.model.evaluate`,
and is pure numpy/scipy on in-memory arrays (one row per cast and layer).

``layer_skill``
    Per layer and target, ``1 - MSE_model / MSE_climatology``: the share of the error of
    the per-layer climatology the model removes (0 for the climatology, 1 for perfect).
``group_scores``
    :func:`~pipeline.model.evaluate.score` per group (basin, spatial block) with at least
    ``min_rows`` rows, and the spread of the plain MSE over the groups.
``bootstrap_difference``
    A block bootstrap (Künsch 1989; resampling whole spatial blocks, so neighbouring
    rows stay together) of the difference model - baseline of the plain MSE and of
    ``mv_mse``: the observed difference and its percentile interval. A model *beats* a
    baseline only where the whole interval lies below zero.
``morans_i`` / ``variogram``
    Moran's I of residuals with binary weights (pairs closer than ``band_km``), and the
    empirical semivariogram ``gamma(h) = mean (r_i - r_j)^2 / 2`` over great-circle
    distance bins; :func:`variogram_range` fits an exponential model
    ``nugget + sill (1 - exp(-3 h / range))`` and returns its practical range (km), the
    distance beyond which residuals are about independent (Roberts et al. 2017 size
    blocks from it).

Pairwise distances are computed on at most :data:`MAX_PAIR_ROWS` rows (a seeded subsample
beyond), so the cost is bounded whatever the size of the archive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from pipeline.geo import EARTH_RADIUS_KM
from pipeline.model.evaluate import score, target_covariance

__all__ = [
    "bootstrap_difference",
    "group_scores",
    "layer_skill",
    "morans_i",
    "residual_autocorrelation",
    "row_losses",
    "variogram",
    "variogram_range",
]

#: Rows beyond which pairwise statistics use a seeded subsample.
MAX_PAIR_ROWS = 2500

#: Distance bins (km, upper edges) of the empirical variogram.
VARIOGRAM_BINS_KM: tuple[float, ...] = (
    100,
    250,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    4000,
    5000,
    7500,
    10000,
)


def row_losses(
    y_true: np.ndarray, y_pred: np.ndarray, *, cov: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-row losses whose means are the plain MSE and ``mv_mse``.

    Parameters
    ----------
    y_true, y_pred : array, shape (n, k)
        Observations and predictions (transformed space).
    cov : array, shape (k, k), optional
        Covariance fixing the ``mv_mse`` scale (default: that of ``y_true``).

    Returns
    -------
    dict
        ``mse``: mean over targets of the squared residual of each row; ``mv_mse``: the
        row's squared Mahalanobis norm divided by the rank of ``cov``.

    Examples
    --------
    >>> row_losses(np.array([[0.0, 0.0]]), np.array([[1.0, 3.0]]), cov=np.eye(2))["mse"]
    array([5.])
    """
    obs = np.asarray(y_true, dtype="float64").reshape(len(y_true), -1)
    pred = np.asarray(y_pred, dtype="float64").reshape(obs.shape)
    resid = obs - pred
    if cov is None:
        cov = target_covariance(obs)
    cov = np.atleast_2d(np.asarray(cov, dtype="float64"))
    if not np.isfinite(cov).all():  # too few rows for a covariance: mv_mse undefined
        return {"mse": (resid**2).mean(axis=1), "mv_mse": np.full(len(obs), np.nan)}
    rank = max(int(np.linalg.matrix_rank(cov, hermitian=True)), 1)
    inverse = np.linalg.pinv(cov, hermitian=True)
    return {
        "mse": (resid**2).mean(axis=1),
        "mv_mse": np.einsum("ij,jk,ik->i", resid, inverse, resid) / rank,
    }


def layer_skill(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_clim: np.ndarray,
    layer: Sequence[str],
    *,
    targets: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Skill against the climatology, ``1 - MSE / MSE_clim``, per layer and target.

    Parameters
    ----------
    y_true, y_pred, y_clim : array, shape (n, k)
        Observations, model predictions and climatology predictions of the same rows.
    layer : sequence of str, shape (n,)
        Layer of each row.
    targets : sequence of str
        Target names (columns).

    Returns
    -------
    dict
        ``{layer: {target: skill, "mean": mean skill}}``; NaN where the climatology is
        exact.

    Examples
    --------
    >>> y = np.array([[0.0], [2.0]])
    >>> layer_skill(y, y * 0.5 + 0.5, np.ones((2, 1)), ["a", "a"], targets=["c"])
    {'a': {'c': 0.75, 'mean': 0.75}}
    """
    obs, pred, clim = (
        np.asarray(a, dtype="float64").reshape(len(y_true), -1) for a in (y_true, y_pred, y_clim)
    )
    layer = np.asarray(layer).astype(str)
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(layer.tolist()):
        rows = layer == name
        mse = ((obs[rows] - pred[rows]) ** 2).mean(axis=0)
        ref = ((obs[rows] - clim[rows]) ** 2).mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            skill = np.where(ref > 0, 1.0 - mse / np.where(ref > 0, ref, 1.0), np.nan)
        entry = {t: float(v) for t, v in zip(targets, skill, strict=True)}
        entry["mean"] = float(np.nanmean(skill)) if np.isfinite(skill).any() else math.nan
        out[str(name)] = entry
    return out


def group_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[Any],
    *,
    targets: Sequence[str],
    cov: np.ndarray | None = None,
    min_rows: int = 10,
) -> dict[str, Any]:
    """Scores per group (basin, block) and the spread of the plain MSE over groups.

    Parameters
    ----------
    y_true, y_pred : array, shape (n, k)
        Observations and predictions.
    groups : sequence, shape (n,)
        Group label of each row.
    targets : sequence of str
        Target names.
    cov : array, optional
        Fixed ``mv_mse`` scale (as in :func:`~pipeline.model.evaluate.score`).
    min_rows : int
        Groups with fewer rows are counted but not scored.

    Returns
    -------
    dict
        ``groups``: ``{label: {"n", "mse", "mv_mse", "r2_mean"}}`` for groups of at least
        ``min_rows`` rows; ``spread``: ``mean``, ``std``, ``min``, ``max`` of their plain
        MSE; ``n_small``: groups left out.
    """
    obs = np.asarray(y_true, dtype="float64").reshape(len(y_true), -1)
    pred = np.asarray(y_pred, dtype="float64").reshape(obs.shape)
    labels = np.asarray(groups).astype(str)
    scored: dict[str, dict[str, float]] = {}
    small = 0
    for name in sorted(set(labels.tolist())):
        rows = labels == name
        if rows.sum() < min_rows:
            small += 1
            continue
        s = score(obs[rows], pred[rows], targets=targets, cov=cov)
        scored[name] = {"n": int(rows.sum()), **{k: s[k] for k in ("mse", "mv_mse", "r2_mean")}}
    mses = np.array([g["mse"] for g in scored.values()])
    spread = (
        {
            "mean": float(mses.mean()),
            "std": float(mses.std()),
            "min": float(mses.min()),
            "max": float(mses.max()),
        }
        if mses.size
        else {}
    )
    return {"groups": scored, "spread": spread, "n_small": small, "min_rows": min_rows}


def bootstrap_difference(
    y_true: np.ndarray,
    y_model: np.ndarray,
    y_base: np.ndarray,
    blocks: Sequence[Any],
    *,
    cov: np.ndarray | None = None,
    n_boot: int = 2000,
    coverage: float = 0.9,
    seed: int = 0,
) -> dict[str, dict[str, float | bool]]:
    """Block-bootstrap interval of the difference model - baseline (plain MSE and mv_mse).

    Whole blocks are resampled with replacement ``n_boot`` times; each replicate's
    difference is the mean over its rows of the per-row loss difference
    (:func:`row_losses`). The interval is the percentile interval of the replicates.

    Parameters
    ----------
    y_true, y_model, y_base : array, shape (n, k)
        Observations and the predictions of the model and of the baseline.
    blocks : sequence, shape (n,)
        Spatial block of each row (the resampling unit).
    cov : array, optional
        Fixed ``mv_mse`` scale.
    n_boot : int
        Bootstrap replicates.
    coverage : float
        Interval coverage (0.9: the 5th and 95th percentiles).
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        For ``mse`` and ``mv_mse``: ``diff`` (observed, negative when the model is
        better), ``lo``, ``hi`` and ``beats`` (True when ``hi < 0``: the model beats the
        baseline at this confidence), ``worse`` (True when ``lo > 0``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(400, 1))
    >>> out = bootstrap_difference(y, y * 0.9, np.zeros_like(y), np.arange(400) // 10)
    >>> out["mse"]["beats"], out["mse"]["hi"] < 0
    (True, True)
    """
    obs = np.asarray(y_true, dtype="float64").reshape(len(y_true), -1)
    a = row_losses(obs, y_model, cov=cov)
    b = row_losses(obs, y_base, cov=cov)
    _, block_of = np.unique(np.asarray(blocks).astype(str), return_inverse=True)
    n_blocks = int(block_of.max()) + 1 if block_of.size else 0
    rng = np.random.default_rng(seed)
    counts = np.bincount(block_of, minlength=n_blocks).astype(float)
    alpha = (1.0 - coverage) / 2.0
    out: dict[str, dict[str, float | bool]] = {}
    draws = rng.integers(0, n_blocks, size=(n_boot, n_blocks)) if n_blocks else None
    for key in ("mse", "mv_mse"):
        diff = a[key] - b[key]
        sums = np.bincount(block_of, weights=diff, minlength=n_blocks)
        if draws is None:
            out[key] = {
                "diff": math.nan,
                "lo": math.nan,
                "hi": math.nan,
                "beats": False,
                "worse": False,
            }
            continue
        reps = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
        lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
        out[key] = {
            "diff": float(diff.mean()),
            "lo": float(lo),
            "hi": float(hi),
            "beats": bool(hi < 0),
            "worse": bool(lo > 0),
        }
    return out


def _subsample(n: int, seed: int) -> np.ndarray:
    if n <= MAX_PAIR_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MAX_PAIR_ROWS, replace=False))


def _distances_km(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle distance matrix (km)."""
    phi, lam = np.radians(lat), np.radians(lon)
    dphi = phi[:, None] - phi[None, :]
    dlam = lam[:, None] - lam[None, :]
    h = np.sin(dphi / 2) ** 2 + np.cos(phi)[:, None] * np.cos(phi)[None, :] * np.sin(dlam / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def morans_i(
    values: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    band_km: float = 1000.0,
    seed: int = 0,
) -> float:
    """Moran's I of ``values`` with binary weights for pairs closer than ``band_km``.

    Near 0 (``-1 / (n - 1)``) for independent values, towards 1 when neighbours are
    alike. NaN when no pair is close enough.

    Examples
    --------
    >>> lat = np.repeat(np.arange(-60.0, 61.0, 5.0), 4)
    >>> lon = np.tile([0.0, 2.0, 90.0, 92.0], 25)
    >>> round(morans_i(lat, lat, lon, band_km=300), 2)   # a smooth gradient
    1.0
    """
    rows = _subsample(len(values), seed)
    x = np.asarray(values, dtype="float64")[rows]
    d = _distances_km(
        np.asarray(lat, dtype="float64")[rows], np.asarray(lon, dtype="float64")[rows]
    )
    w = (d < band_km) & ~np.eye(rows.size, dtype=bool)
    if not w.any():
        return math.nan
    z = x - x.mean()
    denom = (z**2).sum()
    if denom <= 0:
        return math.nan
    return float(rows.size / w.sum() * (z @ (w @ z)) / denom)


def variogram(
    values: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    bins_km: Sequence[float] = VARIOGRAM_BINS_KM,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Empirical semivariogram over great-circle distance bins.

    Returns
    -------
    dict
        ``distance_km`` (mean pair distance per bin), ``gamma`` (semivariance) and
        ``pairs`` (pair count); bins without pairs are dropped.
    """
    rows = _subsample(len(values), seed)
    x = np.asarray(values, dtype="float64")[rows]
    d = _distances_km(
        np.asarray(lat, dtype="float64")[rows], np.asarray(lon, dtype="float64")[rows]
    )
    iu = np.triu_indices(rows.size, k=1)
    dist, sq = d[iu], 0.5 * (x[iu[0]] - x[iu[1]]) ** 2
    which = np.searchsorted(np.asarray(bins_km, dtype=float), dist, side="right")
    out: dict[str, list[float]] = {"distance_km": [], "gamma": [], "pairs": []}
    for b in range(len(bins_km)):
        inside = which == b
        if inside.any():
            out["distance_km"].append(float(dist[inside].mean()))
            out["gamma"].append(float(sq[inside].mean()))
            out["pairs"].append(float(inside.sum()))
    return out


def _exponential(h: np.ndarray, nugget: float, sill: float, rng_km: float) -> np.ndarray:
    return nugget + sill * (1.0 - np.exp(-3.0 * h / rng_km))


def variogram_range(vario: Mapping[str, Sequence[float]]) -> float:
    """Practical range (km) of an exponential model fitted to an empirical variogram.

    Weighted by pair counts; NaN when the fit fails or the variogram is flat (no
    spatial structure: the nugget holds the whole variance).

    Examples
    --------
    >>> h = np.array([100.0, 300, 600, 1000, 2000, 4000])
    >>> v = {"distance_km": h, "gamma": 0.1 + 1.0 * (1 - np.exp(-3 * h / 1500)),
    ...      "pairs": np.full(6, 100.0)}
    >>> round(variogram_range(v))
    1500
    """
    h = np.asarray(vario["distance_km"], dtype=float)
    g = np.asarray(vario["gamma"], dtype=float)
    pairs = np.asarray(vario["pairs"], dtype=float)
    if h.size < 3 or not np.isfinite(g).all() or g.max() <= 0:
        return math.nan
    try:
        params, _ = curve_fit(
            _exponential,
            h,
            g,
            p0=(g.min(), max(g.max() - g.min(), 1e-12), float(np.median(h))),
            sigma=1.0 / np.sqrt(np.maximum(pairs, 1.0)),
            bounds=([0.0, 0.0, 1.0], [np.inf, np.inf, 40000.0]),
            maxfev=5000,
        )
    except (RuntimeError, ValueError):
        return math.nan
    nugget, sill, rng_km = params
    if sill <= 0.05 * (nugget + sill):
        return math.nan
    return float(rng_km)


def residual_autocorrelation(
    resid: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    layer: Sequence[str],
    *,
    targets: Sequence[str],
    band_km: float = 1000.0,
) -> dict[str, Any]:
    """Moran's I per layer and target, and a variogram with its range per layer.

    The variogram of a layer is that of its residuals standardised per target and
    averaged over targets (one spatial structure per layer).

    Parameters
    ----------
    resid : array, shape (n, k)
        Out-of-fold residuals (observed - predicted).
    lat, lon : array, shape (n,)
        Positions of the rows.
    layer : sequence of str
        Layer of each row.
    targets : sequence of str
        Target names.
    band_km : float
        Neighbour distance of Moran's I.

    Returns
    -------
    dict
        ``{layer: {"morans_i": {target: I, "mean": I}, "variogram": {...},
        "range_km": float, "n": int}}`` and ``band_km``.
    """
    r = np.asarray(resid, dtype="float64").reshape(len(resid), -1)
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    layer = np.asarray(layer).astype(str)
    out: dict[str, Any] = {"band_km": band_km, "layers": {}}
    for name in dict.fromkeys(layer.tolist()):
        rows = np.flatnonzero(layer == name)
        part = r[rows]
        mi = {
            t: morans_i(part[:, j], lat[rows], lon[rows], band_km=band_km)
            for j, t in enumerate(targets)
        }
        finite = [v for v in mi.values() if np.isfinite(v)]
        mi["mean"] = float(np.mean(finite)) if finite else math.nan
        std = part.std(axis=0)
        z = (part / np.where(std > 0, std, 1.0)).mean(axis=1)
        vario = variogram(z, lat[rows], lon[rows])
        out["layers"][str(name)] = {
            "n": int(rows.size),
            "morans_i": mi,
            "variogram": vario,
            "range_km": variogram_range(vario),
        }
    return out
