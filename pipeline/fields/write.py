"""Fields writer: predicted fields to a zarr v3 store, one time step at a time, resumably.

:func:`write_fields` writes a fields Dataset (from :func:`pipeline.fields.predict.predict_fields`,
dims ``(time, layer, lat, lon)``) to a zarr v3 store, local or ``s3://…``: a template
(metadata, coordinates and provenance) first, then one region (time step) after the
other, each followed by its completion marker; it returns a :class:`WriteReport`. An
existing store that differs from the fields (variables, coordinates, shapes,
provenance) is refused with :class:`~pipeline.errors.StoreMismatchError` naming the
difference and the fix.

These names are also importable from :mod:`pipeline.fields.predict`, where they lived first.

Developer note
--------------
*Resumable writes.* :func:`write_fields` writes a region (one time step, every layer,
lat and lon), *then* its completion marker, an empty zarr group
``<url>/.oceanfields/regions/<iiii>`` (a zarr group, so zarr and xarray open the store
without warnings and ignore it). A run interrupted between the two leaves the region
unmarked; the next run rewrites exactly the unmarked regions.

*Logging.* Records keep the ``pipeline.fields.predict`` logger of the fields step.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import xarray as xr

from pipeline.errors import StoreMismatchError
from pipeline.products.cf import CONVENTIONS, VOLATILE, cf_fields, product_attributes
from pipeline.products.chunking import consolidate_metadata
from pipeline.store import OutputStore

__all__ = ["WriteReport", "write_fields"]

logger = logging.getLogger(__name__)

_MARKERS = ".oceanfields"
_GROUP_DOC = {"zarr_format": 3, "node_type": "group", "attributes": {}}


@dataclass(frozen=True)
class WriteReport:
    """What :func:`write_fields` did.

    Attributes
    ----------
    url : str
        The store written.
    regions_total : int
        Number of regions (time steps) of the store.
    regions_written : int
        Regions written by this call.
    regions_skipped : int
        Regions already complete (marked), left as they were.
    """

    url: str
    regions_total: int
    regions_written: int
    regions_skipped: int


def _store_paths(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, root.rstrip("/")


def _marker(i: int) -> str:
    return f"{_MARKERS}/regions/{i:04d}/zarr.json"


def _put_group(store: OutputStore, name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Write an empty zarr group (a marker) at ``name`` in the store, whole."""
    doc = {**_GROUP_DOC, "attributes": dict(attributes or {})}
    store.write_json(name, doc, indent=None, newline=False)


def _done_regions(fs: Any, root: str) -> set[int]:
    fs.invalidate_cache()
    prefix = f"{root}/{_MARKERS}/regions/"
    try:
        found = fs.find(prefix)
    except FileNotFoundError:
        return set()
    done = set()
    for path in found:
        m = re.search(r"/regions/(\d+)/zarr\.json$", path)
        if m:
            done.add(int(m.group(1)))
    return done


def _zarr_kwargs(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"consolidated": False}
    if storage_options:
        kw["storage_options"] = dict(storage_options)
    return kw


def _prepare(ds: xr.Dataset) -> xr.Dataset:
    if tuple(ds["time"].dims) != ("time",):
        raise ValueError("fields: a 1-D 'time' coordinate is needed to write by region.")
    ds = ds.copy()
    ds = ds.assign_coords(layer=("layer", np.asarray(ds["layer"].values, dtype=object)))
    ds["layer"].attrs = dict(ds["layer"].attrs)
    for v in ds.variables.values():
        v.encoding = {}
    # Every variable along time (time_bnds too) gets one time step per chunk, so that a
    # region's write touches its own chunks only (a resumed write never rewrites a chunk
    # of a region already done).
    for v in ds.variables.values():
        if "time" in v.dims and v.chunks is None and v.ndim > 1:
            v.encoding["chunks"] = tuple(1 if d == "time" else n for d, n in v.sizes.items())
    # Variables without time (coordinates) go with the template, not the regions: load
    # them now (they may be dask-backed, and the template writes only in-memory data).
    small = [n for n, v in ds.variables.items() if "time" not in v.dims and v.chunks]
    if small:
        ds = ds.assign_coords({n: ds[n].compute() for n in small if n in ds.coords})
        ds = ds.assign({n: ds[n].compute() for n in small if n in ds.data_vars})
    return ds


