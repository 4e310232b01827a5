"""Generate the whole demo world: environment, UVP casts, EcoTaxa objects and the truth.

Layout written under ``out`` (see ``design.md``)::

    world.json                        parameters, seed, counts, files, the truth's formulas
    environment.zarr                  Copernicus-like monthly fields (zarr v3): the physics
    products/                         biogeochemistry, ocean colour, bathymetry (zarr) and an
                                      SST climatology (NetCDF), each on its own grid
    ecopart/export_detailed_20210101_00_00_Export_metadata_summary.tsv
    ecopart/export_detailed_20210101_00_00_PAR_<profile>.tsv
    ecopart/raw/export_raw_20210101_00_00_Export_metadata_summary.tsv
    ecopart/raw/<yyyymmddhhmmss>_<profile>_PAR_raw_20210101_00_00.tsv
    ecotaxa/ecotaxa_export_demo_<n>.tsv    one TSV per 50 profiles (n = 1, 2, ...)
    ecotaxa/images/<category>/<object_id>.png
    truth/profiles.parquet            expected values per profile and layer
    truth/fields.zarr                 expected layer means on the global grid
    truth/objects.parquet             true kind of every EcoTaxa object

Two worlds (``world=``):

- ``"realistic"`` (the default): real coastlines (:mod:`pipeline.demo.land`); the truth
  responds to hidden random-field drivers and a finer environment that the products do
  not hold (:mod:`pipeline.demo.drivers`); casts come in cruises and time series, biased
  like the archive (:mod:`pipeline.demo.sampling`), made with UVP5SD, UVP5HD or UVP6
  units whose counts carry a cast effect, a calibration offset, vertically correlated
  patchiness and gamma-Poisson noise (:mod:`pipeline.demo.noise`). ``truth/fields.zarr``
  and ``truth/profiles.parquet`` hold the **expected** values (hidden drivers and fine
  environment included; cast effects, instrument offsets and counting noise excluded,
  all of mean one), the same names and dims as in the simple world;
  ``truth/profiles.parquet`` adds ``cruise, instrument, cast_sd_dex, cast_effect``.
  ``world.json`` adds ``world``, ``noise``, ``sampling`` and ``hidden`` sections (what
  the noise ceiling's Monte Carlo reads).
- ``"simple"``: the first demo world, kept bit for bit (every file but ``world.json``):
  the truth a closed form of the delivered monthly fields, Poisson counts, casts placed
  as below.

Profiles of the simple world: ``n_profiles`` casts spread over the basins (weights
Atlantic 0.26, Pacific 0.30, Indian 0.18, Southern 0.16, Arctic 0.10) and cycling over
all months of ``years``; 90 % at cells deeper than 1010 m (casts to 1000 m), 10 % over
the slope (200-1010 m, casts to 10 m above the bottom). Each position is a random point
inside its grid cell; the truth uses the cell's stored environment.

Randomness: one ``numpy.random.Generator`` per purpose, seeded from ``(seed, purpose[,
profile])``; same arguments, same bytes (no wall-clock time is written anywhere).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline import __version__, sizeclasses
from pipeline.demo import drivers, noise, sampling, truth
from pipeline.demo import ecopart_writer as ew
from pipeline.demo import ecotaxa_writer as etw
from pipeline.demo import environment as envmod
from pipeline.demo.drivers import HiddenWorld
from pipeline.demo.land import real_bathymetry
from pipeline.demo.noise import CastNoise, cast_sd_dex
from pipeline.demo.products import write_products
from pipeline.demo.sampling import plan_realistic_casts

__all__ = ["WORLDS", "DemoWorld", "generate_demo_world"]

#: The demo worlds :func:`generate_demo_world` can write.
WORLDS: tuple[str, ...] = ("realistic", "simple")

logger = logging.getLogger(__name__)

_BASIN_WEIGHTS = {
    "Atlantic": 0.26,
    "Pacific": 0.30,
    "Indian": 0.18,
    "Southern": 0.16,
    "Arctic": 0.10,
}
_PROFILES_PER_TSV = 50
_STATUS_P = {"validated": 0.80, "predicted": 0.15, "dubious": 0.05}
_MISCLASSIFIED_P = 0.10  # of the predicted objects


@dataclass(frozen=True)
class DemoWorld:
    """What :func:`generate_demo_world` wrote.

    Attributes
    ----------
    root : str
        The world's folder.
    paths : dict of str
        ``environment, ecopart_detailed, ecopart_raw, ecotaxa, truth_profiles,
        truth_fields, truth_objects, world_json`` -> path.
    n_profiles, n_objects, n_images : int
        Casts, EcoTaxa objects (rows) and PNG vignettes written.
    resolution : float
        Grid step (degrees).
    years : tuple of int
    seed : int
    world : str
        ``"realistic"`` or ``"simple"`` (:func:`generate_demo_world`).
    """

    root: str
    paths: dict[str, str] = field(default_factory=dict)
    n_profiles: int = 0
    n_objects: int = 0
    n_images: int = 0
    resolution: float = 1.0
    years: tuple[int, ...] = (2020,)
    seed: int = 0
    world: str = "realistic"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view of the world.

        Examples
        --------
        >>> DemoWorld(root="w", years=(2020,)).to_dict()["years"]
        [2020]
        """
        d = asdict(self)
        d["years"] = list(self.years)
        return d


