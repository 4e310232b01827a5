"""Feature fields from several environment sources, each on its own grid and time axis.

:func:`build_features` is the one path from the environment to the features, used by
the matchup and by the fields alike (so training and prediction see the same values):

1. each source (:class:`~pipeline.sources.environment.SourceData`) is averaged per depth
   layer **on its own levels** (:func:`~pipeline.predictors.features.layer_means`;
   surface sources repeated over the layers or kept to the surface layer);
2. regridded onto the **output grid** (:mod:`pipeline.predictors.grid`: conservative
   from a finer source, linear from a coarser one, NaN-aware at coasts);
3. put on the **output time axis** -- the months of the year-month sources (inside
   ``time`` when given): a year-month source gives its own month when it has it, else
   its climatology of that calendar month (mean over its years); a climatology gives
   the calendar month; a static source the same field every month. What each source
   gave at each output month is kept as the coordinate ``time_kind_<source>``
   (``year``, ``climatology`` or ``static``), which the matchup copies to each row;
4. merged (a predictor name given by two sources is an error), masked with the ocean
   mask of the output grid (the valid cells of the finest source with depth levels,
   unless ``grid.mask`` names another), and completed with the derived features
   (:func:`~pipeline.predictors.features.features_from_means`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ConfigError
from pipeline.predictors.features import (
    PredictorConfig,
    _select_variables,
    features_from_means,
    layer_means,
)
from pipeline.predictors.grid import (
    GridConfig,
    axis_step,
    grid_of,
    output_grid,
    regrid,
)
from pipeline.sources.environment import SourceData
from pipeline.targets.particles import Layer

__all__ = ["build_features", "time_kind_columns"]

logger = logging.getLogger(__name__)

_KIND_PREFIX = "time_kind_"


def build_features(
    sources: Sequence[SourceData],
    layers: Sequence[Layer],
    *,
    grid: GridConfig | None = None,
    config: PredictorConfig | None = None,
    time: tuple[str, str] | None = None,
) -> xr.Dataset:
    """Build the lazy feature fields of a run on its output grid from all its sources.

    Parameters
    ----------
    sources : sequence of SourceData
        The opened sources (:func:`pipeline.sources.environment.open_source`).
    layers : sequence of Layer
        Depth layers of the targets.
    grid : GridConfig, optional
        The output grid; default the grid of the first source.
    config : PredictorConfig, optional
        Feature variables (predictor names), derived features, bathymetry.
    time : (str, str), optional
        Inclusive range of the output months.

    Returns
    -------
    xarray.Dataset
        As :func:`~pipeline.predictors.features.layer_features` returns, on the output
        grid, plus the coords ``time_kind_<source>`` (time) and ``attrs["sources"]``
        (one dict per source: name, url, time and depth kinds, grid step, regridding).

    Raises
    ------
    ConfigError
        Two sources giving the same predictor name; a source not covering the output
        grid; a calendar month that a source cannot give; no dated source and no
        ``time``; ``grid.like``/``grid.mask`` naming no source.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from pipeline.sources.environment import EnvironmentSource, open_source
    >>> phy = xr.Dataset({"thetao": (("time", "depth", "lat", "lon"), np.ones((2, 2, 4, 4)))},
    ...     coords={"time": pd.to_datetime(["2020-01-01", "2020-02-01"]), "depth": [5., 50.],
    ...             "lat": np.arange(4) + 0.5, "lon": np.arange(4) + 0.5})
    >>> clim = xr.Dataset({"LAYER": (("time", "lat", "lon"), np.full((12, 2, 2), 3.0))},
    ...     coords={"time": np.arange(1, 13), "lat": [1.0, 3.0], "lon": [1.0, 3.0]})
    >>> srcs = [open_source(phy, EnvironmentSource(entry="phy")),
    ...         open_source(clim, EnvironmentSource(entry="sst", time="climatology",
    ...                                             variables={"LAYER": "sst"}))]
    >>> f = build_features(srcs, [Layer(0, 100)], grid=GridConfig(resolution=2.0,
    ...     bounds=(0, 4, 0, 4)), config=PredictorConfig(derived=()))
    >>> f.attrs["features"], f.sizes["lat"], str(f["time_kind_sst"].values[0])
    (['sst', 'thetao'], 2, 'climatology')
    """
    config = PredictorConfig() if config is None else config
    grid = GridConfig() if grid is None else grid
    if not sources:
        raise ConfigError("inputs.environment: no source.")
    _check_names(sources)
    by_label = {s.spec.label: s for s in sources}
    target = _target_grid(sources, grid, by_label)
    times = _output_times(sources, time)
    steps = {s.spec.label: _step(s.data) for s in sources}
    out_step = float(target.attrs["grid_resolution_deg"])
    if all(out_step < st * (1 - 1e-6) for st in steps.values()):
        logger.warning(
            "output grid %g deg is finer than every source (%s): the fields interpolate "
            "the sources, they add no detail",
            out_step,
            ", ".join(f"{k} {v:g} deg" for k, v in steps.items()),
        )
    parts: list[xr.Dataset] = []
    own_means: dict[str, xr.Dataset] = {}
    described: list[dict[str, Any]] = []
    for src in sources:
        label = src.spec.label
        means = layer_means(src.data, layers)
        means = _surface_only(means, src, layers)
        own_means[label] = means
        means = regrid(means, target, method=grid.method, where=label)
        aligned, kinds = _align_time(means, src, times)
        aligned = aligned.assign_coords({f"{_KIND_PREFIX}{label}": ("time", kinds)})
        parts.append(aligned)
        described.append(
            {
                "name": label,
                "entry": src.spec.entry,
                "url": str(src.data.attrs.get("source")),
                "time": src.spec.time,
                "depth": src.spec.depth,
                "step_deg": steps[label],
                "variables": sorted(map(str, src.data.data_vars)),
                "months": {k: int((kinds == k).sum()) for k in sorted(set(kinds))},
            }
        )
    merged = xr.merge(parts, compat="override", join="exact", combine_attrs="drop_conflicts")
    mask_src = _mask_source(sources, grid, by_label)
    valid = _valid(own_means[mask_src.spec.label], target, out_step)
    optional = {n for p in parts for n, v in p.data_vars.items() if v.attrs.get("surface_only")}
    attrs = {n: dict(v.attrs) for p in parts for n, v in p.data_vars.items()}
    merged = merged.where(valid)
    for name in merged.data_vars:
        merged[name].attrs = {
            **attrs.get(name, {}),
            **({"surface_only": 1} if name in optional else {}),
        }
    logger.info(
        "environment: %d source(s) on the output grid %g deg (%d x %d), %d month(s); "
        "ocean mask from %s",
        len(sources),
        out_step,
        target.sizes["lat"],
        target.sizes["lon"],
        len(times),
        mask_src.spec.label,
    )
    names = _feature_names(merged, config)
    features = features_from_means(
        merged,
        layers,
        names=names,
        config=config,
        source=", ".join(str(s.data.attrs.get("source")) for s in sources),
    )
    features.attrs["sources"] = described
    features.attrs["mask_source"] = mask_src.spec.label
    features.attrs["grid_resolution_deg"] = out_step
    return features


def time_kind_columns(features: xr.Dataset) -> dict[str, np.ndarray]:
    """Per source, what it gave at each output time step (``year``/``climatology``/``static``).

    Returns
    -------
    dict of str to numpy.ndarray
        Source name -> strings along ``time``; empty for features of one store
        (:func:`~pipeline.predictors.features.layer_features`).
    """
    return {
        str(name)[len(_KIND_PREFIX) :]: np.asarray(features[name].values).astype(str)
        for name in features.coords
        if str(name).startswith(_KIND_PREFIX)
    }


# --------------------------------------------------------------------------- steps


def _check_names(sources: Sequence[SourceData]) -> None:
    seen: dict[str, str] = {}
    for src in sources:
        for name in map(str, src.data.data_vars):
            if name in seen:
                raise ConfigError(
                    f"inputs.environment: predictor {name!r} is given by two sources "
                    f"({seen[name]!r} and {src.spec.label!r}); rename one "
                    f"(variables: {{{name}: {name}_{src.spec.label}}}) or drop it."
                )
            seen[name] = src.spec.label


def _step(ds: xr.Dataset) -> float:
    return max(axis_step(ds["lat"].values), axis_step(ds["lon"].values))


def _target_grid(
    sources: Sequence[SourceData], grid: GridConfig, by_label: dict[str, SourceData]
) -> xr.Dataset:
    if grid.like is not None:
        if grid.like not in by_label:
            raise ConfigError(
                f"grid.like: {grid.like!r} is not a source; sources: {', '.join(by_label)}."
            )
        return grid_of(by_label[grid.like].data)
    if grid.resolution is not None:
        return output_grid(grid)
    logger.info("grid: no grid section; the output grid is that of %s", sources[0].spec.label)
    return grid_of(sources[0].data)


def _output_times(sources: Sequence[SourceData], time: tuple[str, str] | None) -> pd.DatetimeIndex:
    months: set[pd.Timestamp] = set()
    for src in sources:
        if src.spec.time == "year-month":
            stamps = pd.DatetimeIndex(src.data["time"].values)
            months |= set(stamps.to_period("M").to_timestamp())
    if time is not None:
        start, end = (pd.Timestamp(t) for t in time)
        if months:
            months = {m for m in months if start.to_period("M").to_timestamp() <= m <= end}
        else:
            months = set(pd.date_range(start.to_period("M").to_timestamp(), end, freq="MS"))
    if not months:
        raise ConfigError(
            "inputs.environment: no dated (year-month) source "
            + ("has a month inside inputs.environment_time " if time else "")
            + "to define the output months; add one, or set inputs.environment_time "
            "(e.g. ['2020-01-01', '2020-12-31']) for a run on climatologies only."
        )
    return pd.DatetimeIndex(sorted(months))


def _surface_only(means: xr.Dataset, src: SourceData, layers: Sequence[Layer]) -> xr.Dataset:
    top = min(range(len(layers)), key=lambda i: layers[i].top_m)
    keep = xr.DataArray(np.arange(len(layers)) == top, dims="layer")
    for name, var in src.data.data_vars.items():
        if var.attrs.get("surface_only"):
            attrs = dict(means[name].attrs)
            means[name] = means[name].where(keep)
            means[name].attrs = {**attrs, "surface_only": 1}
    return means


def _align_time(
    means: xr.Dataset, src: SourceData, times: pd.DatetimeIndex
) -> tuple[xr.Dataset, np.ndarray]:
    label, kind = src.spec.label, src.spec.time
    n = len(times)
    if kind == "static":
        out = means.expand_dims(time=n, axis=0).assign_coords(time=times.values)
        return out, np.full(n, "static", dtype=object)
    if kind == "climatology":
        have = [int(m) for m in means["month"].values]
        lacking = sorted(set(times.month) - set(have))
        if lacking:
            raise ConfigError(
                f"{label}: the climatology has no month {', '.join(map(str, lacking))} "
                f"(months {have}); the output months need them."
            )
        idx = [have.index(int(m)) for m in times.month]
        out = means.isel(month=idx).rename(month="time").drop_vars("time", errors="ignore")
        out = out.assign_coords(time=times.values)
        return out, np.full(n, "climatology", dtype=object)
    stamps = pd.DatetimeIndex(means["time"].values).to_period("M").to_timestamp()
    position = {ts: i for i, ts in enumerate(stamps)}
    own = np.array([position.get(ts, -1) for ts in times])
    kinds = np.where(own >= 0, "year", "climatology").astype(object)
    if (own >= 0).all():
        out = means.isel(time=own)
    else:
        have = sorted(set(stamps.month))
        lacking = sorted(set(times[own < 0].month) - set(have))
        if lacking:
            raise ConfigError(
                f"{label}: no time step in month(s) {', '.join(map(str, lacking))} of any "
                "year, so neither the month nor its climatology can be given."
            )
        clim = means.assign_coords(time=stamps.values).groupby("time.month").mean("time")
        clim = clim.rename(month="time")
        both = xr.concat([means.drop_vars("time"), clim.drop_vars("time")], dim="time")
        idx = np.where(own >= 0, own, len(stamps) + np.searchsorted(have, times.month))
        out = both.isel(time=idx)
        logger.info(
            "%s: %d of %d output month(s) from its climatology (not in the source)",
            label,
            int((own < 0).sum()),
            n,
        )
    out = out.drop_vars("time", errors="ignore").assign_coords(time=times.values)
    return out, kinds


def _mask_source(
    sources: Sequence[SourceData], grid: GridConfig, by_label: dict[str, SourceData]
) -> SourceData:
    if grid.mask is not None:
        if grid.mask not in by_label:
            raise ConfigError(
                f"grid.mask: {grid.mask!r} is not a source; sources: {', '.join(by_label)}."
            )
        return by_label[grid.mask]
    with_levels = [s for s in sources if s.spec.depth == "levels" and "depth" in s.data.dims]
    return min(with_levels or list(sources), key=lambda s: _step(s.data))


def _valid(means: xr.Dataset, target: xr.Dataset, out_step: float) -> xr.DataArray:
    """Cells (layer, lat, lon) of the output grid that are ocean in the mask source.

    The source's own valid cells (every variable finite at its first step) are carried
    onto the output grid: a finer source's by area (a cell with any ocean sub-cell is
    ocean, as its conservative means are finite there), a coarser one's from the nearest
    source cell -- not from its interpolated values, which the sea-over-land extension
    of :func:`~pipeline.predictors.grid.regrid` carries one cell into the land.
    """
    lead = [d for d in ("time", "month") if d in means.dims]
    first = means.isel(dict.fromkeys(lead, 0), drop=True)
    valid = None
    for var in first.data_vars.values():
        if var.attrs.get("surface_only"):
            continue
        finite = var.notnull()
        valid = finite if valid is None else valid & finite
    assert valid is not None
    valid = valid.drop_vars([c for c in valid.coords if c not in ("layer", "lat", "lon")])
    finer = _step(means) < out_step * (1 - 1e-6)
    fraction = regrid(
        valid.astype("float32").to_dataset(name="ocean"),
        target,
        method="conservative" if finer else "nearest",
        where="ocean mask",
    )["ocean"]
    return (fraction > 0) if finer else (fraction > 0.5)


def _feature_names(merged: xr.Dataset, config: PredictorConfig) -> list[str]:
    names, _ = _select_variables(merged, config, dims=("time", "layer", "lat", "lon"))
    return names
