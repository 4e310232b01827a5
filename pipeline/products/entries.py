"""Catalogue entries beside the fields: a STAC Collection and Item, and an intake catalog.

:func:`write_entries` writes, into a run's output (local or ``s3://…``, through its
:class:`~pipeline.store.OutputStore`)::

    RUN_OUT/stac/collection.json      STAC Collection (extent, licence, keywords, providers)
    RUN_OUT/stac/fields/fields.json   STAC Item with the datacube extension (dimensions and
                                      variables of the store) and the zarr asset
    RUN_OUT/catalog.yaml              intake (v1 format) catalog, entry ``fields``

Every link and asset href is relative (``../../fields.zarr``), so the folder can be
copied or synced to object storage as it is. The asset carries what xpystac needs to
open it (``xr.open_dataset(item.assets["fields"])``: media type
``application/vnd+zarr``, ``zarr:zarr_format``, ``zarr:consolidated``,
``xarray:open_kwargs``; relative hrefs are resolved by ``item.make_asset_hrefs_absolute()``);
the intake entry opens it with ``intake.open_catalog(url).fields.to_dask()``. Endpoints
and credentials of object storage come from the environment (``AWS_ENDPOINT_URL``, …),
never from an entry. :func:`stac_io` lets pystac read entries from any fsspec URL
(pystac alone reads local files and http):
``pystac.Collection.from_file(url, stac_io=stac_io())``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from pipeline.store import OutputStore, as_store

__all__ = ["stac_collection", "stac_io", "write_entries"]

logger = logging.getLogger(__name__)

_STAC_DIR = "stac"
_ITEM = "fields"
_DIMS = ("time", "layer", "lat", "lon")


def stac_io() -> Any:
    """Return a :class:`pystac.StacIO` reading through fsspec (``s3://``, ``gs://``, local).

    Returns
    -------
    pystac.StacIO
        Pass it as ``stac_io=`` to ``pystac.Collection.from_file`` / ``Item.from_file``.
    """
    import fsspec
    import pystac

    def _href(source: Any) -> str:
        return str(getattr(source, "get_absolute_href", lambda: source)())

    class _FsspecStacIO(pystac.StacIO):
        def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
            with fsspec.open(_href(source), "r", encoding="utf-8") as f:
                return str(f.read())

        def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
            folder, _, name = _href(dest).rpartition("/")
            OutputStore(folder).write_text(name, txt)

    return _FsspecStacIO()


def _iso(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _licence(text: str) -> str:
    """SPDX identifier of a licence attribute (``"CC-BY-4.0 (https://…)"`` -> ``CC-BY-4.0``)."""
    first = text.split()[0] if text.strip() else "other"
    return first if all(c.isalnum() or c in ".-+" for c in first) else "other"


def _cube(ds: xr.Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """Datacube extension dimensions and variables of a fields store."""
    lat_b, lon_b = ds["lat_bnds"].values, ds["lon_bnds"].values
    step = {
        n: float(np.median(np.diff(ds[n].values))) if ds.sizes[n] > 1 else None
        for n in ("lat", "lon")
    }
    tb = ds["time_bnds"].values
    dims: dict[str, Any] = {
        "time": {
            "type": "temporal",
            "extent": [_iso(ds["time"].values.min()), _iso(ds["time"].values.max())],
            "step": "P1M",
            "description": "start of each month; time_bnds: the month "
            f"({_iso(tb.min())} .. {_iso(tb.max())})",
        },
        "layer": {
            "type": "layer",
            "values": [str(v) for v in ds["layer"].values],
            "description": "depth layer, metres positive down; depth (the layer middle) "
            "and depth_bnds (top, bottom) along it",
        },
        "lat": {
            "type": "spatial",
            "axis": "y",
            "extent": [float(lat_b.min()), float(lat_b.max())],
            "step": step["lat"],
            "reference_system": 4326,
            "description": "latitude of the cell centre (lat_bnds: the cell)",
        },
        "lon": {
            "type": "spatial",
            "axis": "x",
            "extent": [float(lon_b.min()), float(lon_b.max())],
            "step": step["lon"],
            "reference_system": 4326,
            "description": "longitude of the cell centre (lon_bnds: the cell)",
        },
    }
    variables: dict[str, Any] = {}
    for name, var in ds.data_vars.items():
        if tuple(var.dims) != _DIMS:
            continue
        entry: dict[str, Any] = {
            "dimensions": list(_DIMS),
            "type": "data",
            "description": str(var.attrs.get("long_name", name)),
        }
        if var.attrs.get("units"):
            entry["unit"] = str(var.attrs["units"])
        variables[str(name)] = entry
    return dims, variables


#: Other products of a run, given as more assets of the Item when present:
#: (file in the run's output, asset key, media type, title).
_OTHER_ASSETS = (
    (
        "fields-series.zarr",
        "fields-series",
        "application/vnd+zarr",
        "fields chunked for time series (zarr v3)",
    ),
    ("fields-map.zarr", "fields-map", "application/vnd+zarr", "fields chunked for maps (zarr v3)"),
    ("fields.nc", "netcdf", "application/x-netcdf", "fields, CF NetCDF-4"),
)


def stac_collection(
    ds: xr.Dataset, *, asset_href: str, others: Mapping[str, str] | None = None
) -> Any:
    """Build the STAC Collection (with one Item) describing a fields store.

    Parameters
    ----------
    ds : xarray.Dataset
        The fields store, opened (:func:`pipeline.fields.write.write_fields` output, with
        its CF bounds and ACDD attributes).
    asset_href : str
        Href of the zarr store, relative to the Item's file.
    others : mapping of str to str, optional
        File name in the run's output -> href of the other products present
        (``fields-series.zarr``, ``fields-map.zarr``, ``fields.nc``).

    Returns
    -------
    pystac.Collection
    """
    import pystac
    from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable

    attrs = ds.attrs
    lat_b, lon_b = ds["lat_bnds"].values, ds["lon_bnds"].values
    west, east = float(max(lon_b.min(), -180.0)), float(min(lon_b.max(), 180.0))
    south, north = float(lat_b.min()), float(lat_b.max())
    bbox = [west, south, east, north]
    geometry = {
        "type": "Polygon",
        "coordinates": [
            [[west, south], [east, south], [east, north], [west, north], [west, south]]
        ],
    }
    tb = ds["time_bnds"].values
    start, end = (pd.Timestamp(t, tz="UTC").to_pydatetime() for t in (tb.min(), tb.max()))
    ident = str(attrs.get("id", "oceanfields-fields"))
    keywords = [k.strip() for k in str(attrs.get("keywords", "")).split(",") if k.strip()]
    collection = pystac.Collection(
        id=ident,
        title=str(attrs.get("title", ident)),
        description=str(attrs.get("summary", attrs.get("title", ident))),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]])),
        license=_licence(str(attrs.get("license", ""))),
        keywords=keywords or None,
        providers=[
            pystac.Provider(
                name=str(attrs.get("creator_name", "oceanfields")),
                roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.PROCESSOR],
                url=attrs.get("creator_url"),
            )
        ],
    )
    item = pystac.Item(
        id=_ITEM,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        properties={
            "start_datetime": _iso(tb.min()),
            "end_datetime": _iso(tb.max()),
            "title": str(attrs.get("title", ident)),
            "description": "Monthly fields per depth layer (zarr v3, consolidated metadata); "
            "CF-1.12 and ACDD-1.3 attributes.",
            "oceanfields:model_id": str(attrs.get("model_id", "")),
            "oceanfields:config_hash": str(attrs.get("config_hash", "")),
            "oceanfields:software_version": str(attrs.get("software_version", "")),
        },
    )
    dims, variables = _cube(ds)
    cube = DatacubeExtension.ext(item, add_if_missing=True)
    cube.apply(
        dimensions={k: Dimension.from_dict(v) for k, v in dims.items()},
        variables={k: Variable.from_dict(v) for k, v in variables.items()},
    )
    item.add_asset(
        "fields",
        pystac.Asset(
            href=asset_href,
            media_type="application/vnd+zarr",
            roles=["data"],
            title="fields (zarr v3)",
            extra_fields={
                "zarr:zarr_format": 3,
                "zarr:consolidated": True,
                "xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "chunks": {}},
            },
        ),
    )
    for name, key, media, title in _OTHER_ASSETS:
        if others and name in others:
            extra: dict[str, Any] = {}
            if media == "application/vnd+zarr":
                extra = {
                    "zarr:zarr_format": 3,
                    "zarr:consolidated": True,
                    "xarray:open_kwargs": {"engine": "zarr", "consolidated": True, "chunks": {}},
                }
            item.add_asset(
                key,
                pystac.Asset(
                    href=others[name],
                    media_type=media,
                    roles=["data"],
                    title=title,
                    extra_fields=extra,
                ),
            )
    collection.add_item(item)
    return collection


def _intake_catalog(ds: xr.Dataset) -> dict[str, Any]:
    attrs = ds.attrs
    variables = [str(n) for n, v in ds.data_vars.items() if tuple(v.dims) == _DIMS]
    return {
        "metadata": {
            "version": 1,
            "description": str(attrs.get("title", "oceanfields fields")),
        },
        "sources": {
            "fields": {
                "description": str(attrs.get("summary", "")),
                "driver": "zarr",
                "args": {"urlpath": "{{ CATALOG_DIR }}/fields.zarr", "consolidated": True},
                "metadata": {
                    "stac": f"{_STAC_DIR}/collection.json",
                    "id": str(attrs.get("id", "")),
                    "variables": variables,
                    "dims": list(_DIMS),
                    "time_coverage": [
                        str(attrs.get("time_coverage_start", "")),
                        str(attrs.get("time_coverage_end", "")),
                    ],
                    "license": str(attrs.get("license", "")),
                },
            }
        },
    }


def write_entries(
    run_out: str | OutputStore, *, storage_options: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Write the STAC Collection and Item and the intake catalog of a run's fields.

    Parameters
    ----------
    run_out : str or OutputStore
        The run's output folder or URL (holding ``fields.zarr``), or its store.
    storage_options : mapping, optional
        fsspec options of a remote URL (credentials from the environment).

    Returns
    -------
    dict of str to str
        ``{"collection": …, "item": …, "intake": …}``: the paths written, relative to
        the run's output (the STAC files only where pystac, of the products extra, is
        installed).
    """
    store = as_store(run_out, storage_options=storage_options)
    kw = {"storage_options": store.storage_options} if store.storage_options else {}
    ds = xr.open_zarr(store.path("fields.zarr"), **kw)
    text = yaml.safe_dump(_intake_catalog(ds), sort_keys=False, allow_unicode=True)
    store.write_text("catalog.yaml", text)
    written = {"intake": "catalog.yaml"}
    try:
        import pystac  # noqa: F401
    except ImportError:
        logger.info("entries: pystac not installed (the products extra); no STAC entry")
        return written
    item_name = f"{_STAC_DIR}/{_ITEM}/{_ITEM}.json"
    folder = posixpath.dirname(item_name)
    href = posixpath.relpath("fields.zarr", folder)
    present = {n: posixpath.relpath(n, folder) for n, *_ in _OTHER_ASSETS if store.exists(n)}
    collection = stac_collection(ds, asset_href=href, others=present)
    item = next(iter(collection.get_items()))
    collection.set_self_href(None)
    col = collection.to_dict(include_self_link=False, transform_hrefs=False)
    col["links"] = [
        {"rel": "root", "href": "./collection.json", "type": "application/json"},
        {"rel": "item", "href": f"./{_ITEM}/{_ITEM}.json", "type": "application/geo+json"},
    ]
    it = item.to_dict(include_self_link=False, transform_hrefs=False)
    it["links"] = [
        {"rel": "root", "href": "../collection.json", "type": "application/json"},
        {"rel": "parent", "href": "../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../collection.json", "type": "application/json"},
    ]
    it["collection"] = collection.id
    store.write_json(f"{_STAC_DIR}/collection.json", col)
    store.write_json(item_name, it)
    logger.info("entries: STAC %s/collection.json and intake catalog.yaml", store.path(_STAC_DIR))
    return {"collection": f"{_STAC_DIR}/collection.json", "item": item_name, **written}
