"""The realistic demo world's observation noise: one definition for the casts and the ceiling.

A realistic cast (:func:`pipeline.demo.ecopart_writer.simulate_profile` with a
:class:`CastNoise`) observes the truth's expected concentration ``c_k(z)`` of size class
``k`` at metre ``m`` through

    N_mk ~ Poisson(c_k(z_m) * v_m * A * I_k * P_m * G_mk)

- ``v_m``: water imaged in the metre, :data:`IMAGES_PER_METRE` images (6-20, uniform)
  of the instrument's image volume;
- ``A``: the **cast effect**, shared by all classes, metres and layers of the cast,
  log-normal with mean 1 and a standard deviation of ``cast_sd_dex`` (0.08-0.20 dex,
  larger in productive water: heteroscedastic, :func:`cast_sd_dex`);
- ``I_k``: the **instrument's calibration offset** (:data:`INSTRUMENT_OFFSETS_DEX`; UVP5SD
  undercounts and UVP6 overcounts the small classes against UVP5HD), a bias a run does
  not see, the same for every cast of an instrument model;
- ``P_m``: **vertically correlated patchiness**, ``exp(g_m - s^2 / 2)`` with ``g`` an AR(1)
  process over metres (``s`` :data:`PATCH_SD`, correlation ``exp(-1 / PATCH_METRES)``
  between neighbouring metres), shared by all classes of the metre;
- ``G_mk``: gamma with shape :data:`GAMMA_SHAPE` and mean 1 (gamma-Poisson: over-dispersed
  counts).

Plankton (``G`` per metre and group) and the objects >= 1.02 mm (``I = 1``) follow the
same chain. The truth files hold ``c`` (all multipliers have mean 1, so it is also the
expected concentration of an observation, marginalised over casts and instruments).

:func:`simulate_layer_concentrations` draws the observed concentrations of whole layers
(class by class) from the same chain for the Monte Carlo noise ceiling
(:mod:`pipeline.demo.ceiling`), summing metres analytically: given the cast effect, the
layer's patchiness mean ``sum_m v_m P_m / sum_m v_m`` (drawn from the AR(1) process) and a
gamma of shape ``GAMMA_SHAPE x n_metres`` (the mean of the metres' gammas, moment-matched),
the layer count is Poisson.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from pipeline import sizeclasses

__all__ = [
    "GAMMA_SHAPE",
    "IMAGES_PER_METRE",
    "INSTRUMENTS",
    "INSTRUMENT_OFFSETS_DEX",
    "PATCH_METRES",
    "PATCH_SD",
    "CastNoise",
    "cast_sd_dex",
    "class_offsets",
    "draw_cast_effects",
    "patchiness",
    "simulate_layer_concentrations",
]


@dataclass(frozen=True)
class Calibration:
    """A UVP5 unit: serial number, area calibration, pixel size (mm) and image volume (L)."""

    instrumsn: str
    aa: float
    exp: float
    pixel_mm: float = 0.092
    volimage_l: float = 1.1


#: Images per metre (inclusive range) at 1 m s-1: 6-20 Hz.
IMAGES_PER_METRE: tuple[int, int] = (6, 20)
#: Standard deviation of the log patchiness per metre (natural log).
PATCH_SD = 0.30
#: Correlation length of the patchiness (m).
PATCH_METRES = 8.0
#: Shape of the per-metre, per-class gamma multiplier (mean 1, variance 1 / shape).
GAMMA_SHAPE = 4.0

#: The realistic world's UVP units: model -> calibration (EcoPart units: pixel in mm,
#: UVP6 ``aa`` already divided by 10^6).
INSTRUMENTS: dict[str, Calibration] = {
    "UVP5SD": Calibration("sn002", 0.0032, 1.18, pixel_mm=0.147, volimage_l=0.6),
    "UVP5HD": Calibration("sn209", 0.00279, 1.2236, pixel_mm=0.092, volimage_l=1.1),
    "UVP6": Calibration("sn000110lp", 0.00246, 1.18, pixel_mm=0.073, volimage_l=0.65),
}
#: Calibration offsets (dex) of each model for ESD < 0.2 mm, 0.2-0.5 mm; none above.
INSTRUMENT_OFFSETS_DEX: dict[str, tuple[float, float]] = {
    "UVP5SD": (-0.15, -0.05),
    "UVP5HD": (0.0, 0.0),
    "UVP6": (0.10, 0.04),
}

_EDGES = sizeclasses.edges_mm("detailed")
_LN10 = np.log(10.0)


@dataclass(frozen=True)
class CastNoise:
    """The noise of one realistic cast (see the module docstring).

    Attributes
    ----------
    instrument : str
        A key of :data:`INSTRUMENTS`.
    cast_effect : float
        ``A`` (mean 1 over casts).
    cast_sd_dex : float
        The standard deviation ``A`` was drawn with (dex).
    """

    instrument: str
    cast_effect: float
    cast_sd_dex: float


def cast_sd_dex(chl_surface: np.ndarray) -> np.ndarray:
    """Give the standard deviation (dex) of the cast effect: 0.08 in gyres, 0.20 in blooms.

    Examples
    --------
    >>> cast_sd_dex(np.array([0.02, 0.3, 5.0])).round(2).tolist()
    [0.08, 0.15, 0.2]
    """
    x = np.clip(np.log10(np.clip(np.asarray(chl_surface, float), 1e-6, None)) + 1.3, 0.0, 1.3)
    return 0.08 + 0.12 * x / 1.3


def class_offsets(instrument: str, edges: np.ndarray | None = None) -> np.ndarray:
    """Multiplicative calibration offset ``I_k`` of each size class for an instrument model.

    Examples
    --------
    >>> off = class_offsets("UVP5SD")
    >>> off.shape, round(float(off[20]), 3), float(off[-1])
    ((45,), 0.708, 1.0)
    """
    edges = _EDGES if edges is None else np.asarray(edges, float)
    small, mid = INSTRUMENT_OFFSETS_DEX[instrument]
    lo = edges[:-1]
    dex = np.where(lo < 0.2 - 1e-9, small, np.where(lo < 0.5 - 1e-9, mid, 0.0))
    return 10.0**dex


def patchiness(rng: np.random.Generator, n: int, size: tuple[int, ...] = ()) -> np.ndarray:
    """Mean-one log-normal AR(1) patchiness over ``n`` metres, shape ``(*size, n)``.

    Examples
    --------
    >>> p = patchiness(np.random.default_rng(0), 500, (200,))
    >>> p.shape, bool(abs(p.mean() - 1.0) < 0.05)
    ((200, 500), True)
    """
    phi = np.exp(-1.0 / PATCH_METRES)
    eps = rng.standard_normal((*size, n))
    scale = np.sqrt(1.0 - phi * phi) * PATCH_SD
    x = scale * eps
    x[..., 0] = eps[..., 0] * PATCH_SD
    # g[m] = phi * g[m - 1] + x[m] as a recursive filter: the same sums as a loop over m
    g = lfilter([1.0], [1.0, -phi], x, axis=-1)
    return np.exp(g - PATCH_SD**2 / 2.0)


def _lognormal_mean_one(rng: np.random.Generator, sd_dex: np.ndarray, size) -> np.ndarray:
    s = np.asarray(sd_dex, float) * _LN10
    return np.exp(s * rng.standard_normal(size) - s * s / 2.0)


def draw_cast_effects(
    rng: np.random.Generator, cast_sd: np.ndarray, casts: np.ndarray, *, draws: int
) -> np.ndarray:
    """Draw the cast effect ``A`` once per cast and draw, shared by the cast's rows (layers).

    Parameters
    ----------
    rng : numpy.random.Generator
    cast_sd : numpy.ndarray
        Standard deviation of the cast effect of each row (dex).
    casts : numpy.ndarray
        The cast of each row (any labels); rows of one cast get the same effect.
    draws : int
        Monte Carlo draws.

    Returns
    -------
    numpy.ndarray
        Shape ``(draws, rows)``, log-normal with mean 1.

    Examples
    --------
    >>> a = draw_cast_effects(np.random.default_rng(0), np.array([0.1, 0.1, 0.2]),
    ...                       np.array(["x", "x", "y"]), draws=3)
    >>> a.shape, bool((a[:, 0] == a[:, 1]).all()), bool((a[:, 0] != a[:, 2]).all())
    ((3, 3), True, True)
    """
    _, first, codes = np.unique(np.asarray(casts), return_index=True, return_inverse=True)
    sd = np.asarray(cast_sd, float)[first]
    return _lognormal_mean_one(rng, sd[None, :], (draws, first.size))[:, codes]


def simulate_layer_concentrations(
    conc: np.ndarray,
    volume_l: np.ndarray,
    n_metres: np.ndarray,
    cast_sd: np.ndarray,
    offsets: np.ndarray,
    *,
    draws: int,
    rng: np.random.Generator,
    cast_effect: np.ndarray | None = None,
) -> np.ndarray:
    """Draw observed layer concentrations (# L-1) under the full noise chain.

    Parameters
    ----------
    conc : numpy.ndarray
        Expected concentrations, shape ``(rows, columns)`` (# L-1).
    volume_l : numpy.ndarray
        Water imaged per row (L) (times the EcoTaxa subsample fraction for objects).
    n_metres : numpy.ndarray
        Metres in each row's layer (the patchiness and gamma are averaged over them).
    cast_sd : numpy.ndarray
        Standard deviation of the cast effect per row (dex).
    offsets : numpy.ndarray
        Calibration offsets, shape ``(rows, columns)`` or ``(draws, rows, columns)``
        (1 for none); a 3-D array lets each draw have its own instrument.
    draws : int
        Monte Carlo draws.
    rng : numpy.random.Generator
    cast_effect : numpy.ndarray, optional
        Cast effects already drawn, shape ``(draws, rows)`` (:func:`draw_cast_effects`:
        the layers of a cast share theirs); else drawn for each row on its own from
        ``cast_sd``. Either way each row's own distribution is the same.

    Returns
    -------
    numpy.ndarray
        Shape ``(draws, rows, columns)``.

    Examples
    --------
    >>> c = np.array([[10.0, 0.01]])
    >>> out = simulate_layer_concentrations(c, np.array([500.0]), np.array([100]),
    ...     np.array([0.1]), np.ones((1, 2)), draws=4000, rng=np.random.default_rng(0))
    >>> out.shape, bool(abs(out[:, 0, 0].mean() / 10.0 - 1.0) < 0.02)
    ((4000, 1, 2), True)
    """
    conc = np.asarray(conc, float)
    rows, cols = conc.shape
    n_metres = np.maximum(np.asarray(n_metres, int), 1)
    cast = (
        _lognormal_mean_one(rng, cast_sd[None, :], (draws, rows))
        if cast_effect is None
        else np.asarray(cast_effect, float)
    )
    patch = np.empty((draws, rows))
    for n in np.unique(n_metres):  # rows of one layer thickness together
        sel = np.flatnonzero(n_metres == n)
        patch[:, sel] = patchiness(rng, int(n), (draws, sel.size)).mean(axis=-1)
    shape = (GAMMA_SHAPE * n_metres)[None, :, None]
    gam = rng.gamma(np.broadcast_to(shape, (draws, rows, cols)), 1.0 / shape)
    lam = conc[None] * offsets * (cast * patch)[:, :, None] * gam * volume_l[None, :, None]
    counts = rng.poisson(lam)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(volume_l[None, :, None] > 0, counts / volume_l[None, :, None], 0.0)
