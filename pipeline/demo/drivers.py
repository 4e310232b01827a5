"""Hidden drivers and the finer environment of the realistic demo world.

The simple world's truth is a closed-form function of the very monthly fields a run
reads (:mod:`pipeline.demo.truth`). In the realistic world the truth responds instead to

- a **finer, noisier environment** that is generated at the world's grid and never
  written to the products a run reads: mesoscale anomalies of temperature and
  chlorophyll (space-time Gaussian random fields, scale ~150 km, one month), an
  interannual ENSO-like signal in the equatorial Pacific (period ~3.7 years) and a
  **lagged bloom history** (surface chlorophyll of the two previous months, exported
  to depth);
- **unobserved, spatially autocorrelated drivers** (Gaussian random fields on the
  sphere, Matérn-like with smoothness 1.5; :data:`DRIVERS` gives each one's scale and
  standard deviation): total abundance (one field shared by all depths, one for the
  upper and one for the deeper ocean), the spectral slope, the scores of the four
  particle types and the abundance of the four plankton groups;
- **non-additive ecology**: a temperature x chlorophyll interaction in abundance, a
  temperature optimum near 17 degC (+0.9 dex), an oxygen-minimum-zone threshold (below
  ~45 mmol m-3: +0.9 dex, darker aggregates, fewer copepods), a winter-mixing export
  step (+0.5 dex at depth where the mixed layer is deeper than 150 m), a polar front
  (+0.4 dex below ~8 degC), true absences (no Trichodesmium below
  20 degC) and a spectrum that steepens above 0.2 mm;
- a **base offset** bringing the magnitudes to those of real UVP5 casts (the BATS casts
  of ``shared/data/ecotaxatools_bats361_uvp5``: 0.1-0.2 mm particles ~20-30 L-1 near the
  surface).

:class:`HiddenWorld` evaluates all of this: :meth:`HiddenWorld.horizontal` gives the 2-D
quantities of one month at given points, :meth:`HiddenWorld.apply` turns an
environment at one depth (``thetao, o2, chl, mlotst, depth_m``, as the truth's
functions take it) into the fine one plus the extra terms the truth's functions read
(``log_c_extra``, ``slope_extra``, ``type_score_extra``, ``plankton_log_extra``,
``plankton_present``). Random fields are sums of 96 random plane waves in 3-D
(``sqrt(2/M) sum cos(k.x + w t + phi)`` on the unit sphere times the Earth's radius),
so any point can be evaluated without a grid; each field has its own generator seeded
from ``(seed, 7, field index)``: same seed, same world.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.demo.environment import _surface

__all__ = ["DRIVERS", "FINE", "HiddenWorld", "RandomField"]

EARTH_RADIUS_KM = 6371.0
_CACHE_LOCK = threading.Lock()
_MODES = 96

#: Hidden drivers: name -> (scale km, standard deviation, time scale in months or 0).
#: The correlation falls to ~0.05 at about 3 x the scale (the "range").
DRIVERS: dict[str, tuple[float, float, float]] = {
    "logc_shared": (600.0, 0.20, 30.0),  # dex, all depths
    "logc_upper": (350.0, 0.14, 0.0),  # dex, weight exp(-z / 150)
    "logc_deep": (900.0, 0.14, 0.0),  # dex, weight 1 - exp(-z / 300)
    "slope": (500.0, 0.12, 0.0),  # spectral slope units
    "type_dark_aggregate": (450.0, 0.35, 0.0),  # softmax score (natural log)
    "type_fluffy_aggregate": (450.0, 0.35, 0.0),
    "type_fecal_pellet": (450.0, 0.35, 0.0),
    "type_fiber": (450.0, 0.35, 0.0),
    "group_Copepoda": (300.0, 0.25, 0.0),  # dex
    "group_Rhizaria": (300.0, 0.25, 0.0),
    "group_Trichodesmium": (300.0, 0.25, 0.0),
    "group_Chaetognatha": (300.0, 0.25, 0.0),
}
#: Fine environment: name -> (scale km, standard deviation, time scale in months).
FINE: dict[str, tuple[float, float, float]] = {
    "meso_t": (150.0, 1.0, 1.0),  # degC at the surface, decaying with depth
    "meso_chl": (150.0, 0.12, 1.0),  # dex, plus -0.08 dex per degC of meso_t
    "interannual": (1500.0, 0.08, 12.0),  # dex of abundance, basin scale
}
#: Base offsets of the realistic truth: log10 C100 (dex) and spectral slope below
#: :data:`pipeline.demo.truth.BREAK_MM`, set so that the spectrum resembles the real
#: BATS casts (slope ~2.9 below 0.2 mm near the surface, ~3.7 at depth, ~4.3 above).
BASE_LOG_C = 0.64
BASE_SLOPE = -1.2


@dataclass(frozen=True)
class RandomField:
    """A stationary Gaussian random field on the sphere (optionally evolving in time).

    Parameters
    ----------
    seed : sequence of int
        Seed of the field's generator.
    scale_km : float
        Length scale (km); Matérn-like covariance of smoothness 1.5.
    sd : float
        Standard deviation.
    time_scale_months : float
        Decorrelation time (months); 0 for a static field.

    Examples
    --------
    >>> f = RandomField((0, 1), 500.0, 0.2)
    >>> v = f(np.array([0.0, 0.1, 60.0]), np.array([0.0, 0.1, 100.0]))
    >>> v.shape, bool(abs(v[0] - v[1]) < abs(v[0] - v[2]) + 0.5)
    ((3,), True)
    """

    seed: tuple[int, ...]
    scale_km: float
    sd: float
    time_scale_months: float = 0.0
    _k: np.ndarray = field(init=False, repr=False, compare=False)
    _w: np.ndarray = field(init=False, repr=False, compare=False)
    _phi: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Draw the plane waves."""
        rng = np.random.default_rng(list(self.seed))
        nu = 1.5
        z = rng.standard_normal((_MODES, 3))
        chi = rng.chisquare(2 * nu, _MODES)
        k = z * np.sqrt(2 * nu / chi)[:, None] * (EARTH_RADIUS_KM / self.scale_km)
        w = (
            rng.standard_normal(_MODES) / self.time_scale_months
            if self.time_scale_months > 0
            else np.zeros(_MODES)
        )
        object.__setattr__(self, "_k", k)
        object.__setattr__(self, "_w", w)
        object.__setattr__(self, "_phi", rng.uniform(0, 2 * np.pi, _MODES))

    def __call__(self, lat: np.ndarray, lon: np.ndarray, t_months: float = 0.0) -> np.ndarray:
        """Evaluate the field at points (degrees) and time (months since Jan 2000)."""
        xyz, shape = _unit_vectors(lat, lon)
        out = np.empty(xyz.shape[0])
        shift = self._phi + self._w * float(t_months)
        for i in range(0, xyz.shape[0], 20_000):
            proj = xyz[i : i + 20_000] @ self._k.T + shift
            out[i : i + 20_000] = np.cos(proj).sum(axis=1)
        return (out * self.sd * np.sqrt(2.0 / _MODES)).reshape(shape)

    def basis(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``cos`` and ``sin`` of each plane wave at the points (float32, for :meth:`at`)."""
        xyz, _ = _unit_vectors(lat, lon)
        proj = xyz @ self._k.T + self._phi
        return np.cos(proj).astype("float32"), np.sin(proj).astype("float32")

    def at(self, basis: tuple[np.ndarray, np.ndarray], t_months: float) -> np.ndarray:
        """Evaluate the field from :meth:`basis` at a time (``cos(a + wt)`` expanded)."""
        c, s = basis
        wt = self._w * float(t_months)
        out = c @ np.cos(wt).astype("float32") - s @ np.sin(wt).astype("float32")
        return out.astype("float64") * self.sd * np.sqrt(2.0 / _MODES)


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    shape = np.broadcast(lat, lon).shape
    la, lo = (np.broadcast_to(a, shape).ravel() for a in (np.deg2rad(lat), np.deg2rad(lon)))
    xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    return xyz, shape


def _months_since_2000(year: int, month: int) -> float:
    return 12.0 * (int(year) - 2000) + (int(month) - 1)


def _log_chl(chl: np.ndarray) -> np.ndarray:
    return np.log10(np.clip(chl, 0.0, None) + 0.05)


@dataclass(frozen=True)
class HiddenWorld:
    """The realistic world's hidden drivers and fine environment, seeded.

    Parameters
    ----------
    seed : int
        The world's seed.
    strength : float
        Multiplies the standard deviation of every hidden driver (1 = :data:`DRIVERS`).

    Examples
    --------
    >>> hw = HiddenWorld(0)
    >>> lat, lon = np.array([30.0, -10.0]), np.array([-40.0, -120.0])
    >>> h = hw.horizontal(lat, lon, year=2020, month=6)
    >>> env = dict(thetao=np.array([20.0, 25.0]), o2=np.array([200.0, 10.0]),
    ...            chl=np.array([0.2, 0.1]), mlotst=np.array([40.0, 30.0]),
    ...            depth_m=np.array([10.0, 400.0]))
    >>> fine = hw.apply(env, h)
    >>> sorted(k for k in fine if k.endswith("extra"))
    ['log_c_extra', 'plankton_log_extra', 'slope_big_extra', 'slope_extra', 'type_score_extra']
    """

    seed: int
    strength: float = 1.0
    _fields: dict[str, RandomField] = field(init=False, repr=False, compare=False)
    _cache: dict[Any, dict[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Build one random field per driver and fine-environment quantity."""
        fields = {}
        for i, (name, (scale, sd, tau)) in enumerate({**DRIVERS, **FINE}.items()):
            amp = sd * (self.strength if name in DRIVERS else 1.0)
            fields[name] = RandomField((int(self.seed), 7, i), scale, amp, tau)
        object.__setattr__(self, "_fields", fields)
        object.__setattr__(self, "_cache", {})

    def _grid_fields(self, lat: np.ndarray, lon: np.ndarray, t: float) -> dict[str, np.ndarray]:
        """All random fields at many points: static values and wave bases cached per grid."""
        key = (
            lat.shape,
            lat.tobytes()[:64],
            lat.tobytes()[-64:],
            lon.tobytes()[-64:],
            float(lat.sum()),
            float(lon.sum()),
        )
        with _CACHE_LOCK:  # months may be evaluated in threads (truth.write_truth_fields)
            if key not in self._cache:
                if len(self._cache) >= 2:  # a latitude band or two: bound the memory
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = {
                    name: (f.basis(lat, lon) if f.time_scale_months > 0 else f(lat, lon))
                    for name, f in self._fields.items()
                }
            entry = self._cache[key]
        shape = np.broadcast(lat, lon).shape
        return {
            name: (f.at(entry[name], t).reshape(shape) if f.time_scale_months > 0 else entry[name])
            for name, f in self._fields.items()
        }

    def horizontal(
        self, lat: np.ndarray, lon: np.ndarray, *, year: int, month: int
    ) -> dict[str, np.ndarray]:
        """2-D hidden quantities of one month at points (degrees), depth-independent.

        Returns
        -------
        dict of numpy.ndarray
            One array per :data:`DRIVERS` and :data:`FINE` name, plus ``enso`` (degC of
            surface warming), ``bloom_lag`` (dex: the two previous months' surface
            chlorophyll against this month's, analytic) and ``chl_surface`` (mg m-3).
        """
        t = _months_since_2000(year, month)
        lat_b, lon_b = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
        if lat_b.size >= 1000:
            out = self._grid_fields(lat_b, lon_b, t)
        else:
            out = {name: f(lat_b, lon_b, t) for name, f in self._fields.items()}
        # ENSO-like: equatorial Pacific, period ~3.7 years, phase from the seed
        phase = np.random.default_rng([int(self.seed), 8]).uniform(0, 2 * np.pi)
        index = np.sin(2 * np.pi * t / 44.0 + phase)
        lon_e = (lon_b + 360.0) % 360.0
        pattern = np.exp(-((lat_b / 10.0) ** 2) - ((lon_e - 240.0) / 40.0) ** 2)
        out["enso"] = 1.8 * index * pattern
        now = _surface(lat_b, lon_b, int(year), int(month))["chl"]
        prev = [
            _surface(
                lat_b, lon_b, int(year) + (int(month) - k - 1) // 12, (int(month) - k - 1) % 12 + 1
            )["chl"]
            for k in (1, 2)
        ]
        out["bloom_lag"] = _log_chl(0.5 * (prev[0] + prev[1])) - _log_chl(now)
        out["chl_surface"] = now
        return out

    def apply(self, env: Mapping[str, Any], h: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fine environment and the truth's extra terms at one set of points and depths.

        Parameters
        ----------
        env : mapping of array
            ``thetao, o2, chl, mlotst, depth_m`` (the stored monthly environment).
        h : mapping of array
            :meth:`horizontal` at the same points.

        Returns
        -------
        dict of numpy.ndarray
            ``thetao, chl`` replaced by their fine values, ``o2, mlotst, depth_m`` kept,
            and ``log_c_extra, slope_extra`` (shape of the points),
            ``type_score_extra, plankton_log_extra, plankton_present`` (..., 4).
        """
        z = np.asarray(env["depth_m"], float)
        t = np.asarray(env["thetao"], float)
        o2 = np.clip(np.asarray(env["o2"], float), 0.0, None)
        chl = np.clip(np.asarray(env["chl"], float), 0.0, None)
        surf = np.exp(-z / 300.0)
        dt = (h["meso_t"] + h["enso"]) * surf
        t_fine = t + dt
        dlchl = (h["meso_chl"] - 0.08 * h["meso_t"] - 0.12 * h["enso"]) * np.exp(-z / 200.0)
        chl_fine = chl * 10.0**dlchl
        lchl = _log_chl(chl_fine)
        w_up = np.exp(-z / 150.0)
        w_deep = 1.0 - np.exp(-z / 300.0)
        omz = 1.0 / (1.0 + np.exp((o2 - 45.0) / 4.0))  # ~1 below 45 mmol m-3
        log_c = (
            BASE_LOG_C
            + h["logc_shared"]
            + w_up * h["logc_upper"]
            + w_deep * h["logc_deep"]
            + h["interannual"]
            + 0.45 * np.clip(h["bloom_lag"], -1.0, 1.0) * w_deep
            + 0.6 * (t_fine - 15.0) / 10.0 * (lchl + 0.7)  # temperature x chlorophyll
            + 0.9 * omz
            + 0.9 * np.exp(-(((t_fine - 17.0) / 2.5) ** 2))  # subtropical-front optimum
            - 0.25
            + 0.5 * (np.asarray(env["mlotst"], float) > 150.0) * w_deep  # winter-mixing export
        )
        zr = np.maximum(z, np.clip(env["mlotst"], 1.0, None)) / np.clip(env["mlotst"], 1.0, None)
        log_c = log_c + 0.45 * np.log10(zr)  # a gentler decline with depth than the simple one
        polar = (1.0 - np.tanh((t_fine - 8.0) / 1.5)) / 2.0  # ~1 in cold water, ~0 in warm
        log_c = log_c + 0.4 * polar  # a polar front: more particles below ~8 degC
        slope = BASE_SLOPE + 0.8 * w_deep + h["slope"] - 0.1 * omz + 0.0 * log_c
        steep = np.clip(1.3 - 0.8 * w_deep - h["slope"], 0.3, None)
        names = ("dark_aggregate", "fluffy_aggregate", "fecal_pellet", "fiber")
        shape = np.broadcast(z, t, log_c).shape
        types = np.stack([np.broadcast_to(h[f"type_{n}"], shape) for n in names], axis=-1)
        types[..., 0] += 1.2 * omz
        groups = ("Copepoda", "Rhizaria", "Trichodesmium", "Chaetognatha")
        plank = np.stack([np.broadcast_to(h[f"group_{g}"], shape) for g in groups], axis=-1)
        plank[..., 0] -= 1.0 * omz  # copepods avoid the OMZ core
        plank[..., 1] += 0.3 * (t_fine > 18.0) * (lchl < -0.9)  # Rhizaria: warm oligotrophic
        present = np.ones(plank.shape)
        present[..., 2] = t_fine >= 20.0  # no Trichodesmium in cool water (true absence)
        return {
            "thetao": np.broadcast_to(t_fine, shape),
            "o2": o2,
            "chl": chl_fine,
            "mlotst": np.asarray(env["mlotst"], float),
            "depth_m": z,
            "log_c_extra": log_c,
            "slope_extra": slope,
            "slope_big_extra": steep,
            "type_score_extra": types,
            "plankton_log_extra": plank,
            "plankton_present": present,
        }
