"""Chunkings of the fields store: consolidated metadata, and a time-series-friendly copy.

The fields store is written map-friendly (one chunk per month: every layer, blocks of
latitude, every longitude), as its writes are one month at a time. Time series at a
point read one chunk per month from it; :func:`write_rechunked` writes a copy chunked
for them (``"series"``: every month and layer of a block of cells in one chunk, as the
Copernicus Marine ARCO "timeChunked" stores) or one map per chunk (``"map"``: one month
and one layer of the whole grid, as "geoChunked"). Each chunk of the copy is one dask
chunk, so every write is chunk-aligned and no two tasks write into one chunk.

:func:`consolidate_metadata` consolidates a zarr v3 store's metadata, so
``xarray.open_zarr(url)`` opens it in one read and without a warning.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import xarray as xr

__all__ = ["CHUNKINGS", "chunks_for", "consolidate_metadata", "write_rechunked"]

logger = logging.getLogger(__name__)

#: The chunkings :func:`write_rechunked` writes.
CHUNKINGS = ("series", "map")
_TARGET_BYTES = 8_000_000  # about 8 MB per chunk (uncompressed float32)


def consolidate_metadata(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Consolidate a zarr v3 store's metadata into its root ``zarr.json``.

    zarr-python warns that consolidated metadata is not (yet) in the v3 specification:
    it is an addition readers may ignore, never needed for correctness, so the warning
    is silenced here.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the store.
    storage_options : mapping, optional
        fsspec options of a remote URL (credentials from the environment).
    """
    import zarr

    store = zarr.storage.FsspecStore.from_url(
        url, storage_options=dict(storage_options or {}) or None, read_only=False
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(store, zarr_format=3)
    logger.debug("%s: metadata consolidated", url)


def chunks_for(
    sizes: Mapping[str, int], chunking: Literal["series", "map"], *, itemsize: int = 4
) -> dict[str, int]:
    """Return the chunk of each dimension ``(time, layer, lat, lon)`` for a chunking.

    Parameters
    ----------
    sizes : mapping of str to int
        Dimension sizes.
    chunking : {"series", "map"}
        ``"series"``: all times and layers, square blocks of cells of about 8 MB;
        ``"map"``: one time and one layer, the whole grid.
    itemsize : int
        Bytes per value.

    Returns
    -------
    dict of str to int

    Examples
    --------
    >>> chunks_for({"time": 12, "layer": 3, "lat": 180, "lon": 360}, "series")
    {'time': 12, 'layer': 3, 'lat': 180, 'lon': 308}
    >>> chunks_for({"time": 12, "layer": 3, "lat": 180, "lon": 360}, "map")
    {'time': 1, 'layer': 1, 'lat': 180, 'lon': 360}
    """
    if chunking not in CHUNKINGS:
        raise ValueError(f"chunking={chunking!r}; valid: {', '.join(CHUNKINGS)}.")
    if chunking == "map":
        return {"time": 1, "layer": 1, "lat": int(sizes["lat"]), "lon": int(sizes["lon"])}
    depth = int(sizes["time"]) * int(sizes["layer"]) * itemsize
    side = max(1, math.isqrt(max(_TARGET_BYTES // depth, 1)))
    lat = min(int(sizes["lat"]), side)
    lon = min(int(sizes["lon"]), max(1, _TARGET_BYTES // (depth * lat)))
    return {"time": int(sizes["time"]), "layer": int(sizes["layer"]), "lat": lat, "lon": lon}


def write_rechunked(
    run_out: str,
    chunking: Literal["series", "map"] = "series",
    out: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write a copy of a run's fields store with another chunking.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL (holding a complete ``fields.zarr``).
    chunking : {"series", "map"}
        See :func:`chunks_for`.
    out : str, optional
        Store to write (default ``RUN_OUT/fields-<chunking>.zarr``); replaced if present.
    storage_options : mapping, optional
        fsspec options of remote URLs (credentials from the environment).

    Returns
    -------
    str
        The store written, with consolidated metadata.
    """
    base = run_out.rstrip("/")
    kw: dict[str, Any] = {"storage_options": dict(storage_options)} if storage_options else {}
    ds = xr.open_zarr(f"{base}/fields.zarr", **kw)
    dims = {d: int(ds.sizes[d]) for d in ("time", "layer", "lat", "lon")}
    chunks = chunks_for(dims, chunking)
    logger.info("rechunk: %s chunks %s", chunking, chunks)
    ds = ds.chunk({**chunks, **{d: -1 for d in ds.dims if d not in chunks}})
    for var in ds.variables.values():
        var.encoding = {}
    encoding = {
        name: {"chunks": tuple(chunks.get(d, var.sizes[d]) for d in var.dims)}
        for name, var in ds.data_vars.items()
        if var.dims
    }
    target = out or f"{base}/fields-{chunking}.zarr"
    ds.to_zarr(target, mode="w", zarr_format=3, consolidated=False, encoding=encoding, **kw)
    consolidate_metadata(target, storage_options)
    return target
