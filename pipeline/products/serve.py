"""The fields over OGC API EDR: position, area and cube queries over HTTP (xpublish).

:func:`edr_app` serves a run's ``fields.zarr`` as the dataset ``fields`` of an
`xpublish <https://xpublish.readthedocs.io>`_ application with the
`xpublish-edr <https://github.com/xpublish-community/xpublish-edr>`_ plugin::

    /datasets/fields/edr/position?coords=POINT(-30 45)&parameter-name=flux_mgc_m2_d
    /datasets/fields/edr/area?coords=POLYGON((...))&parameter-name=...&f=csv
    /datasets/fields/edr/cube?bbox=-40,30,-20,50&z=50&datetime=2020-03-01/2020-06-01
    /docs                                    the OpenAPI page of every route

Answers are CoverageJSON by default (``f=csv``, ``f=nc``, ``f=geojson`` for others).
The vertical axis is ``depth`` (the layer middle, m, positive down: ``z=50`` is the
0-100 m layer); :func:`serve_fields` runs it with uvicorn.

Developer note: the store's ``transform`` attribute (the training transform, a JSON
string) is dropped from the served dataset: xpublish-edr would read it as a GeoZarr
``spatial:transform`` and fail to project any query.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import xarray as xr

from pipeline.products.netcdf import open_fields

__all__ = ["edr_app", "edr_dataset", "serve_fields"]

logger = logging.getLogger(__name__)

#: Name of the dataset in the URLs (``/datasets/fields/edr/...``).
DATASET = "fields"


def edr_dataset(fields: xr.Dataset) -> xr.Dataset:
    """Return the fields as EDR serves them: ``depth`` (numeric, Z) as the vertical dimension.

    Parameters
    ----------
    fields : xarray.Dataset
        A fields store (:func:`pipeline.fields.write.write_fields`).

    Returns
    -------
    xarray.Dataset
        Dims ``(time, depth, lat, lon)``; the layer names in ``attrs["layers"]``.
    """
    ds = fields.swap_dims({"layer": "depth"})
    layers = [str(v) for v in ds["layer"].values]
    ds = ds.drop_vars([n for n in ("layer", "layer_top_m", "layer_bottom_m") if n in ds.variables])
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "transform"}
    ds.attrs["layers"] = ", ".join(layers)
    return ds


def edr_app(run_out: str, *, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Build the xpublish application serving a run's fields over OGC API EDR.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL (holding ``fields.zarr``).
    storage_options : mapping, optional
        fsspec options of a remote URL (credentials from the environment).

    Returns
    -------
    xpublish.Rest
        ``.app`` is the FastAPI application; ``.serve(host=, port=)`` runs it.
    """
    import xpublish
    from xpublish_edr import CfEdrPlugin

    ds = edr_dataset(open_fields(run_out, storage_options=storage_options))
    logger.info("serve: %s as dataset %r (%d variables)", run_out, DATASET, len(ds.data_vars))
    return xpublish.Rest({DATASET: ds}, plugins={"edr": CfEdrPlugin()})


def serve_fields(
    run_out: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Serve a run's fields over OGC API EDR until interrupted.

    Parameters
    ----------
    run_out : str
        The run's output folder or URL.
    host : str
        Address to listen on (``0.0.0.0`` for every interface).
    port : int
        Port to listen on.
    storage_options : mapping, optional
        fsspec options of a remote URL.
    """
    edr_app(run_out, storage_options=storage_options).serve(
        host=host, port=port, log_level="warning"
    )
