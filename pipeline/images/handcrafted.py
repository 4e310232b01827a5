"""Handcrafted shape and grey-level features of a vignette (the GBT baseline's inputs).

Built the way the UVP6 embedded classifier (ecotaxa/uvpec) works: threshold the vignette,
keep the object (the largest 8-connected component of the pixels above the threshold) and
describe it with shape and grey-level features.

- :func:`handcrafted_features` / :func:`features_table` / :func:`features_from_urls`:
  one row of :data:`FEATURE_NAMES` per image (an empty or unreadable image gives NaNs and
  a flag or a reason, never an exception); options in :class:`FeatureConfig`.

See Also
--------
pipeline.images.gbt : the gradient-boosted-trees classifier fitted on these features.
pipeline.images.evaluation : the split and metrics shared by that baseline and the CNN.
pipeline.images.dataset : image decoding and ``folder_images`` (a class-folder tree).

Developer note
--------------
*Features* (lengths in px, grey levels 0-255). Shape: area, perimeter (Cauchy-Crofton:
in-out transitions along rows, columns and both diagonals, less pi for the half pixel they
lie outside the pixel centres; a digital disk of radius 20 px gets 124.6 for 125.7),
equivalent diameter, major/minor axes ``4 sqrt(eigenvalue)`` of the second central moments
(uvpec's formula), eccentricity, elongation, circularity ``4 pi area / perimeter^2`` (at
most 1), convex hull area/perimeter, solidity, Feret diameter, holes, thickness (distance
transform), bounding box aspect and extent, Hu's 7 moments of the mask and of the grey
levels (``-sign(h) log10|h|``). Grey levels of the object's pixels: mean, std, min, max,
percentiles 10/25/50/75/90, skew, excess kurtosis (0 for a flat object), integrated
density, ``cv``, ``range``, ``meanpos``, grey/binary centroid offset, rim/whole mean
ratio, mean gradient, bright fraction, an 8-bin histogram, and rings of distance to the
centroid over the equivalent radius (share of pixels, mean grey / mean). Image: height,
width, objects above the threshold, the object's share of their pixels, foreground
fraction, background mean. About 1 ms per UVP6 vignette.

*Choices*, by 3 x 5-fold stratified CV of the GBT (:mod:`pipeline.images.gbt`) on the
training 80 % of the uvpec UVP6 vignettes only (accuracy / balanced accuracy): threshold
4 (0.726 / 0.745) = 6 (0.724 / 0.746) > 10 (0.705 / 0.732); 16, 22 and Otsu worse still
(Otsu cuts faint objects in two).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from pipeline.config import config_error
from pipeline.errors import InputFormatError
from pipeline.images.dataset import decode_image
from pipeline.io import read_bytes

__all__ = [
    "FEATURE_NAMES",
    "FeatureConfig",
    "features_from_urls",
    "features_table",
    "handcrafted_features",
]

logger = logging.getLogger(__name__)

_HIST_EDGES = (0, 16, 32, 48, 64, 96, 128, 192, 256)
_HU = tuple(f"hu{i}" for i in range(1, 8))
_HIST_NAMES = tuple(f"hist_{a}_{b}" for a, b in itertools.pairwise(_HIST_EDGES))
_RING_EDGES = (0.25, 0.5, 0.75, 1.0, 1.5)  # distance to the centroid / equivalent radius
_RINGS = tuple(f"ring{i}_{kind}" for kind in ("share", "mean") for i in range(len(_RING_EDGES) + 1))
_SHAPE = (
    "area_px",
    "perim_px",
    "esd_px",
    "major_px",
    "minor_px",
    "eccentricity",
    "elongation",
    "circularity",
    "convex_area_px",
    "convex_perim_px",
    "solidity",
    "convexity",
    "feret_px",
    "n_holes",
    "hole_fraction",
    "thickness_max_px",
    "thickness_mean_px",
    "bbox_h_px",
    "bbox_w_px",
    "bbox_aspect",
    "extent",
    *(f"mask_{h}" for h in _HU),
)
_GREY = (
    "mean",
    "std",
    "min",
    "max",
    "p10",
    "p25",
    "median",
    "p75",
    "p90",
    "skew",
    "kurt",
    "intden",
    "cv",
    "range",
    "meanpos",
    "centroid_offset",
    "rim_mean_ratio",
    "gradient_mean",
    "bright_fraction",
    "grey_elongation",
    *(f"grey_{h}" for h in _HU),
    *_HIST_NAMES,
    *_RINGS,
)
_IMAGE = ("image_h_px", "image_w_px", "n_objects", "object_share", "fg_fraction", "bg_mean")
#: Columns of :func:`handcrafted_features` (in this order), ending with the ``is_empty`` flag.
FEATURE_NAMES: tuple[str, ...] = (*_SHAPE, *_GREY, *_IMAGE, "threshold", "is_empty")


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """How the object is cut out of a vignette (defaults live here only).

    Attributes
    ----------
    threshold : int or "otsu"
        Object pixels are those strictly above this grey level (uvpec's rule), or above
        Otsu's threshold of each image (default 4: module note, *Choices*).
    largest_component : bool
        Keep only the largest 8-connected component (else every pixel above the threshold).
    """

    threshold: int | Literal["otsu"] = 4
    largest_component: bool = True

    def __post_init__(self) -> None:
        """Check the threshold."""
        t = self.threshold
        if t != "otsu" and not (isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 255):
            raise config_error(
                "features.threshold", t, "expected an integer grey level 0 to 254, or 'otsu'"
            )


def _otsu(image: np.ndarray) -> int:
    hist = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    total, mean_all = w0[-1], m0[-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 - total * m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return int(np.argmax(between))


def _log_hu(mu: dict[str, float], m00: float) -> list[float]:
    """Hu's 7 invariants of central moments ``mu`` (keys "20", "11", ...), log-scaled."""
    n = {k: v / m00 ** (1 + (int(k[0]) + int(k[1])) / 2) for k, v in mu.items()}
    n20, n02, n11, n30, n03, n21, n12 = (n[k] for k in ("20", "02", "11", "30", "03", "21", "12"))
    a, b = n30 + n12, n21 + n03
    c, d = n30 - 3 * n12, 3 * n21 - n03
    hu = [
        n20 + n02,
        (n20 - n02) ** 2 + 4 * n11**2,
        c**2 + d**2,
        a**2 + b**2,
        c * a * (a**2 - 3 * b**2) + d * b * (3 * a**2 - b**2),
        (n20 - n02) * (a**2 - b**2) + 4 * n11 * a * b,
        d * a * (a**2 - 3 * b**2) - c * b * (3 * a**2 - b**2),
    ]
    return [float(-np.sign(h) * np.log10(abs(h))) if abs(h) > 1e-30 else 0.0 for h in hu]


def _moments(ys: np.ndarray, xs: np.ndarray, w: np.ndarray) -> tuple[float, float, dict]:
    """Centroid and central moments of order 2 and 3, weighted by ``w``."""
    m00 = float(w.sum())
    yc, xc = float(w @ ys / m00), float(w @ xs / m00)
    dy, dx = ys - yc, xs - xc
    dx2, dxy, dy2 = dx * dx, dx * dy, dy * dy
    terms = np.stack([dx2, dxy, dy2, dx2 * dx, dx2 * dy, dxy * dy, dy2 * dy])
    return yc, xc, dict(zip(_ORDERS, (terms @ w).tolist(), strict=True))


_ORDERS = ("20", "11", "02", "30", "21", "12", "03")


def _axes(mu: dict[str, float], m00: float) -> tuple[float, float]:
    """Major and minor axis (4 sqrt of the covariance eigenvalues, px)."""
    a, c, b = mu["20"] / m00, mu["02"] / m00, mu["11"] / m00
    delta = np.sqrt(4 * b * b + (a - c) ** 2)
    return 4 * np.sqrt(max((a + c + delta) / 2, 0.0)), 4 * np.sqrt(max((a + c - delta) / 2, 0.0))


def _hull(mask: np.ndarray) -> tuple[float, float, float]:
    """Convex hull area, perimeter and Feret diameter of the mask's pixel squares."""
    rows = np.flatnonzero(mask.any(axis=1))
    sub = mask[rows]
    first = sub.argmax(axis=1)
    last = mask.shape[1] - 1 - sub[:, ::-1].argmax(axis=1)
    ys = np.concatenate([rows, rows, rows + 1, rows + 1] * 2)
    xs = np.concatenate([first, first + 1, first, first + 1, last, last + 1, last, last + 1])
    points = np.column_stack([xs, ys]).astype(np.float64)
    hull = ConvexHull(points)
    return float(hull.volume), float(hull.area), float(pdist(points[hull.vertices]).max())


def _shape_features(
    f: dict[str, float], mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, dist: np.ndarray
) -> None:
    area = float(len(ys))
    p = np.pad(mask, 1)
    crofton = (np.pi / 8) * (
        np.count_nonzero(p[1:] != p[:-1])
        + np.count_nonzero(p[:, 1:] != p[:, :-1])
        + (np.count_nonzero(p[1:, 1:] != p[:-1, :-1]) + np.count_nonzero(p[1:, :-1] != p[:-1, 1:]))
        / np.sqrt(2)
    )
    perim = max(crofton - np.pi, crofton / 2)  # the transitions lie half a pixel outside
    _, _, mu = _moments(ys, xs, np.ones_like(ys))
    major, minor = _axes(mu, area)
    hull_area, hull_perim, feret = _hull(mask)
    filled = ndimage.binary_fill_holes(mask)
    holes = filled & ~mask
    bh, bw = mask.shape
    f["area_px"], f["perim_px"], f["esd_px"] = area, perim, float(np.sqrt(4 * area / np.pi))
    f["major_px"], f["minor_px"] = major, minor
    f["eccentricity"] = float(np.sqrt(1 - (minor / major) ** 2)) if major > 0 else 0.0
    f["elongation"] = major / minor if minor > 0 else major
    f["circularity"] = min(4 * np.pi * area / perim**2, 1.0)
    f["convex_area_px"], f["convex_perim_px"], f["feret_px"] = hull_area, hull_perim, feret
    f["solidity"], f["convexity"] = area / hull_area, hull_perim / perim
    f["n_holes"] = float(ndimage.label(holes)[1]) if holes.any() else 0.0
    f["hole_fraction"] = float(holes.sum() / filled.sum())
    f["thickness_max_px"], f["thickness_mean_px"] = float(dist.max()), float(dist.mean())
    f["bbox_h_px"], f["bbox_w_px"], f["bbox_aspect"] = bh, bw, min(bh, bw) / max(bh, bw)
    f["extent"] = area / (bh * bw)
    f.update(zip((f"mask_{h}" for h in _HU), _log_hu(mu, area), strict=True))


def _grey_features(
    f: dict[str, float],
    image: np.ndarray,
    box: tuple[slice, slice],
    mask: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    dist: np.ndarray,
) -> None:
    vals = image[box][mask].astype(np.float64)
    mean, std, lo, hi = float(vals.mean()), float(vals.std()), float(vals.min()), float(vals.max())
    f["mean"], f["std"], f["min"], f["max"] = mean, std, lo, hi
    pct = np.percentile(vals, [10, 25, 50, 75, 90]).tolist()
    f.update(zip(("p10", "p25", "median", "p75", "p90"), pct, strict=True))
    z = (vals - mean) / std if std > 0 else np.zeros_like(vals)
    f["skew"], f["kurt"] = float((z**3).mean()), float((z**4).mean() - 3) if std > 0 else 0.0
    f["intden"], f["cv"], f["range"] = float(vals.sum()), 100 * std / mean, hi - lo
    f["meanpos"] = (mean - lo) / (hi - lo) if hi > lo else 0.5
    gyc, gxc, gmu = _moments(ys, xs, vals)
    f["centroid_offset"] = float(np.hypot(gyc - ys.mean(), gxc - xs.mean()) / f["esd_px"])
    f["rim_mean_ratio"] = float(vals[dist < 1.5].mean() / mean)
    gy, gx = (g[1:-1, 1:-1][box] for g in np.gradient(np.pad(image, 1, mode="edge") * 1.0))
    f["gradient_mean"] = float(np.hypot(gy, gx)[mask].mean() / mean)
    f["bright_fraction"] = float((vals > (lo + hi) / 2).mean())
    gmajor, gminor = _axes(gmu, float(vals.sum()))
    f["grey_elongation"] = gmajor / gminor if gminor > 0 else gmajor
    f.update(zip((f"grey_{h}" for h in _HU), _log_hu(gmu, float(vals.sum())), strict=True))
    hist = np.histogram(vals, bins=_HIST_EDGES)[0] / len(vals)
    f.update(zip(_HIST_NAMES, hist.tolist(), strict=True))
    ring = np.digitize(np.hypot(ys - ys.mean(), xs - xs.mean()) / (f["esd_px"] / 2), _RING_EDGES)
    count = np.bincount(ring, minlength=len(_RING_EDGES) + 1)
    means = np.bincount(ring, weights=vals, minlength=len(count)) / np.maximum(count, 1) / mean
    f.update(zip(_RINGS, [*(count / len(vals)).tolist(), *means.tolist()], strict=True))


def _empty_row(image: np.ndarray, threshold: int) -> dict[str, float]:
    row = dict.fromkeys(FEATURE_NAMES, np.nan)
    h, w = image.shape
    row.update(
        image_h_px=float(h),
        image_w_px=float(w),
        n_objects=0.0,
        fg_fraction=0.0,
        bg_mean=float(image.mean()),
        threshold=float(threshold),
        is_empty=1.0,
    )
    return row


def handcrafted_features(
    image: np.ndarray, *, config: FeatureConfig | None = None
) -> dict[str, float]:
    """Shape and grey-level features of the object in one vignette.

    Parameters
    ----------
    image : numpy.ndarray
        2-D ``uint8`` grey image, dark background, bright object (UVP vignettes;
        invert ZooScan-like images first).
    config : FeatureConfig, optional
        Threshold and component choice (defaults: :class:`FeatureConfig`).

    Returns
    -------
    dict of str to float
        One value per name of :data:`FEATURE_NAMES` (lengths in pixels, grey levels
        0-255; see the module's developer note). An image with no pixel above the
        threshold gives NaN except the image size, ``n_objects`` = 0, ``fg_fraction``,
        ``bg_mean``, ``threshold`` and ``is_empty`` = 1 (else 0).

    Raises
    ------
    InputFormatError
        When ``image`` is not a 2-D ``uint8`` array.

    See Also
    --------
    features_table, features_from_urls

    Examples
    --------
    >>> yy, xx = np.mgrid[:41, :41]
    >>> disk = np.where((yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2, 120, 0).astype(np.uint8)
    >>> f = handcrafted_features(disk)
    >>> round(f["area_px"] / (np.pi * 15**2), 2), round(f["circularity"], 2), f["std"]
    (1.0, 1.0, 0.0)
    >>> handcrafted_features(np.zeros((5, 5), np.uint8))["is_empty"]
    1.0
    """
    cfg = config or FeatureConfig()
    if not isinstance(image, np.ndarray) or image.ndim != 2 or image.dtype != np.uint8:
        raise InputFormatError(
            f"handcrafted_features: image is {type(image).__name__} "
            f"{getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}; expected a 2-D "
            "uint8 array. Decode files with pipeline.images.dataset.decode_image."
        )
    threshold = _otsu(image) if cfg.threshold == "otsu" else int(cfg.threshold)
    fg = image > threshold
    f = _empty_row(image, threshold)
    if not fg.any():
        return f
    labels, n_objects = ndimage.label(fg, structure=np.ones((3, 3), dtype=bool))
    if cfg.largest_component:
        keep = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        box = ndimage.find_objects(labels, max_label=keep)[keep - 1]
        mask = labels[box] == keep
    else:
        box = ndimage.find_objects(fg.astype(np.int8))[0]
        mask = fg[box]
    ys, xs = (a.astype(np.float64) for a in np.nonzero(mask))
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1][mask]
    _shape_features(f, mask, ys, xs, dist)
    _grey_features(f, image, box, mask, ys, xs, dist)
    n_fg = int(fg.sum())
    f["n_objects"], f["object_share"], f["fg_fraction"] = (
        n_objects,
        f["area_px"] / n_fg,
        n_fg / fg.size,
    )
    f["bg_mean"] = float(image[~fg].mean()) if n_fg < fg.size else 0.0
    f["is_empty"] = 0.0
    return {k: float(v) for k, v in f.items()}


