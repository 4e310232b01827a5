"""Prediction intervals calibrated per layer, and their coverage where it matters.

A split-conformal interval (:func:`pipeline.model.evaluate.residual_quantiles`) covers a
new row with the nominal probability *on average* over rows like the calibration rows.
Residuals in the deep layer or in a poorly sampled basin are wider than the average, so
a single quantile per target under-covers exactly there. :func:`mondrian_quantiles`
calibrates one quantile pair per target *and layer* (Mondrian conformal prediction,
Vovk et al. 2005, ch. 4: exchangeability within each category), falling back to the
pooled quantiles for a layer with fewer than ``min_rows`` calibration rows.

:func:`coverage_report` measures the coverage of held-out rows overall, jointly over all
targets, and conditionally: per layer, basin, distance to the nearest training cast and
extrapolation flag; :func:`calibration_curve` repeats it at several nominal levels.

The test blocks are a handful of regions, and with spatially correlated errors their
coverage says more about those regions than about the method: on a realistic demo world
a layer's ~100 test rows come from 5-10 blocks. :func:`cross_fold_coverage` therefore also
measures it on every cross-validation row (cross-conformal, Vovk 2015): each fold's rows
get the quantiles calibrated on the other folds' residuals only, so each row is held out
from its own calibration, and the check spans all blocks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.neighbors import BallTree

from pipeline.geo import EARTH_RADIUS_KM
from pipeline.model.evaluate import residual_quantiles

__all__ = [
    "DISTANCE_BINS_KM",
    "LEVELS",
    "calibration_curve",
    "coverage_report",
    "cross_fold_coverage",
    "distance_class",
    "interval_bounds",
    "mondrian_quantiles",
    "nearest_km",
]

#: Nominal levels of the calibration curve.
LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

#: Upper edges (km) of the distance-to-the-nearest-training-cast classes.
DISTANCE_BINS_KM: tuple[float, ...] = (250.0, 500.0, 1000.0)

Quantiles = dict[str, tuple[float, float]]


def mondrian_quantiles(
    y_cal: np.ndarray,
    pred_cal: np.ndarray,
    groups: Sequence[Any],
    *,
    targets: Sequence[str],
    coverage: float = 0.9,
    min_rows: int = 30,
    strata: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Conformal residual quantiles per group (layer) and target, with a pooled fallback.

    With ``strata`` (e.g. the distance class of each row to the nearest training cast),
    each ``"<group>|<stratum>"`` with at least ``min_rows`` rows gets its own pair too, so
    a row far from the data is calibrated on residuals that were as far from theirs; a
    smaller stratum falls back to its group's pair.

    Parameters
    ----------
    y_cal, pred_cal : array, shape (n, k)
        Calibration observations and their out-of-fold predictions (transformed space).
    groups : sequence, shape (n,)
        Category of each calibration row (the layer).
    targets : sequence of str
        Target names.
    coverage : float
        Nominal coverage.
    min_rows : int
        Groups with fewer calibration rows use the pooled quantiles.
    strata : sequence, shape (n,), optional
        Sub-category of each row within its group.

    Returns
    -------
    dict
        ``pooled``: ``{target: (q_lo, q_hi)}`` over all rows; ``groups``: ``{group:
        {target: (q_lo, q_hi)}}`` for every group (the pooled pair where it had too few
        rows); ``n``: calibration rows per group; ``coverage``; ``min_rows``.

    Examples
    --------
    >>> r = np.r_[np.linspace(-1, 1, 50), np.linspace(-3, 3, 50)][:, None]
    >>> q = mondrian_quantiles(r, np.zeros_like(r), ["a"] * 50 + ["b"] * 50, targets=["y"])
    >>> q["groups"]["a"]["y"][1] < q["pooled"]["y"][1] < q["groups"]["b"]["y"][1]
    True
    """
    obs = np.asarray(y_cal, dtype="float64").reshape(len(y_cal), -1)
    pred = np.asarray(pred_cal, dtype="float64").reshape(obs.shape)
    labels = np.asarray(groups).astype(str)
    pooled = residual_quantiles(obs, pred, targets=targets, coverage=coverage)
    by: dict[str, Quantiles] = {}
    counts: dict[str, int] = {}
    for name in dict.fromkeys(labels.tolist()):
        rows = labels == name
        counts[name] = int(rows.sum())
        by[name] = (
            residual_quantiles(obs[rows], pred[rows], targets=targets, coverage=coverage)
            if rows.sum() >= min_rows
            else dict(pooled)
        )
    if strata is not None:
        sub = np.asarray(strata).astype(str)
        for key in dict.fromkeys(f"{g}|{t}" for g, t in zip(labels, sub, strict=True)):
            g, t = key.split("|", 1)
            rows = (labels == g) & (sub == t)
            counts[key] = int(rows.sum())
            if rows.sum() >= min_rows:
                by[key] = residual_quantiles(
                    obs[rows], pred[rows], targets=targets, coverage=coverage
                )
    return {
        "pooled": pooled,
        "groups": by,
        "n": counts,
        "coverage": coverage,
        "min_rows": min_rows,
    }


