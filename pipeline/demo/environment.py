"""The demo world's ocean: analytic monthly fields written as a Copernicus-like zarr store.

Every field is a closed-form function of (latitude, longitude, depth, year, month), so the
store can be written one month at a time at any resolution, and the truth
(:mod:`pipeline.demo.truth`) can evaluate the same environment at a profile without
reading the store back.

Grid: cell centres like the real 1/4 deg Copernicus grid, latitude -80 ... 90 and
longitude -180 ... 180 - ``resolution``; depth levels :data:`DEPTH_LEVELS_M` (positive
down, reaching 2000 m); monthly time steps on the 1st of each month.

Structure (all smooth, no noise):

- land: a union of ellipses roughly where the continents are (Americas joined by a
  Central-American isthmus, Eurasia, Africa, Australia, Greenland, Antarctica south of
  about 70 deg S), leaving distinct Atlantic, Pacific, Indian, Southern and Arctic basins;
  :func:`basin_of` names them;
- ``deptho``: 4500 m away from the coasts, shelves within about 1-2 deg of land, a
  Mid-Atlantic ridge; cells deeper than ``deptho`` at a level are NaN;
- ``thetao``: warm tropics, cold poles, a seasonal cycle of opposite sign in the two
  hemispheres (largest in August/February), a Southern-Ocean front (tanh across 45 deg S),
  a Gulf-Stream-like warm tongue with a sharp north wall, cold coastal upwelling along the
  eastern boundaries (California, Peru, Canary, Benguela); decay towards 2-4 degC below a
  thermocline under the mixed layer;
- ``mlotst``: deeper in winter and at high latitudes;
- ``chl``: high at high latitudes (spring bloom), in upwelling and at the equator, low in
  the subtropical gyres, uniform in the mixed layer and decaying below it;
- ``o2``: saturation-like at the surface (colder, more oxygen), an oxygen minimum zone at
  300-700 m in the tropics, strongest along the eastern boundaries;
- ``so``, ``uo``, ``vo``: plausible salinity, zonal jets and gyre-like meridional flow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "BASINS",
    "DEPTH_LEVELS_M",
    "VARIABLES",
    "basin_of",
    "bathymetry",
    "environment_month",
    "grid",
    "is_land",
    "write_environment",
]

logger = logging.getLogger(__name__)

#: Depth levels of the store (m, positive down).
DEPTH_LEVELS_M: tuple[float, ...] = (
    0.5,
    5.0,
    10.0,
    20.0,
    30.0,
    50.0,
    75.0,
    100.0,
    150.0,
    200.0,
    300.0,
    400.0,
    500.0,
    700.0,
    900.0,
    1100.0,
    1500.0,
    2000.0,
)

#: Basin names returned by :func:`basin_of`.
BASINS: tuple[str, ...] = ("Atlantic", "Pacific", "Indian", "Southern", "Arctic")

#: CF attributes of every variable written (Copernicus Marine short names and units).
VARIABLES: dict[str, dict[str, str]] = {
    "thetao": {
        "standard_name": "sea_water_potential_temperature",
        "long_name": "Temperature",
        "units": "degrees_C",
    },
    "so": {
        "standard_name": "sea_water_salinity",
        "long_name": "Salinity",
        "units": "1e-3",
    },
    "o2": {
        "standard_name": "mole_concentration_of_dissolved_molecular_oxygen_in_sea_water",
        "long_name": "Dissolved Oxygen",
        "units": "mmol m-3",
    },
    "chl": {
        "standard_name": "mass_concentration_of_chlorophyll_a_in_sea_water",
        "long_name": "Total Chlorophyll",
        "units": "mg m-3",
    },
    "uo": {
        "standard_name": "eastward_sea_water_velocity",
        "long_name": "Eastward velocity",
        "units": "m s-1",
    },
    "vo": {
        "standard_name": "northward_sea_water_velocity",
        "long_name": "Northward velocity",
        "units": "m s-1",
    },
    "mlotst": {
        "standard_name": "ocean_mixed_layer_thickness_defined_by_sigma_theta",
        "long_name": "Density ocean mixed layer thickness",
        "units": "m",
    },
    "deptho": {
        "standard_name": "sea_floor_depth_below_geoid",
        "long_name": "Bathymetry",
        "units": "m",
    },
    "mask": {"long_name": "Land-sea mask: 1 = sea ; 0 = land", "units": "1"},
}

_FILL = np.float32(1.0e20)

# Continents: (lat0, lon0, semi-axis along rotated lat, semi-axis along rotated lon, rot deg)
_BLOBS: tuple[tuple[float, float, float, float, float], ...] = (
    (52.0, -102.0, 20.0, 34.0, -15.0),  # North America
    (66.0, -110.0, 9.0, 38.0, 0.0),  # Canada north
    (24.0, -103.0, 9.0, 8.0, 40.0),  # Mexico
    (17.0, -93.0, 4.0, 4.0, 0.0),  # Central America isthmus ...
    (12.0, -85.0, 4.0, 4.0, 0.0),
    (8.0, -78.0, 4.0, 4.0, 0.0),  # ... joining South America
    (-16.0, -61.0, 33.0, 15.0, 12.0),  # South America
    (-7.0, -45.0, 11.0, 10.0, 0.0),  # Brazil bulge
    (73.0, -40.0, 10.0, 16.0, 0.0),  # Greenland
    (10.0, 17.0, 22.0, 27.0, 0.0),  # North Africa
    (-16.0, 25.0, 18.0, 13.0, 0.0),  # Southern Africa
    (50.0, 18.0, 11.0, 22.0, 0.0),  # Europe
    (58.0, 85.0, 16.0, 70.0, 0.0),  # Siberia / Asia
    (36.0, 105.0, 14.0, 28.0, 0.0),  # China
    (26.0, 46.0, 8.0, 11.0, 0.0),  # Arabia
    (19.0, 78.0, 10.0, 8.0, 0.0),  # India
    (14.0, 102.0, 9.0, 6.0, 0.0),  # Indochina
    (-25.0, 134.0, 12.0, 18.0, 0.0),  # Australia
)

# Eastern-boundary upwelling cells: (lat0, lon0, lat half-width, lon half-width)
_UPWELLING: tuple[tuple[float, float, float, float], ...] = (
    (35.0, -124.0, 10.0, 3.5),  # California
    (-17.0, -77.0, 12.0, 3.5),  # Peru-Humboldt
    (22.0, -19.0, 8.0, 3.0),  # Canary
    (-25.0, 12.0, 9.0, 3.0),  # Benguela
)


def grid(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the cell-centre latitudes and longitudes of the demo grid.

    Parameters
    ----------
    resolution : float
        Grid step in degrees (e.g. 1.0 or 0.25); 180 must be a multiple of it.

    Returns
    -------
    latitude, longitude : numpy.ndarray
        Latitudes -80 ... 90 (the last step at or below 90) and longitudes -180 ...
        180 - ``resolution`` (degrees).

    Examples
    --------
    >>> lat, lon = grid(0.25)
    >>> lat.size, lon.size, float(lat[0]), float(lat[-1]), float(lon[-1])
    (681, 1440, -80.0, 90.0, 179.75)
    """
    if not resolution > 0 or abs(round(180.0 / resolution) * resolution - 180.0) > 1e-9:
        raise ValueError(
            f"resolution={resolution!r} deg: expected a positive step dividing 180, "
            "e.g. 0.25, 0.5, 1, 2, 4 or 5"
        )
    n_lat = int(np.floor(170.0 / resolution + 1e-9)) + 1  # never beyond 90 N (3 deg: 88 N)
    n_lon = round(360.0 / resolution)
    lat = -80.0 + resolution * np.arange(n_lat)
    lon = -180.0 + resolution * np.arange(n_lon)
    return lat, lon


