"""Ocean basins: a small built-in definition by latitude/longitude boxes.

The basin sub-step of the spatial split: :func:`basin_of` names the basin of each point
(one of :data:`BASINS`), and :func:`pipeline.model.split.assign_blocks` uses the basins as
blocks when ``method="basins"``.
Coarse on purpose: for grouping rows, not for maps.

Developer note: the coordinate check (:func:`_check_coords`) lives here, below the
split, which imports it; it is the one check of lat/lon inputs for both modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import InputFormatError

__all__ = ["ARCTIC_LAT", "BASINS", "SOUTHERN_LAT", "basin_of"]

#: Names of the built-in basins, in the order :func:`basin_of` documents them.
BASINS: tuple[str, ...] = (
    "Atlantic",
    "Pacific",
    "Indian",
    "Southern",
    "Arctic",
    "Mediterranean",
)


def _check_coords(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude as float arrays, longitude wrapped to [-180, 180).

    Raises InputFormatError naming the coordinate, the first bad row and its value.
    """
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if lat.ndim != 1 or lon.shape != lat.shape:
        raise InputFormatError(
            f"lat and lon must be 1-D arrays of the same length; got shapes {lat.shape} "
            f"and {lon.shape}."
        )
    bad = ~np.isfinite(lat) | (np.abs(lat) > 90)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFormatError(
            f"lat: {int(bad.sum())} value(s) not finite or outside [-90, 90] "
            f"(first at row {row}: {float(lat[row])!r}); expected degrees north. "
            "Drop or fix those rows before splitting."
        )
    bad = ~np.isfinite(lon)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputFormatError(
            f"lon: {int(bad.sum())} value(s) not finite (first at row {row}: {float(lon[row])!r}); "
            "expected degrees east. Drop or fix those rows before splitting."
        )
    return lat, _wrap_lon(lon)


def _wrap_lon(lon: np.ndarray) -> np.ndarray:
    """Longitude wrapped to [-180, 180)."""
    out = (lon + 180.0) % 360.0 - 180.0
    # (-tiny) % 360 rounds to 360.0, which would give +180.
    return np.where(out >= 180.0, -180.0, out)


#: numpydoc text of the ``lat``/``lon`` parameters and of their error, written once for
#: every function that takes coordinates (filled in by :func:`_coords_doc`).
_COORDS_DOC = {
    "{coords_parameters}": """\
    lat : array-like of float, shape (n,)
        Latitude (degrees north, -90 .. 90).
    lon : array-like of float, shape (n,)
        Longitude (degrees east), any range: wrapped to [-180, 180).""",
    "{coords_raises}": """\
    InputFormatError
        Coordinates of different shapes, not finite, or latitude outside [-90, 90].""",
}


def _coords_doc(func: Any) -> Any:
    """Fill the ``{coords_parameters}`` and ``{coords_raises}`` lines of a docstring."""
    doc = func.__doc__ or ""
    for key, text in _COORDS_DOC.items():
        doc = doc.replace(f"    {key}", text)
    func.__doc__ = doc
    return func


# Atlantic/Pacific boundary below 66N and above 50S: (lat_lo, lat_hi, lon_west), the
# Atlantic lying east of lon_west. It follows the Americas' narrowest land: Drake
# Passage side (69W), Panama (Pacific coast south of the isthmus), Central America and
# Mexico, then 100W across North America (Hudson Bay and the Gulf of Mexico Atlantic).
_ATLANTIC_WEST: tuple[tuple[float, float, float], ...] = (
    (-90.0, -8.0, -69.0),
    (-8.0, 0.0, -78.0),
    (0.0, 7.5, -77.5),
    (7.5, 9.2, -77.0),
    (9.2, 11.0, -83.5),
    (11.0, 14.0, -84.5),
    (14.0, 16.0, -89.0),
    (16.0, 17.8, -92.0),
    (17.8, 30.0, -99.0),
    (30.0, 90.0, -100.0),
)

