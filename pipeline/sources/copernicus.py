"""Copernicus Marine ARCO zarr stores -> the environment Dataset (lazy, dask-backed).

One opener, :func:`open_environment`, reads any zarr store that fsspec reaches (a local
folder, ``s3://…`` through s3fs, ``https://…``) and normalises it to the project's
convention, so every later step sees one layout whatever the store:

========================  ==========================================================
store (ARCO / toolbox)    oceanfields
========================  ==========================================================
``latitude``              ``lat``, ascending
``longitude`` 0…360       ``lon`` in [-180, 180), ascending (rolled, not sorted)
``elevation`` (m, < 0)    ``depth`` (m, positive down, ascending); ``depth`` kept
``time`` ms since 1970    ``time`` (datetime64, decoded by xarray from ``units``)
any dimension order       ``(time, depth, lat, lon)``, missing ones skipped
========================  ==========================================================

Chunks stay the store's own (``chunks="store"``): reversing an axis (latitude stored
north to south, elevation deepest first) reverses the chunk order without merging
chunks, and rolling longitude from 0…360 to -180…180 (``dask.array.roll``) keeps the
chunk sizes: when the seam (180°E) falls on a chunk boundary, as in every global store
seen, the chunks are the store's, only reordered; otherwise each chunk is assembled from
the two store chunks it overlaps (a one-layer rechunk, logged at INFO). The graph
therefore grows with the number of chunks, never with the number of points.

Notes for developers
--------------------
* Stores are opened with ``xarray.open_zarr(..., consolidated=None)``: the ARCO stores
  are zarr v2 with consolidated metadata, our demo and fields stores are zarr v3 without
  it; both open. The "consolidated metadata not found" RuntimeWarning that v3 stores
  raise is expected and only logged at DEBUG.
* Public notes report that the CloudFerro bucket answers ``403`` (not ``404``) to the
  zarr v3 probe ``zarr.json``, which makes zarr-python 3 fail before reading the v2
  metadata. When the first attempt fails with anything but "not found" and no
  ``zarr_format`` was given, the store is opened again as zarr v2 (logged at INFO).
  Not verified here (no network); pass ``zarr_format=2`` to skip the first attempt.
* Real ARCO variables are float32 with ``_FillValue`` (or int16 with ``scale_factor``
  and ``add_offset``); xarray masks and scales them, so land reads as NaN.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.errors import ConfigError, InputFormatError

__all__ = ["describe_environment", "normalise_environment", "open_environment"]

logger = logging.getLogger(__name__)

#: Dimension order of every environment Dataset (those present, in this order).
DIM_ORDER = ("time", "depth", "lat", "lon")

_RENAMES = {"latitude": "lat", "longitude": "lon"}

_DEPTH_ATTRS = {
    "standard_name": "depth",
    "long_name": "Depth",
    "units": "m",
    "positive": "down",
    "axis": "Z",
}


def open_environment(
    url: str,
    *,
    variables: Sequence[str] | None = None,
    time: tuple[str, str] | slice | None = None,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Literal["store"] | Mapping[str, int] = "store",
    zarr_format: Literal[2, 3] | None = None,
) -> xr.Dataset:
    """Open an ARCO-like zarr store lazily as a normalised environment Dataset.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the zarr store (``s3://bucket/x.zarr``,
        ``https://…/timeChunked.zarr``).
    variables : sequence of str, optional
        Variables to keep, in this order (store names, e.g. ``["thetao", "so"]``); all,
        sorted by name, when None.
    time : (str, str) or slice, optional
        Inclusive time range, e.g. ``("2020-01-01", "2020-06-30")``; all when None.
    storage_options : mapping, optional
        Passed to fsspec, e.g. ``{"client_kwargs": {"endpoint_url": …}}`` or
        ``{"anon": True}``. Credentials come from the environment, never from here.
    chunks : "store" or mapping, default "store"
        ``"store"`` keeps the store's chunks. A mapping of normalised dimension names
        to sizes (``{"lat": 256}``) rechunks after normalisation (logged).
    zarr_format : {2, 3}, optional
        Force the zarr format; by default it is detected (see the module notes).

    Returns
    -------
    xarray.Dataset
        Dask-backed, dims in ``(time, depth, lat, lon)`` order (those present), lat and
        depth ascending, lon in [-180, 180) ascending, ``attrs["source"] = url``.

    Raises
    ------
    InputFormatError
        When no zarr store is found at ``url``, or it has no latitude/longitude, or
        its longitudes are not a regular global or regional axis.
    ConfigError
        When a requested variable is not in the store (lists the available ones), or
        the time range is malformed or selects no time step (gives the store's extent).

    See Also
    --------
    describe_environment : variables, extents, resolution and chunks of the result.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, xarray as xr
    >>> store = os.path.join(tempfile.mkdtemp(), "env.zarr")
    >>> _ = xr.Dataset(
    ...     {"thetao": (("elevation", "latitude", "longitude"), np.zeros((2, 3, 4)))},
    ...     coords={"elevation": [-10.0, -1.0], "latitude": [10.0, 0.0, -10.0],
    ...             "longitude": [0.0, 90.0, 180.0, 270.0]},
    ... ).to_zarr(store, zarr_format=2, consolidated=True)
    >>> ds = open_environment(store)
    >>> ds.thetao.dims
    ('depth', 'lat', 'lon')
    >>> ds.depth.values.tolist(), ds.lat.values.tolist(), ds.lon.values.tolist()
    ([1.0, 10.0], [-10.0, 0.0, 10.0], [-180.0, -90.0, 0.0, 90.0])
    """
    ds = _open_store(url, storage_options=storage_options, zarr_format=zarr_format)
    ds = _select_variables(ds, variables, url)
    ds = normalise_environment(ds, url)
    if time is not None:
        ds = _select_time(ds, time, url)
    if chunks != "store":
        ds = _rechunk(ds, chunks, url)
    ds.attrs["source"] = url
    logger.info(
        "opened %s: %d variable(s), dims %s",
        url,
        len(ds.data_vars),
        dict(ds.sizes),
    )
    return ds


def describe_environment(ds: xr.Dataset) -> dict[str, Any]:
    """Summarise an environment (or fields) Dataset for people and logs.

    Parameters
    ----------
    ds : xarray.Dataset
        Typically the result of :func:`open_environment`; any Dataset works, missing
        coordinates are reported as None.

    Returns
    -------
    dict
        ``source`` (URL or None), ``variables`` (names), ``dims`` (name -> size),
        ``time`` (``{"start", "end", "steps"}`` as ISO dates, or None), ``lat`` and
        ``lon`` (``{"min", "max", "step", "n"}`` in degrees, or None), ``depth``
        (levels in metres, or None), ``chunks`` (dimension -> largest chunk size) and
        ``n_chunks`` (dask chunks over all variables: the size of a full read's graph).

    See Also
    --------
    open_environment : opens and normalises a store.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"thetao": (("lat", "lon"), np.zeros((3, 4)))},
    ...     coords={"lat": [-1.0, 0.0, 1.0], "lon": [0.0, 0.5, 1.0, 1.5]},
    ... ).chunk({"lon": 2})
    >>> info = describe_environment(ds)
    >>> info["variables"], info["lon"], info["n_chunks"]
    (['thetao'], {'min': 0.0, 'max': 1.5, 'step': 0.5, 'n': 4}, 2)
    """
    chunks: dict[str, int] = {}
    n_chunks = 0
    for var in ds.data_vars.values():
        if var.chunks is None:
            continue
        n_chunks += int(np.prod([len(c) for c in var.chunks]))
        for dim, sizes in zip(var.dims, var.chunks, strict=True):
            chunks[str(dim)] = max(chunks.get(str(dim), 0), max(sizes))
    return {
        "source": ds.attrs.get("source"),
        "variables": sorted(str(v) for v in ds.data_vars),
        "dims": {str(k): int(v) for k, v in ds.sizes.items()},
        "time": _time_extent(ds),
        "lat": _axis_extent(ds, "lat"),
        "lon": _axis_extent(ds, "lon"),
        "depth": [float(d) for d in ds["depth"].values] if "depth" in ds.dims else None,
        "chunks": chunks,
        "n_chunks": n_chunks,
    }


# --------------------------------------------------------------------------- opening


def _open_store(
    url: str, *, storage_options: Mapping[str, Any] | None, zarr_format: int | None
) -> xr.Dataset:
    try:
        return _open_zarr(url, storage_options, zarr_format)
    except FileNotFoundError as err:
        raise _not_found(url, err) from err
    except Exception as first:
        if zarr_format is not None or _is_not_found(first):
            raise _not_found(url, first) from first
        logger.info(
            "%s: opening failed (%s: %s); trying again as a zarr v2 store",
            url,
            type(first).__name__,
            first,
        )
        try:
            return _open_zarr(url, storage_options, 2)
        except Exception as second:
            raise InputFormatError(
                f"{url}: cannot open as a zarr store ({type(first).__name__}: {first}; as "
                f"zarr v2: {type(second).__name__}: {second}). Check the URL, the storage "
                "options (endpoint, anonymous access) and that the store is zarr v2 or v3."
            ) from second


def _open_zarr(
    url: str, storage_options: Mapping[str, Any] | None, zarr_format: int | None
) -> xr.Dataset:
    kwargs: dict[str, Any] = {"consolidated": None, "chunks": {}}
    if storage_options:
        kwargs["storage_options"] = dict(storage_options)
    if zarr_format is not None:
        kwargs["zarr_format"] = zarr_format
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        ds = xr.open_zarr(url, **kwargs)
    for w in caught:
        if "consolidated metadata" in str(w.message):
            logger.debug("%s: no consolidated metadata (normal for zarr v3)", url)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def _is_not_found(err: BaseException) -> bool:
    name = type(err).__name__
    return isinstance(err, FileNotFoundError | KeyError) or "NotFound" in name


def _not_found(url: str, err: BaseException) -> InputFormatError:
    return InputFormatError(
        f"{url}: no zarr store found there ({type(err).__name__}: {err}). Check the path "
        "or URL, and for remote stores the storage options (endpoint_url, anon=True for "
        "public buckets) and the credentials in your environment."
    )


# --------------------------------------------------------------------------- selection


def _select_variables(ds: xr.Dataset, variables: Sequence[str] | None, url: str) -> xr.Dataset:
    if variables is None:
        return ds[sorted(str(v) for v in ds.data_vars)]  # stable order, whatever the listing
    if isinstance(variables, str):
        variables = [variables]
    available = sorted(str(v) for v in ds.data_vars)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise ConfigError(
            f"{url}: variable(s) {', '.join(map(repr, missing))} not in the store; "
            f"available: {', '.join(available)}. Fix the variables list (catalog entry or "
            "config) to use names from the store."
        )
    return ds[list(variables)]


def _select_time(ds: xr.Dataset, time: tuple[str, str] | slice, url: str) -> xr.Dataset:
    if "time" not in ds.dims:
        raise ConfigError(
            f"{url}: a time range {time!r} was given but the store has no time dimension "
            f"(dims: {', '.join(_dim_names(ds))}). Drop the time selection."
        )
    if isinstance(time, slice):
        start, stop = time.start, time.stop
    elif isinstance(time, Sequence) and not isinstance(time, str) and len(time) == 2:
        start, stop = time
    else:
        raise ConfigError(
            f"{url}: time selection {time!r} is not a (start, end) pair. "
            "Use e.g. time=('2020-01-01', '2020-12-31')."
        )
    try:
        bounds = [None if t is None else pd.Timestamp(t) for t in (start, stop)]
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"{url}: time selection {time!r} is not a pair of dates ({err}). "
            "Use ISO dates such as '2020-01-01'."
        ) from err
    try:
        selected = ds.sel(time=slice(*bounds))
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(
            f"{url}: cannot select time range {start} .. {stop} ({err}); the store covers "
            f"{_time_text(ds)}."
        ) from err
    if selected.sizes["time"] == 0:
        raise ConfigError(
            f"{url}: time range {start} .. {stop} selects no time step; the store covers "
            f"{_time_text(ds)}. Choose a range inside it."
        )
    logger.info("%s: time %s .. %s: %d step(s)", url, start, stop, selected.sizes["time"])
    return selected


def _rechunk(ds: xr.Dataset, chunks: Mapping[str, int], url: str) -> xr.Dataset:
    if not isinstance(chunks, Mapping):
        raise ConfigError(
            f"{url}: chunks={chunks!r}; expected 'store' or a mapping such as "
            "{'lat': 256, 'lon': 256}."
        )
    unknown = [d for d in chunks if d not in ds.dims]
    if unknown:
        raise ConfigError(
            f"{url}: chunks name unknown dimension(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(_dim_names(ds))}."
        )
    logger.info("%s: rechunking to %s (store chunks were %s)", url, dict(chunks), _chunk_counts(ds))
    return ds.chunk(dict(chunks))


# --------------------------------------------------------------------------- normalising


def normalise_environment(ds: xr.Dataset, url: str) -> xr.Dataset:
    """Normalise any gridded Dataset to the project's layout (see the module table).

    Parameters
    ----------
    ds : xarray.Dataset
        With ``lat``/``lon`` (or ``latitude``/``longitude``) dims, optionally ``depth``
        (positive down) or ``elevation`` (negative up) and ``time``.
    url : str
        Where it came from, named in the log and in errors.

    Returns
    -------
    xarray.Dataset
        Lat and depth ascending, lon in [-180, 180) ascending, dims in
        ``(time, depth, lat, lon)`` order; each change logged at INFO.

    Raises
    ------
    InputFormatError
        No latitude/longitude dimension, a non-monotonic axis, repeated longitudes.
    """
    renames = {old: new for old, new in _RENAMES.items() if old in ds.variables}
    ds = ds.rename(renames)
    for name in ("lat", "lon"):
        if name not in ds.dims:
            raise InputFormatError(
                f"{url}: no {name!r} (or {'latitude' if name == 'lat' else 'longitude'!r}) "
                f"dimension; dims are {', '.join(map(str, ds.dims))}. Is this a gridded "
                "Copernicus-like store?"
            )
    ds = _vertical(ds, url)
    # one isel for every reversed axis: one graph layer, chunk order reversed, not merged
    reverse = {dim: slice(None, None, -1) for dim in ("depth", "lat") if _descending(ds, dim, url)}
    if reverse:
        logger.info("%s: %s stored descending; reversed", url, ", ".join(reverse))
        ds = ds.isel(reverse)
    ds = _longitude(ds, url)
    order = [d for d in DIM_ORDER if d in ds.dims]
    return ds.transpose(*order, ...)


def _vertical(ds: xr.Dataset, url: str) -> xr.Dataset:
    if "elevation" not in ds.dims:
        if "depth" in ds.coords:
            ds["depth"].attrs = {**_DEPTH_ATTRS, **ds["depth"].attrs}
        return ds
    if "depth" in ds.variables:
        raise InputFormatError(
            f"{url}: the store has both 'elevation' and 'depth'; cannot tell which is the "
            "vertical axis. Drop one of them (ds.drop_vars) before normalising."
        )
    elevation = ds["elevation"]
    depth = xr.DataArray(
        -elevation.values.astype("float64"), dims="elevation", attrs=dict(_DEPTH_ATTRS)
    )
    ds = ds.assign_coords(elevation=depth).rename(elevation="depth")
    logger.info("%s: vertical axis 'elevation' (m, up) -> 'depth' (m, positive down)", url)
    return ds


def _descending(ds: xr.Dataset, dim: str, url: str) -> bool:
    if dim not in ds.dims:
        return False
    values = np.asarray(ds[dim].values)
    steps = np.diff(values)
    if np.all(steps > 0):
        return False
    if np.all(steps < 0):
        return True
    raise InputFormatError(
        f"{url}: coordinate {dim!r} is not strictly monotonic (first values "
        f"{values[:5].tolist()}). A gridded store needs a sorted axis without repeats."
    )


def _longitude(ds: xr.Dataset, url: str) -> xr.Dataset:
    lon = np.asarray(ds["lon"].values, dtype="float64")
    wrapped = (lon + 180.0) % 360.0 - 180.0
    shift = 0
    if lon.size > 1:
        drops = np.flatnonzero(np.diff(wrapped) < 0)
        if drops.size > 1:
            raise InputFormatError(
                f"{url}: longitudes are not one sorted axis (first values "
                f"{lon[:5].tolist()}); expected -180..180 or 0..360, ascending."
            )
        if drops.size == 1:
            shift = -(int(drops[0]) + 1)
    attrs = dict(ds["lon"].attrs)
    ds = ds.assign_coords(lon=("lon", wrapped, attrs))
    if shift:
        sizes = {
            c
            for v in ds.data_vars.values()
            if v.chunks and "lon" in v.dims
            for c in v.chunksizes["lon"]
        }
        aligned = all(shift % c == 0 for c in sizes)
        ds = ds.roll(lon=shift, roll_coords=True)
        logger.info(
            "%s: longitude 0..360 rolled by %d to -180..180 (%s)",
            url,
            shift,
            "seam on a chunk boundary: store chunks reordered"
            if aligned
            else f"seam inside a chunk of {sorted(sizes)}: chunks rebuilt from two store chunks",
        )
    values = ds["lon"].values
    if values.size > 1 and not np.all(np.diff(values) > 0):
        raise InputFormatError(
            f"{url}: longitudes repeat after wrapping to [-180, 180) (e.g. both 0 and 360 "
            "are present); drop the duplicated column."
        )
    return ds


# --------------------------------------------------------------------------- describing


def _dim_names(ds: xr.Dataset) -> list[str]:
    """Dimension names, the conventional ones first in (time, depth, lat, lon) order."""
    names = [str(d) for d in ds.dims]
    return [d for d in DIM_ORDER if d in names] + sorted(d for d in names if d not in DIM_ORDER)


def _chunk_counts(ds: xr.Dataset) -> dict[str, int]:
    out: dict[str, int] = {}
    for var in ds.data_vars.values():
        if var.chunks is not None:
            for dim, sizes in zip(var.dims, var.chunks, strict=True):
                out[str(dim)] = max(out.get(str(dim), 0), len(sizes))
    return out


def _time_extent(ds: xr.Dataset) -> dict[str, Any] | None:
    if "time" not in ds.coords or ds["time"].size == 0:
        return None
    times = pd.DatetimeIndex(np.atleast_1d(ds["time"].values))
    return {
        "start": times.min().isoformat(),
        "end": times.max().isoformat(),
        "steps": int(times.size),
    }


def _time_text(ds: xr.Dataset) -> str:
    extent = _time_extent(ds)
    if extent is None:
        return "no time step"
    return f"{extent['start']} .. {extent['end']} ({extent['steps']} steps)"


def _axis_extent(ds: xr.Dataset, name: str) -> dict[str, Any] | None:
    if name not in ds.coords:
        return None
    values = np.asarray(ds[name].values, dtype="float64")
    if values.size == 0:
        return None
    steps = np.diff(values)
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "step": float(np.round(np.median(steps), 6)) if steps.size else None,
        "n": int(values.size),
    }
