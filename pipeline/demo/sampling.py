"""Where and when the realistic demo world's casts are made: clustered, biased, like the archive.

:func:`plan_realistic_casts` lays out

- **time-series stations** (:data:`TIME_SERIES`: BATS, HOT, DYFAMED, PAP, Papa,
  HAUSGARTEN) receiving 15 % of the casts, spread over all months;
- **cruises** of 15-45 stations along tracks (0.6-1.4 degrees apart, 0.3-1.5 days
  apart), started in the regions of :data:`CRUISE_REGIONS` with their weights:
  Atlantic-, Mediterranean- and Arctic-heavy; nothing in the northern Indian Ocean
  (its oxygen minimum zone is never sampled) nor in the South Pacific; a track turns
  away from land, shallow water (< 200 m) and the never-sampled regions;
- **summer-heavy** months (weight ``1 + 0.9 season``, ``season`` +1 at the local
  summer peak) and **more casts in recent years** (weight 1.6 per year);
- **one instrument per cruise** (and per station and year): UVP5SD is old, UVP6 recent
  (:func:`_instrument_weights`);
- **shallow casts**: 40 % of the casts stop at 200-800 m, the others at 1,000 m (or 10 m
  above the bottom).

Every cast sits at a random point within 0.45 cells of its grid cell's centre, as in the
simple world; the truth uses the cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.demo.ecopart_writer import ProfileSpec, spec_at_cell
from pipeline.demo.environment import _season, grid
from pipeline.demo.land import real_basin_of
from pipeline.demo.noise import INSTRUMENTS

__all__ = ["CRUISE_REGIONS", "TIME_SERIES", "never_sampled", "plan_realistic_casts"]

#: Time-series stations: name -> (lat, lon).
TIME_SERIES: dict[str, tuple[float, float]] = {
    "BATS": (31.67, -64.17),
    "HOT": (22.75, -158.0),
    "DYFAMED": (43.42, 7.87),
    "PAP": (49.0, -16.5),
    "PAPA": (50.0, -145.0),
    "HAUSGARTEN": (79.0, 4.0),
}
#: Cruise start regions: name -> (weight, lat min, lat max, lon min, lon max).
CRUISE_REGIONS: dict[str, tuple[float, float, float, float, float]] = {
    "north_atlantic": (0.30, 20.0, 62.0, -70.0, -8.0),
    "south_atlantic": (0.10, -40.0, 20.0, -40.0, 8.0),
    "mediterranean": (0.12, 32.0, 43.0, -3.0, 33.0),
    "arctic": (0.13, 68.0, 81.0, -20.0, 60.0),
    "north_pacific": (0.15, 15.0, 55.0, 145.0, 235.0),
    "equatorial_pacific": (0.05, -12.0, 10.0, 200.0, 270.0),
    "southern": (0.12, -65.0, -48.0, -70.0, 80.0),
    "south_indian": (0.03, -45.0, -25.0, 40.0, 110.0),
}
_TS_SHARE = 0.15
_SHALLOW_SHARE = 0.40
_SHALLOW_DEPTHS = (200, 300, 400, 500, 600, 800)


def never_sampled(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether points lie where the realistic world never samples (N Indian, S Pacific).

    Examples
    --------
    >>> never_sampled(np.array([15.0, -30.0, 30.0]), np.array([65.0, -120.0, -40.0])).tolist()
    [True, True, False]
    """
    lat = np.asarray(lat, float)
    lon = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
    north_indian = (lat > -5.0) & (lat < 30.0) & (lon > 40.0) & (lon < 100.0)
    south_pacific = (lat < -15.0) & (lat > -48.0) & ((lon < -75.0) | (lon > 150.0))
    return north_indian | south_pacific


def _instrument_weights(year: int) -> np.ndarray:
    """Probabilities of UVP5SD, UVP5HD, UVP6 in a year."""
    uvp6 = float(np.clip((year - 2016) / 8.0, 0.0, 0.6))
    sd = float(np.clip((2014 - year) / 6.0, 0.0, 0.6)) + 0.1
    return np.array([sd, max(1.0 - sd - uvp6, 0.0), uvp6]) / (1.0 + 0.0)


