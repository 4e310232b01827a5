"""Real continents for the realistic demo world, from the GSHHG land mask of ``roaring-landmask``.

``roaring-landmask`` (MIT, maintained) ships the GSHHG land mask (a compressed bitmap
and the polygons) inside its wheel, so nothing is downloaded at run time.
:func:`land_grid` samples it on a ``k x k`` sub-grid of every cell of the demo grid
(``k = clip(round(resolution / 0.25), 2, 8)``) and calls a cell land when at least half
of its sub-points are land; lakes inside continents are land. :func:`real_bathymetry`
turns the distance to that land into a sea-floor depth with the simple world's profile
(shelves within 1-2 degrees of the coast, 4,700 m abyss, a Mid-Atlantic ridge), and
:func:`real_basin_of` names the basins as :func:`pipeline.demo.environment.basin_of`,
with the Mediterranean and the Black Sea counted as Atlantic.

The mask is loaded once per process (about 2 s) and each grid is cached: in memory, and
on disk under ``$OCEANFIELDS_CACHE`` (default ``~/.cache/oceanfields``; ``none`` turns
it off), keyed by resolution and roaring-landmask version, so a process that finds its
grid there never loads the mask.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipeline.demo.environment import basin_of, grid

__all__ = ["land_grid", "real_basin_of", "real_bathymetry"]

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _mask():  # -> roaring_landmask.RoaringMask
    try:
        from roaring_landmask import LandmaskProvider, RoaringMask
    except ImportError as err:  # pragma: no cover - a main dependency
        raise ImportError(
            "the realistic demo world needs roaring-landmask (pip install roaring-landmask); "
            "or generate the simple world: generate_demo_world(..., world='simple')"
        ) from err
    # the bitmap alone (~2 s to load): agrees with the exact GSHHG polygons on 99.9 % of
    # points of a 1/8-degree grid, far finer than any demo cell
    return RoaringMask.new(LandmaskProvider.Gshhg)


@lru_cache(maxsize=8)
def land_grid(resolution: float) -> np.ndarray:
    """Whether each cell of the demo grid at ``resolution`` is land (real coastlines).

    Parameters
    ----------
    resolution : float
        Grid step (degrees), as :func:`pipeline.demo.environment.grid`.

    Returns
    -------
    numpy.ndarray of bool
        Shape ``(n_lat, n_lon)``; read-only (cached).

    Examples
    --------
    >>> land = land_grid(10.0)
    >>> lat, lon = grid(10.0)
    >>> bool(land[list(lat).index(0.0), list(lon).index(-140.0)])   # central Pacific
    False
    >>> bool(land[list(lat).index(10.0), list(lon).index(20.0)])    # Chad
    True
    """
    lat, lon = grid(resolution)
    cached = _cache_file(resolution)
    land = _read_cached(cached, (lat.size, lon.size))
    if land is None:
        land = _sample_land(resolution, lat, lon)
        _write_cached(cached, land)
    land.setflags(write=False)
    logger.debug("land mask at %g deg: %.3f land", resolution, land.mean())
    return land


def _sample_land(resolution: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Sample the GSHHG mask on the sub-grid of every cell (see :func:`land_grid`)."""
    k = int(np.clip(round(resolution / 0.25), 2, 8))
    sub = (np.arange(k) + 0.5) / k - 0.5  # sub-point offsets in cells
    la = (lat[:, None] + sub[None, :] * resolution).clip(-89.999, 89.999)
    lo = lon[:, None] + sub[None, :] * resolution
    la4 = np.broadcast_to(la[:, :, None, None], (lat.size, k, lon.size, k))
    lo4 = np.broadcast_to(lo[None, None, :, :], (lat.size, k, lon.size, k))
    hits = _mask().contains_many(
        np.ascontiguousarray(lo4.ravel(), dtype="float64"),
        np.ascontiguousarray(la4.ravel(), dtype="float64"),
    )
    frac = np.asarray(hits, dtype="float64").reshape(lat.size, k, lon.size, k).mean(axis=(1, 3))
    land = frac >= 0.5
    land[lat < -78.0] = True  # ice shelves: the mask's Antarctic coast leaves the Ross Sea open
    return land


def _cache_file(resolution: float) -> Path | None:
    """Locate the disk cache of a land grid (None when ``OCEANFIELDS_CACHE=none``)."""
    root = os.environ.get("OCEANFIELDS_CACHE") or str(Path.home() / ".cache" / "oceanfields")
    if root.lower() == "none":
        return None
    try:
        version = importlib.metadata.version("roaring-landmask")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(root) / f"land_grid_{float(resolution)!r}deg_roaring-landmask-{version}.npy"


def _read_cached(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        land = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        logger.info("land mask cache %s unreadable (%s): sampling the mask again", path, err)
        return None
    if land.shape != shape or land.dtype != bool:
        logger.info("land mask cache %s has shape %s, not %s: ignored", path, land.shape, shape)
        return None
    return land


def _write_cached(path: Path | None, land: np.ndarray) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, land, allow_pickle=False)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the whole file or none
    except OSError as err:
        logger.info("land mask not cached in %s: %s", path, err)


@lru_cache(maxsize=8)
def real_bathymetry(resolution: float) -> np.ndarray:
    """Sea-floor depth (m, positive down) on the demo grid with real coastlines; NaN on land.

    Same profile as :func:`pipeline.demo.environment.bathymetry` (depth from the distance
    to land, a Mid-Atlantic ridge, gentle undulations), with the distance measured on
    :func:`land_grid` (degrees of latitude, longitude scaled by cos(latitude)).

    Examples
    --------
    >>> d = real_bathymetry(10.0)
    >>> lat, lon = grid(10.0)
    >>> bool(d[list(lat).index(0.0), list(lon).index(-140.0)] > 3000)
    True
    """
    lat, lon = grid(resolution)
    land = land_grid(resolution)
    # distance (cells) to the nearest land cell, longitude wrapped by padding a third
    pad = max(1, lon.size // 3)
    sea = ~np.concatenate([land[:, -pad:], land, land[:, :pad]], axis=1)
    coslat = np.clip(np.cos(np.deg2rad(lat)), 0.2, 1.0).mean()
    dist = ndimage.distance_transform_edt(sea, sampling=(1.0, coslat))[:, pad:-pad] * resolution
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    depth = 60.0 + 4700.0 * (1.0 - np.exp(-np.clip(dist - 0.5 * resolution, 0.0, None) / 2.5))
    ridge_lon = -30.0 - 0.15 * lat2
    ridge = 1800.0 * np.exp(-(((lon2 - ridge_lon) / 6.0) ** 2)) * (np.abs(lat2) < 60)
    depth = depth - ridge + 250.0 * np.sin(np.deg2rad(lat2 * 7.0)) * np.cos(np.deg2rad(lon2 * 5))
    depth = np.clip(depth, 20.0, None)
    out = np.where(land, np.nan, depth)
    out.setflags(write=False)
    return out


def real_basin_of(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Name the basin of each point as :func:`~pipeline.demo.environment.basin_of`, Med = Atlantic.

    Examples
    --------
    >>> real_basin_of(np.array([35.0, 43.0, 10.0]), np.array([25.0, 34.0, 65.0])).tolist()
    ['Atlantic', 'Atlantic', 'Indian']
    """
    lat = np.asarray(lat, float)
    lon = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
    out = basin_of(lat, lon)
    med = (lat >= 30.0) & (lat <= 47.5) & (lon >= -6.0) & (lon <= 42.0)
    out[med] = "Atlantic"
    return out