def _plain(value: Any) -> Any:
    """Attribute value as JSON would store it (tuples and arrays as lists)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _differences(
    url: str, existing: xr.Dataset, ds: xr.Dataset, attrs: Mapping[str, Any]
) -> list[str]:
    diffs: list[str] = []
    a, b = set(map(str, existing.data_vars)), set(map(str, ds.data_vars))
    if a != b:
        diffs.append(
            f"variables: store has {sorted(a - b)!r} not in the fields, fields have "
            f"{sorted(b - a)!r} not in the store"
        )
    a, b = set(map(str, existing.coords)), set(map(str, ds.coords))
    if a != b:
        diffs.append(f"coordinates: store {sorted(a)!r}, fields {sorted(b)!r}")
    for dim in ds.dims:
        if existing.sizes.get(dim) != ds.sizes[dim]:
            diffs.append(
                f"dimension {dim!r}: store {existing.sizes.get(dim)}, fields {ds.sizes[dim]}"
            )
    if diffs:
        return diffs
    for name in ds.coords:
        left = np.asarray(existing[name].values)
        right = np.asarray(ds[name].values)
        if left.dtype.kind in "OUT" or right.dtype.kind in "OUT":
            same = [str(x) for x in left.ravel()] == [str(x) for x in right.ravel()]
        else:
            same = left.shape == right.shape and np.array_equal(left, right, equal_nan=True)
        if not same:
            diffs.append(f"coordinate {name!s} values differ")
    for name in ds.data_vars:
        if existing[name].dtype != ds[name].dtype:
            diffs.append(
                f"variable {name!s}: store {existing[name].dtype}, fields {ds[name].dtype}"
            )
    for key, value in attrs.items():
        if key in VOLATILE:
            continue
        stored = existing.attrs.get(key)
        if _plain(stored) != _plain(value):
            diffs.append(f"attribute {key!r}: store {stored!r}, now {value!r}")
    return diffs


def _open_arrays(
    url: str, storage_options: Mapping[str, Any] | None, names: list[str]
) -> dict[str, Any]:
    """Open the store's zarr arrays of ``names``, once for every region."""
    import zarr

    group = zarr.open_group(url, mode="r+", storage_options=dict(storage_options or {}) or None)
    return {name: group[name] for name in names}


def _write_region(ds: xr.Dataset, steps: slice, arrays: Mapping[str, Any]) -> None:
    """Write time steps ``steps`` of the variables of ``arrays``: one dask compute for all."""
    sources, targets, regions = [], [], []
    for name, array in arrays.items():
        var = ds[name].variable
        index = tuple(steps if d == "time" else slice(None) for d in var.dims)
        data = var.data[index]
        if isinstance(data, da.Array):
            sources.append(data)
            targets.append(array)
            regions.append(index)
        else:
            array[index] = np.asarray(data)
    if sources:
        da.store(sources, targets, regions=regions, lock=False, compute=True)


def _batches(todo: list[int], per: int) -> list[slice]:
    """Group ``todo`` (sorted) into runs of at most ``per`` consecutive time steps.

    >>> _batches([0, 1, 2, 4, 5, 6, 7], 3)
    [slice(0, 3, None), slice(4, 7, None), slice(7, 8, None)]
    """
    out: list[slice] = []
    for i in todo:
        if out and out[-1].stop == i and i - out[-1].start < per:
            out[-1] = slice(out[-1].start, i + 1)
        else:
            out.append(slice(i, i + 1))
    return out


