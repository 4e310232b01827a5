"""Draw UVP-like vignettes of the demo objects and write EcoTaxa export TSVs.

Each object (a particle of a :data:`pipeline.demo.truth.TYPES` type or a plankter of a
:data:`pipeline.demo.truth.GROUPS` group, ESD >= 1.02 mm) gets a grayscale PNG: black
background, bright object, scaled to the object's ESD at the UVP5 pixel size (0.092 mm),
with a shape per kind:

- ``dark_aggregate``: compact, nearly round, smooth, dim and uniform;
- ``fluffy_aggregate``: irregular lobed outline, holes, strong texture;
- ``fecal_pellet``: bright elongated capsule (aspect 3-5);
- ``fiber``: thin (2 px) curved line;
- ``Copepoda``: elongated body with two long antennae;
- ``Rhizaria``: bright round core with thin radial spines;
- ``Trichodesmium``: tuft of thin, nearly parallel filaments;
- ``Chaetognatha``: very elongated (aspect 8-12), faint, slightly curved body.

The morphological features (``object_area``, ``object_mean`` ... in pixels and grey
levels) are measured on the drawn mask; grey features follow the UVP5/ZooProcess
convention of inverted grey levels (255 - PNG value), so the dim dark aggregates have the
highest ``object_mean``. ``object_esd`` is 2 sqrt(area / pi) in pixels.

TSV layout follows a real EcoTaxa export (UTF-8, tab separated, no type row): object,
annotation and ``img_`` columns, features, then ``sample_``, ``process_`` and ``acq_``
columns. ``acq_subsample_fraction`` is the fraction of the world's objects that were kept
as images (uniform random subsample), so the objects' concentration is
count / (volume x fraction). ``img_file_name`` is ``images/<category>/<object_id>.png``
relative to the TSV.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

__all__ = [
    "FEATURES",
    "HIERARCHY",
    "SCALE_ROWS_PER_FILE",
    "draw_object",
    "measure",
    "write_ecotaxa_export",
    "write_scale_export",
]

logger = logging.getLogger(__name__)

#: Lineage written in ``object_annotation_hierarchy`` for each category.
HIERARCHY: dict[str, str] = {
    "dark_aggregate": "not-living>detritus>aggregate>dark_aggregate",
    "fluffy_aggregate": "not-living>detritus>aggregate>fluffy_aggregate",
    "fecal_pellet": "not-living>detritus>fecal_pellet",
    "fiber": "not-living>detritus>fiber",
    "Copepoda": "living>Eukaryota>Opisthokonta>Holozoa>Metazoa>Arthropoda>Crustacea>"
    "Multicrustacea>Hexanauplia>Copepoda",
    "Rhizaria": "living>Eukaryota>Harosa>Rhizaria",
    "Trichodesmium": "living>Bacteria>Cyanobacteria>Oscillatoriales>Trichodesmium",
    "Chaetognatha": "living>Eukaryota>Opisthokonta>Holozoa>Metazoa>Chaetognatha",
}

#: Feature names written as ``object_<name>`` (ZooProcess names).
FEATURES: tuple[str, ...] = (
    "area",
    "mean",
    "stddev",
    "mode",
    "min",
    "max",
    "x",
    "y",
    "xm",
    "ym",
    "perim.",
    "bx",
    "by",
    "width",
    "height",
    "major",
    "minor",
    "angle",
    "circ.",
    "feret",
    "intden",
    "median",
    "skew",
    "kurt",
    "%area",
    "esd",
    "elongation",
    "range",
    "meanpos",
    "cv",
    "sr",
)

_MAX_SIDE = 128


def _canvas(size_px: float) -> tuple[int, np.ndarray, np.ndarray]:
    side = int(np.clip(np.ceil(size_px * 1.3) + 12, 32, _MAX_SIDE))
    yy, xx = np.mgrid[0:side, 0:side].astype("float64")
    c = (side - 1) / 2.0
    return side, yy - c, xx - c


def _rot(yy: np.ndarray, xx: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(theta), np.sin(theta)
    return xx * c + yy * s, -xx * s + yy * c  # u along the major axis, v across


def _segment_dist(
    yy: np.ndarray, xx: np.ndarray, y0: float, x0: float, y1: float, x1: float
) -> np.ndarray:
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-9), 0.0, 1.0)
    return np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx))


def draw_object(
    kind: str, esd_mm: float, pixel_mm: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one vignette.

    Parameters
    ----------
    kind : str
        A type or group name (keys of :data:`HIERARCHY`).
    esd_mm : float
        Equivalent spherical diameter (mm).
    pixel_mm : float
        Pixel size (mm).
    rng : numpy.random.Generator

    Returns
    -------
    image, mask : numpy.ndarray
        ``uint8`` image (black background) and the object's boolean mask.

    Examples
    --------
    >>> img, mask = draw_object("fiber", 2.0, 0.092, np.random.default_rng(0))
    >>> img.dtype.name, bool(mask.any()), img.shape[0] >= 32
    ('uint8', True, True)
    """
    r = max(esd_mm / pixel_mm / 2.0, 3.0)  # radius of the equal-area disk, px
    area = np.pi * r * r
    theta = rng.uniform(0, np.pi)
    noise_amp = 0.0
    if kind == "dark_aggregate":
        q = rng.uniform(1.0, 1.4)
        side, yy, xx = _canvas(2 * r * q)
        u, v = _rot(yy, xx, theta)
        phi = np.arctan2(v, u)
        rad = np.hypot(u / np.sqrt(q), v * np.sqrt(q))
        mask = rad <= r * (1 + 0.05 * np.sin(5 * phi + rng.uniform(0, 6)))
        base, noise_amp = rng.uniform(45, 70), 6.0
        grey = np.full((side, side), base)
    elif kind == "fluffy_aggregate":
        side, yy, xx = _canvas(2.9 * r)
        u, v = _rot(yy, xx, theta)
        phi = np.arctan2(v, u)
        p = rng.uniform(0, 2 * np.pi, 3)
        lobes = 1 + 0.3 * np.sin(3 * phi + p[0]) + 0.2 * np.sin(5 * phi + p[1])
        lobes += 0.15 * np.sin(7 * phi + p[2])
        mask = np.hypot(u, v) <= 1.15 * r * lobes
        mask &= rng.random((side, side)) > 0.15
        base, noise_amp = rng.uniform(120, 160), 45.0
        grey = np.full((side, side), base)
    elif kind == "fecal_pellet":
        q = rng.uniform(3.0, 5.0)
        a, b = r * np.sqrt(q), r / np.sqrt(q)
        side, yy, xx = _canvas(2 * a)
        u, v = _rot(yy, xx, theta)
        mask = (np.clip(np.abs(u) - (a - b), 0, None) / b) ** 2 + (v / b) ** 2 <= 1.0
        base, noise_amp = rng.uniform(180, 210), 8.0
        grey = np.full((side, side), base)
    elif kind == "fiber":
        length = min(area / 2.0, _MAX_SIDE * 0.9)
        side, yy, xx = _canvas(length)
        u, v = _rot(yy, xx, theta)
        bend = rng.uniform(-1.5, 1.5) / max(length, 1)
        mask = (np.abs(v - bend * u * u) <= 1.1) & (np.abs(u) <= length / 2)
        base, noise_amp = rng.uniform(110, 140), 10.0
        grey = np.full((side, side), base)
    elif kind == "Copepoda":
        q = 2.6
        a, b = 0.9 * r * np.sqrt(q), 0.9 * r / np.sqrt(q)
        side, yy, xx = _canvas(3.2 * a)
        u, v = _rot(yy, xx, theta)
        body = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        ant = np.zeros_like(body)
        for sgn in (-1, 1):
            ang = sgn * np.deg2rad(rng.uniform(55, 75))
            length = 1.3 * a
            ant |= (
                _segment_dist(
                    v, u, 0.0, a * 0.8, length * np.sin(ang), a * 0.8 + length * np.cos(ang)
                )
                <= 0.7
            )
        mask = body | ant
        grey = np.where(body, rng.uniform(140, 170), 90.0)
        noise_amp = 15.0
    elif kind == "Rhizaria":
        rc = 0.75 * r
        side, yy, xx = _canvas(4.5 * rc)
        dist = np.hypot(yy, xx)
        core = dist <= rc
        spines = np.zeros_like(core)
        for ang in np.linspace(0, 2 * np.pi, int(rng.integers(12, 20)), endpoint=False):
            ang += rng.uniform(-0.1, 0.1)
            spines |= (
                _segment_dist(yy, xx, 0.0, 0.0, 2.1 * rc * np.sin(ang), 2.1 * rc * np.cos(ang))
                <= 0.6
            )
        mask = core | spines
        grey = np.where(core, rng.uniform(160, 190), 80.0)
        noise_amp = 12.0
    elif kind == "Trichodesmium":
        length = min(3.2 * r, _MAX_SIDE * 0.85)
        side, yy, xx = _canvas(length)
        mask = np.zeros((side, side), dtype=bool)
        for _ in range(int(rng.integers(12, 24))):
            ang = theta + rng.normal(0, 0.12)
            off = rng.normal(0, r * 0.25, 2)
            h = length / 2 * rng.uniform(0.7, 1.0)
            mask |= (
                _segment_dist(
                    yy,
                    xx,
                    off[0] - h * np.sin(ang),
                    off[1] - h * np.cos(ang),
                    off[0] + h * np.sin(ang),
                    off[1] + h * np.cos(ang),
                )
                <= 0.6
            )
        base, noise_amp = rng.uniform(95, 125), 20.0
        grey = np.full((side, side), base)
    elif kind == "Chaetognatha":
        q = rng.uniform(8.0, 12.0)
        a, b = r * np.sqrt(q), max(r / np.sqrt(q), 1.2)
        a = min(a, _MAX_SIDE * 0.45)
        side, yy, xx = _canvas(2 * a)
        u, v = _rot(yy, xx, theta)
        bend = rng.uniform(-0.3, 0.3) / max(a, 1)
        mask = (u / a) ** 2 + ((v - bend * u * u) / b) ** 2 <= 1.0
        base, noise_amp = rng.uniform(70, 95), 10.0
        grey = np.full((side, side), base)
    else:
        raise ValueError(f"unknown object kind {kind!r}; valid: {', '.join(HIERARCHY)}")
    if not mask.any():
        mask[mask.shape[0] // 2, mask.shape[1] // 2] = True
    grey = grey + rng.normal(0, noise_amp, grey.shape)
    img = np.where(mask, np.clip(grey, 12, 255), 0).astype(np.uint8)
    return img, mask


def measure(img: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """ZooProcess-like features of one vignette (pixels; grey levels inverted, 255 - PNG).

    Parameters
    ----------
    img : numpy.ndarray of uint8
    mask : numpy.ndarray of bool

    Returns
    -------
    dict of float
        One value per name of :data:`FEATURES`.

    Examples
    --------
    >>> img = np.zeros((32, 32), np.uint8); img[10:20, 12:16] = 55
    >>> f = measure(img, img > 0)
    >>> f["area"], f["mean"], f["width"], f["height"], round(f["elongation"], 1)
    (40.0, 200.0, 4.0, 10.0, 2.5)
    """
    yy, xx = np.nonzero(mask)
    inv = 255.0 - img[yy, xx].astype("float64")
    area = float(yy.size)
    mean = float(inv.mean())
    std = float(inv.std())
    vmin, vmax = float(inv.min()), float(inv.max())
    vals, counts = np.unique(inv, return_counts=True)
    y_c, x_c = yy.mean() + 0.5, xx.mean() + 0.5
    w = inv.sum()
    ym, xm = float((yy * inv).sum() / w + 0.5), float((xx * inv).sum() / w + 0.5)
    padded = np.pad(mask, 1)
    edges = sum(
        int((padded[1:-1, 1:-1] & ~np.roll(padded, s, axis=a)[1:-1, 1:-1]).sum())
        for a in (0, 1)
        for s in (1, -1)
    )
    perim = edges * np.pi / 4.0
    dy, dx = yy - yy.mean(), xx - xx.mean()
    cov = np.array([[dx @ dx, -(dx @ dy)], [-(dx @ dy), dy @ dy]]) / area + np.eye(2) / 12.0
    ev, evec = np.linalg.eigh(cov)
    major, minor = 4.0 * np.sqrt(ev[1]), 4.0 * np.sqrt(max(ev[0], 1e-9))
    angle = float(np.degrees(np.arctan2(evec[1, 1], evec[0, 1])) % 180.0)
    angs = np.deg2rad(np.arange(0, 180, 6))
    proj = np.outer(np.cos(angs), xx) + np.outer(np.sin(angs), yy)
    feret = float((proj.max(axis=1) - proj.min(axis=1)).max() + 1.0)
    rng_ = vmax - vmin
    m3 = float(((inv - mean) ** 3).mean())
    m4 = float(((inv - mean) ** 4).mean())
    return {
        "area": area,
        "mean": round(mean, 3),
        "stddev": round(std, 3),
        "mode": float(vals[counts.argmax()]),
        "min": vmin,
        "max": vmax,
        "x": round(float(x_c), 3),
        "y": round(float(y_c), 3),
        "xm": round(xm, 3),
        "ym": round(ym, 3),
        "perim.": round(float(perim), 3),
        "bx": float(xx.min()),
        "by": float(yy.min()),
        "width": float(xx.max() - xx.min() + 1),
        "height": float(yy.max() - yy.min() + 1),
        "major": round(float(major), 3),
        "minor": round(float(minor), 3),
        "angle": round(angle, 3),
        "circ.": round(float(min(4.0 * np.pi * area / max(perim, 1e-9) ** 2, 1.0)), 3),
        "feret": round(feret, 3),
        "intden": round(float(inv.sum()), 1),
        "median": float(np.median(inv)),
        "skew": round(m3 / std**3, 3) if std > 0 else 0.0,
        "kurt": round(m4 / std**4 - 3.0, 3) if std > 0 else 0.0,
        "%area": round(100.0 * float((inv > mean).mean()), 3),
        "esd": round(float(2.0 * np.sqrt(area / np.pi)), 3),
        "elongation": round(float(major / minor), 3),
        "range": rng_,
        "meanpos": round((vmax - mean) / rng_, 3) if rng_ > 0 else 0.0,
        "cv": round(100.0 * std / mean, 3) if mean > 0 else 0.0,
        "sr": round(100.0 * std / rng_, 3) if rng_ > 0 else 0.0,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_ecotaxa_export(
    objects: pd.DataFrame,
    folder: str | Path,
    *,
    n: int,
    rng: np.random.Generator,
    acq: Mapping[str, Mapping[str, Any]],
) -> tuple[Path, list[dict[str, Any]]]:
    """Draw the vignettes of ``objects`` and write one EcoTaxa export TSV.

    Parameters
    ----------
    objects : pandas.DataFrame
        One row per object: ``object_id, profile_id, lat, lon, time (Timestamp of the
        image), depth_m, kind, category, status, basin``.
    folder : str or pathlib.Path
        The ``ecotaxa`` folder (images go to ``images/<category>/``).
    n : int
        Number in the file name ``ecotaxa_export_demo_<n>.tsv``.
    rng : numpy.random.Generator
        Generator for the drawings.
    acq : mapping
        ``acq_``/``sample_`` values per profile id (``instrumsn, aa, exp, pixel_mm,
        volimage_l, subsample_fraction, bottom_depth_m``; optionally ``instrument``
        (``uvp5``/``uvp6``; a UVP6's ``acq_pixel`` is written in µm as real exports do)
        and ``cruise``).

    Returns
    -------
    path, features : pathlib.Path, list of dict
        The TSV and the measured features of each object (in ``objects`` order).
    """
    folder = Path(folder)
    header = [
        "object_id",
        "object_lat",
        "object_lon",
        "object_date",
        "object_time",
        "object_link",
        "object_depth_min",
        "object_depth_max",
        "object_annotation_status",
        "object_annotation_person_name",
        "object_annotation_person_email",
        "object_annotation_date",
        "object_annotation_time",
        "object_annotation_category",
        "object_annotation_hierarchy",
        "img_file_name",
        "img_rank",
        *[f"object_{f}" for f in FEATURES],
        "sample_id",
        "sample_profileid",
        "sample_stationid",
        "sample_cruise",
        "sample_ship",
        "sample_bottomdepth",
        "process_id",
        "process_software",
        "acq_id",
        "acq_instrument",
        "acq_sn",
        "acq_aa",
        "acq_exp",
        "acq_volimage",
        "acq_pixel",
        "acq_smzoo",
        "acq_min_esd_mm",
        "acq_subsample_fraction",
    ]
    lines = ["\t".join(header)]
    feats: list[dict[str, Any]] = []
    for row in objects.itertuples(index=False):
        a = acq[row.profile_id]
        img, mask = draw_object(row.kind, row.esd_mm, a["pixel_mm"], rng)
        f = measure(img, mask)
        feats.append(f)
        rel = f"images/{row.category}/{row.object_id}.png"
        out = folder / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(out, format="PNG")
        validated = row.status == "validated"
        values = [
            row.object_id,
            repr(round(float(row.lat), 5)),
            repr(round(float(row.lon), 5)),
            row.time.strftime("%Y%m%d"),
            row.time.strftime("%H%M%S"),
            "",
            repr(float(row.depth_m)),
            repr(float(row.depth_m)),
            row.status,
            "oceanfields demo" if validated else "",
            "demo@example.org" if validated else "",
            "20210101" if validated else "",
            "000000" if validated else "",
            row.category,
            HIERARCHY[row.category],
            rel,
            "0",
            *[_fmt(f[k]) for k in FEATURES],
            row.profile_id,
            row.profile_id,
            row.basin,
            a.get("cruise", "demo_cruise"),
            "demo",
            str(int(a["bottom_depth_m"])),
            f"zooprocess_{row.profile_id}",
            "oceanfields_demo",
            f"{row.profile_id}_{a.get('instrument', 'uvp5')}",
            a.get("instrument", "uvp5"),
            a["instrumsn"],
            repr(a["aa"]),
            repr(a["exp"]),
            repr(a["volimage_l"]),
            repr(a["pixel_mm"] * 1000.0 if a.get("instrument") == "uvp6" else a["pixel_mm"]),
            "80",
            "1.02",
            repr(a["subsample_fraction"]),
        ]
        lines.append("\t".join(values))
    path = folder / f"ecotaxa_export_demo_{n}.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, feats


#: Objects per TSV of a scale export (about 0.5 GB each: big enough to be read in blocks).
SCALE_ROWS_PER_FILE = 2_000_000
_SCALE_CHUNK = 250_000


def write_scale_export(
    folder: str | Path,
    n_objects: int,
    profiles: pd.DataFrame,
    *,
    seed: int = 0,
    rows_per_file: int = SCALE_ROWS_PER_FILE,
) -> list[Path]:
    """Write an EcoTaxa export of ``n_objects`` objects without images, at disk speed.

    For benchmarks of the readers at archive scale (EcoTaxa holds ~490 million objects):
    the same columns as :func:`write_ecotaxa_export`, objects spread over the world's
    profiles and depths, categories and statuses drawn at random, features drawn from
    plausible ranges (not measured: there is no drawing), ``img_file_name`` empty. Written
    column-wise with pyarrow, 250,000 rows at a time, so memory stays flat and time
    grows linearly with ``n_objects``.

    Parameters
    ----------
    folder : str or pathlib.Path
        Where the TSVs go (``ecotaxa_scale_<n>.tsv``), created.
    n_objects : int
        Objects to write (>= 1).
    profiles : pandas.DataFrame
        ``profile_id, lat, lon, time`` (one row per profile; e.g. the world's
        ``truth/profiles.parquet`` without duplicates).
    seed : int
        Random seed.
    rows_per_file : int
        Objects per TSV.

    Returns
    -------
    list of pathlib.Path
        The TSVs written.

    Examples
    --------
    >>> import tempfile
    >>> prof = pd.DataFrame({"profile_id": ["p1"], "lat": [10.0], "lon": [20.0],
    ...                      "time": [pd.Timestamp("2020-01-02", tz="UTC")]})
    >>> paths = write_scale_export(tempfile.mkdtemp(), 5, prof, rows_per_file=3)
    >>> [p.name for p in paths], len(paths[1].read_text().splitlines())
    (['ecotaxa_scale_1.tsv', 'ecotaxa_scale_2.tsv'], 3)
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    if n_objects < 1 or rows_per_file < 1:
        raise ValueError(f"n_objects={n_objects}, rows_per_file={rows_per_file}: must be >= 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 5])
    prof = profiles.drop_duplicates("profile_id").reset_index(drop=True)
    times = pd.DatetimeIndex(prof["time"])
    dates = np.asarray(times.strftime("%Y%m%d"), dtype=object)
    clocks = np.asarray(times.strftime("%H%M%S"), dtype=object)
    cats = np.array(list(HIERARCHY), dtype=object)
    lineage = np.array([HIERARCHY[c] for c in cats], dtype=object)
    statuses = np.array(["validated", "predicted", "dubious"], dtype=object)
    header = [
        "object_id",
        "object_lat",
        "object_lon",
        "object_date",
        "object_time",
        "object_depth_min",
        "object_depth_max",
        "object_annotation_status",
        "object_annotation_category",
        "object_annotation_hierarchy",
        "img_file_name",
        "img_rank",
        *[f"object_{f}" for f in FEATURES],
        "sample_id",
        "acq_id",
        "acq_instrument",
        "acq_pixel",
        "acq_volimage",
        "acq_subsample_fraction",
    ]
    paths: list[Path] = []
    start = 0
    while start < n_objects:
        n_file = min(rows_per_file, n_objects - start)
        path = folder / f"ecotaxa_scale_{len(paths) + 1}.tsv"
        with pa.OSFile(str(path), "wb") as sink:
            sink.write(("\t".join(header) + "\n").encode())
            done = 0
            while done < n_file:
                n = min(_SCALE_CHUNK, n_file - done)
                ids = np.arange(start + done, start + done + n)
                p = rng.integers(len(prof), size=n)
                depth = np.round(rng.uniform(0.0, 1000.0, n), 1)
                cat = rng.integers(len(cats), size=n)
                pid = pa.array(prof["profile_id"].to_numpy(dtype=object)[p], pa.string())
                cols: dict[str, Any] = {
                    "object_id": pc.binary_join_element_wise(
                        "scale_", pc.cast(pa.array(ids), pa.string()), ""
                    ),
                    "object_lat": pa.array(prof["lat"].to_numpy()[p]),
                    "object_lon": pa.array(prof["lon"].to_numpy()[p]),
                    "object_date": pa.array(dates[p], pa.string()),
                    "object_time": pa.array(clocks[p], pa.string()),
                    "object_depth_min": pa.array(depth),
                    "object_depth_max": pa.array(depth),
                    "object_annotation_status": pa.array(
                        statuses[rng.choice(3, size=n, p=[0.8, 0.15, 0.05])], pa.string()
                    ),
                    "object_annotation_category": pa.array(cats[cat], pa.string()),
                    "object_annotation_hierarchy": pa.array(lineage[cat], pa.string()),
                    "img_file_name": pa.array(np.full(n, "", dtype=object), pa.string()),
                    "img_rank": pa.array(np.zeros(n, dtype="int64")),
                }
                for f in FEATURES:
                    cols[f"object_{f}"] = pa.array(np.round(rng.lognormal(3.0, 1.0, n), 3))
                cols["sample_id"] = pid
                cols["acq_id"] = pc.binary_join_element_wise(pid, "_uvp5", "")
                cols["acq_instrument"] = pa.array(np.full(n, "uvp5", dtype=object), pa.string())
                cols["acq_pixel"] = pa.array(np.full(n, 0.092))
                cols["acq_volimage"] = pa.array(np.full(n, 1.1))
                cols["acq_subsample_fraction"] = pa.array(np.full(n, 1.0))
                pacsv.write_csv(
                    pa.table(cols),
                    sink,
                    pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"),
                )
                done += n
        paths.append(path)
        start += n_file
    logger.info(
        "scale EcoTaxa export: %d objects in %d file(s) in %s", n_objects, len(paths), folder
    )
    return paths
