"""The fields as one CF NetCDF-4 file, for the readers and servers that do not read zarr v3.

:func:`export_netcdf` reads a run's ``fields.zarr`` and writes ``fields.nc`` (or any
file or URL): NetCDF-4 (HDF5, zlib level 4, chunked one month and layer per chunk),
``depth`` (the layer mid-depth, positive down, with ``depth_bnds``) as the vertical
dimension and the layer names kept as a string coordinate, times as days since
1970-01-01 (Gregorian calendar) at the start of each month with ``time_bnds``, and the
store's CF-1.12/ACDD-1.3 attributes. ERDDAP, ODV, Panoply, CDO and NCO read it; the IOOS
compliance-checker passes every CF-1.11 check and every ACDD-1.3 check but one:
"standard_name missing" on the targets CF has no name for (the particle size classes,
the non-living categories; :mod:`pipeline.products.cf` says why). Both are tested.

The concentration of a category that is a biological taxon (:func:`~pipeline.products.cf.taxon_of`)
is written as CF 6.1.2 asks: standard name
``number_concentration_of_biological_taxon_in_sea_water`` with two string scalar
auxiliary coordinates, ``<target>_taxon_name`` (``biological_taxon_name``) and
``<target>_taxon_lsid`` (``biological_taxon_lsid``, empty: a WoRMS LSID needs an online
lookup this tool does not make, and CF asks for missing data then). Its
``coordinates`` attribute names those two only (compliance-checker's 6.1.2 check allows
no more); the layer coordinates are on ``depth``.

One file per product: a monthly 1° global product of ten targets is a few hundred MB; a
finer grid should be cut per year (``ds.sel(time="2020")``) before exporting.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pipeline.products.cf import cf_fields, public_attributes, taxon_of
from pipeline.store import file_in_store

__all__ = ["NETCDF_CONVENTIONS", "export_netcdf", "netcdf_dataset", "open_fields"]

logger = logging.getLogger(__name__)

#: ``Conventions`` of the NetCDF file: the CF version compliance-checker verifies.
NETCDF_CONVENTIONS = "CF-1.11, ACDD-1.3"
_BOUNDS = ("time_bnds", "depth_bnds", "lat_bnds", "lon_bnds", "crs")
_TAXON_STANDARD_NAME = "number_concentration_of_biological_taxon_in_sea_water"


def open_fields(run_out: str, *, storage_options: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Open a run's fields store (``RUN_OUT/fields.zarr``), lazily, from its consolidated metadata.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL (or the ``.zarr`` store itself).
    storage_options : mapping, optional
        fsspec options of a remote URL (credentials from the environment).

    Returns
    -------
    xarray.Dataset
    """
    url = run_out.rstrip("/")
    if not url.endswith(".zarr"):
        url = f"{url}/fields.zarr"
    kw: dict[str, Any] = {"storage_options": dict(storage_options)} if storage_options else {}
    return xr.open_zarr(url, **kw)


def netcdf_dataset(fields: xr.Dataset) -> xr.Dataset:
    """Return the fields laid out for NetCDF: ``depth`` as the vertical dimension.

    Parameters
    ----------
    fields : xarray.Dataset
        A fields store as written by :func:`pipeline.fields.write.write_fields` (with
        ``depth``, ``depth_bnds`` and the other bounds as coordinates).

    Returns
    -------
    xarray.Dataset
        Dims ``(time, depth, lat, lon)``; the bounds and ``crs`` as data variables (as CF
        lays them out), ``layer`` a string coordinate along ``depth``, flag values in the
        flag variable's type.
    """
    # the current CF attributes, also on a store written by an older version (idempotent)
    ds = cf_fields(fields).swap_dims({"layer": "depth"})
    ds = ds.reset_coords([n for n in _BOUNDS if n in ds.coords])
    ds = ds.assign_coords(layer=("depth", [str(v) for v in ds["layer"].values], ds["layer"].attrs))
    for name, var in ds.data_vars.items():
        if "flag_values" in var.attrs:
            var.attrs["flag_values"] = np.asarray(var.attrs["flag_values"], dtype=var.dtype)
        if "coordinates" in var.attrs:
            del var.attrs["coordinates"]
        var.encoding = {}
        logger.debug("netcdf: %s %s", name, var.dims)
    for var in ds.coords.values():
        var.encoding = {}
    for key in ("features", "targets"):
        if isinstance(ds.attrs.get(key), list | tuple):
            ds.attrs[key] = ", ".join(map(str, ds.attrs[key]))
    return _taxon_coordinates(ds)


