"""The demo world's truth: expected particle and plankton concentrations from the environment.

Everything the demo's EcoPart and EcoTaxa files contain is drawn from these functions plus
Poisson sampling noise, so later steps can be scored against the noise-free values.

Inputs (the *environment at a point*, a mapping of arrays broadcast together):
``thetao`` (degC), ``o2`` (mmol m-3), ``chl`` (mg m-3), ``mlotst`` (m) and ``depth_m``
(m). At a profile they are the stored monthly fields of the profile's grid cell and month,
linearly interpolated in depth between the two bracketing levels (see
:func:`environment_at`).

Formulas (log10 is the decimal logarithm; z = ``depth_m``, T = ``thetao``):

- depth below the mixed layer: ``zr = max(z, mlotst) / mlotst`` (1 inside the mixed layer);
- non-living particles follow a power-law number spectrum
  ``n(D) = (slope - 1) * C100 / D0 * (D / D0) ** (-slope)`` (# L-1 mm-1, ESD ``D`` in mm,
  ``D0 = 0.1 mm``) for ``D >= 0.0806 mm`` (none smaller: the UVP5 does not resolve them), with
  ``C100`` the concentration above 0.1 mm::

      log10 C100 = 1.15 + 0.45 log10(chl + 0.05) + 0.12 (T - 10) / 10
                   + 0.35 exp(-o2 / 40) - 0.7 log10(zr)
      slope      = 3.7 + 0.3 tanh((T - 15) / 8) - 0.2 log10(chl + 0.05) + 0.25 log10(zr)

  so the expected concentration in the class ``[lo, hi)`` is
  ``C100 * ((lo / D0) ** (1 - slope) - (hi / D0) ** (1 - slope))``;
- particles of ESD >= 1.02 mm (the size imaged as EcoTaxa vignettes) belong to four
  types in fractions ``softmax(s)`` of the scores::

      dark_aggregate   : -0.3 + 0.55 log10(z + 10) + 0.6 exp(-o2 / 60)
      fluffy_aggregate :  0.6 + 0.9 log10(chl + 0.05) - 0.25 log10(zr)
      fecal_pellet     :  0.2 + 0.02 (T - 15) + 0.4 exp(-z / 250)
      fiber            : -0.6                                      (constant)

  (the type does not depend on size);
- plankton groups (# L-1, all with ESD >= 1.02 mm, sizes log-normal per group, see
  :data:`PLANKTON_SIZES`)::

      Copepoda      = 0.006 (chl + 0.1) ** 0.5 exp(-z / 350)
      Rhizaria      = 0.003 exp(-((z - 150) / 150) ** 2) (1 + clip((T - 8) / 12, 0, 1.5))
                      + 0.0005 exp(-z / 800)
      Trichodesmium = 0.012 / (1 + exp(-(T - 25) / 1.2)) exp(-z / 40) / (1 + chl / 0.15)
      Chaetognatha  = 0.0015 exp(-z / 500) (0.4 + o2 / 300)

- the EcoPart size classes count every object: the expected concentration in a class is
  particles + plankton (each group's log-normal mass in the class, renormalised over the
  classes >= 1.02 mm).

Counts in the files are Poisson(expected concentration x sampled volume) per 1 m row, the
expected concentration being that of the row's 5 m bin centre.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import ndtr

from pipeline import sizeclasses
from pipeline.demo.environment import (
    DEPTH_LEVELS_M,
    _bands,
    bathymetry,
    environment_month,
    grid,
)

if TYPE_CHECKING:
    from pipeline.demo.drivers import HiddenWorld

logger = logging.getLogger(__name__)

__all__ = [
    "AGGREGATED_CLASSES_MM",
    "D0_MM",
    "GROUPS",
    "LAYERS",
    "MIN_ESD_MM",
    "OBJECT_MIN_ESD_MM",
    "PLANKTON_SIZES",
    "TYPES",
    "aggregated_concentrations",
    "annotated_concentrations",
    "conc_column",
    "environment_at",
    "expected_concentrations",
    "expected_particles",
    "expected_plankton",
    "formulas",
    "plankton_class_probabilities",
    "spectrum_parameters",
    "type_fractions",
    "write_truth_fields",
]

#: Reference diameter of the spectrum (mm).
D0_MM = 0.1
#: Realistic world only: ESD (mm) above which the spectrum steepens (``slope_big_extra``).
BREAK_MM = 0.2
#: Smallest particle ESD in the demo world (mm): lower edge of the 80.6-102 µm class.
MIN_ESD_MM = 0.0806
#: Objects at least this large (ESD, mm) get an EcoTaxa vignette, a type or a group.
OBJECT_MIN_ESD_MM = 1.02
#: Non-living particle types.
TYPES: tuple[str, ...] = ("dark_aggregate", "fluffy_aggregate", "fecal_pellet", "fiber")
#: Plankton groups.
GROUPS: tuple[str, ...] = ("Copepoda", "Rhizaria", "Trichodesmium", "Chaetognatha")
#: Log-normal ESD of each group: (median mm, sigma of ln ESD).
PLANKTON_SIZES: dict[str, tuple[float, float]] = {
    "Copepoda": (1.4, 0.30),
    "Rhizaria": (2.2, 0.40),
    "Trichodesmium": (1.7, 0.30),
    "Chaetognatha": (3.0, 0.35),
}
#: Depth layers of the truth tables: (name, top m, bottom m).
LAYERS: tuple[tuple[str, float, float], ...] = (
    ("0-100m", 0.0, 100.0),
    ("100-500m", 100.0, 500.0),
    ("500-1000m", 500.0, 1000.0),
)
#: Aggregated classes of ``truth/fields.zarr`` (mm).
AGGREGATED_CLASSES_MM: tuple[tuple[float, float], ...] = (
    (0.102, 0.203),
    (0.203, 0.512),
    (0.512, 2.05),
    (2.05, np.inf),
)

_EDGES = sizeclasses.edges_mm("detailed")
_FIRST_CLASS = int(np.searchsorted(_EDGES, MIN_ESD_MM - 1e-12))
_FIRST_OBJECT_CLASS = int(np.searchsorted(_EDGES, OBJECT_MIN_ESD_MM - 1e-12))


def conc_column(lo_mm: float, hi_mm: float) -> str:
    """Name the truth column of a size class: ``conc_<lo>_<hi>um_per_l`` (# L-1).

    Examples
    --------
    >>> conc_column(0.102, 0.128), conc_column(2.05, np.inf)
    ('conc_102_128um_per_l', 'conc_2050_infum_per_l')
    """
    return "conc_" + sizeclasses.class_column(lo_mm, hi_mm)[2:] + "_per_l"


def _get(env: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        return np.asarray(env[name], dtype="float64")
    except KeyError as err:
        raise KeyError(
            f"environment has no {name!r}; expected thetao, o2, chl, mlotst, depth_m "
            f"(got {sorted(env)})"
        ) from err


def _zr(env: Mapping[str, Any]) -> np.ndarray:
    z = _get(env, "depth_m")
    mld = np.clip(_get(env, "mlotst"), 1.0, None)
    return np.maximum(z, mld) / mld


def spectrum_parameters(env: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Concentration above 0.1 mm (# L-1) and slope of the particle number spectrum.

    Parameters
    ----------
    env : mapping of array
        ``thetao, o2, chl, mlotst, depth_m`` (see the module docstring).

    Returns
    -------
    c100, slope : numpy.ndarray

    Examples
    --------
    >>> env = dict(thetao=20.0, o2=220.0, chl=0.2, mlotst=50.0, depth_m=10.0)
    >>> c100, slope = spectrum_parameters(env)
    >>> round(float(c100), 2), round(float(slope), 3)
    (10.01, 3.987)
    """
    t = _get(env, "thetao")
    chl = np.clip(_get(env, "chl"), 0.0, None)
    o2 = np.clip(_get(env, "o2"), 0.0, None)
    zr = _zr(env)
    lchl = np.log10(chl + 0.05)
    log_c = 1.15 + 0.45 * lchl + 0.12 * (t - 10.0) / 10.0 + 0.35 * np.exp(-o2 / 40.0)
    log_c = log_c - 0.7 * np.log10(zr)
    slope = 3.7 + 0.3 * np.tanh((t - 15.0) / 8.0) - 0.2 * lchl + 0.25 * np.log10(zr)
    if "log_c_extra" in env:  # the realistic world (pipeline.demo.drivers)
        log_c = log_c + _get(env, "log_c_extra")
        slope = np.maximum(slope + _get(env, "slope_extra"), 2.0)  # a falling spectrum
    return 10.0**log_c, slope


def expected_particles(env: Mapping[str, Any], edges: np.ndarray | None = None) -> np.ndarray:
    """Compute the expected concentration (# L-1) of non-living particles in each size class.

    Parameters
    ----------
    env : mapping of array
        ``thetao, o2, chl, mlotst, depth_m``.
    edges : array of float, optional
        Class edges in mm (default: the 45 EcoPart detailed classes).

    Returns
    -------
    numpy.ndarray
        Shape ``(*S, n_classes)``; zero for classes below 80.6 µm.

    Examples
    --------
    >>> env = dict(thetao=20.0, o2=220.0, chl=0.2, mlotst=50.0, depth_m=10.0)
    >>> conc = expected_particles(env)
    >>> conc.shape, float(conc[..., :19].sum()), round(float(conc[20]), 3)
    ((45,), 0.0, 4.647)
    """
    edges = _EDGES if edges is None else np.asarray(edges, dtype="float64")
    c100, slope = spectrum_parameters(env)
    lo = np.maximum(edges[:-1], MIN_ESD_MM)
    hi = np.maximum(edges[1:], MIN_ESD_MM)
    e = (1.0 - slope)[..., None]
    with np.errstate(over="ignore", divide="ignore"):
        cum_lo = np.where(np.isinf(lo), 0.0, (lo / D0_MM) ** e)
        cum_hi = np.where(np.isinf(hi), 0.0, (hi / D0_MM) ** e)
        if "slope_big_extra" in env:  # the realistic world: steeper above BREAK_MM
            steep = _get(env, "slope_big_extra")[..., None]
            cum_lo = _steepen(cum_lo, lo, e, steep)
            cum_hi = _steepen(cum_hi, hi, e, steep)
    return c100[..., None] * (cum_lo - cum_hi)


def _steepen(cum: np.ndarray, x: Any, e: Any, steep: Any) -> np.ndarray:
    """Cumulative spectrum ``N(>x) / C100`` with the slope raised by ``steep`` above the break.

    Below :data:`BREAK_MM` it is the power law's ``(x / D0) ** e``; above it
    ``(B / D0) ** e * (x / B) ** (e - steep)``, continuous at ``B``.
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        big = (BREAK_MM / D0_MM) ** e * (x / BREAK_MM) ** (e - steep)
        big = np.where(np.isinf(x), 0.0, big)
    return np.where(np.asarray(x) >= BREAK_MM, big, cum)


def type_fractions(env: Mapping[str, Any]) -> np.ndarray:
    """Fractions of the particle :data:`TYPES` (sum to 1 over the last axis).

    Examples
    --------
    >>> f = type_fractions(dict(thetao=20.0, o2=220.0, chl=0.2, mlotst=50.0, depth_m=10.0))
    >>> f.shape, round(float(f.sum()), 6)
    ((4,), 1.0)
    """
    t = _get(env, "thetao")
    chl = np.clip(_get(env, "chl"), 0.0, None)
    o2 = np.clip(_get(env, "o2"), 0.0, None)
    z = _get(env, "depth_m")
    zr = _zr(env)
    scores = np.broadcast_arrays(
        -0.3 + 0.55 * np.log10(z + 10.0) + 0.6 * np.exp(-o2 / 60.0),
        0.6 + 0.9 * np.log10(chl + 0.05) - 0.25 * np.log10(zr),
        0.2 + 0.02 * (t - 15.0) + 0.4 * np.exp(-z / 250.0),
        np.full(np.shape(t), -0.6),
    )
    if "type_score_extra" in env:  # the realistic world (pipeline.demo.drivers)
        extra = _get(env, "type_score_extra")
        scores = [s + extra[..., i] for i, s in enumerate(scores)]
    # softmax type by type: the same operations, in the same order, as along a last axis
    top = np.maximum(np.maximum(np.maximum(scores[0], scores[1]), scores[2]), scores[3])
    ex = [np.exp(s - top) for s in scores]
    total = ex[0] + ex[1] + ex[2] + ex[3]
    return np.stack([e / total for e in ex], axis=-1)


def expected_plankton(env: Mapping[str, Any]) -> np.ndarray:
    """Compute the expected abundance (# L-1) of each plankton group in :data:`GROUPS`.

    Examples
    --------
    >>> p = expected_plankton(dict(thetao=28.0, o2=200.0, chl=0.05, mlotst=40.0, depth_m=5.0))
    >>> [round(float(x), 4) for x in p]
    [0.0023, 0.0034, 0.0073, 0.0016]
    """
    t = _get(env, "thetao")
    chl = np.clip(_get(env, "chl"), 0.0, None)
    o2 = np.clip(_get(env, "o2"), 0.0, None)
    z = _get(env, "depth_m")
    cope = 0.006 * np.sqrt(chl + 0.1) * np.exp(-z / 350.0)
    rhiz = 0.003 * np.exp(-(((z - 150.0) / 150.0) ** 2)) * (1.0 + np.clip((t - 8.0) / 12.0, 0, 1.5))
    rhiz = rhiz + 0.0005 * np.exp(-z / 800.0)
    tricho = 0.012 / (1.0 + np.exp(-(t - 25.0) / 1.2)) * np.exp(-z / 40.0) / (1.0 + chl / 0.15)
    chaeto = 0.0015 * np.exp(-z / 500.0) * (0.4 + o2 / 300.0)
    out = np.stack(np.broadcast_arrays(cope, rhiz, tricho, chaeto), axis=-1)
    if "plankton_log_extra" in env:  # the realistic world (pipeline.demo.drivers)
        out = out * 10.0 ** _get(env, "plankton_log_extra") * _get(env, "plankton_present")
    return out


def plankton_class_probabilities(edges: np.ndarray | None = None) -> np.ndarray:
    """Probability of each size class for each plankton group, shape ``(4, n_classes)``.

    Log-normal ESD (:data:`PLANKTON_SIZES`) restricted to the classes >= 1.02 mm and
    renormalised.

    Examples
    --------
    >>> p = plankton_class_probabilities()
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1.0)), float(p[:, :30].sum())
    ((4, 45), True, 0.0)
    """
    edges = _EDGES if edges is None else np.asarray(edges, dtype="float64")
    out = np.zeros((len(GROUPS), edges.size - 1))
    lo, hi = edges[:-1], edges[1:]
    keep = lo >= OBJECT_MIN_ESD_MM - 1e-12
    for i, g in enumerate(GROUPS):
        med, sig = PLANKTON_SIZES[g]
        with np.errstate(divide="ignore"):
            cdf_lo = ndtr((np.log(lo) - np.log(med)) / sig)
            cdf_hi = ndtr((np.log(hi) - np.log(med)) / sig)
        p = np.where(keep, cdf_hi - cdf_lo, 0.0)
        out[i] = p / p.sum()
    return out


_PLANKTON_P = plankton_class_probabilities()


def expected_concentrations(env: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """All expected concentrations (# L-1) at the points of ``env``.

    Parameters
    ----------
    env : mapping of array
        ``thetao, o2, chl, mlotst, depth_m``.

    Returns
    -------
    dict of numpy.ndarray
        ``"particles"`` (..., 45) non-living particles per class; ``"plankton"`` (..., 4)
        per group; ``"classes"`` (..., 45) all objects per class (what EcoPart counts);
        ``"types"`` (..., 4) particles >= 1.02 mm per type.

    Examples
    --------
    >>> out = expected_concentrations(
    ...     dict(thetao=20.0, o2=220.0, chl=0.2, mlotst=50.0, depth_m=10.0))
    >>> sorted(out), out["classes"].shape
    (['classes', 'particles', 'plankton', 'types'], (45,))
    """
    part = expected_particles(env)
    plank = expected_plankton(env)
    classes = part + plank @ _PLANKTON_P
    big = part[..., _FIRST_OBJECT_CLASS:].sum(axis=-1)
    types = type_fractions(env) * big[..., None]
    return {"particles": part, "plankton": plank, "classes": classes, "types": types}


def environment_at(
    lat: float,
    lon: float,
    *,
    year: int,
    month: int,
    depth_m: np.ndarray,
    hidden: HiddenWorld | None = None,
    bottom_m: float | None = None,
) -> dict[str, np.ndarray]:
    """Evaluate the stored environment of the cell centred on (lat, lon) at ``depth_m``.

    Values are the monthly fields at the store's levels, linearly interpolated in depth;
    below the sea floor the (unstored) analytic values are used so a profile ending just
    above the bottom still has its bracketing level. ``mlotst`` is limited to ``deptho``
    as in the store.

    Parameters
    ----------
    lat, lon : float
        Cell centre (degrees).
    year, month : int
        Month of the profile.
    depth_m : array of float
        Depths (m).
    hidden : HiddenWorld, optional
        The realistic world's hidden drivers: the result is then the *fine* environment
        with the truth's extra terms (:meth:`pipeline.demo.drivers.HiddenWorld.apply`).
    bottom_m : float, optional
        Sea-floor depth (m) of the cell; default the simple world's bathymetry.

    Returns
    -------
    dict of numpy.ndarray
        ``thetao, so, o2, chl, uo, vo, mlotst, depth_m``, each shaped like ``depth_m``
        (and the extra terms with ``hidden``).

    Examples
    --------
    >>> env = environment_at(0.0, -140.0, year=2020, month=1, depth_m=np.array([2.5, 997.5]))
    >>> bool(env["thetao"][0] > env["thetao"][1])
    True
    """
    depth_m = np.asarray(depth_m, dtype="float64")
    levels = np.asarray(DEPTH_LEVELS_M)
    env = environment_month(
        np.array([lat], float), np.array([lon], float), year=year, month=month, depths=levels
    )
    out = {
        k: np.interp(depth_m, levels, env[k][:, 0])
        for k in ("thetao", "so", "o2", "chl", "uo", "vo")
    }
    if bottom_m is None:
        bottom_m = float(np.nan_to_num(bathymetry(np.array([lat]), np.array([lon]))[0], nan=0.0))
    out["mlotst"] = np.full(depth_m.shape, min(float(env["mlotst"][0]), float(bottom_m)))
    out["depth_m"] = depth_m
    if hidden is not None:
        h = hidden.horizontal(
            np.asarray(lat, float), np.asarray(lon, float), year=year, month=month
        )
        out = {**out, **hidden.apply(out, h)}
    return out


def formulas() -> str:
    """Return the truth's formulas as text (this module's docstring), for ``world.json``.

    Examples
    --------
    >>> "log10 C100" in formulas()
    True
    """
    return __doc__ or ""


#: Depth points per layer of the midpoint rule used for ``truth/fields.zarr``.
FIELD_POINTS_PER_LAYER = 20


def _field_names() -> list[str]:
    return (
        [conc_column(lo, hi) for lo, hi in AGGREGATED_CLASSES_MM]
        + [f"conc_{t}_per_l" for t in TYPES]
        + [f"conc_{g}_per_l" for g in GROUPS]
    )


def _aggregate(conc: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum aggregated classes, types and groups from :func:`expected_concentrations`."""
    out = {}
    for lo, hi in AGGREGATED_CLASSES_MM:
        sel = (_EDGES[:-1] >= lo - 1e-12) & (_EDGES[1:] <= hi + 1e-12)
        out[conc_column(lo, hi)] = conc["classes"][..., sel].sum(axis=-1)
    for i, t in enumerate(TYPES):
        out[f"conc_{t}_per_l"] = conc["types"][..., i]
    for i, g in enumerate(GROUPS):
        out[f"conc_{g}_per_l"] = conc["plankton"][..., i]
    return out