def _blob_r(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised radius to the nearest continent blob and distance to land (deg)."""
    r_min = np.full(np.broadcast(lat, lon).shape, np.inf)
    dist = np.full_like(r_min, np.inf)
    for lat0, lon0, a, b, rot in _BLOBS:
        dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
        dlat = lat - lat0
        t = np.deg2rad(rot)
        u = dlat * np.cos(t) + dlon * np.sin(t)
        v = -dlat * np.sin(t) + dlon * np.cos(t)
        r = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        r_min = np.minimum(r_min, r)
        dist = np.minimum(dist, (r - 1.0) * min(a, b))
    ant = lat - (-70.0 + 2.0 * np.sin(np.deg2rad(2.0 * lon)))
    dist = np.minimum(dist, ant)
    return r_min, dist


def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether each (lat, lon) point is land in the demo world.

    Parameters
    ----------
    lat, lon : array of float
        Coordinates in degrees (broadcast together).

    Returns
    -------
    numpy.ndarray of bool

    Examples
    --------
    >>> is_land(np.array([0.0, 45.0, 10.0, -85.0]), np.array([-140.0, -100.0, 20.0, 0.0]))
    array([False,  True,  True,  True])
    """
    _, dist = _blob_r(np.asarray(lat, float), np.asarray(lon, float))
    return dist <= 0.0


def bathymetry(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Sea-floor depth (m, positive down) of the demo world; NaN on land.

    Parameters
    ----------
    lat, lon : array of float
        Coordinates in degrees (broadcast together).

    Returns
    -------
    numpy.ndarray
        ``deptho`` in metres.

    Examples
    --------
    >>> d = bathymetry(np.array([0.0, 45.0]), np.array([-140.0, -100.0]))
    >>> bool(d[0] > 3000), bool(np.isnan(d[1]))
    (True, True)
    """
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    _, dist = _blob_r(lat, lon)
    depth = 60.0 + 4700.0 * (1.0 - np.exp(-np.clip(dist, 0.0, None) / 2.5))
    ridge_lon = -30.0 - 0.15 * lat
    ridge = 1800.0 * np.exp(-(((lon - ridge_lon) / 6.0) ** 2)) * (np.abs(lat) < 60)
    depth = depth - ridge + 250.0 * np.sin(np.deg2rad(lat * 7.0)) * np.cos(np.deg2rad(lon * 5))
    depth = np.clip(depth, 20.0, None)
    return np.where(dist <= 0.0, np.nan, depth)


def basin_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Name the ocean basin of each point (Atlantic, Pacific, Indian, Southern, Arctic).

    Southern: south of 45 deg S; Arctic: north of 66 deg N; Atlantic: between the
    Americas and Europe/Africa (about 100 deg W-20 deg E north of the equator,
    70 deg W-20 deg E south of it); Indian: 20-120 deg E south of 30 deg N; else Pacific.

    Parameters
    ----------
    lat, lon : array of float
        Coordinates in degrees.

    Returns
    -------
    numpy.ndarray of str (object dtype)

    Examples
    --------
    >>> basin_of(np.array([30.0, 0.0, -10.0, -60.0, 80.0]),
    ...          np.array([-40.0, -140.0, 80.0, 0.0, 0.0])).tolist()
    ['Atlantic', 'Pacific', 'Indian', 'Southern', 'Arctic']
    """
    lat = np.asarray(lat, float)
    lon = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
    west = np.where(lat > 8.0, -98.0 + 0.4 * np.clip(lat - 8.0, 0, 40), -70.0)
    atlantic = (lon >= west) & (lon < 20.0)
    indian = (lon >= 20.0) & (lon < 120.0) & (lat < 30.0)
    out = np.where(atlantic, "Atlantic", np.where(indian, "Indian", "Pacific")).astype(object)
    out[lat < -45.0] = "Southern"
    out[lat > 66.0] = "Arctic"
    return out


def _season(month: int, lat: np.ndarray) -> np.ndarray:
    """+1 at local summer peak (Aug north, Feb south), -1 at local winter peak."""
    c = np.cos(2.0 * np.pi * (month - 8.0) / 12.0)
    return np.where(lat >= 0, c, -c)


def _upwelling(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    up = np.zeros(np.broadcast(lat, lon).shape)
    for lat0, lon0, hw_lat, hw_lon in _UPWELLING:
        up += np.exp(-(((lat - lat0) / hw_lat) ** 2) - ((lon - lon0) / hw_lon) ** 2)
    return np.clip(up, 0.0, 1.0)


def _surface(lat: np.ndarray, lon: np.ndarray, year: int, month: int) -> dict[str, np.ndarray]:
    """Surface/2-D fields (float64) at one month, land not masked."""
    phi = np.deg2rad(lat)
    season = _season(month, lat)
    abs_sin = np.abs(np.sin(phi))
    up = _upwelling(lat, lon)
    # temperature
    sst = -1.5 + 29.5 * np.cos(phi) ** 2
    sst += 3.5 * abs_sin * season  # opposite seasonal sign in the two hemispheres
    sst -= 3.0 * (1.0 - np.tanh((lat + 45.0) / 3.0)) / 2.0  # Southern Ocean front
    gulf = np.exp(-(((lon + 62.0) / 18.0) ** 2)) * (lat > 25) * (lat < 50)
    north_wall = (np.tanh((lat - 40.0 - 0.15 * (lon + 70.0)) / 1.2) + 1.0) / 2.0
    sst += gulf * (3.0 - 7.0 * north_wall)
    sst -= 6.0 * up
    sst += 0.02 * (year - 2020)
    sst = np.clip(sst, -1.8, 31.0)
    # mixed layer: deeper in winter and at high latitudes, very deep in the Southern Ocean
    winter = (1.0 - season) / 2.0
    mld = 20.0 + (15.0 * np.tanh(np.abs(lat) / 10.0) + 170.0 * abs_sin**2) * winter**1.5
    mld += 10.0 * abs_sin
    mld += 120.0 * np.exp(-(((lat + 55.0) / 6.0) ** 2)) * winter
    mld *= 1.0 - 0.5 * up
    # chlorophyll at the surface (mg m-3)
    spring = np.exp(-(((month - np.where(lat >= 0, 5.0, 11.0)) / 2.0) ** 2))
    spring += np.exp(-(((month - np.where(lat >= 0, 17.0, -1.0)) / 2.0) ** 2))
    high_lat = np.exp(-(((np.abs(lat) - 55.0) / 12.0) ** 2))
    gyre = np.exp(-(((np.abs(lat) - 24.0) / 9.0) ** 2))
    chl = 0.12 + high_lat * (0.25 + 1.6 * spring) + 0.3 * np.exp(-((lat / 4.0) ** 2))
    chl += 4.0 * up + 0.8 * gulf * north_wall
    chl *= 1.0 - 0.6 * gyre * (1.0 - up)
    # salinity
    sss = 34.6 + 1.6 * gyre - 0.5 * np.exp(-((lat / 8.0) ** 2)) - 0.6 * high_lat
    sss -= 2.5 / (1.0 + np.exp(-(lat - 70.0) / 3.0))
    sss += 0.8 * np.exp(-(((lat - 25.0) / 10.0) ** 2)) * ((lon > -80) & (lon < 20))
    # currents (surface)
    u = 0.35 * np.exp(-(((lat + 52.0) / 6.0) ** 2)) - 0.3 * np.exp(-((lat / 3.0) ** 2))
    u += 0.25 * np.exp(-(((lat - 6.0) / 2.5) ** 2)) + 0.6 * gulf * np.exp(
        -(((lat - 40.0 - 0.15 * (lon + 70.0)) / 2.5) ** 2)
    )
    v = 0.1 * np.sin(np.deg2rad(2.0 * lon)) * np.cos(phi) * np.sign(lat)
    # oxygen minimum zone strength (0-1), strongest in the eastern tropical basins
    omz = np.exp(-((lat / 16.0) ** 2)) * (0.5 + 0.5 * np.clip(up * 2.0, 0, 1))
    omz += 0.4 * np.exp(-(((lat - 15.0) / 8.0) ** 2) - ((lon - 65.0) / 12.0) ** 2)
    return {
        "sst": sst,
        "mld": mld,
        "chl": chl,
        "sss": sss,
        "u": u,
        "v": v,
        "omz": np.clip(omz, 0.0, 1.0),
    }


def _at_depth(s: dict[str, np.ndarray], depth: float) -> dict[str, np.ndarray]:
    """4-D variables at one depth (m) from the surface fields, land not masked."""
    mld = s["mld"]
    below = np.clip(depth - mld, 0.0, None)
    t_deep = 2.0 + 2.5 * np.exp(-depth / 1200.0)
    thermo = np.exp(-below / 250.0)
    thetao = t_deep + (s["sst"] - t_deep) * thermo
    so = 34.7 + (s["sss"] - 34.7) * np.exp(-below / 400.0)
    chl = s["chl"] * np.exp(-below / 35.0)
    dcm = 0.25 * np.exp(-(((depth - 100.0) / 30.0) ** 2)) * (s["chl"] < 0.3)
    chl = chl + dcm * (depth > mld)
    o2_sfc = 410.0 - 7.5 * s["sst"]
    o2_deep = 170.0 + 60.0 * np.exp(-depth / 2000.0)
    o2 = o2_deep + (o2_sfc - o2_deep) * np.exp(-below / 150.0)
    o2 = o2 - 190.0 * s["omz"] * np.exp(-(((depth - 450.0) / 220.0) ** 2))
    o2 = np.clip(o2, 4.0, None)
    decay = np.exp(-depth / 600.0)
    return {
        "thetao": thetao,
        "so": so,
        "o2": o2,
        "chl": chl,
        "uo": s["u"] * decay,
        "vo": s["v"] * decay,
    }


def environment_month(
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    year: int,
    month: int,
    depths: Sequence[float] = DEPTH_LEVELS_M,
) -> dict[str, np.ndarray]:
    """Evaluate the demo environment at one month, land and sea floor NOT masked.

    Parameters
    ----------
    lat, lon : array of float
        Point or grid coordinates in degrees (broadcast together, shape ``S``).
    year, month : int
        The month (1-12) of the year.
    depths : sequence of float
        Depths (m) at which to evaluate the 4-D variables.

    Returns
    -------
    dict of numpy.ndarray
        ``thetao, so, o2, chl, uo, vo`` with shape ``(len(depths), *S)`` and ``mlotst``
        with shape ``S`` (float64; the store holds these values as float32 with land and
        below-sea-floor cells set to NaN).

    Examples
    --------
    >>> env = environment_month(np.array([0.0, 60.0]), np.array([-140.0, -30.0]),
    ...                         year=2020, month=1, depths=(0.5, 1000.0))
    >>> env["thetao"].shape, bool(env["thetao"][0, 0] > env["thetao"][0, 1])
    ((2, 2), True)
    """
    lat_b, lon_b = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
    s = _surface(lat_b, lon_b, int(year), int(month))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("thetao", "so", "o2", "chl", "uo", "vo")}
    for z in depths:
        level = _at_depth(s, float(z))
        for k, v in level.items():
            out[k].append(v)
    result = {k: np.stack(v) for k, v in out.items()}
    result["mlotst"] = s["mld"]
    return result


def _bands(ny: int, nx: int, cells: int = 100_000) -> list[slice]:
    """Latitude slices of about ``cells`` grid cells each."""
    step = max(1, cells // max(nx, 1))
    return [slice(i, min(i + step, ny)) for i in range(0, ny, step)]


def _months(years: Sequence[int], months: Sequence[int] | None = None) -> list[tuple[int, int]]:
    return [(int(y), int(m)) for y in years for m in (months or range(1, 13))]


def write_environment(
    path: str,
    *,
    resolution: float,
    years: Sequence[int],
    months: Sequence[int] | None = None,
    lat_chunk: int | None = None,
    deptho: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write ``environment.zarr`` (zarr v3), one month at a time.

    Variables ``thetao, so, o2, chl, uo, vo`` (time, depth, latitude, longitude),
    ``mlotst`` (time, latitude, longitude), ``deptho`` (latitude, longitude) and ``mask``
    (depth, latitude, longitude; 1 sea, 0 land or below the sea floor), float32 with
    ``_FillValue``, CF attributes, chunks (1 time, all depths, ``lat_chunk`` latitudes,
    all longitudes) like the Copernicus ``timeChunked`` layout. Peak memory is about one
    month of the 4-D variables (about 0.5 GB at 0.25 deg).

    Parameters
    ----------
    path : str
        Local folder of the store (overwritten).
    resolution : float
        Grid step (degrees).
    years : sequence of int
        Years written (12 months each).
    months : sequence of int, optional
        Only these months (1-12) of each year (default all 12).
    lat_chunk : int, optional
        Latitudes per chunk; default all of them.
    deptho : numpy.ndarray, optional
        Sea-floor depth on the grid (m, NaN on land); default :func:`bathymetry` (the
        simple world's ellipse continents).

    Returns
    -------
    dict
        Shape and chunk information (for ``world.json``).
    """
    lat, lon = grid(resolution)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    depth = np.asarray(DEPTH_LEVELS_M)
    if deptho is None:
        deptho = bathymetry(lat2, lon2)
    sea3 = depth[:, None, None] <= np.nan_to_num(deptho, nan=-1.0)[None]
    sea2 = ~np.isnan(deptho)
    months = _months(years, months)
    times = pd.to_datetime([f"{y:04d}-{m:02d}-01" for y, m in months]).values
    nt, nz, ny, nx = len(months), depth.size, lat.size, lon.size
    lat_chunk = ny if lat_chunk is None else int(lat_chunk)
    coords = {
        "time": ("time", times, {"standard_name": "time", "long_name": "Time", "axis": "T"}),
        "depth": (
            "depth",
            depth.astype("float32"),
            {
                "standard_name": "depth",
                "long_name": "Depth",
                "units": "m",
                "positive": "down",
                "axis": "Z",
            },
        ),
        "latitude": (
            "latitude",
            lat.astype("float32"),
            {
                "standard_name": "latitude",
                "long_name": "Latitude",
                "units": "degrees_north",
                "axis": "Y",
            },
        ),
        "longitude": (
            "longitude",
            lon.astype("float32"),
            {
                "standard_name": "longitude",
                "long_name": "Longitude",
                "units": "degrees_east",
                "axis": "X",
            },
        ),
    }
    data_vars: dict[str, Any] = {}
    encoding: dict[str, Any] = {
        "time": {"units": "milliseconds since 1970-01-01 00:00:00", "dtype": "float64"}
    }
    for name in ("thetao", "so", "o2", "chl", "uo", "vo"):
        data_vars[name] = (
            ("time", "depth", "latitude", "longitude"),
            da.zeros((nt, nz, ny, nx), dtype="float32", chunks=(1, nz, lat_chunk, nx)),
            VARIABLES[name],
        )
        encoding[name] = {"_FillValue": _FILL, "chunks": (1, nz, lat_chunk, nx)}
    data_vars["mlotst"] = (
        ("time", "latitude", "longitude"),
        da.zeros((nt, ny, nx), dtype="float32", chunks=(1, lat_chunk, nx)),
        VARIABLES["mlotst"],
    )
    encoding["mlotst"] = {"_FillValue": _FILL, "chunks": (1, lat_chunk, nx)}
    data_vars["deptho"] = (("latitude", "longitude"), deptho.astype("float32"), VARIABLES["deptho"])
    encoding["deptho"] = {"_FillValue": _FILL, "chunks": (lat_chunk, nx)}
    data_vars["mask"] = (("depth", "latitude", "longitude"), sea3.astype("int8"), VARIABLES["mask"])
    encoding["mask"] = {"chunks": (nz, lat_chunk, nx)}
    attrs = {
        "title": "oceanfields demo world: Copernicus-Marine-like monthly fields (synthetic)",
        "source": "pipeline.demo.environment (analytic fields, no observations)",
        "Conventions": "CF-1.8",
        "resolution_deg": float(resolution),
    }
    template = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    template.to_zarr(
        path, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=encoding
    )
    # static variables are numpy-backed and were written with the metadata; now each month
    bands = _bands(ny, nx)
    for it, (year, month) in enumerate(months):
        region_vars = {}
        block = {
            n: np.empty((1, nz, ny, nx), dtype="float32")
            for n in VARIABLES
            if n not in ("deptho", "mask", "mlotst")
        }
        mld = np.empty((1, ny, nx), dtype="float32")
        for sl in bands:  # latitude bands bound the float64 temporaries
            env = environment_month(lat2[sl], lon2[sl], year=year, month=month, depths=depth)
            for name, arr in block.items():
                arr[0, :, sl] = np.where(sea3[:, sl], env[name], np.nan)
            bottom = np.nan_to_num(deptho[sl], nan=0.0)
            mld[0, sl] = np.where(sea2[sl], np.minimum(env["mlotst"], bottom), np.nan)
        for name, arr in block.items():
            region_vars[name] = (("time", "depth", "latitude", "longitude"), arr)
        region_vars["mlotst"] = (("time", "latitude", "longitude"), mld)
        xr.Dataset(region_vars).to_zarr(
            path, region={"time": slice(it, it + 1)}, zarr_format=3, consolidated=False
        )
        logger.debug("environment %04d-%02d written", year, month)
    logger.info(
        "environment.zarr: %d months x %d depths x %d x %d cells at %g deg",
        nt,
        nz,
        ny,
        nx,
        resolution,
    )
    return {
        "shape": {"time": nt, "depth": nz, "latitude": ny, "longitude": nx},
        "chunks": {"time": 1, "depth": nz, "latitude": lat_chunk, "longitude": nx},
        "ocean_fraction_surface": float(sea2.mean()),
    }
