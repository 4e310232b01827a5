"""The demo world's environment as several products, each on its own grid and time kind.

A real run combines Copernicus products that share nothing but the Earth: physics at
1/12 deg with 50 levels, biogeochemistry at 1/4 deg with 75 other levels and several
months per chunk, surface ocean colour at 4 km, a static bathymetry, and 1-degree
monthly climatologies as NetCDF. The demo world writes the same shapes, derived from its
analytic ocean (:mod:`pipeline.demo.environment`), beside ``environment.zarr`` (which is
the **physics** product: ``thetao, so, uo, vo, mlotst`` at the world's resolution)::

    products/biogeochemistry.zarr   o2, chl: 2x coarser, every other depth level, 4 months a chunk
    products/ocean_colour.zarr      CHL (surface chlorophyll): 2x finer, gap-free (as an L4 product)
    products/bathymetry.zarr        deptho (static): 2x finer
    products/sst_climatology.nc     LAYER (surface temperature climatology, NetCDF): 2x coarser,
                                    latitude descending, time 1..12 without units

The demo run (``oceanfields demo``) reads all five through the demo catalog and predicts
on one output grid (:class:`~pipeline.predictors.grid.GridConfig`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.demo.environment import (
    VARIABLES,
    bathymetry,
    environment_month,
    grid,
)
from pipeline.demo.land import real_bathymetry

__all__ = ["DEMO_SOURCES", "write_products"]

logger = logging.getLogger(__name__)

#: The demo run's environment sources (``inputs.environment`` of its run file).
DEMO_SOURCES: tuple[dict[str, Any], ...] = (
    {
        "entry": "environment",
        "name": "physics",
        "variables": ["thetao", "so", "uo", "vo", "mlotst"],
    },
    {"entry": "biogeochemistry", "variables": ["o2", "chl"]},
    {"entry": "ocean_colour", "depth": "surface", "variables": {"CHL": "chl_surface"}},
    {"entry": "bathymetry", "time": "static", "depth": "none", "variables": ["deptho"]},
    {
        "entry": "sst_climatology",
        "time": "climatology",
        "depth": "surface",
        "variables": {"LAYER": "sst_climatology"},
    },
)


def write_products(
    root: str | Path,
    *,
    resolution: float,
    years: Sequence[int],
    world: Literal["realistic", "simple"] = "simple",
) -> dict[str, Any]:
    """Write the four products beside ``ROOT/environment.zarr`` (which must exist).

    Parameters
    ----------
    root : str or Path
        The demo world folder.
    resolution : float
        The world's grid step (degrees).
    years : sequence of int
        The world's years.
    world : {"realistic", "simple"}
        Real coastlines (:mod:`pipeline.demo.land`) or the simple world's ellipses.

    Returns
    -------
    dict
        Per product: path, grid step (degrees), dims.
    """
    root = Path(root)
    out = root / "products"
    out.mkdir(parents=True, exist_ok=True)
    env = xr.open_zarr(root / "environment.zarr", consolidated=False)
    info: dict[str, Any] = {}
    # biogeochemistry: 2x coarser (area means of the ocean cells), every other level
    bgc = env[["o2", "chl"]].isel(depth=slice(0, None, 2))
    bgc = bgc.coarsen(latitude=2, longitude=2, boundary="trim").mean()
    bgc = bgc.chunk({"time": 4, "depth": -1, "latitude": -1, "longitude": -1})
    for v in bgc.data_vars.values():
        v.encoding = {}
    bgc.attrs = {"title": "oceanfields demo: biogeochemistry-like product (2x coarser)"}
    bgc.to_zarr(out / "biogeochemistry.zarr", mode="w", zarr_format=3, consolidated=False)
    info["biogeochemistry"] = {"step_deg": 2 * resolution, "dims": _dims(bgc)}
    # ocean colour and bathymetry: 2x finer, evaluated from the analytic ocean
    fine = resolution / 2.0
    lat, lon = grid(fine)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    deptho = real_bathymetry(fine) if world == "realistic" else bathymetry(lat2, lon2)
    sea = ~np.isnan(deptho)
    times = pd.to_datetime([f"{y:04d}-{m:02d}-01" for y in years for m in range(1, 13)])
    chl = np.empty((len(times), lat.size, lon.size), dtype="float32")
    for i, t in enumerate(times):
        month = environment_month(lat2, lon2, year=t.year, month=t.month, depths=(0.5,))
        chl[i] = np.where(sea, month["chl"][0], np.nan)
    coords = {"latitude": lat.astype("float32"), "longitude": lon.astype("float32")}
    colour = xr.Dataset(
        {"CHL": (("time", "latitude", "longitude"), chl, dict(VARIABLES["chl"]))},
        coords={"time": times.values, **coords},
        attrs={"title": "oceanfields demo: ocean-colour-like L4 surface chlorophyll (2x finer)"},
    ).chunk({"time": 1})
    colour.to_zarr(out / "ocean_colour.zarr", mode="w", zarr_format=3, consolidated=False)
    info["ocean_colour"] = {"step_deg": fine, "dims": _dims(colour)}
    bathy = xr.Dataset(
        {"deptho": (("latitude", "longitude"), deptho.astype("float32"), VARIABLES["deptho"])},
        coords=coords,
        attrs={"title": "oceanfields demo: bathymetry (static, 2x finer)"},
    )
    bathy.to_zarr(out / "bathymetry.zarr", mode="w", zarr_format=3, consolidated=False)
    info["bathymetry"] = {"step_deg": fine, "dims": _dims(bathy)}
    # a 12-month surface temperature climatology as NetCDF, as the collections ship them
    with xr.set_options(use_flox=False):  # a few months: xarray's own groupby, no flox import
        sst = env["thetao"].isel(depth=0, drop=True).groupby("time.month").mean("time")
    sst = sst.coarsen(latitude=2, longitude=2, boundary="trim").mean()
    sst = sst.isel(latitude=slice(None, None, -1)).rename(month="time")
    clim = xr.Dataset(
        {"LAYER": sst.astype("float32").compute()},
        coords={"time": np.arange(1, 13)},
        attrs={"title": "oceanfields demo: monthly SST climatology (2x coarser, lat descending)"},
    )
    clim["LAYER"].attrs = {"long_name": "Temperature Climatology", "units": "degree C"}
    clim.to_netcdf(out / "sst_climatology.nc")
    info["sst_climatology"] = {"step_deg": 2 * resolution, "dims": _dims(clim)}
    logger.info("demo products written in %s: %s", out, ", ".join(info))
    return info


def _dims(ds: xr.Dataset) -> dict[str, int]:
    """Dimension sizes in the order of the first variable's dims (world.json is stable)."""
    var = next(iter(ds.data_vars.values()))
    return {str(d): int(ds.sizes[d]) for d in var.dims}