def _check_args(
    resolution: float, years: Sequence[int], n_profiles: int, n_images: int, world: str
) -> None:
    if world not in WORLDS:
        raise ValueError(f"world={world!r}: expected one of {', '.join(WORLDS)}")
    envmod.grid(resolution)  # raises on a bad resolution
    if not years or any(int(y) != y or not 1900 <= int(y) <= 2200 for y in years):
        raise ValueError(f"years={list(years)!r}: expected years such as (2020,) or (2019, 2020)")
    if int(n_profiles) < 1:
        raise ValueError(f"n_profiles={n_profiles!r}: expected at least 1 profile")
    if int(n_images) < 0:
        raise ValueError(f"n_images={n_images!r}: expected 0 or more images")


def _rng(seed: int, *purpose: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *purpose])


def _choose_profiles(
    n: int, resolution: float, years: Sequence[int], seed: int
) -> list[ew.ProfileSpec]:
    rng = _rng(seed, 1)
    lat, lon = envmod.grid(resolution)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    deptho = envmod.bathymetry(lat2, lon2)
    basin = envmod.basin_of(lat2, lon2)
    wet = ~np.isnan(deptho)
    # basin of each profile: largest remainder, then shuffled
    names = list(_BASIN_WEIGHTS)
    w = np.array([_BASIN_WEIGHTS[b] for b in names])
    counts = np.floor(w * n).astype(int)
    for i in np.argsort(-(w * n - counts))[: n - counts.sum()]:
        counts[i] += 1
    plan = rng.permutation(np.repeat(np.arange(len(names)), counts))
    months = [(int(y), m) for y in years for m in range(1, 13)]
    month_plan = rng.permutation(np.arange(n) % len(months))
    specs = []
    for i in range(n):
        b = names[plan[i]]
        deep = wet & (basin == b) & (np.nan_to_num(deptho) > 1010.0)
        slope = wet & (basin == b) & (np.nan_to_num(deptho) > 200.0) & ~deep
        pool = slope if (rng.random() < 0.1 and slope.any()) else deep
        if not pool.any():
            pool = wet & (np.nan_to_num(deptho) > 1010.0)
        iy, ix = np.argwhere(pool)[rng.integers(int(pool.sum()))]
        cell_lat, cell_lon = float(lat[iy]), float(lon[ix])
        off = rng.uniform(-0.45, 0.45, 2) * resolution
        if cell_lat >= lat[-1]:
            off[0] = -abs(off[0])
        if cell_lon <= lon[0]:
            off[1] = abs(off[1])
        year, month = months[month_plan[i]]
        days = pd.Timestamp(year=year, month=month, day=1).days_in_month
        t = pd.Timestamp(year=year, month=month, day=int(rng.integers(1, days + 1)))
        t = t + pd.Timedelta(seconds=int(rng.integers(0, 86400 - 4000)))
        bottom = float(deptho[iy, ix])
        max_depth = int(min(1000.0, np.floor((bottom - 10.0) / 5.0) * 5.0))
        specs.append(
            ew.spec_at_cell(
                i,
                (cell_lat, cell_lon),
                off,
                time=t,
                bottom_m=bottom,
                max_depth_m=max_depth,
                basin=b,
                calibration=ew.CALIBRATIONS[int(rng.integers(len(ew.CALIBRATIONS)))],
            )
        )
    return specs