def interval_bounds(
    pred: np.ndarray,
    groups: Sequence[Any],
    quantiles: Mapping[str, Any],
    *,
    targets: Sequence[str],
    strata: Sequence[Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds ``pred + q`` with each row's group quantiles (pooled if unseen).

    Examples
    --------
    >>> q = {"pooled": {"y": (-1.0, 1.0)}, "groups": {"a": {"y": (-2.0, 2.0)}}}
    >>> lo, hi = interval_bounds(np.zeros((2, 1)), ["a", "b"], q, targets=["y"])
    >>> lo.ravel().tolist(), hi.ravel().tolist()
    ([-2.0, -1.0], [2.0, 1.0])
    """
    p = np.asarray(pred, dtype="float64").reshape(len(pred), -1)
    labels = np.asarray(groups).astype(str)
    lo, hi = np.empty_like(p), np.empty_like(p)
    pooled = quantiles["pooled"]
    table = quantiles.get("groups", {})
    sub = None if strata is None else np.asarray(strata).astype(str)
    for i, name in enumerate(labels):
        q = table.get(name, pooled)
        if sub is not None:
            q = table.get(f"{name}|{sub[i]}", q)
        lo[i] = [q[t][0] for t in targets]
        hi[i] = [q[t][1] for t in targets]
    return p + lo, p + hi


def nearest_km(
    lat: np.ndarray, lon: np.ndarray, ref_lat: np.ndarray, ref_lon: np.ndarray
) -> np.ndarray:
    """Great-circle distance (km) from each point to the nearest reference point.

    Examples
    --------
    >>> nearest_km(np.array([0.0]), np.array([1.0]), np.array([0.0, 10.0]), np.array([0.0, 0.0]))
    array([111.19492664])
    """
    tree = BallTree(np.radians(np.column_stack([ref_lat, ref_lon])), metric="haversine")
    dist, _ = tree.query(np.radians(np.column_stack([lat, lon])), k=1)
    return dist[:, 0] * EARTH_RADIUS_KM


def distance_class(km: np.ndarray, bins: Sequence[float] = DISTANCE_BINS_KM) -> np.ndarray:
    """Label of each distance's class: ``'<250 km'``, ``'250-500 km'``, …, ``'>1000 km'``.

    Examples
    --------
    >>> distance_class(np.array([10.0, 600.0, 5000.0])).tolist()
    ['<250 km', '500-1000 km', '>1000 km']
    """
    edges = [float(b) for b in bins]
    names = (
        [f"<{bins[0]:g} km"]
        + [f"{lo:g}-{hi:g} km" for lo, hi in itertools.pairwise(edges)]
        + [f">{bins[-1]:g} km"]
    )
    return np.asarray(names, dtype=object)[np.searchsorted(np.asarray(bins), km, side="right")]


def coverage_report(
    y: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    targets: Sequence[str],
    by: Mapping[str, Sequence[Any]] | None = None,
    min_rows: int = 30,
    blocks: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Coverage of held-out rows: per target, jointly, and per category of each ``by``.

    Parameters
    ----------
    y, lower, upper : array, shape (n, k)
        Held-out observations and their interval bounds.
    targets : sequence of str
        Target names.
    by : mapping of str to sequence, optional
        Categories to condition on (e.g. ``{"layer": ..., "basin": ...}``), one label per
        row each.
    min_rows : int
        Categories with fewer rows are reported with ``"small": True``.
    blocks : sequence, optional
        The spatial block of each row: each summary then counts its distinct blocks
        (``"blocks"``). Errors are correlated within a block, so a category's coverage is
        worth about as many independent checks as it has blocks, not rows.

    Returns
    -------
    dict
        ``per_target`` ({target: coverage}), ``mean`` (over targets), ``joint`` (all
        targets covered at once), ``n``, and ``by``: ``{name: {label: {"n", "mean",
        "joint", "min_target", "small"}}}`` (and ``"blocks"`` with ``blocks``).

    Examples
    --------
    >>> y = np.array([[0.0], [1.0], [5.0], [2.0]])
    >>> r = coverage_report(y, y * 0 - 1, y * 0 + 2.5, targets=["a"], by={"g": list("aabb")},
    ...                     min_rows=1)
    >>> r["mean"], r["by"]["g"]["b"]["mean"]
    (0.75, 0.5)
    >>> coverage_report(y, y - 1, y + 1, targets=["a"], blocks=[1, 1, 2, 2])["blocks"]
    2
    """
    obs = np.asarray(y, dtype="float64").reshape(len(y), -1)
    inside = (obs >= np.asarray(lower).reshape(obs.shape)) & (
        obs <= np.asarray(upper).reshape(obs.shape)
    )

    block_of = None if blocks is None else np.asarray(blocks).astype(str)

    def summary(rows: np.ndarray) -> dict[str, Any]:
        part = inside[rows]
        if not part.size:
            return {"n": 0, "mean": math.nan, "joint": math.nan, "min_target": math.nan}
        per = part.mean(axis=0)
        out = {
            "n": int(rows.sum()),
            "mean": float(per.mean()),
            "joint": float(part.all(axis=1).mean()),
            "min_target": float(per.min()),
            "small": bool(rows.sum() < min_rows),
        }
        if block_of is not None:
            out["blocks"] = int(np.unique(block_of[rows]).size)
        return out

    everything = np.ones(len(obs), dtype=bool)
    out: dict[str, Any] = {
        "per_target": dict(zip(targets, map(float, inside.mean(axis=0)), strict=True)),
        **summary(everything),
        "by": {},
    }
    out.pop("small", None)
    for name, labels in (by or {}).items():
        lab = np.asarray(labels).astype(str)
        out["by"][name] = {str(v): summary(lab == v) for v in sorted(set(lab.tolist()))}
    return out


def calibration_curve(
    y_cal: np.ndarray,
    pred_cal: np.ndarray,
    groups_cal: Sequence[Any],
    y_test: np.ndarray,
    pred_test: np.ndarray,
    groups_test: Sequence[Any],
    *,
    targets: Sequence[str],
    levels: Sequence[float] = LEVELS,
    by: Mapping[str, Sequence[Any]] | None = None,
    min_rows: int = 30,
    strata_cal: Sequence[Any] | None = None,
    strata_test: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Observed coverage of the test rows at each nominal level (per-layer conformal).

    Returns
    -------
    list of dict
        Per level: ``nominal`` and the :func:`coverage_report` of the test rows.
    """
    out = []
    for level in levels:
        q = mondrian_quantiles(
            y_cal,
            pred_cal,
            groups_cal,
            targets=targets,
            coverage=level,
            min_rows=min_rows,
            strata=strata_cal,
        )
        lo, hi = interval_bounds(pred_test, groups_test, q, targets=targets, strata=strata_test)
        out.append(
            {
                "nominal": float(level),
                **coverage_report(y_test, lo, hi, targets=targets, by=by, min_rows=min_rows),
            }
        )
    return out


def cross_fold_coverage(
    y: np.ndarray,
    pred_oof: np.ndarray,
    folds: np.ndarray,
    groups: Sequence[Any],
    *,
    targets: Sequence[str],
    coverage: float = 0.9,
    strata: Sequence[Any] | None = None,
    by: Mapping[str, Sequence[Any]] | None = None,
    min_rows: int = 30,
    blocks: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Coverage of every CV row by intervals calibrated without its fold (cross-conformal).

    For each fold, :func:`mondrian_quantiles` of the other folds' out-of-fold residuals
    give the bounds of the fold's rows (:func:`interval_bounds`); the coverage of all
    rows is then reported as :func:`coverage_report` does.

    Parameters
    ----------
    y, pred_oof : array, shape (n, k)
        Observations and out-of-fold predictions of the CV rows.
    folds : array of int, shape (n,)
        Fold of each row.
    groups : sequence, shape (n,)
        The Mondrian category of each row (the layer).
    targets : sequence of str
        Target names.
    coverage : float
        Nominal coverage.
    strata : sequence, shape (n,), optional
        Sub-category within the group (the distance class), as for the run's intervals.
    by : mapping of str to sequence, optional
        Categories to report coverage by (each of length n).
    min_rows : int
        As in :func:`mondrian_quantiles` and :func:`coverage_report`.
    blocks : sequence, optional
        The spatial block of each row (:func:`coverage_report` counts them).

    Returns
    -------
    dict
        :func:`coverage_report`'s dict plus ``folds`` (the number of folds).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = rng.normal(size=(400, 1))
    >>> out = cross_fold_coverage(r, np.zeros_like(r), np.arange(400) % 4, ["a"] * 400,
    ...                           targets=["y"])
    >>> out["folds"], 0.85 < out["mean"] < 0.95
    (4, True)
    """
    obs = np.asarray(y, dtype="float64").reshape(len(y), -1)
    pred = np.asarray(pred_oof, dtype="float64").reshape(obs.shape)
    fold = np.asarray(folds)
    labels = np.asarray(groups).astype(str)
    sub = None if strata is None else np.asarray(strata).astype(str)
    lo, hi = np.empty_like(pred), np.empty_like(pred)
    for k in np.unique(fold):
        out = fold == k
        q = mondrian_quantiles(
            obs[~out],
            pred[~out],
            labels[~out],
            targets=targets,
            coverage=coverage,
            min_rows=min_rows,
            strata=None if sub is None else sub[~out],
        )
        lo[out], hi[out] = interval_bounds(
            pred[out], labels[out], q, targets=targets, strata=None if sub is None else sub[out]
        )
    report = coverage_report(obs, lo, hi, targets=targets, by=by, min_rows=min_rows, blocks=blocks)
    return {**report, "folds": int(np.unique(fold).size)}