def features_table(
    images: Iterable[np.ndarray], *, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Features of many vignettes, one row per image (columns :data:`FEATURE_NAMES`).

    Parameters
    ----------
    images : iterable of numpy.ndarray
        2-D ``uint8`` images (see :func:`handcrafted_features`).
    config : FeatureConfig, optional

    Returns
    -------
    pandas.DataFrame
        ``float64``, one row per image in the given order.

    Examples
    --------
    >>> img = np.zeros((8, 8), np.uint8); img[2:5, 2:6] = 50
    >>> features_table([img, np.zeros((4, 4), np.uint8)])[["area_px", "is_empty"]]
       area_px  is_empty
    0     12.0    0.0
    1      NaN    1.0
    """
    rows = [handcrafted_features(image, config=config) for image in images]
    return pd.DataFrame(rows, columns=list(FEATURE_NAMES), dtype=np.float64)


def features_from_urls(
    urls: Sequence[str],
    *,
    config: FeatureConfig | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Read vignettes by URL and compute their features; unreadable ones give a NaN row.

    Parameters
    ----------
    urls : sequence of str
        Image URLs or paths (anything :func:`pipeline.io.read_bytes` opens).
    config : FeatureConfig, optional
    storage_options : mapping, optional
        fsspec options for the images' filesystem.

    Returns
    -------
    pandas.DataFrame
        :data:`FEATURE_NAMES` plus ``image`` (the URL) and ``reason`` (``""`` when read,
        else why not: missing, empty, not an image, truncated), one row per URL in order.

    Examples
    --------
    >>> table = features_from_urls(["/no/such.png"])
    >>> table.loc[0, "reason"][:28], bool(table.loc[0, list(FEATURE_NAMES)].isna().all())
    ('/no/such.png: file not found', True)
    """
    rows: list[dict[str, float]] = []
    reasons: list[str] = []
    nan_row = dict.fromkeys(FEATURE_NAMES, np.nan)
    start = time.perf_counter()
    for url in urls:
        try:
            image = decode_image(read_bytes(url, storage_options=storage_options), url=url)
        except InputFormatError as err:
            rows.append(nan_row)
            reasons.append(str(err))
            continue
        rows.append(handcrafted_features(image, config=config))
        reasons.append("")
    table = pd.DataFrame(rows, columns=list(FEATURE_NAMES), dtype=np.float64)
    table["image"] = list(urls)
    table["reason"] = reasons
    bad = sum(bool(r) for r in reasons)
    logger.info(
        "features of %d images in %.1f s (%d unreadable)",
        len(table),
        time.perf_counter() - start,
        bad,
    )
    return table