def aggregated_concentrations(env: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Compute aggregated classes, types and groups (# L-1), named as in the truth files.

    Same values as summing :func:`expected_concentrations` over the classes of each
    :data:`AGGREGATED_CLASSES_MM`, computed from the closed form (fast, for grids).

    Parameters
    ----------
    env : mapping of array
        ``thetao, o2, chl, mlotst, depth_m``.

    Returns
    -------
    dict of numpy.ndarray
        ``conc_102_203um_per_l`` ... ``conc_<type>_per_l`` ... ``conc_<group>_per_l``.

    Examples
    --------
    >>> env = dict(thetao=12.0, o2=80.0, chl=0.6, mlotst=70.0, depth_m=300.0)
    >>> fast, slow = aggregated_concentrations(env), _aggregate(expected_concentrations(env))
    >>> all(np.isclose(fast[k], slow[k]) for k in slow)
    True
    """
    c100, slope = spectrum_parameters(env)
    e = 1.0 - slope
    steep = _get(env, "slope_big_extra") if "slope_big_extra" in env else None
    # the realistic world's factor at the break, shared by every edge above it
    at_break = None if steep is None else (BREAK_MM / D0_MM) ** e
    cums: dict[float, np.ndarray] = {}

    def cum(x: float) -> np.ndarray:
        """``N(>x) / C100``, once per edge (the same values as :func:`_steepen`)."""
        if x not in cums:
            if np.isinf(x):
                cums[x] = np.zeros_like(c100)
            elif at_break is not None and x >= BREAK_MM:  # the realistic world, above the break
                cums[x] = at_break * (x / BREAK_MM) ** (e - steep)
            else:
                cums[x] = (x / D0_MM) ** e
        return cums[x]

    plank = expected_plankton(env)
    out = {}
    for lo, hi in AGGREGATED_CLASSES_MM:
        sel = (_EDGES[:-1] >= lo - 1e-12) & (_EDGES[1:] <= hi + 1e-12)
        p_agg = _PLANKTON_P[:, sel].sum(axis=1)
        out[conc_column(lo, hi)] = c100 * (cum(lo) - cum(hi)) + plank @ p_agg
    big = c100 * cum(_EDGES[_FIRST_OBJECT_CLASS])
    frac = type_fractions(env)
    for i, t in enumerate(TYPES):
        out[f"conc_{t}_per_l"] = frac[..., i] * big
    for i, g in enumerate(GROUPS):
        out[f"conc_{g}_per_l"] = plank[..., i]
    return out


def _fields_band(
    out: dict[str, np.ndarray],
    sl: slice,
    lat: np.ndarray,
    lon: np.ndarray,
    bottom: np.ndarray,
    year: int,
    month: int,
    names: Sequence[str],
    hidden: HiddenWorld | None = None,
) -> None:
    """Fill the layer means of one latitude band of one month into ``out``."""
    levels = np.asarray(DEPTH_LEVELS_M)
    env = environment_month(lat, lon, year=year, month=month, depths=levels)
    h = None if hidden is None else hidden.horizontal(lat, lon, year=year, month=month)
    mld = np.minimum(env["mlotst"], np.clip(bottom, 1.0, None)).ravel()
    floor = bottom.ravel()
    for il, (_, top, bot) in enumerate(LAYERS):
        step = (bot - top) / FIELD_POINTS_PER_LAYER
        depths = top + step * (np.arange(FIELD_POINTS_PER_LAYER) + 0.5)
        # only the cells wet at one of the layer's depths at least: the others stay NaN
        cells = np.flatnonzero(floor > depths[0])
        cell_env = {v: env[v].reshape(levels.size, -1)[:, cells] for v in ("thetao", "o2", "chl")}
        cell_h = None if h is None else {k: np.ravel(v)[cells] for k, v in h.items()}
        cell_floor = floor[cells]
        sums = {n: np.zeros(cells.size) for n in names}
        weight = np.zeros(cells.size)
        for z in depths:
            k = int(np.clip(np.searchsorted(levels, z) - 1, 0, levels.size - 2))
            w = (z - levels[k]) / (levels[k + 1] - levels[k])
            pt = {v: (1.0 - w) * cell_env[v][k] + w * cell_env[v][k + 1] for v in cell_env}
            pt["mlotst"] = mld[cells]
            pt["depth_m"] = np.asarray(z)  # one depth: the depth terms are computed once
            wet = (z < cell_floor).astype("float64")
            agg = aggregated_concentrations(pt if cell_h is None else hidden.apply(pt, cell_h))
            for n in names:
                sums[n] += agg[n] * wet
            weight += wet
        with np.errstate(invalid="ignore", divide="ignore"):
            for n in names:
                layer = np.full(floor.size, np.nan)
                layer[cells] = np.where(weight > 0, sums[n] / weight, np.nan)
                out[n][0, il, sl] = layer.reshape(bottom.shape)


def write_truth_fields(
    path: str,
    *,
    resolution: float,
    years: Sequence[int],
    deptho: np.ndarray | None = None,
    hidden: HiddenWorld | None = None,
) -> dict[str, Any]:
    """Write ``truth/fields.zarr``: noise-free layer means on the global grid.

    Dims ``(time, layer, lat, lon)``; variables the aggregated classes
    (:data:`AGGREGATED_CLASSES_MM`), the particle types and the plankton groups, # L-1.
    Each value is the mean over the water column of the layer (midpoint rule,
    :data:`FIELD_POINTS_PER_LAYER` depths per layer, depths below ``deptho`` left out) of
    the expected concentration, evaluated on the stored environment linearly interpolated
    between levels; NaN on land and where the layer lies below the sea floor. Written one
    month at a time (each computed only over the cells wet in each layer);
    :func:`pipeline.demo.generate_demo_world` runs it in a thread beside the casts.

    Parameters
    ----------
    path : str
        Local folder of the store (overwritten).
    resolution : float
        Grid step (degrees).
    years : sequence of int
        Years (12 months each).
    deptho : numpy.ndarray, optional
        Sea-floor depth on the grid (m, NaN on land); default the simple world's.
    hidden : HiddenWorld, optional
        The realistic world's hidden drivers: the layer means are then those of the
        truth on the fine environment (:mod:`pipeline.demo.drivers`), the same
        expected values as ``truth/profiles.parquet`` (no cast effects, instrument
        offsets or counting noise).

    Returns
    -------
    dict
        Variables and shape (for ``world.json``).
    """
    lat, lon = grid(resolution)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    if deptho is None:
        deptho = bathymetry(lat2, lon2)
    bottom = np.nan_to_num(deptho, nan=-1.0)
    months = [(int(y), m) for y in years for m in range(1, 13)]
    names = _field_names()
    ny, nx, nl, nt = lat.size, lon.size, len(LAYERS), len(months)
    coords = {
        "time": pd.to_datetime([f"{y:04d}-{m:02d}-01" for y, m in months]).values,
        "layer": ("layer", np.array([n for n, _, _ in LAYERS], dtype=object)),
        "layer_top_m": ("layer", np.array([t for _, t, _ in LAYERS])),
        "layer_bottom_m": ("layer", np.array([b for _, _, b in LAYERS])),
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    chunks = (1, nl, ny, nx)
    template = xr.Dataset(
        {
            n: (
                ("time", "layer", "lat", "lon"),
                da.zeros((nt, nl, ny, nx), dtype="float32", chunks=chunks),
                {"units": "L-1", "long_name": f"expected (noise-free) {n}"},
            )
            for n in names
        },
        coords=coords,
        attrs={
            "title": "oceanfields demo world: noise-free expected layer means",
            "formulas": "see pipeline.demo.truth and world.json",
        },
    )
    enc = {n: {"_FillValue": np.float32(np.nan), "chunks": chunks} for n in names}
    template.to_zarr(path, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=enc)
    bands = _bands(ny, nx)

    def write_month(it: int) -> None:
        year, month = months[it]
        out = {n: np.full((1, nl, ny, nx), np.nan, dtype="float32") for n in names}
        for sl in bands:  # latitude bands bound the float64 temporaries
            _fields_band(out, sl, lat2[sl], lon2[sl], bottom[sl], year, month, names, hidden)
        xr.Dataset({n: (("time", "layer", "lat", "lon"), a) for n, a in out.items()}).to_zarr(
            path, region={"time": slice(it, it + 1)}, zarr_format=3, consolidated=False
        )

    for it in range(nt):
        write_month(it)
    logger.info("truth/fields.zarr: %d months x %d layers x %d x %d", nt, nl, ny, nx)
    return {"variables": names, "shape": {"time": nt, "layer": nl, "lat": ny, "lon": nx}}


#: EcoTaxa status codes of the demo's annotation statuses.
STATUS_CODES: dict[str, str] = {"validated": "V", "predicted": "P", "dubious": "D"}


def annotated_concentrations(
    truth: Any,
    *,
    statuses: Sequence[str],
    status_probabilities: Mapping[str, float],
    misclassified_probability: float,
) -> Any:
    """Compute the expected concentration per category as annotated in the EcoTaxa exports.

    The demo gives each object a status (``status_probabilities``, keyed validated /
    predicted / dubious) and relabels a share ``misclassified_probability`` of the
    predicted ones as another kind, uniformly (see :mod:`pipeline.demo.world`). Counting
    only the ``statuses`` kept (EcoTaxa codes V, P, D), the expected concentration seen
    in category ``c`` is therefore::

        sum_s w_s T_c  (s validated or dubious)
        + w_P [(1 - m) T_c + m / (K - 1) sum_{k != c} T_k]

    with ``w_s`` the probability of a kept status, ``T`` the true concentrations of the
    ``K`` kinds (:data:`TYPES` and :data:`GROUPS`) and ``m`` the misclassified share.
    This is the noise-free counterpart of per-category targets, the reference of their
    noise ceiling.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``conc_<kind>_per_l`` for every kind (e.g. ``truth/profiles.parquet``).
    statuses : sequence of str
        Status codes counted (``"V"``, ``"P"``, ``"D"``).
    status_probabilities : mapping
        ``{"validated": pV, "predicted": pP, "dubious": pD}`` (``world.json``).
    misclassified_probability : float
        Share of predicted objects given another kind.

    Returns
    -------
    pandas.DataFrame
        Same index, one ``conc_<kind>_per_l`` column per kind.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({f"conc_{k}_per_l": [1.0 if k == "fiber" else 0.0]
    ...                   for k in TYPES + GROUPS})
    >>> out = annotated_concentrations(t, statuses=("V", "P"), misclassified_probability=0.1,
    ...     status_probabilities={"validated": 0.8, "predicted": 0.15, "dubious": 0.05})
    >>> round(float(out["conc_fiber_per_l"].iloc[0]), 4), round(float(out.sum(axis=1).iloc[0]), 4)
    (0.935, 0.95)
    """
    kinds = list(TYPES) + list(GROUPS)
    cols = [f"conc_{k}_per_l" for k in kinds]
    values = truth[cols].to_numpy(dtype="float64")
    weight = {STATUS_CODES[name]: float(p) for name, p in status_probabilities.items()}
    kept = {code: weight.get(code, 0.0) if code in statuses else 0.0 for code in ("V", "P", "D")}
    m = float(misclassified_probability)
    k = len(kinds)
    mix = (1.0 - m) * np.eye(k) + m / (k - 1) * (1.0 - np.eye(k))
    out = (kept["V"] + kept["D"]) * values + kept["P"] * values @ mix
    return pd.DataFrame(out, columns=cols, index=truth.index)