@functools.cache
def _truth_columns() -> tuple[list[str], list[tuple[str, np.ndarray]], list[str], list[str]]:
    """Column names of the truth rows, and the detailed classes of each aggregated one."""
    edges = sizeclasses.edges_mm("detailed")
    classes = [truth.conc_column(edges[k], edges[k + 1]) for k in range(edges.size - 1)]
    aggregated = [
        (
            truth.conc_column(lo, hi),
            (edges[:-1] >= lo - 1e-12) & (edges[1:] <= hi + 1e-12),
        )
        for lo, hi in truth.AGGREGATED_CLASSES_MM
    ]
    types = [f"conc_{t}_per_l" for t in truth.TYPES]
    groups = [f"conc_{g}_per_l" for g in truth.GROUPS]
    return classes, aggregated, types, groups


def _truth_rows(sim: ew.SimulatedProfile) -> list[dict[str, Any]]:
    """Volume-weighted expected concentrations per layer of one cast."""
    spec = sim.spec
    class_names, aggregated, type_names, group_names = _truth_columns()
    exp = sim.expected
    vol = exp["volume_l"]
    time = spec.time.tz_localize("UTC").as_unit("ns")
    rows = []
    for name, top, bot in truth.LAYERS:
        sel = (sim.bin_depth_m >= top) & (sim.bin_depth_m < bot)
        if not sel.any():
            continue
        w = vol[sel] / vol[sel].sum()
        row: dict[str, Any] = {
            "profile_id": spec.profile_id,
            "lat": spec.lat,
            "lon": spec.lon,
            "time": time,
            "layer": name,
            "layer_top_m": top,
            "layer_bottom_m": bot,
            "n_bins": int(sel.sum()),
            "volume_l": float(vol[sel].sum()),
            "basin": spec.basin,
            "cell_lat": spec.cell_lat,
            "cell_lon": spec.cell_lon,
        }
        classes = w @ exp["classes"][sel]
        row.update(zip(class_names, classes.tolist(), strict=True))
        for column, keep in aggregated:
            row[column] = float(classes[keep].sum())
        for i, column in enumerate(type_names):  # one dot product per column, as always
            row[column] = float(w @ exp["types"][sel, i])
        for i, column in enumerate(group_names):
            row[column] = float(w @ exp["plankton"][sel, i])
        rows.append(row)
    return rows


def _cast_noise(spec: ew.ProfileSpec, seed: int) -> CastNoise:
    """Draw a realistic cast's effect (mean one, sd from the month's surface chlorophyll)."""
    chl = envmod.environment_month(
        np.array([spec.cell_lat]),
        np.array([spec.cell_lon]),
        year=spec.time.year,
        month=spec.time.month,
        depths=(0.5,),
    )["chl"][0, 0]
    sd = float(cast_sd_dex(np.array([chl]))[0])
    s = sd * np.log(10.0)
    effect = float(np.exp(s * _rng(seed, 9, spec.index).standard_normal() - s * s / 2.0))
    return CastNoise(instrument=spec.instrument, cast_effect=effect, cast_sd_dex=sd)


def _ecopart_info(realistic: bool) -> dict[str, Any]:
    if realistic:
        return {
            "instrument": "uvp5 and uvp6 (UVP5SD, UVP5HD, UVP6)",
            "calibrations": {k: asdict(c) for k, c in noise.INSTRUMENTS.items()},
            "images_per_metre": list(noise.IMAGES_PER_METRE),
            "depth_offset_m": 0.0,
            "export_stamp": ew.EXPORT_STAMP,
            "min_esd_mm": truth.MIN_ESD_MM,
        }
    return {
        "instrument": "uvp5",
        "calibrations": [asdict(c) for c in ew.CALIBRATIONS],
        "images_per_metre": [20, 50],
        "depth_offset_m": 0.0,
        "export_stamp": ew.EXPORT_STAMP,
        "min_esd_mm": truth.MIN_ESD_MM,
    }


