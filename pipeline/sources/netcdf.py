"""NetCDF files (one, a list or a glob) -> a normalised environment Dataset, lazily.

The second environment reader beside :func:`pipeline.sources.copernicus.open_environment`
(ARCO zarr): Copernicus Marine subsets delivered as NetCDF, World Ocean Atlas files,
and monthly climatology collections (one file per variable, 12 time steps). Files are
opened with :func:`xarray.open_mfdataset` (dask-backed, one chunk per file unless
``chunks`` says otherwise) and normalised exactly as the zarr stores
(:func:`~pipeline.sources.copernicus.normalise_environment`: lat ascending, lon in
[-180, 180), depth positive down).

Notes for developers
--------------------
* Packed integers (``int16`` with ``scale_factor``/``add_offset``/``_FillValue``, as the
  CMEMS NetCDF subsets are) are decoded by xarray's CF decoding (``mask_and_scale``):
  the Dataset holds float values, NaN where the fill value was.
* Times are **not** decoded here (``decode_times=False``): climatology files store the
  month as 1..12 with units that no calendar reads (``"day as %Y%m%d.%f"``, or none), so
  decoding is left to the time kind of the environment source
  (:func:`pipeline.sources.environment.open_source`), which decodes a ``year-month``
  axis with CF rules and reads a ``climatology`` axis as months.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import fsspec
import xarray as xr

from pipeline.errors import ConfigError, InputFormatError
from pipeline.sources.copernicus import normalise_environment

__all__ = ["open_netcdf"]

logger = logging.getLogger(__name__)


def open_netcdf(
    urls: str | Sequence[str],
    *,
    variables: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Open NetCDF file(s) lazily as a normalised environment Dataset.

    Parameters
    ----------
    urls : str or sequence of str
        A file, a glob, or a list of files (local or fsspec URLs); several files are
        combined by their coordinates (e.g. one file per month or per variable).
    variables : sequence of str, optional
        Variables to keep (file names); all data variables when None.
    storage_options : mapping, optional
        fsspec options for remote files (credentials come from the environment).
    chunks : mapping, optional
        Dask chunks per dimension (file names); one chunk per file when None.

    Returns
    -------
    xarray.Dataset
        Dask-backed, normalised (lat ascending, lon in [-180, 180), depth positive down,
        dims in ``(time, depth, lat, lon)`` order), time **not** decoded (see the module
        notes), ``attrs["source"]`` the first file.

    Raises
    ------
    InputFormatError
        No file matches, or a file is not NetCDF (names the file).
    ConfigError
        A requested variable is not in the files (lists the available ones).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, xarray as xr
    >>> path = os.path.join(tempfile.mkdtemp(), "clim.nc")
    >>> xr.Dataset({"LAYER": (("time", "lat", "lon"), np.zeros((12, 2, 3)))},
    ...            coords={"time": np.arange(1, 13), "lat": [10.0, -10.0],
    ...                    "lon": [0.0, 120.0, 240.0]}).to_netcdf(path)
    >>> ds = open_netcdf(path)
    >>> ds.lat.values.tolist(), ds.lon.values.tolist(), ds.time.values[:3].tolist()
    ([-10.0, 10.0], [-120.0, 0.0, 120.0], [1, 2, 3])
    """
    files = _expand(urls, storage_options)
    where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
    opened = [_open_one(f, storage_options) for f in files]
    kwargs: dict[str, Any] = {
        "decode_times": False,
        "chunks": dict(chunks) if chunks else {},
        "combine": "by_coords",
        "mask_and_scale": True,
        "engine": "h5netcdf" if storage_options or not _is_local(files[0]) else None,
    }
    try:
        ds = xr.open_mfdataset(opened, **kwargs)
    except (OSError, ValueError) as err:
        raise InputFormatError(
            f"{where}: cannot open as NetCDF ({type(err).__name__}: {err}). Check that the "
            "files are NetCDF-3/4 and share their coordinates."
        ) from err
    if variables is not None:
        if isinstance(variables, str):
            variables = [variables]
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ConfigError(
                f"{where}: variable(s) {', '.join(map(repr, missing))} not in the file(s); "
                f"available: {', '.join(sorted(map(str, ds.data_vars)))}."
            )
        ds = ds[list(variables)]
    ds = normalise_environment(ds, where)
    ds.attrs["source"] = files[0]
    logger.info("opened %s: %d variable(s), dims %s", where, len(ds.data_vars), dict(ds.sizes))
    return ds


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _expand(urls: str | Sequence[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    items = [urls] if isinstance(urls, str) else list(urls)
    files: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            fs, _, paths = fsspec.get_fs_token_paths(item, storage_options=storage_options)
            protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
            files += [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in paths]
        else:
            files.append(item)
    if not files:
        raise InputFormatError(f"{urls}: no NetCDF file matches.")
    return sorted(files)


def _open_one(url: str, storage_options: Mapping[str, Any] | None) -> Any:
    """Return a local path as it is, a remote URL as an open fsspec file."""
    if _is_local(url) and not storage_options:
        return url.removeprefix("file://")
    return fsspec.open(url, mode="rb", **dict(storage_options or {})).open()