def _taxon_coordinates(ds: xr.Dataset) -> xr.Dataset:
    """Give each taxon's concentration (and bounds) its CF 6.1.2 name and coordinates."""
    targets = str(ds.attrs.get("targets", "")).split(", ")
    for target in targets:
        taxon = taxon_of(target)
        if taxon is None or target not in ds.data_vars:
            continue
        name, lsid = f"{target}_taxon_name", f"{target}_taxon_lsid"
        ds[name] = ((), taxon, {"standard_name": "biological_taxon_name", "long_name": "taxon"})
        ds[lsid] = (
            (),
            "",
            {
                "standard_name": "biological_taxon_lsid",
                "long_name": "taxon LSID (WoRMS)",
                "comment": "missing: no LSID lookup was made; OBIS/WoRMS match the name",
            },
        )
        for var in (target, f"{target}_lower", f"{target}_upper"):
            if var in ds.data_vars:
                ds[var].attrs.update({"standard_name": _TAXON_STANDARD_NAME})
                ds[var].attrs["coordinates"] = f"{name} {lsid}"
        logger.debug("netcdf: %s is the taxon %r", target, taxon)
    return ds


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    enc: dict[str, dict[str, Any]] = {}
    time_units = {"units": "days since 1970-01-01", "calendar": "standard", "dtype": "f8"}
    for name, var in ds.variables.items():
        e: dict[str, Any] = {}
        if var.dtype.kind == "M":
            e.update(time_units)
        if set(var.dims) == {"time", "depth", "lat", "lon"}:
            e.update(
                {
                    "zlib": True,
                    "complevel": 4,
                    "shuffle": True,
                    "chunksizes": (1, 1, var.sizes["lat"], var.sizes["lon"]),
                }
            )
        if var.dtype.kind == "f" and name in ds.data_vars and name not in _BOUNDS:
            e["_FillValue"] = np.asarray(np.nan, dtype=var.dtype).item()
        elif var.dtype.kind in "fM" or name in _BOUNDS:
            e["_FillValue"] = None
        if var.dtype.kind in "OUT":
            e["dtype"] = str
        enc[str(name)] = e
    return enc


def _strip_bounds_attributes(path: str, ds: xr.Dataset) -> None:
    """Drop what xarray copies onto bounds variables (CF 7.1: they inherit their parent's)."""
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        for name in _BOUNDS[:-1]:
            if name in nc.variables:
                var = nc.variables[name]
                for attr in ("units", "calendar", "standard_name", "long_name"):
                    if attr in var.ncattrs():
                        var.delncattr(attr)


def export_netcdf(
    run_out: str,
    out: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> str:
    """Write a run's fields as one CF NetCDF-4 file.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL (holding ``fields.zarr``).
    out : str, optional
        File path or URL to write (default ``RUN_OUT/fields.nc``); written whole or not
        at all (:meth:`pipeline.store.OutputStore.open_atomic`).
    storage_options : mapping, optional
        fsspec options of remote URLs (credentials from the environment).
    attrs : mapping, optional
        Global attributes to add or override (``creator_email``, ``publisher_url``,
        ``license``, …: what the operator publishing the file knows).

    Returns
    -------
    str
        The file written.

    See Also
    --------
    netcdf_dataset : the layout written.
    """
    fields = open_fields(run_out, storage_options=storage_options)
    ds = netcdf_dataset(fields)
    ds.attrs.update(public_attributes(dict(attrs or {})))
    # The file declares the CF version it is checked against (compliance-checker has no
    # CF-1.12 suite yet); nothing in it needs more than CF-1.11.
    ds.attrs["Conventions"] = NETCDF_CONVENTIONS
    target = out or f"{run_out.rstrip('/')}/fields.nc"
    store, name = file_in_store(target, storage_options=storage_options)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "fields.nc")
        ds.to_netcdf(local, format="NETCDF4", engine="netcdf4", encoding=_encoding(ds))
        _strip_bounds_attributes(local, ds)
        size = os.path.getsize(local)
        with open(local, "rb") as src, store.open_atomic(name) as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
    logger.info("netcdf: %s written (%.1f MB)", target, size / 1e6)
    return store.path(name)
