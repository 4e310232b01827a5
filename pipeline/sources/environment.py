"""Environment sources: one catalog entry each, read and normalised to one convention.

A run's environment is a list of sources (``inputs.environment`` in the run file), each
a catalog entry (ARCO zarr through the ``copernicus`` reader, NetCDF files or globs
through ``netcdf``, or any intake entry that yields an xarray Dataset) with:

- the variables to take, optionally renamed to the predictor names
  (``variables: {CHL: chl_oc}``);
- how its **time** axis is read: ``year-month`` (dated monthly steps, CF-decoded),
  ``climatology`` (12 months, the month read from a coordinate, from the time values
  when they are 1..12 or decodable dates, else from the position 1..12: each choice
  logged) or ``static`` (no time: bathymetry, masks);
- how its **depth** is read: ``levels`` (averaged per layer on its own levels),
  ``surface`` (a surface field, or the shallowest level of a 3-D one) applying to every
  layer (``surface: all``, the default) or to the surface layer only
  (``surface: surface``, NaN below), per source or per variable; ``none`` (2-D only).

:func:`open_source` returns a :class:`SourceData` whose Dataset has lat ascending, lon
in [-180, 180), depth positive down, and the time kind's axis: ``time`` (datetime64),
``month`` (1..12) or none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.config import check_choice
from pipeline.errors import ConfigError
from pipeline.sources.copernicus import normalise_environment

__all__ = [
    "DEPTH_KINDS",
    "TIME_KINDS",
    "EnvironmentSource",
    "SourceData",
    "open_source",
    "parse_sources",
    "source_summary",
]

logger = logging.getLogger(__name__)

TIME_KINDS = ("year-month", "climatology", "static")
DEPTH_KINDS = ("levels", "surface", "none")
_SURFACE = ("all", "surface")
_KEYS = ("entry", "name", "variables", "time", "month", "depth", "surface", "options")


@dataclass(frozen=True, kw_only=True)
class EnvironmentSource:
    """One environment source of a run (an item of ``inputs.environment``).

    Attributes
    ----------
    entry : str
        Catalog entry (in the run's catalog).
    name : str, optional
        Label in logs, the matchup's per-source columns and errors (default the entry).
    variables : dict of str to str, optional
        Source variable -> predictor name; a list means no renames; None takes every
        data variable of the entry.
    time : {"year-month", "climatology", "static"}
        How the time axis is read (module docstring).
    month : str, optional
        For a climatology: the coordinate or dimension holding the month (1..12).
    depth : {"levels", "surface", "none"}
        How the depth axis is read (module docstring).
    surface : str or dict
        For surface variables: ``"all"`` (every layer) or ``"surface"`` (the surface
        layer only), for all variables or per predictor name.
    options : dict
        Reader options and entry parameters passed to ``read_entry`` (e.g.
        ``storage_options``, ``dataset_id``).
    """

    entry: str
    name: str | None = None
    variables: dict[str, str] | None = None
    time: Literal["year-month", "climatology", "static"] = "year-month"
    month: str | None = None
    depth: Literal["levels", "surface", "none"] = "levels"
    surface: str | dict[str, str] = "all"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the kinds and normalise ``variables`` to a mapping."""
        if not isinstance(self.entry, str) or not self.entry:
            raise ConfigError(f"inputs.environment: entry {self.entry!r}; expected a name.")
        where = f"inputs.environment[{self.label}]"
        check_choice(f"{where}.time", self.time, TIME_KINDS)
        check_choice(f"{where}.depth", self.depth, DEPTH_KINDS)
        if isinstance(self.variables, list | tuple):
            object.__setattr__(self, "variables", {str(v): str(v) for v in self.variables})
        elif self.variables is not None:
            if not isinstance(self.variables, Mapping):
                raise ConfigError(
                    f"{where}.variables: {self.variables!r}; expected a list of names or "
                    "a mapping source name -> predictor name."
                )
            object.__setattr__(
                self, "variables", {str(k): str(v or k) for k, v in self.variables.items()}
            )
        surface = self.surface
        for value in surface.values() if isinstance(surface, Mapping) else [surface]:
            check_choice(f"{where}.surface", value, _SURFACE)

    @property
    def label(self) -> str:
        """The source's name in logs and columns."""
        return self.name or self.entry

    def surface_only(self, predictor: str) -> bool:
        """Whether a surface variable applies to the surface layer only."""
        if isinstance(self.surface, Mapping):
            return self.surface.get(predictor, "all") == "surface"
        return self.surface == "surface"


@dataclass
class SourceData:
    """An opened source: its spec and its normalised Dataset (predictor names)."""

    spec: EnvironmentSource
    data: xr.Dataset


def parse_sources(value: Any) -> tuple[EnvironmentSource, ...]:
    """Read ``inputs.environment``: a name, a mapping, or a list of either.

    Examples
    --------
    >>> [s.label for s in parse_sources("environment")]
    ['environment']
    >>> s = parse_sources([{"entry": "sst", "time": "climatology", "variables": {"LAYER": "sst"}}])
    >>> s[0].time, s[0].variables
    ('climatology', {'LAYER': 'sst'})
    """
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ConfigError("inputs.environment: empty; name at least one catalog entry.")
    out = []
    for item in items:
        if isinstance(item, EnvironmentSource):
            out.append(item)
        elif isinstance(item, str):
            out.append(EnvironmentSource(entry=item))
        elif isinstance(item, Mapping):
            unknown = sorted(set(item) - set(_KEYS))
            if unknown:
                raise ConfigError(
                    f"inputs.environment: {item.get('entry', item)!r}: unknown key(s) "
                    f"{', '.join(unknown)}; valid: {', '.join(_KEYS)}."
                )
            if "entry" not in item:
                raise ConfigError(f"inputs.environment: {dict(item)!r} has no 'entry'.")
            out.append(EnvironmentSource(**dict(item)))
        else:
            raise ConfigError(
                f"inputs.environment: {item!r}; expected an entry name or a mapping "
                "{entry: ..., variables: ..., time: ..., depth: ...}."
            )
    labels = [s.label for s in out]
    repeated = sorted({n for n in labels if labels.count(n) > 1})
    if repeated:
        raise ConfigError(
            f"inputs.environment: source name(s) {', '.join(repeated)} repeat; give each "
            "a distinct 'name'."
        )
    return tuple(out)


def open_source(
    dataset: xr.Dataset, spec: EnvironmentSource, *, where: str | None = None
) -> SourceData:
    """Normalise a source's Dataset (as its reader returned it) to the source's spec.

    Parameters
    ----------
    dataset : xarray.Dataset
        The entry as read (``read_entry``): normalised by the oceanfields readers, or
        plain from an intake driver (normalised here).
    spec : EnvironmentSource
        Variables, renames, time and depth kinds.
    where : str, optional
        Name in logs and errors (default the source's URL and label).

    Returns
    -------
    SourceData
        Predictor names, dims among ``time``/``month``, ``depth``, ``lat``, ``lon``.

    Raises
    ------
    ConfigError
        A variable not in the source, climatology months that cannot be decoded, a
        year-month axis whose times cannot be decoded, a static source with several
        time steps, a depth axis on a ``none`` source.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"LAYER": (("time", "lat", "lon"), np.zeros((12, 2, 2)))},
    ...                 coords={"time": np.arange(1.0, 13.0), "lat": [1.0, 0.0],
    ...                         "lon": [0.0, 1.0]})
    >>> src = open_source(ds, EnvironmentSource(entry="sst", time="climatology",
    ...                                         variables={"LAYER": "sst"}))
    >>> list(src.data.data_vars), src.data.month.values[:3].tolist(), src.data.lat.values.tolist()
    (['sst'], [1, 2, 3], [0.0, 1.0])
    """
    label = f"{dataset.attrs.get('source') or spec.entry} [{spec.label}]"
    where = where or label
    ds = dataset
    if spec.variables is not None:
        missing = [v for v in spec.variables if v not in ds.data_vars]
        if missing:
            raise ConfigError(
                f"{where}: variable(s) {', '.join(map(repr, missing))} not in the source; "
                f"available: {', '.join(sorted(map(str, ds.data_vars)))}. Fix "
                f"inputs.environment[{spec.label}].variables."
            )
        ds = ds[list(spec.variables)].rename({k: v for k, v in spec.variables.items() if k != v})
    ds = normalise_environment(ds, where)  # a no-op on what the oceanfields readers return
    ds = _time_axis(ds, spec, where)
    ds = _depth_axis(ds, spec, where)
    ds.attrs["source"] = dataset.attrs.get("source")
    ds.attrs["source_name"] = spec.label
    return SourceData(spec=spec, data=ds)


# --------------------------------------------------------------------------- time


def _time_axis(ds: xr.Dataset, spec: EnvironmentSource, where: str) -> xr.Dataset:
    if spec.time == "static":
        if "time" in ds.dims:
            if ds.sizes["time"] != 1:
                raise ConfigError(
                    f"{where}: a static source with {ds.sizes['time']} time steps; use "
                    "time: year-month or climatology, or select one step."
                )
            ds = ds.isel(time=0, drop=True)
        return ds.drop_vars([c for c in ("time",) if c in ds.coords])
    if spec.time == "climatology":
        return _climatology(ds, spec, where)
    if "time" not in ds.dims:
        raise ConfigError(
            f"{where}: time: year-month, but the source has no time dimension (dims "
            f"{', '.join(map(str, ds.dims))}); use time: static or climatology."
        )
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        try:
            decoded = xr.decode_cf(ds[["time"]].reset_coords(drop=False))
        except (ValueError, TypeError, OverflowError) as err:
            raise ConfigError(
                f"{where}: the time axis cannot be decoded as dates ({err}); units "
                f"{ds['time'].attrs.get('units')!r}. Use time: climatology for a "
                "12-month climatology."
            ) from err
        if not np.issubdtype(decoded["time"].dtype, np.datetime64):
            raise ConfigError(
                f"{where}: the time axis ({ds['time'].values[:3].tolist()}, units "
                f"{ds['time'].attrs.get('units')!r}) does not decode to dates; use "
                "time: climatology for a 12-month climatology."
            )
        ds = ds.assign_coords(time=decoded["time"].values)
        logger.info("%s: time decoded with CF units", where)
    return ds


def _climatology(ds: xr.Dataset, spec: EnvironmentSource, where: str) -> xr.Dataset:
    if spec.month is not None:
        if spec.month not in ds.variables:
            raise ConfigError(
                f"{where}: month coordinate {spec.month!r} not in the source; coords: "
                f"{', '.join(map(str, ds.coords))}."
            )
        dim = ds[spec.month].dims[0]
        months = np.asarray(ds[spec.month].values)
        how = f"from coordinate {spec.month!r}"
    elif "month" in ds.dims:
        dim, months, how = "month", np.asarray(ds["month"].values), "from the month axis"
    elif "time" in ds.dims:
        dim = "time"
        months, how = _months_of(ds["time"], where)
    else:
        raise ConfigError(
            f"{where}: time: climatology, but the source has no time or month axis "
            f"(dims {', '.join(map(str, ds.dims))})."
        )
    months = np.asarray(months)
    valid = (
        months.size > 0
        and np.issubdtype(months.dtype, np.number)
        and np.all(np.isfinite(months))
        and np.all(np.round(months) == months)
        and set(months.astype(int)) <= set(range(1, 13))
        and len(set(months.astype(int))) == months.size
    )
    if not valid:
        raise ConfigError(
            f"{where}: climatology months cannot be decoded ({how}: "
            f"{months[:12].tolist()}); expected 12 (or fewer) distinct months 1..12. Give "
            f"inputs.environment[{spec.label}].month, the coordinate holding them."
        )
    logger.info("%s: climatology, months %s", where, how)
    ds = ds.drop_vars([c for c in ds.coords if c != dim and dim in ds[c].dims])
    if dim != "month":
        ds = ds.rename({dim: "month"})
    return ds.assign_coords(month=months.astype("int64")).sortby("month")


def _months_of(time: xr.DataArray, where: str) -> tuple[np.ndarray, str]:
    values = np.asarray(time.values)
    if np.issubdtype(values.dtype, np.datetime64):
        return pd.DatetimeIndex(values).month.to_numpy(), "from the dates of the time axis"
    if np.issubdtype(values.dtype, np.number):
        if np.all((values >= 1) & (values <= 12) & (np.round(values) == values)):
            return values.astype("int64"), (
                f"time holds the month numbers 1..12 (units {time.attrs.get('units')!r} not used)"
            )
        try:
            decoded = xr.decode_cf(time.to_dataset(name="time"))["time"].values
            if np.issubdtype(decoded.dtype, np.datetime64):
                return pd.DatetimeIndex(decoded).month.to_numpy(), "from CF-decoded dates"
        except (ValueError, TypeError, OverflowError):
            pass
    if values.size == 12:
        return np.arange(1, 13), (
            f"time values {values[:3].tolist()}... undecodable; months taken from the "
            "position 1..12"
        )
    return values, f"time values {values[:5].tolist()} (undecodable)"


# --------------------------------------------------------------------------- depth


def _depth_axis(ds: xr.Dataset, spec: EnvironmentSource, where: str) -> xr.Dataset:
    if spec.depth == "levels":
        return ds
    if "depth" in ds.dims:
        if spec.depth == "none":
            raise ConfigError(
                f"{where}: depth: none, but the source has a depth axis "
                f"({ds.sizes['depth']} levels); use depth: levels or surface."
            )
        top = float(ds["depth"].values[0])
        ds = ds.isel(depth=0, drop=True)
        logger.info("%s: surface source: the shallowest level (%g m) taken", where, top)
    for name in ds.data_vars:
        ds[name].attrs["surface_only"] = int(spec.surface_only(str(name)))
    return ds


# --------------------------------------------------------------------------- describing


def source_summary(ds: xr.Dataset) -> dict[str, str]:
    """Describe a gridded Dataset as a source: its grid, depth and (guessed) time kind.

    Parameters
    ----------
    ds : xarray.Dataset
        As a reader returns it (normalised or not).

    Returns
    -------
    dict
        ``grid``, ``depth`` and ``time`` as one-line texts (``oceanfields catalog show``).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"LAYER": (("time", "lat", "lon"), np.zeros((12, 2, 3)))},
    ...                 coords={"time": np.arange(1, 13), "lat": [10.0, -10.0],
    ...                         "lon": [0.0, 120.0, 240.0]})
    >>> source_summary(ds)["time"]
    'climatology (12 steps, months 1..12 in the time values)'
    """
    ds = normalise_environment(ds, str(ds.attrs.get("source") or "source"))
    parts = []
    for axis in ("lat", "lon"):
        v = np.asarray(ds[axis].values, dtype="float64")
        step = float(np.median(np.diff(v))) if v.size > 1 else float("nan")
        parts.append(f"{axis} {v.min():g}..{v.max():g} step {step:.4g} ({v.size})")
    depth = "none (2-D)"
    if "depth" in ds.dims:
        z = np.asarray(ds["depth"].values, dtype="float64")
        depth = f"{z.size} levels {z.min():g}..{z.max():g} m (levels)"
    if "time" not in ds.dims:
        time = "static (no time axis)"
    else:
        values = np.asarray(ds["time"].values)
        n = values.size
        if np.issubdtype(values.dtype, np.datetime64):
            t = pd.DatetimeIndex(values)
            time = f"year-month ({n} steps, {t.min():%Y-%m} .. {t.max():%Y-%m})"
        elif np.issubdtype(values.dtype, np.number) and np.all((values >= 1) & (values <= 12)):
            time = f"climatology ({n} steps, months 1..12 in the time values)"
        elif n == 12:
            time = "climatology (12 steps, months by position)"
        else:
            time = f"undecoded ({n} steps, units {ds['time'].attrs.get('units')!r})"
    return {"grid": ", ".join(parts), "depth": depth, "time": time}
