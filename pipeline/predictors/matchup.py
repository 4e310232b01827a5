"""Predictors: the matchup of each target row to the feature fields.

:func:`match_predictors` attaches the features of
:func:`~pipeline.predictors.features.layer_features` to each row of the targets table: the
time step of the same year and month (else that month's climatology over the store's
years), the nearest grid cell (else the nearest valid cell within ``max_distance_km``),
and reports every row it cannot match with the reason, never dropping one. The feature
fields themselves (layer means, derived features, the ocean mask) are built in
:mod:`pipeline.predictors.features`.

Notes for developers
--------------------
* The matchup first decides "which cell of which block" for every row in numpy (grid
  coordinates and the small static validity mask ``(layer, lat, lon)`` of the first time
  step, searched with a k-d tree on unit vectors), then builds ONE task per feature block
  touched (one per month and block for climatology rows), all computed in one
  ``dask.compute`` -- on the active distributed Client when there is one. The tasks are
  module-level functions over numpy arrays: picklable, store-agnostic (local or s3).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ConfigError, InputFormatError
from pipeline.geo import EARTH_RADIUS_KM
from pipeline.predictors.environment import time_kind_columns
from pipeline.predictors.features import (
    PredictorConfig,
    _is_global,
    feature_names,
    ocean_mask,
    optional_features,
)

__all__ = [
    "MatchupResult",
    "match_predictors",
]

logger = logging.getLogger(__name__)

_MISSING_COLUMNS = ["id", "layer", "lat", "lon", "time", "reason"]


@dataclass
class MatchupResult:
    """Targets with their predictors, and the rows that could not be matched.

    Attributes
    ----------
    matchup : pandas.DataFrame
        The matched target rows (index and columns of the targets table) plus
        ``env_time`` (time step used, UTC; NaT for climatology), ``env_source``
        (``"year"`` or ``"climatology"``), ``env_source_<source>`` per environment
        source of :func:`~pipeline.predictors.environment.build_features` (what that
        source gave the row: ``"year"``, ``"climatology"`` or ``"static"``),
        ``cell_lat``, ``cell_lon`` (centre of the cell used), ``distance_km`` (0 for
        the target's own cell) and one float64 column per feature, in
        :func:`feature_names` order.
    missing : pandas.DataFrame
        ``id, layer, lat, lon, time, reason`` of every other target row (same index).
    """

    matchup: pd.DataFrame
    missing: pd.DataFrame


def match_predictors(
    targets: pd.DataFrame, features: xr.Dataset, *, config: PredictorConfig | None = None
) -> MatchupResult:
    """Attach the feature values of its month, layer and grid cell to each target row.

    For each row: the time step of the same year and month when the features have one
    (``env_source="year"``), else the mean of that calendar month over the store's years
    (``"climatology"``); the grid cell holding the row, or when that cell is not valid
    for the row's layer (land, or the layer below the sea floor, per :func:`ocean_mask`)
    the nearest valid cell within ``config.max_distance_km`` (great-circle). Rows that
    cannot be matched are returned in ``missing`` with the reason; ``len(matchup) +
    len(missing) == len(targets)``.

    Parameters
    ----------
    targets : pandas.DataFrame
        The canonical targets table: ``id, lat, lon, time`` (UTC), ``layer`` (a name of
        ``features.layer``) and any other columns, which are kept. A dask DataFrame is
        computed first.
    features : xarray.Dataset
        Result of :func:`layer_features` (lazy; read from any store).
    config : PredictorConfig, optional
        ``max_distance_km`` is used here.

    Returns
    -------
    MatchupResult
        ``matchup`` (rows + ``env_time, env_source, cell_lat, cell_lon, distance_km`` +
        one float64 column per feature) and ``missing`` (``id, layer, lat, lon, time,
        reason``).

    Raises
    ------
    ConfigError
        When a row's layer is not a layer of the features (lists them).
    InputFormatError
        When the targets table lacks a required column.

    See Also
    --------
    pipeline.predictors.features.layer_features : builds the features.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from pipeline.predictors.features import PredictorConfig, layer_features
    >>> from pipeline.targets import Layer
    >>> env = xr.Dataset(
    ...     {"thetao": (("time", "depth", "lat", "lon"), np.arange(8.0).reshape(2, 1, 2, 2))},
    ...     coords={"time": pd.to_datetime(["2020-01-01", "2021-01-01"]), "depth": [5.0],
    ...             "lat": [0.0, 1.0], "lon": [10.0, 11.0]})
    >>> f = layer_features(env, [Layer(0, 10)], config=PredictorConfig(derived=()))
    >>> rows = pd.DataFrame({"id": ["a", "b"], "lat": [0.9, 0.1], "lon": [10.2, 10.9],
    ...     "time": pd.to_datetime(["2020-01-20", "2019-01-05"], utc=True),
    ...     "layer": "0-10m"})
    >>> m = match_predictors(rows, f).matchup
    >>> m[["id", "env_source", "cell_lat", "cell_lon", "thetao"]]
      id   env_source  cell_lat  cell_lon  thetao
    0  a         year       1.0      10.0     2.0
    1  b  climatology       0.0      11.0     3.0
    """
    config = PredictorConfig() if config is None else config
    targets = _check_targets(targets)
    names = feature_names(features)
    if not names:
        raise ConfigError("features: no feature variable (none with a 'layer' dimension).")
    features = (
        features[names].unify_chunks()
        if _all_dask(features, names)
        else (features[names].chunk({"time": 1}).unify_chunks())
    )
    plan = _plan(targets, features, config)
    values = _extract(plan, features, names)
    return _assemble(targets, features, names, plan, values, config)


def _all_dask(features: xr.Dataset, names: list[str]) -> bool:
    return all(features[n].chunks is not None for n in names)


def _check_targets(targets: Any) -> pd.DataFrame:
    if hasattr(targets, "compute") and not isinstance(targets, pd.DataFrame):
        targets = targets.compute()
    required = ["id", "lat", "lon", "time", "layer"]
    missing = [c for c in required if c not in targets.columns]
    if missing:
        raise InputFormatError(
            f"targets table: missing column(s) {', '.join(map(repr, missing))}; expected "
            f"{', '.join(required)} and the target columns, as built by "
            "pipeline.targets.particles.build_targets."
        )
    return targets


@dataclass
class _Plan:
    """Which cell of which block each target row uses (pure numpy, JSON-able)."""

    reason: np.ndarray  # object, "" when matched
    t: np.ndarray  # time index (year rows), -1 otherwise
    month: np.ndarray  # calendar month (climatology rows), 0 otherwise
    layer: np.ndarray
    y: np.ndarray
    x: np.ndarray
    distance_km: np.ndarray
    moved: int = 0


def _plan(targets: pd.DataFrame, features: xr.Dataset, config: PredictorConfig) -> _Plan:
    n = len(targets)
    reason = np.full(n, "", dtype=object)
    lat = pd.to_numeric(targets["lat"], errors="coerce").to_numpy(dtype="float64")
    lon = pd.to_numeric(targets["lon"], errors="coerce").to_numpy(dtype="float64")
    bad_pos = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0))
    reason[bad_pos] = "lat/lon missing or out of range"
    lon = (lon + 180.0) % 360.0 - 180.0
    times = pd.to_datetime(targets["time"], utc=True, errors="coerce")
    reason[(reason == "") & times.isna().to_numpy()] = "time missing"
    # layers
    layer_names = [str(v) for v in features["layer"].values]
    row_layers = targets["layer"].astype(str).to_numpy()
    unknown = sorted(set(row_layers) - set(layer_names))
    if unknown:
        raise ConfigError(
            f"targets: layer(s) {', '.join(map(repr, unknown))} not in the features "
            f"(layers: {', '.join(layer_names)}); build the features with the targets' layers "
            "(layer_features(env, TargetConfig.layers))."
        )
    layer = pd.Index(layer_names).get_indexer(row_layers)
    # time steps: same year and month, else that month's climatology
    t, month = _match_times(times, features)
    ok = reason == ""
    no_month = ok & (t < 0) & (month == 0)
    if no_month.any():
        have = sorted(set(pd.DatetimeIndex(features["time"].values).month))
        for i in np.flatnonzero(no_month):
            reason[i] = (
                f"month {times.iloc[i]:%Y-%m} not in the store (no time step of that month "
                f"in any year; months present: {', '.join(map(str, have))})"
            )
    # cells: the row's own cell, else the nearest valid one within the radius
    glat = np.asarray(features["lat"].values, dtype="float64")
    glon = np.asarray(features["lon"].values, dtype="float64")
    y, y_in = _nearest_index(np.where(np.isfinite(lat), lat, 0.0), glat, periodic=False)
    x, x_in = _nearest_index(np.where(np.isfinite(lon), lon, 0.0), glon, periodic=_is_global(glon))
    ok = reason == ""
    valid = np.asarray(ocean_mask(features).values, dtype=bool) if ok.any() else None
    distance = np.zeros(n)
    moved = 0
    if valid is not None:
        direct = ok & y_in & x_in
        direct[direct] = valid[layer[direct], y[direct], x[direct]]
        search = ok & ~direct
        radius = float(config.max_distance_km)
        for lay in np.unique(layer[search]):
            rows = np.flatnonzero(search & (layer == lay))
            cy, cx, dist = _nearest_valid(lat[rows], lon[rows], valid[lay], glat, glon, radius)
            found = np.isfinite(dist)
            hit = rows[found]
            y[hit], x[hit], distance[hit] = cy[found], cx[found], dist[found]
            moved += int(found.sum())
            for i in rows[~found]:
                deeper = y_in[i] and x_in[i] and valid[:, y[i], x[i]].any()
                reason[i] = (
                    f"layer below the sea floor (no cell deep enough within {radius:g} km)"
                    if deeper
                    else f"no valid cell within {radius:g} km (land or outside the grid)"
                )
    return _Plan(reason, t, month, layer, y, x, distance, moved)


def _match_times(times: pd.Series, features: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Time index of the same year-month (nearest), else the month for climatology."""
    n = len(times)
    env = pd.DatetimeIndex(features["time"].values)
    if env.tz is not None:
        env = env.tz_convert("UTC").tz_localize(None)
    order = np.argsort(env.values, kind="stable")
    env_sorted = env.values[order].astype("datetime64[ns]").astype("int64")
    env_ym = (env.year * 12 + env.month - 1).to_numpy()[order]
    valid = times.notna().to_numpy()
    row = times.dt.tz_convert("UTC").dt.tz_localize(None)
    row_ns = np.where(valid, row.to_numpy(dtype="datetime64[ns]").astype("int64"), 0)
    row_ym = np.where(valid, (row.dt.year * 12 + row.dt.month - 1).fillna(0).to_numpy(), -1)
    t = np.full(n, -1, dtype="int64")
    if env_sorted.size:
        after = np.searchsorted(env_sorted, row_ns, side="left")
        before = np.clip(after - 1, 0, env_sorted.size - 1)
        after = np.clip(after, 0, env_sorted.size - 1)
        same_a = valid & (env_ym[after] == row_ym)
        same_b = valid & (env_ym[before] == row_ym)
        nearer_b = np.abs(row_ns - env_sorted[before]) < np.abs(row_ns - env_sorted[after])
        use_b = same_b & (~same_a | nearer_b)
        t = np.where(use_b, order[before], np.where(same_a, order[after], -1))
    months_present = set(int(m) for m in env.month)
    row_month = np.where(valid, row_ym % 12 + 1, 0)
    month = np.where((t < 0) & np.isin(row_month, list(months_present)), row_month, 0)
    return t, month.astype("int64")


def _nearest_index(
    value: np.ndarray, grid: np.ndarray, *, periodic: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest grid index of each value and whether the value lies inside that cell."""
    nxt = np.clip(np.searchsorted(grid, value), 0, grid.size - 1)
    prv = np.clip(nxt - 1, 0, grid.size - 1)
    if periodic:
        dn = np.abs((value - grid[nxt] + 180.0) % 360.0 - 180.0)
        dp = np.abs((value - grid[prv] + 180.0) % 360.0 - 180.0)
        d0 = np.abs((value - grid[0] + 180.0) % 360.0 - 180.0)
        idx = np.where(dp <= dn, prv, nxt)
        best = np.minimum(dp, dn)
        idx = np.where(d0 < best, 0, idx)
        return idx, np.ones(value.shape, dtype=bool)
    dn, dp = np.abs(value - grid[nxt]), np.abs(value - grid[prv])
    idx = np.where(dp <= dn, prv, nxt)
    half = (np.diff(grid).max() / 2.0 if grid.size > 1 else 0.5) * (1.0 + 1e-9)
    return idx, np.minimum(dn, dp) <= half


def _unit(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    return np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])


def _great_circle_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray):
    p1, p2 = np.deg2rad(lat1), np.deg2rad(lat2)
    dphi, dlam = p2 - p1, np.deg2rad(lon2 - lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _nearest_valid(
    lat: np.ndarray,
    lon: np.ndarray,
    valid: np.ndarray,
    glat: np.ndarray,
    glon: np.ndarray,
    radius_km: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest valid cell (y, x, km) of each point within the radius; km NaN when none."""
    from scipy.spatial import cKDTree

    n = lat.size
    cy, cx, dist = np.zeros(n, "int64"), np.zeros(n, "int64"), np.full(n, np.nan)
    vy, vx = np.nonzero(valid)
    if vy.size == 0 or n == 0:
        return cy, cx, dist
    tree = cKDTree(_unit(glat[vy], glon[vx]))
    chord = 2.0 * math.sin(min(radius_km / EARTH_RADIUS_KM, math.pi) / 2.0)
    _, k = tree.query(_unit(lat, lon), distance_upper_bound=chord * (1.0 + 1e-12))
    found = k < vy.size
    cy[found], cx[found] = vy[k[found]], vx[k[found]]
    km = _great_circle_km(lat[found], lon[found], glat[cy[found]], glon[cx[found]])
    dist[found] = np.where(km <= radius_km, km, np.nan)
    return cy, cx, dist


def _block_index(chunks: tuple[int, ...], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block number and offset inside the block of each index along one axis."""
    starts = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    block = np.searchsorted(starts, index, side="right") - 1
    return block, index - starts[block]


def _pick_block(
    blocks: list[np.ndarray], it: np.ndarray, il: np.ndarray, iy: np.ndarray, ix: np.ndarray
) -> np.ndarray:
    """Values (row, feature) at the given positions of one block per feature."""
    return np.stack([np.asarray(b)[it, il, iy, ix].astype("float64") for b in blocks], axis=1)


def _pick_climatology(
    blocks: list[list[np.ndarray]],
    positions: list[np.ndarray],
    il: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
) -> np.ndarray:
    """Mean over the month's time steps (NaN skipped) at the given positions."""
    out = np.empty((il.size, len(blocks)))
    for j, per_time_block in enumerate(blocks):
        steps = [
            np.asarray(b)[pos][:, il, iy, ix].astype("float64")
            for b, pos in zip(per_time_block, positions, strict=True)
        ]
        stacked = np.concatenate(steps, axis=0)
        count = np.isfinite(stacked).sum(axis=0)
        total = np.where(np.isfinite(stacked), stacked, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = np.where(count > 0, total / count, np.nan)
    return out


def _extract(plan: _Plan, features: xr.Dataset, names: list[str]) -> np.ndarray:
    """Feature values (row, feature) of the matched rows, one task per block touched."""
    values = np.full((plan.reason.size, len(names)), np.nan)
    ok = plan.reason == ""
    if not ok.any():
        return values
    tchunks, lchunks, ychunks, xchunks = features[names[0]].chunks
    arrays = [features[n].data for n in names]
    lb, il = _block_index(lchunks, plan.layer)
    yb, iy = _block_index(ychunks, plan.y)
    xb, ix = _block_index(xchunks, plan.x)
    tb, it = _block_index(tchunks, np.maximum(plan.t, 0))
    env_month = pd.DatetimeIndex(features["time"].values).month.to_numpy()
    tasks, rows_of_task = [], []
    year_rows = ok & (plan.t >= 0)
    keys = pd.DataFrame({"tb": tb, "lb": lb, "yb": yb, "xb": xb, "month": plan.month})
    for key, rows in keys[year_rows].groupby(["tb", "lb", "yb", "xb"]).indices.items():
        rows = np.flatnonzero(year_rows)[rows]
        tb_, lb_, yb_, xb_ = (int(k) for k in key)
        blocks = [a.blocks[tb_, lb_, yb_, xb_] for a in arrays]
        tasks.append(
            dask.delayed(_pick_block, pure=True)(blocks, it[rows], il[rows], iy[rows], ix[rows])
        )
        rows_of_task.append(rows)
    clim_rows = ok & (plan.t < 0)
    for key, rows in keys[clim_rows].groupby(["month", "lb", "yb", "xb"]).indices.items():
        rows = np.flatnonzero(clim_rows)[rows]
        month, lb_, yb_, xb_ = (int(k) for k in key)
        steps_tb, steps_it = _block_index(tchunks, np.flatnonzero(env_month == month))
        time_blocks = [int(b) for b in np.unique(steps_tb)]
        positions = [steps_it[steps_tb == b] for b in time_blocks]
        blocks = [[a.blocks[b, lb_, yb_, xb_] for b in time_blocks] for a in arrays]
        tasks.append(
            dask.delayed(_pick_climatology, pure=True)(
                blocks, positions, il[rows], iy[rows], ix[rows]
            )
        )
        rows_of_task.append(rows)
    n_clim = int(clim_rows.sum())
    logger.info(
        "matchup: %d rows, %d chunks touched, %d by climatology, %d moved to nearest valid cell",
        int(ok.sum()),
        len(tasks),
        n_clim,
        plan.moved,
    )
    results = dask.compute(*tasks)
    for rows, result in zip(rows_of_task, results, strict=True):
        values[rows] = result
    return values


def _assemble(
    targets: pd.DataFrame,
    features: xr.Dataset,
    names: list[str],
    plan: _Plan,
    values: np.ndarray,
    config: PredictorConfig,
) -> MatchupResult:
    reason = plan.reason.copy()
    ok = reason == ""
    optional = set(optional_features(features))
    required = np.array([n not in optional for n in names], dtype=bool)
    nonfinite = ok & ~np.isfinite(values[:, required]).all(axis=1)
    for i in np.flatnonzero(nonfinite):
        bad = [
            n
            for n, v in zip(names, values[i], strict=True)
            if not np.isfinite(v) and n not in optional
        ]
        reason[i] = (
            f"feature(s) {', '.join(bad)} not finite at the matched cell and time "
            "(valid at the first time step only)"
        )
    ok = reason == ""
    glat = np.asarray(features["lat"].values, dtype="float64")
    glon = np.asarray(features["lon"].values, dtype="float64")
    env_times = pd.DatetimeIndex(features["time"].values)
    if env_times.tz is None:
        env_times = env_times.tz_localize("UTC")
    matched = targets.iloc[np.flatnonzero(ok)].copy()
    t = plan.t[ok]
    env_time = pd.Series(env_times[np.maximum(t, 0)], index=matched.index)
    matched["env_time"] = env_time.where(t >= 0).astype("datetime64[ns, UTC]")
    matched["env_source"] = np.where(t >= 0, "year", "climatology")
    for label, kinds in time_kind_columns(features).items():
        # what each source gave: its own month, its climatology (also for every row
        # matched by the climatology of the whole output axis), or its static field
        fallback = np.where(kinds == "static", "static", "climatology")
        at = np.maximum(t, 0)
        matched[f"env_source_{label}"] = np.where(t >= 0, kinds[at], fallback[at])
    matched["cell_lat"] = glat[plan.y[ok]]
    matched["cell_lon"] = glon[plan.x[ok]]
    matched["distance_km"] = plan.distance_km[ok]
    for j, name in enumerate(names):
        matched[name] = values[ok, j].astype("float64")
    rest = targets.iloc[np.flatnonzero(~ok)]
    missing = pd.DataFrame(
        {c: rest[c] for c in _MISSING_COLUMNS if c != "reason"}, index=rest.index
    )
    missing["reason"] = reason[~ok].astype(str)
    if len(missing):
        logger.info(
            "matchup: %d row(s) not matched: %s",
            len(missing),
            missing["reason"].str.split(" \\(").str[0].value_counts().to_dict(),
        )
    return MatchupResult(matchup=matched, missing=missing)