def _pick(rng: np.random.Generator, weights: Sequence[float]) -> int:
    w = np.asarray(weights, float)
    return int(rng.choice(w.size, p=w / w.sum()))


class _Grid:
    def __init__(self, resolution: float, deptho: np.ndarray) -> None:
        self.res = resolution
        self.lat, self.lon = grid(resolution)
        self.deptho = np.nan_to_num(deptho, nan=0.0)

    def cell(self, lat: float, lon: float) -> tuple[int, int]:
        iy = int(np.clip(np.rint((lat - self.lat[0]) / self.res), 0, self.lat.size - 1))
        lon = ((lon + 180.0) % 360.0) - 180.0
        ix = int(np.rint((lon - self.lon[0]) / self.res)) % self.lon.size
        return iy, ix

    def nearest_ok(self, lat: float, lon: float) -> tuple[float, float]:
        """Find the nearest cell deeper than 200 m (a station on a coarse grid)."""
        if self.ok(lat, lon):
            return lat, lon
        lat2, lon2 = np.meshgrid(self.lat, self.lon, indexing="ij")
        dlon = (lon2 - lon + 180.0) % 360.0 - 180.0
        dist = (lat2 - lat) ** 2 + (dlon * np.cos(np.deg2rad(lat))) ** 2
        dist[self.deptho <= 200.0] = np.inf
        iy, ix = np.unravel_index(np.argmin(dist), dist.shape)
        return float(self.lat[iy]), float(self.lon[ix])

    def ok(self, lat: float, lon: float) -> bool:
        if not -78.0 <= lat <= self.lat[-1]:
            return False
        iy, ix = self.cell(lat, lon)
        return self.deptho[iy, ix] > 200.0 and not never_sampled(np.array(lat), np.array(lon))


def _start(rng: np.random.Generator, g: _Grid) -> tuple[float, float]:
    names = list(CRUISE_REGIONS)
    for _ in range(200):
        region = names[_pick(rng, [CRUISE_REGIONS[n][0] for n in names])]
        _, la0, la1, lo0, lo1 = CRUISE_REGIONS[region]
        lat, lon = rng.uniform(la0, la1), (rng.uniform(lo0, lo1) + 180.0) % 360.0 - 180.0
        if g.ok(lat, lon):
            return lat, lon
    raise RuntimeError("no sea cell found in the cruise regions")  # pragma: no cover


def _track(rng: np.random.Generator, g: _Grid, n: int) -> list[tuple[float, float]]:
    lat, lon = _start(rng, g)
    heading = rng.uniform(0, 2 * np.pi)
    out = [(lat, lon)]
    while len(out) < n:
        step = rng.uniform(0.6, 1.4)
        for _ in range(12):
            nlat = lat + step * np.cos(heading)
            nlon = lon + step * np.sin(heading) / max(np.cos(np.deg2rad(lat)), 0.2)
            nlon = (nlon + 180.0) % 360.0 - 180.0
            if g.ok(nlat, nlon):
                break
            heading = rng.uniform(0, 2 * np.pi)
        else:
            lat, lon = _start(rng, g)  # stuck in a bay: a new leg elsewhere
            out.append((lat, lon))
            continue
        lat, lon = nlat, nlon
        heading += rng.normal(0.0, 0.15)
        out.append((lat, lon))
    return out