def write_fields(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    area_mean: bool = False,
    batch_mb: float = 64.0,
) -> WriteReport:
    """Write fields to a zarr v3 store, one time step at a time, resumably.

    The store is created from a template (metadata and coordinates) when absent; when
    present it must hold the same variables, coordinates, shapes and provenance. The
    fields get CF-1.12 coordinates, bounds and cell methods and ACDD-1.3 global
    attributes (:func:`pipeline.products.cf.cf_fields`,
    :func:`~pipeline.products.cf.product_attributes`; no local path in any attribute),
    and the store's metadata is consolidated after the template and after the last
    region, so ``xarray.open_zarr(url)`` opens it without a warning. Each
    region (one time step, all layers, lat and lon) is computed and written, *then*
    marked done; regions already marked are skipped, so re-running a finished write
    writes nothing, and re-running an interrupted one writes only what is missing.

    Parameters
    ----------
    ds : xarray.Dataset
        Fields from :func:`predict_fields` (lazy), dims ``(time, layer, lat, lon)``.
    url : str
        Local path or fsspec URL (``s3://bucket/run/fields.zarr``).
    storage_options : mapping, optional
        fsspec options for remote URLs (endpoint, …; credentials from the environment).
    attrs : mapping, optional
        Provenance (config hash, model id, input catalog, software version, …) stored
        as global attributes, beside ``Conventions`` and ``history``. A re-run with
        different provenance is refused (it would mix models in one store).
    progress : callable, optional
        Called as ``progress(regions_done, regions_total)`` at the start and after each
        region (for a progress bar).
    area_mean : bool
        The fields are means over each grid cell (``cell_methods`` says ``area: mean``).
    batch_mb : float
        Consecutive regions still to write are computed together, as many as hold at
        most this many MB of output (at least one): on small grids one dask compute
        per time step costs more in scheduling than in work. Each region is marked
        done once its batch is written; ``0`` computes one region at a time.

    Returns
    -------
    WriteReport
        Regions total, written by this call and skipped.

    Raises
    ------
    StoreMismatchError
        The store exists and differs (variables, coordinates, shapes, provenance).

    See Also
    --------
    predict_fields : builds the fields.

    Examples
    --------
    >>> import tempfile, os
    >>> import pandas as pd
    >>> from pipeline.fields.predict import DIMS
    >>> coords = {"time": pd.date_range("2020-01-01", periods=2, freq="MS"),
    ...           "layer": np.array(["0-100m"], object), "lat": [0.5], "lon": [0.5]}
    >>> f = xr.Dataset({"c": (DIMS, np.ones((2, 1, 1, 1), "f4"))}, coords=coords)
    >>> url = os.path.join(tempfile.mkdtemp(), "fields.zarr")
    >>> write_fields(f.chunk(time=1), url)
    WriteReport(url='...fields.zarr', regions_total=2, regions_written=2, regions_skipped=0)
    >>> write_fields(f.chunk(time=1), url).regions_written
    0
    """
    ds = cf_fields(ds, area_mean=area_mean)
    attrs = product_attributes(ds, {**ds.attrs, **dict(attrs or {})})
    ds = _prepare(ds)
    fs, root = _store_paths(url, storage_options)
    markers = OutputStore(url, storage_options=storage_options)  # zarr writes the arrays
    total = int(ds.sizes["time"])
    kw = _zarr_kwargs(storage_options)
    fs.invalidate_cache()
    has_store = fs.exists(f"{root}/zarr.json")
    template_done = fs.exists(f"{root}/{_MARKERS}/zarr.json")
    if has_store:
        try:
            existing = xr.open_zarr(url, chunks=None, **kw)
        except Exception as err:
            raise StoreMismatchError(
                f"{url}: exists but cannot be opened as a zarr store ({err}). "
                "Write to a new --out, or delete it to start over."
            ) from err
        diffs = _differences(url, existing, ds, attrs)
        if diffs and template_done:
            raise StoreMismatchError(
                f"{url}: the existing store differs from the fields to write: "
                + "; ".join(diffs)
                + f". Write to a new --out, or delete {url} to start over."
            )
        if diffs and not any(d.startswith("coordinate ") for d in diffs):
            raise StoreMismatchError(
                f"{url}: holds a zarr store not written by write_fields that differs: "
                + "; ".join(diffs)
                + f". Write to a new --out, or delete {url}."
            )
    elif fs.exists(root) and fs.ls(root):
        raise StoreMismatchError(
            f"{url}: exists and is not a zarr store (no zarr.json). "
            "Write to a new --out, or delete it."
        )
    if not (has_store and template_done):
        template = ds.copy()
        template.attrs = {
            **attrs,
            "Conventions": CONVENTIONS,
            "history": "\n".join(
                h
                for h in (
                    str(attrs.get("history", "")),
                    f"{_dt.datetime.now(_dt.UTC):%Y-%m-%dT%H:%M:%SZ} "
                    "oceanfields write_fields: predicted fields",
                )
                if h
            ),
        }
        template.to_zarr(url, mode="w", compute=False, zarr_format=3, **kw)
        _put_group(markers, f"{_MARKERS}/regions/zarr.json")
        _put_group(markers, f"{_MARKERS}/zarr.json", {"regions_total": total})
        consolidate_metadata(url, storage_options)
        logger.info("%s: template written (%d regions of one time step)", url, total)

    done = _done_regions(fs, root)
    todo = [i for i in range(total) if i not in done]
    skipped = total - len(todo)
    logger.info("%s: %d regions to write, %d already complete", url, len(todo), skipped)
    if progress is not None:
        progress(skipped, total)
    region_vars = [str(n) for n, v in ds.variables.items() if "time" in v.dims]
    # Plain numeric variables go straight into the store's arrays, opened once (their
    # CF encoding is the identity); others (the time coordinate, …) through xarray.
    direct = [n for n in region_vars if n != "time" and ds[n].dtype.kind in "fiu"]
    by_xarray = [n for n in region_vars if n not in direct and n != "time"]
    arrays = _open_arrays(url, storage_options, direct) if todo else {}
    step_bytes = ds[direct + by_xarray].isel(time=0).nbytes  # lazy: from shapes and dtypes
    per = max(1, int(batch_mb * 1e6 // max(step_bytes, 1)))
    count = skipped
    for steps in _batches(todo, per):
        start = _time.perf_counter()
        _write_region(ds, steps, arrays)
        if by_xarray:
            region = ds[by_xarray].isel(time=steps)
            region = region.drop_vars([n for n in region.coords if "time" not in region[n].dims])
            region.to_zarr(url, region={"time": steps}, mode="r+", **kw)
        for i in range(steps.start, steps.stop):
            value = np.asarray(ds["time"].values[i])
            stamp = str(
                np.datetime_as_string(value, unit="s") if value.dtype.kind == "M" else value
            )
            _put_group(markers, _marker(i), {"time": stamp})
            count += 1
        logger.info(
            "%s: region(s) %d-%d/%d (to time %s) written in %.1f s",
            url,
            steps.start + 1,
            steps.stop,
            total,
            stamp,
            _time.perf_counter() - start,
        )
        if progress is not None:
            progress(count, total)
    if todo:
        consolidate_metadata(url, storage_options)
    return WriteReport(url, total, len(todo), skipped)