# Indian Ocean: (lat_lo, lat_hi, lon_lo, lon_hi). West edge 20E (Cape Agulhas);
# east edge 147E south of Indonesia (Tasmania), the Sunda Strait (106E) off Sumatra,
# 100E further north (Andaman Sea Indian, Gulf of Thailand and South China Sea
# Pacific). North of 30N, 45-100E (the Persian Gulf's head, and inland Asia).
_INDIAN_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (-90.0, -8.0, 20.0, 147.0),
    (-8.0, -2.0, 20.0, 106.0),
    (-2.0, 30.0, 20.0, 100.0),
    (30.0, 90.0, 45.0, 100.0),
)

# Mediterranean and Black Sea: (lat_lo, lat_hi, lon_lo, lon_hi). Gibraltar at 5.6W;
# the western box stops at 42.5N below the Bay of Biscay; Adriatic to 46N.
_MEDITERRANEAN_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (30.0, 42.5, -5.6, 3.0),
    (30.0, 44.5, 3.0, 10.0),
    (30.0, 46.0, 10.0, 20.0),
    (30.0, 41.0, 20.0, 36.5),
    (40.5, 47.5, 27.0, 42.0),
)

#: Latitude (degrees north) south of which a point is in the Southern Ocean.
SOUTHERN_LAT = -50.0
#: Latitude (degrees north) north of which a point is in the Arctic Ocean.
ARCTIC_LAT = 66.0


def _in_boxes(
    lat: np.ndarray, lon: np.ndarray, boxes: tuple[tuple[float, float, float, float], ...]
) -> np.ndarray:
    """Flag the points inside any of the ``(lat_lo, lat_hi, lon_lo, lon_hi)`` boxes."""
    out = np.zeros(lat.shape, dtype=bool)
    for lat_lo, lat_hi, lon_lo, lon_hi in boxes:
        out |= (lat >= lat_lo) & (lat < lat_hi) & (lon >= lon_lo) & (lon < lon_hi)
    return out


@_coords_doc
def basin_of(lat: Any, lon: Any) -> np.ndarray:
    """Ocean basin of each point, from a small built-in definition by lat/lon boxes.

    The basins (:data:`BASINS`) are, in order of precedence: Southern (south of 50S),
    Arctic (north of 66N), Mediterranean (with the Black Sea; boxes east of
    Gibraltar), Indian (20E to Tasmania's 147E south of 8S, to the Sunda Strait or 100E
    further north), Atlantic (east of a line through Drake Passage, Panama, Central
    America and 100W) and Pacific (the rest). Boundaries follow coasts only where
    basins meet; every point gets a basin, land included (the basin whose box holds
    it, usually a nearby one). Coarse on purpose: for grouping rows, not for maps.

    Parameters
    ----------
    {coords_parameters}

    Returns
    -------
    numpy.ndarray of str, shape (n,)
        Basin names, from :data:`BASINS`.

    Raises
    ------
    {coords_raises}

    See Also
    --------
    assign_blocks : Uses the basins as blocks when ``method="basins"``.

    Examples
    --------
    >>> basin_of([30, 0, -10, -60, 80, 38], [-40, -160, 80, 0, 0, 18]).tolist()
    ['Atlantic', 'Pacific', 'Indian', 'Southern', 'Arctic', 'Mediterranean']
    """
    lat, lon = _check_coords(lat, lon)
    atlantic = np.zeros(lat.shape, dtype=bool)
    for lat_lo, lat_hi, lon_west in _ATLANTIC_WEST:
        atlantic |= (lat >= lat_lo) & (lat < lat_hi) & (lon >= lon_west) & (lon < 20.0)
    # North of 30N the Atlantic runs on to 45E (Europe), the Indian box takes over there.
    atlantic |= (lat >= 30.0) & (lon >= 20.0) & (lon < 45.0)
    return np.select(
        [
            lat < SOUTHERN_LAT,
            lat >= ARCTIC_LAT,
            _in_boxes(lat, lon, _MEDITERRANEAN_BOXES),
            _in_boxes(lat, lon, _INDIAN_BOXES),
            atlantic,
        ],
        ["Southern", "Arctic", "Mediterranean", "Indian", "Atlantic"],
        default="Pacific",
    )
