"""EcoPart particle size classes (equivalent spherical diameter, ESD).

EcoPart bins particles by ESD into 45 "detailed" classes (x 2^(1/3) steps from 1 µm,
rounded to 3 significant digits, the last open-ended) or 15 "reduced" classes (x 2
steps). Export headers label them ``LPM (102-128 µm) [# l-1]`` below 1 mm and
``LPM (0.813-1.02 mm) [# l-1]`` from 0.813 mm; the canonical particles table names
their counts ``n_<lo>_<hi>um`` with edges in µm (``.`` written ``p``; the open class
``n_26000_infum``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = [
    "DETAILED_EDGES_MM",
    "REDUCED_EDGES_MM",
    "class_column",
    "class_for_esd",
    "depth_bin_centre",
    "edges_mm",
    "esd_mm_from_area",
    "export_label",
    "parse_export_label",
]

#: Lower edges of the 45 detailed classes in mm, then +inf (EcoPart ``py/appli/part``).
DETAILED_EDGES_MM: tuple[float, ...] = (
    0.001,
    0.00126,
    0.00159,
    0.002,
    0.00252,
    0.00317,
    0.004,
    0.00504,
    0.00635,
    0.008,
    0.0101,
    0.0127,
    0.016,
    0.0202,
    0.0254,
    0.032,
    0.0403,
    0.0508,
    0.064,
    0.0806,
    0.102,
    0.128,
    0.161,
    0.203,
    0.256,
    0.323,
    0.406,
    0.512,
    0.645,
    0.813,
    1.02,
    1.29,
    1.63,
    2.05,
    2.58,
    3.25,
    4.1,
    5.16,
    6.5,
    8.19,
    10.3,
    13.0,
    16.4,
    20.6,
    26.0,
    math.inf,
)

#: Lower edges of the 15 reduced classes in mm, then +inf.
REDUCED_EDGES_MM: tuple[float, ...] = (
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.02,
    2.05,
    4.1,
    8.19,
    16.4,
    math.inf,
)

_LABEL = re.compile(
    r"^LPM \((?:(?P<lo>[\d.]+)-(?P<hi>[\d.]+)|>(?P<open>[\d.]+)) (?P<unit>µm|mm)\) \[# l-1\]$"
)


def edges_mm(kind: Literal["detailed", "reduced"] = "detailed") -> np.ndarray:
    """Return the class edges (mm, last one +inf) of an EcoPart class set.

    Parameters
    ----------
    kind : {"detailed", "reduced"}
        45 detailed classes (46 edges) or 15 reduced classes (16 edges).

    Returns
    -------
    numpy.ndarray
        Ascending edges in mm.

    Examples
    --------
    >>> len(edges_mm("detailed")), len(edges_mm("reduced"))
    (46, 16)
    """
    if kind == "detailed":
        return np.asarray(DETAILED_EDGES_MM)
    if kind == "reduced":
        return np.asarray(REDUCED_EDGES_MM)
    raise ValueError(f"unknown size class set {kind!r}; valid: 'detailed', 'reduced'")


def _um(value_mm: float) -> str:
    if math.isinf(value_mm):
        return "inf"
    um = round(value_mm * 1000.0, 6)
    text = f"{um:g}"
    return text.replace(".", "p")


def class_column(lo_mm: float, hi_mm: float) -> str:
    """Name the canonical count column of the class ``[lo_mm, hi_mm)``.

    Parameters
    ----------
    lo_mm, hi_mm : float
        Class edges in mm (``hi_mm`` may be ``inf``).

    Returns
    -------
    str
        ``n_<lo>_<hi>um`` with edges in µm.

    Examples
    --------
    >>> class_column(0.102, 0.128), class_column(0.00126, 0.00159), class_column(26.0, math.inf)
    ('n_102_128um', 'n_1p26_1p59um', 'n_26000_infum')
    """
    return f"n_{_um(lo_mm)}_{_um(hi_mm)}um"


def export_label(lo_mm: float, hi_mm: float) -> str:
    """Write the EcoPart PAR export header of a class (count concentration column).

    Parameters
    ----------
    lo_mm, hi_mm : float
        Class edges in mm (``hi_mm`` may be ``inf``).

    Returns
    -------
    str
        e.g. ``LPM (102-128 µm) [# l-1]``, ``LPM (0.813-1.02 mm) [# l-1]``,
        ``LPM (>26 mm) [# l-1]``.

    Examples
    --------
    >>> export_label(0.102, 0.128), export_label(0.813, 1.02), export_label(26.0, math.inf)
    ('LPM (102-128 µm) [# l-1]', 'LPM (0.813-1.02 mm) [# l-1]', 'LPM (>26 mm) [# l-1]')
    """
    if math.isinf(hi_mm):
        return f"LPM (>{lo_mm:g} mm) [# l-1]"
    if hi_mm > 1.0:
        return f"LPM ({lo_mm:g}-{hi_mm:g} mm) [# l-1]"
    return f"LPM ({lo_mm * 1000:g}-{hi_mm * 1000:g} µm) [# l-1]"


def parse_export_label(label: str) -> tuple[float, float] | None:
    """Read the class edges (mm) from an EcoPart PAR export header, or None.

    Parameters
    ----------
    label : str
        A column header such as ``LPM (102-128 µm) [# l-1]``.

    Returns
    -------
    tuple of float or None
        ``(lo_mm, hi_mm)``; None when the header is not a count-concentration class.

    Examples
    --------
    >>> parse_export_label("LPM (0.813-1.02 mm) [# l-1]")
    (0.813, 1.02)
    >>> parse_export_label("LPM (>16.4 mm) [# l-1]")
    (16.4, inf)
    >>> parse_export_label("LPM biovolume (1-2 µm) [mm3 l-1]") is None
    True
    """
    m = _LABEL.match(label.strip())
    if not m:
        return None
    scale = 0.001 if m["unit"] == "µm" else 1.0
    if m["open"]:
        return (round(float(m["open"]) * scale, 9), math.inf)
    return (round(float(m["lo"]) * scale, 9), round(float(m["hi"]) * scale, 9))


def class_for_esd(esd_mm: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Index of the class of each ESD (mm); -1 below the first edge.

    Parameters
    ----------
    esd_mm : array of float
        Equivalent spherical diameters in mm.
    edges : sequence of float
        Ascending class edges in mm (last may be inf).

    Returns
    -------
    numpy.ndarray of int
        Class index in ``[0, len(edges) - 2]``, or -1 when below ``edges[0]``.

    Examples
    --------
    >>> class_for_esd(np.array([0.0005, 0.102, 0.127, 30.0]), DETAILED_EDGES_MM).tolist()
    [-1, 20, 20, 44]
    """
    idx = np.searchsorted(np.asarray(edges), np.asarray(esd_mm), side="right") - 1
    return np.where(idx > len(edges) - 2, len(edges) - 2, idx)


def esd_mm_from_area(area_px: np.ndarray, aa: float, exp: float) -> np.ndarray:
    """Equivalent spherical diameter (mm) of UVP particles from their area in pixels.

    The UVP calibration gives area_mm2 = ``aa`` x area_px ** ``exp``; ESD =
    2 sqrt(area_mm2 / pi) (EcoPart ``uvp_sample_import.py``).

    Parameters
    ----------
    area_px : array of float
        Particle areas in pixels.
    aa, exp : float
        The profile's calibration (``acq_aa``, ``acq_exp``; UVP6 ``aa`` as exported by
        EcoPart, already divided by 10^6).

    Returns
    -------
    numpy.ndarray
        ESD in mm.

    Examples
    --------
    >>> round(float(esd_mm_from_area(np.array([7.0]), 0.0002, 1.02)[0]), 5)
    0.04305
    """
    area_mm2 = aa * np.asarray(area_px, dtype="float64") ** exp
    return 2.0 * np.sqrt(area_mm2 / np.pi)


def depth_bin_centre(depth_m: np.ndarray, bin_m: float = 5.0) -> np.ndarray:
    """Centre of the EcoPart depth bin holding each depth (bins start at 0 m).

    Parameters
    ----------
    depth_m : array of float
        Depths in metres, positive down (raw PAR rows are whole metres).
    bin_m : float
        Bin height; EcoPart uses 5 m.

    Returns
    -------
    numpy.ndarray
        Bin centres (2.5, 7.5, ... for 5 m bins).

    Examples
    --------
    >>> depth_bin_centre(np.array([0, 2, 4.9, 5, 7, 1497])).tolist()
    [2.5, 2.5, 2.5, 7.5, 7.5, 1497.5]
    """
    return np.floor(np.asarray(depth_m, dtype="float64") / bin_m) * bin_m + bin_m / 2.0