def _realistic_info(specs: Sequence[ew.ProfileSpec], strength: float) -> dict[str, Any]:
    """Describe the realistic world for ``world.json``: noise, sampling, hidden drivers."""
    cruises = pd.Series([s.cruise for s in specs])
    sites = [s.site for s in specs if s.site]
    return {
        "noise": {
            "description": (noise.__doc__ or "").strip(),
            "images_per_metre": list(noise.IMAGES_PER_METRE),
            "patch_sd": noise.PATCH_SD,
            "patch_metres": noise.PATCH_METRES,
            "gamma_shape": noise.GAMMA_SHAPE,
            "instrument_offsets_dex": {
                k: {"below_0.2mm": a, "0.2-0.5mm": b}
                for k, (a, b) in noise.INSTRUMENT_OFFSETS_DEX.items()
            },
            "instrument_casts": {
                k: sum(s.instrument == k for s in specs) for k in noise.INSTRUMENTS
            },
            "cast_sd_dex": "0.08 + 0.12 * clip(log10(surface chl) + 1.3, 0, 1.3) / 1.3",
        },
        "sampling": {
            "description": (sampling.__doc__ or "").strip(),
            "cruises": int(cruises[[not s.site for s in specs]].nunique()),
            "time_series_casts": len(sites),
            "time_series_stations": sorted(set(sites)),
            "casts_shallower_than_1000m": sum(s.max_depth_m < 1000 for s in specs),
        },
        "hidden": {
            "description": (drivers.__doc__ or "").strip(),
            "drivers": {k: list(v) for k, v in drivers.DRIVERS.items()},
            "fine_environment": {k: list(v) for k, v in drivers.FINE.items()},
            "driver_strength": float(strength),
            "base_log_c": drivers.BASE_LOG_C,
            "base_slope": drivers.BASE_SLOPE,
        },
        "truth_profile_columns_added": {
            "cruise": "the cast's cruise (or time-series station and year)",
            "instrument": "UVP5SD, UVP5HD or UVP6",
            "cast_sd_dex": "standard deviation of the cast effect (dex)",
            "cast_effect": "the cast effect drawn (not in the expected values)",
        },
    }


