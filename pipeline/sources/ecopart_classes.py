"""EcoPart size classes: the particles table's columns and the class sets of PAR headers.

Shared by the readers of detailed/reduced exports (:mod:`pipeline.sources.ecopart_export`,
with its fast path :mod:`pipeline.sources.ecopart_clean`) and of raw exports
(:mod:`pipeline.sources.ecopart_raw`): :func:`particles_meta` (the table's columns for a
class set), the detection of the class set from a header's ``LPM (...) [# l-1]`` labels,
and the rounding of counts (concentration x volume).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from pipeline import sizeclasses

__all__ = ["SizeClasses", "particles_meta"]

SizeClasses = Literal["detailed", "reduced"]

_DEPTH = "Depth [m]"
_VOLUME = "Sampled volume [L]"
_ROUND_RTOL = 1e-6


def particles_meta(size_classes: SizeClasses = "detailed") -> pd.DataFrame:
    """Return the empty canonical particles table for a class set.

    Parameters
    ----------
    size_classes : {"detailed", "reduced"}
        45 detailed or 15 reduced EcoPart ESD classes.

    Returns
    -------
    pandas.DataFrame
        ``profile_id, lat, lon, time, depth_m, volume_l, cruise`` then one float64 count
        column per class, in ascending order. ``cruise`` is the metadata summary's (or
        the EcoPart project's where the summary has none; see :mod:`pipeline.sources.ecopart`).

    Examples
    --------
    >>> meta = particles_meta("reduced")
    >>> list(meta.columns[:7]), len(meta.columns), meta.columns[-1]
    (['profile_id', 'lat', 'lon', 'time', 'depth_m', 'volume_l', 'cruise'], 22, 'n_16400_infum')
    """
    return _particles_meta(size_classes).copy()


@functools.lru_cache(maxsize=4)
def _particles_meta(size_classes: SizeClasses) -> pd.DataFrame:
    edges = sizeclasses.edges_mm(size_classes)
    columns: dict[str, pd.Series] = {
        "profile_id": pd.Series([], dtype=str),
        "lat": pd.Series([], dtype="float64"),
        "lon": pd.Series([], dtype="float64"),
        "time": pd.Series([], dtype="datetime64[ns, UTC]"),
        "depth_m": pd.Series([], dtype="float64"),
        "volume_l": pd.Series([], dtype="float64"),
        "cruise": pd.Series([], dtype=str),
    }
    for lo, hi in itertools.pairwise(edges):
        columns[sizeclasses.class_column(lo, hi)] = pd.Series([], dtype="float64")
    return pd.DataFrame(columns)


#: The columns of the particles table before the counts.
_LEAD_COLUMNS = ("profile_id", "lat", "lon", "time", "depth_m", "volume_l", "cruise")


def _count_columns(size_classes: SizeClasses) -> list[str]:
    return list(_particles_meta(size_classes).columns[len(_LEAD_COLUMNS) :])


def _round_counts(counts: np.ndarray) -> None:
    """Round counts within 10^-6 (relative) of an integer to it, in place."""
    rounded = np.round(counts)
    close = np.abs(counts - rounded) <= _ROUND_RTOL * np.maximum(np.abs(rounded), 1e-3)
    np.copyto(counts, rounded, where=close)


def _class_set(header: Sequence[str]) -> tuple[SizeClasses | None, dict[str, int]]:
    """Detect the class set from count-concentration headers: (kind, column -> index)."""
    kind, index = _class_set_cached(tuple(header))
    return kind, dict(index)


@functools.lru_cache(maxsize=64)
def _class_set_cached(header: tuple[str, ...]) -> tuple[SizeClasses | None, dict[str, int]]:
    # "Âµ": a UTF-8 "µ" decoded as latin-1 (a UTF-8 file with one stray latin-1 byte).
    found = [(h, sizeclasses.parse_export_label(h.replace("Âµ", "µ"))) for h in header]
    found = [(h, edges) for h, edges in found if edges is not None]
    for kind in ("detailed", "reduced"):
        edges = sizeclasses.edges_mm(kind)
        index: dict[str, int] = {}
        for h, (lo, hi) in found:
            i = int(np.argmin(np.abs(edges[:-1] - lo)))
            hi_ok = (math.isinf(hi) and math.isinf(edges[i + 1])) or math.isclose(
                hi, edges[i + 1], rel_tol=1e-6
            )
            if math.isclose(lo, edges[i], rel_tol=1e-6) and hi_ok:
                index[h] = i
        if len(index) == len(found) == len(edges) - 1:
            return kind, index  # type: ignore[return-value]
    return None, {}