def _spec(
    i: int,
    g: _Grid,
    lat: float,
    lon: float,
    t: pd.Timestamp,
    rng: np.random.Generator,
    *,
    cruise: str,
    site: str,
    instrument: str,
) -> ProfileSpec:
    iy, ix = g.cell(lat, lon)
    cell_lat, cell_lon = float(g.lat[iy]), float(g.lon[ix])
    off = rng.uniform(-0.45, 0.45, 2) * g.res
    if cell_lat >= g.lat[-1]:
        off[0] = -abs(off[0])
    if cell_lon <= g.lon[0]:
        off[1] = abs(off[1])
    bottom = float(g.deptho[iy, ix])
    if rng.random() < _SHALLOW_SHARE:
        target = float(_SHALLOW_DEPTHS[int(rng.integers(len(_SHALLOW_DEPTHS)))])
    else:
        target = 1000.0
    max_depth = int(min(target, np.floor((bottom - 10.0) / 5.0) * 5.0))
    basin = str(real_basin_of(np.array([cell_lat]), np.array([cell_lon]))[0])
    return spec_at_cell(
        i,
        (cell_lat, cell_lon),
        off,
        time=t,
        bottom_m=bottom,
        max_depth_m=max_depth,
        basin=basin,
        calibration=INSTRUMENTS[instrument],
        cruise=cruise,
        site=site,
        project=f"demo_{instrument.lower()}_{cruise}",
        instrument=instrument,
    )


def plan_realistic_casts(
    n: int, resolution: float, years: Sequence[int], seed: int, deptho: np.ndarray
) -> list[ProfileSpec]:
    """Lay out ``n`` casts as cruises and time series (see the module docstring).

    Parameters
    ----------
    n : int
        Number of casts.
    resolution : float
        Grid step (degrees).
    years : sequence of int
        The world's years.
    seed : int
        The world's seed.
    deptho : numpy.ndarray
        Sea-floor depth on the grid (m, NaN on land).

    Returns
    -------
    list of ProfileSpec
        In cruise order; ``profile_id`` ``demo_0001`` ... .
    """
    rng = np.random.default_rng([int(seed), 11])
    g = _Grid(resolution, deptho)
    years = sorted(int(y) for y in years)
    year_w = 1.6 ** np.arange(len(years))
    models = list(INSTRUMENTS)
    plan: list[tuple[float, float, pd.Timestamp, str, str, str]] = []
    n_ts = round(_TS_SHARE * n) if n >= 20 else 0
    stations = list(TIME_SERIES)
    for j in range(n_ts):
        name = stations[j % len(stations)]
        lat, lon = g.nearest_ok(*TIME_SERIES[name])
        year = years[_pick(rng, year_w)]
        month = int(rng.integers(1, 13))
        day = int(rng.integers(1, pd.Timestamp(year=year, month=month, day=1).days_in_month + 1))
        t = pd.Timestamp(year=year, month=month, day=day)
        inst = models[
            _pick(
                np.random.default_rng([int(seed), 12, j % len(stations), year]),
                _instrument_weights(year),
            )
        ]
        plan.append((lat, lon, t, f"{name}_{year}", name, inst))
    k = 0
    while len(plan) < n:
        size = min(int(rng.integers(15, 46)), n - len(plan))
        track = _track(rng, g, size)
        year = years[_pick(rng, year_w)]
        season = np.array([float(_season(m, np.array(track[0][0]))) for m in range(1, 13)])
        month = 1 + _pick(rng, 1.0 + 0.9 * season)
        t = pd.Timestamp(year=year, month=month, day=int(rng.integers(1, 15)))
        inst = models[_pick(rng, _instrument_weights(year))]
        k += 1
        cruise = f"demo_cr{k:03d}_{year}"
        for lat, lon in track:
            plan.append((lat, lon, t, cruise, "", inst))
            t = t + pd.Timedelta(hours=float(rng.uniform(8.0, 36.0)))
    specs = []
    last = pd.Timestamp(year=years[-1], month=12, day=31, hour=12)
    for i, (lat, lon, t, cruise, site, inst) in enumerate(plan):
        t = min(t, last).floor("D") + pd.Timedelta(seconds=int(rng.integers(0, 86400 - 4000)))
        specs.append(_spec(i, g, lat, lon, t, rng, cruise=cruise, site=site, instrument=inst))
    return specs