def generate_demo_world(
    out: str,
    *,
    resolution: float = 1.0,
    years: Sequence[int] = (2020,),
    n_profiles: int = 300,
    n_images: int = 3000,
    seed: int = 0,
    world: Literal["realistic", "simple"] = "realistic",
    driver_strength: float = 1.0,
) -> DemoWorld:
    """Write the demo world (real EcoPart/EcoTaxa/Copernicus layouts plus the truth) in ``out``.

    Parameters
    ----------
    out : str
        Local folder (created; an existing world there is replaced).
    resolution : float
        Grid step of the environment and truth fields (degrees; 1.0 takes seconds,
        0.25 minutes).
    years : sequence of int
        Years of the monthly environment; casts cycle over all their months.
    n_profiles : int
        Number of UVP5 casts.
    n_images : int
        Number of EcoTaxa objects/vignettes kept (uniform subsample of every object
        >= 1.02 mm counted in the casts; all of them if there are fewer).
    seed : int
        Random seed: same arguments, same files.
    world : {"realistic", "simple"}
        ``"realistic"`` (default): real coastlines, hidden drivers and a finer
        environment behind the truth (:mod:`pipeline.demo.drivers`), cruises and
        time series (:mod:`pipeline.demo.sampling`), UVP5SD/UVP5HD/UVP6 casts with
        cast effects, calibration offsets, patchiness and gamma-Poisson counts
        (:mod:`pipeline.demo.noise`). ``"simple"``: the first demo world (ellipse
        continents, truth a closed form of the delivered fields, uniform sampling,
        Poisson counts), kept bit for bit.
    driver_strength : float
        Realistic world only: multiplies the standard deviation of every hidden driver
        (0 leaves the finer environment and the ecology, without unobserved drivers).

    Returns
    -------
    DemoWorld
        Paths and counts.

    Raises
    ------
    ValueError
        On a resolution not dividing 180, no years, non-positive counts or an unknown
        ``world``.

    Examples
    --------
    >>> import tempfile
    >>> w = generate_demo_world(tempfile.mkdtemp(), resolution=10.0, n_profiles=3,
    ...                         n_images=5, world="simple")
    >>> w.n_profiles, w.n_images, sorted(w.paths)[:3]
    (3, 5, ['ecopart_detailed', 'ecopart_raw', 'ecotaxa'])
    """
    _check_args(resolution, years, n_profiles, n_images, world)
    years = tuple(int(y) for y in years)
    kind = str(world)
    realistic = kind == "realistic"
    root = Path(out)
    for sub in ("environment.zarr", "products", "ecopart", "ecotaxa", "truth"):
        if (root / sub).exists():
            shutil.rmtree(root / sub)
    ecopart = root / "ecopart"
    raw_dir = ecopart / "raw"
    eco_dir = root / "ecotaxa"
    truth_dir = root / "truth"
    for d in (raw_dir, eco_dir, truth_dir):
        d.mkdir(parents=True, exist_ok=True)

    deptho = real_bathymetry(resolution) if realistic else None
    hidden = HiddenWorld(int(seed), float(driver_strength)) if realistic else None
    env_info = envmod.write_environment(
        str(root / "environment.zarr"), resolution=resolution, years=years, deptho=deptho
    )
    env_info["products"] = write_products(
        root, resolution=resolution, years=years, world="realistic" if realistic else "simple"
    )
    # The truth fields need neither the casts nor their files: a second thread computes
    # and writes them while this one simulates and writes the casts (numpy and Arrow
    # release the GIL; each thread has its own generators, so the bytes do not change).
    with ThreadPoolExecutor(max_workers=1) as background:
        fields = background.submit(
            truth.write_truth_fields,
            str(truth_dir / "fields.zarr"),
            resolution=resolution,
            years=years,
            deptho=deptho,
            hidden=hidden,
        )
        if realistic:
            specs = plan_realistic_casts(int(n_profiles), resolution, years, seed, deptho)
        else:
            specs = _choose_profiles(int(n_profiles), resolution, years, seed)
        truth_rows: list[dict[str, Any]] = []
        objects: list[pd.DataFrame] = []
        n_raw_rows = 0
        for spec in specs:
            cast = _cast_noise(spec, seed) if realistic else None
            sim = ew.simulate_profile(spec, _rng(seed, 2, spec.index), noise=cast, hidden=hidden)
            ew.write_detailed_export(sim, ecopart)
            ew.write_raw_export(sim, raw_dir)
            n_raw_rows += sim.raw["depth"].size
            rows = _truth_rows(sim)
            if cast is not None:
                for row in rows:
                    row.update(
                        cruise=spec.cruise,
                        instrument=spec.instrument,
                        cast_sd_dex=cast.cast_sd_dex,
                        cast_effect=cast.cast_effect,
                    )
            truth_rows.extend(rows)
            o = sim.objects
            secs = o["depth_m"].astype("float64")  # descent at 1 m s-1
            objects.append(
                pd.DataFrame(
                    {
                        "profile_id": spec.profile_id,
                        "lat": spec.lat,
                        "lon": spec.lon,
                        "time": spec.time + pd.to_timedelta(np.floor(secs), unit="s"),
                        "depth_m": o["depth_m"],
                        "area_px": o["area_px"],
                        "esd_mm": o["esd_mm"],
                        "kind": o["kind"],
                        "basin": spec.basin,
                        "profile_index": spec.index,
                    }
                )
            )
        ew.write_metadata_summaries(specs, ecopart, raw_dir)
        profiles_truth = pd.DataFrame(truth_rows)
        profiles_truth["time"] = profiles_truth["time"].astype("datetime64[ns, UTC]")
        profiles_truth.to_parquet(truth_dir / "profiles.parquet", index=False)

        fields_info = fields.result()

    # EcoTaxa: uniform subsample of all objects, statuses, drawings
    allobj = pd.concat(objects, ignore_index=True)
    total = len(allobj)
    rng = _rng(seed, 3)
    keep = np.sort(rng.choice(total, size=min(int(n_images), total), replace=False))
    sub = allobj.iloc[keep].reset_index(drop=True)
    fraction = len(sub) / total if total else 0.0
    sub["object_id"] = [f"{p}_{j:05d}" for p, j in zip(sub["profile_id"], keep, strict=True)]
    status = rng.choice(list(_STATUS_P), size=len(sub), p=list(_STATUS_P.values()))
    kinds = list(truth.TYPES) + list(truth.GROUPS)
    wrong = (status == "predicted") & (rng.random(len(sub)) < _MISCLASSIFIED_P)
    other = rng.integers(1, len(kinds), size=len(sub))
    kind_idx = np.array([kinds.index(k) for k in sub["kind"]], dtype=int)
    sub["category"] = np.where(
        wrong, np.array(kinds, dtype=object)[(kind_idx + other) % len(kinds)], sub["kind"]
    )
    sub["status"] = status
    acq = {
        s.profile_id: {
            "instrumsn": s.calibration.instrumsn,
            "aa": s.calibration.aa,
            "exp": s.calibration.exp,
            "pixel_mm": s.calibration.pixel_mm,
            "volimage_l": s.calibration.volimage_l,
            "subsample_fraction": fraction,
            "bottom_depth_m": s.bottom_depth_m,
            **({"instrument": s.instrument_type, "cruise": s.cruise} if realistic else {}),
        }
        for s in specs
    }
    tsv_paths = []
    group = sub["profile_index"] // _PROFILES_PER_TSV
    for n, (_, part) in enumerate(sub.groupby(group, sort=True), start=1):
        path, _ = etw.write_ecotaxa_export(part, eco_dir, n=n, rng=_rng(seed, 4, n), acq=acq)
        tsv_paths.append(path.name)
    truth_objects = sub[
        ["object_id", "profile_id", "depth_m", "area_px", "esd_mm", "kind", "category", "status"]
    ].copy()
    truth_objects.to_parquet(truth_dir / "objects.parquet", index=False)

    paths = {
        "environment": str(root / "environment.zarr"),
        "ecopart_detailed": str(ecopart),
        "ecopart_raw": str(raw_dir),
        "ecotaxa": str(eco_dir),
        "truth_profiles": str(truth_dir / "profiles.parquet"),
        "truth_fields": str(truth_dir / "fields.zarr"),
        "truth_objects": str(truth_dir / "objects.parquet"),
        "world_json": str(root / "world.json"),
    }
    world = DemoWorld(
        root=str(root),
        paths=paths,
        n_profiles=len(specs),
        n_objects=len(sub),
        n_images=len(sub),
        resolution=float(resolution),
        years=years,
        seed=int(seed),
        world=kind,
    )
    info = {
        "world": kind,
        "parameters": {
            "resolution": float(resolution),
            "years": list(years),
            "n_profiles": int(n_profiles),
            "n_images": int(n_images),
            "seed": int(seed),
            "world": kind,
            **({"driver_strength": float(driver_strength)} if realistic else {}),
        },
        "software": {"oceanfields": __version__},
        "counts": {
            "profiles": len(specs),
            "raw_rows": int(n_raw_rows),
            "objects_counted": int(total),
            "objects_written": len(sub),
            "images": len(sub),
            "truth_profile_rows": len(profiles_truth),
            "by_status": {k: int((status == k).sum()) for k in _STATUS_P},
        },
        "ecotaxa": {
            "subsample_fraction": fraction,
            "object_min_esd_mm": truth.OBJECT_MIN_ESD_MM,
            "profiles_per_tsv": _PROFILES_PER_TSV,
            "tsv_files": tsv_paths,
            "status_probabilities": _STATUS_P,
            "predicted_misclassified_probability": _MISCLASSIFIED_P,
            "grey_convention": "features on inverted grey (255 - PNG), as UVP5 ZooProcess",
        },
        "ecopart": _ecopart_info(realistic),
        "environment": env_info | {"depth_levels_m": list(envmod.DEPTH_LEVELS_M)},
        "truth": {
            "types": list(truth.TYPES),
            "groups": list(truth.GROUPS),
            "plankton_sizes_mm": {k: list(v) for k, v in truth.PLANKTON_SIZES.items()},
            "layers": [list(x) for x in truth.LAYERS],
            "fields": fields_info,
            "formulas": truth.formulas(),
            "profile_env": "grid cell of the profile, month of the profile, levels "
            "interpolated linearly in depth; expected value at each 5 m bin centre",
        },
        "files": {k: str(Path(v).relative_to(root)) for k, v in paths.items()},
    }
    if realistic:
        info.update(_realistic_info(specs, driver_strength))
    (root / "world.json").write_text(json.dumps(info, indent=2, sort_keys=False) + "\n")
    logger.info(
        "demo world in %s: %d profiles, %d raw rows, %d of %d objects imaged",
        root,
        len(specs),
        n_raw_rows,
        len(sub),
        total,
    )
    return world
