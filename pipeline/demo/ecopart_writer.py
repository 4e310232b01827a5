"""Simulate UVP5 casts from the truth and write them as real EcoPart exports.

One cast is simulated metre by metre (:func:`simulate_profile`): images per metre
(20-50, 1.1 L each, so 5 m bins hold ~100-275 L), Poisson counts per size class from the
truth (:mod:`pipeline.demo.truth`) at the metre's 5 m bin centre, then an integer pixel
area for every counted object whose class (``esd_mm_from_area`` + ``class_for_esd`` with
the cast's ``aa``/``exp``) is the class it was drawn in. The raw export lists these areas
(identical areas of a metre grouped in one row with ``nbr``) and the detailed export is
derived from them exactly as EcoPart does (5 m bins, volume = sum over the bin's metres of
``imgcount`` x ``acq_volimage``), so reading either gives the same counts.

Files (latin-1, CRLF, headers copied from real EcoPart exports; see ``formats.md``):

- ``export_detailed_20210101_00_00_PAR_<profile>.tsv`` (detailed PAR export, 132 columns;
  the CTD and ``extrames`` columns are left empty),
- ``export_detailed_20210101_00_00_Export_metadata_summary.tsv`` (2021 QA style header,
  ``Latitude `` with its trailing space),
- ``raw/<yyyymmddhhmmss>_<profile>_PAR_raw_20210101_00_00.tsv`` (``depth imgcount area nbr
  greylimit1 greylimit2 greylimit3``; depth = whole metre, depth offset 0),
- ``raw/export_raw_20210101_00_00_Export_metadata_summary.tsv`` (the 90 columns of the
  real raw metadata summary).

All casts are UVP5 (HD, 0.092 mm pixels) with one of two calibrations,
:data:`CALIBRATIONS`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline import sizeclasses
from pipeline.demo import noise as nz
from pipeline.demo import truth
from pipeline.demo.noise import Calibration

if TYPE_CHECKING:
    from pipeline.demo.drivers import HiddenWorld
    from pipeline.demo.noise import CastNoise

__all__ = [
    "CALIBRATIONS",
    "EXPORT_STAMP",
    "RAW_METADATA_COLUMNS",
    "Calibration",
    "ProfileSpec",
    "SimulatedProfile",
    "detailed_table",
    "simulate_profile",
    "spec_at_cell",
    "write_detailed_export",
    "write_metadata_summaries",
    "write_raw_export",
]

logger = logging.getLogger(__name__)

#: Fixed export time stamp in every file name (no wall clock: the world is deterministic).
EXPORT_STAMP = "20210101_00_00"

#: Header of the detailed export's metadata summary (EcoPart 2021 QA files, verbatim).
DETAILED_METADATA_COLUMNS: tuple[str, ...] = (
    "profile",
    "Cruise",
    "Site",
    "DataOwner",
    "Rawfilename",
    "Instrument",
    "CTDrosettefilename",
    "yyyy-mm-dd hh:mm",
    "Latitude ",
    "Longitude",
    "aa",
    "exp",
    "Pixel size",
    "Particle filename",
    "Plankton filename",
    "Project",
)

#: Header of the raw export's metadata summary (90 columns, real BATS 361 export).
RAW_METADATA_COLUMNS: tuple[str, ...] = tuple(
    "psampleid,pprojid,profileid,filename,sampleid,latitude,longitude,organizedbydeepth,"
    "histobrutavailable,qualitytaxo,qualitypart,daterecalculhistotaxo,winddir,winspeed,"
    "seastate,nebuloussness,comment,stationid,firstimage,lastimg,lastimgused,bottomdepth,"
    "yoyo,sampledate,op_sample_name,op_sample_email,ctd_desc,ctd_origfilename,"
    "ctd_import_name,ctd_import_email,ctd_import_datetime,ctd_status,instrumsn,acq_aa,"
    "acq_exp,acq_volimage,acq_depthoffset,acq_pixel,acq_shutterspeed,acq_smzoo,"
    "acq_exposure,acq_gain,acq_filedescription,acq_eraseborder,acq_tasktype,acq_threshold,"
    "acq_choice,acq_disktype,acq_smbase,acq_ratio,acq_descent_filter,acq_presure_gain,"
    "acq_xsize,acq_ysize,acq_barcode,proc_datetime,proc_gamma,proc_soft,"
    "lisst_zscat_filename,lisst_kernel,txt_data01,txt_data02,txt_data03,txt_data04,"
    "txt_data05,txt_data06,txt_data07,txt_data08,txt_data09,txt_data10,ptitle,rawfolder,"
    "ownerid,projid,instrumtype,op_name,op_email,cs_name,cs_email,do_name,do_email,"
    "prj_info,prj_acronym,cruise,ship,default_instrumsn,default_depthoffset,"
    "Particle filename,CTD filename,Plankton filename".split(",")
)

#: CTD columns of the detailed PAR export (after the 90 LPM columns), verbatim.
CTD_COLUMNS: tuple[str, ...] = (
    "chloro fluo [mg chl m-3]",
    "conductivity [ms cm-1]",
    "cpar [%]",
    "depth [m]",
    "fcdom [ppb qse]",
    "in situ density anomaly [kg m-3]",
    "nitrate [umol l-1]",
    "oxygen [umol kg-1]",
    "oxygen [ml l-1]",
    "par [umol m-2 s-1]",
    "potential density anomaly [kg m-3]",
    "potential temperature [degc]",
    "practical salinity [psu]",
    "pressure [db]",
    "qc flag",
    "spar [umol m-2 s-1]",
    "temperature [degc]",
    *(f"extrames{i:02d}" for i in range(1, 21)),
)

_EDGES = sizeclasses.edges_mm("detailed")
_N_CLASSES = _EDGES.size - 1
_FIRST = int(np.searchsorted(_EDGES, truth.MIN_ESD_MM - 1e-12))
_FIRST_OBJECT = int(np.searchsorted(_EDGES, truth.OBJECT_MIN_ESD_MM - 1e-12))
_MAX_ESD_MM = 40.0
_PROJECT = "oceanfields demo world (synthetic UVP5)"
_OWNER = "oceanfields demo (demo@example.org)"


#: The two UVP5HD units of the demo (the second one is the real BATS 361 sn209 setting).
CALIBRATIONS: tuple[Calibration, ...] = (
    Calibration("sn001", 0.0023, 1.136),
    Calibration("sn209", 0.00279, 1.2236),
)


@dataclass(frozen=True)
class ProfileSpec:
    """Where and when a cast was made and with which unit."""

    index: int
    profile_id: str
    lat: float
    lon: float
    cell_lat: float
    cell_lon: float
    time: pd.Timestamp
    max_depth_m: int
    bottom_depth_m: float
    basin: str
    calibration: Calibration
    cruise: str = "demo_cruise"
    site: str = ""
    project: str = _PROJECT
    instrument: str = "UVP5HD"

    @property
    def instrument_type(self) -> str:
        """``uvp5`` or ``uvp6``, as EcoPart's ``Instrument`` / ``instrumtype`` columns say."""
        return "uvp6" if self.instrument.upper().startswith("UVP6") else "uvp5"

    @property
    def stamp(self) -> str:
        """``yyyymmddhhmmss`` of the cast start (EcoPart raw file names)."""
        return self.time.strftime("%Y%m%d%H%M%S")


def spec_at_cell(
    index: int,
    cell: tuple[float, float],
    offset: np.ndarray,
    *,
    time: pd.Timestamp,
    bottom_m: float,
    max_depth_m: int,
    basin: str,
    calibration: Calibration,
    **extra: str,
) -> ProfileSpec:
    """Build the :class:`ProfileSpec` of cast ``index`` at ``cell`` + ``offset`` (degrees).

    ``profile_id`` is ``demo_<index + 1>`` (4 digits); the position is rounded to 5
    decimals; a cast reaches at least 5 m. ``extra``: ``cruise``, ``site``, ``project``,
    ``instrument``.
    """
    cell_lat, cell_lon = cell
    return ProfileSpec(
        index=index,
        profile_id=f"demo_{index + 1:04d}",
        lat=float(round(cell_lat + offset[0], 5)),
        lon=float(round(cell_lon + offset[1], 5)),
        cell_lat=cell_lat,
        cell_lon=cell_lon,
        time=time,
        max_depth_m=max(max_depth_m, 5),
        bottom_depth_m=bottom_m,
        basin=basin,
        calibration=calibration,
        **extra,
    )


@dataclass
class SimulatedProfile:
    """One simulated cast: raw rows, objects >= 1.02 mm and the expected values per bin."""

    spec: ProfileSpec
    imgcount: np.ndarray  # (n_metres,) images per metre
    raw: dict[str, np.ndarray]  # depth, imgcount, area, nbr, greylimit1-3 (one per row)
    objects: dict[str, np.ndarray]  # depth_m, area_px, esd_mm, kind (type or group name)
    bin_depth_m: np.ndarray  # (n_bins,) bin centres
    expected: dict[str, np.ndarray] = field(default_factory=dict)  # per bin, # L-1


def _area_tables(cal: Calibration) -> list[tuple[int, int, np.ndarray]]:
    """Per detailed class: (first area, last area, area weights) of integer pixel areas."""
    a_max = math.ceil((math.pi * (_MAX_ESD_MM / 2) ** 2 / cal.aa) ** (1.0 / cal.exp)) + 2
    areas = np.arange(1, a_max + 1)
    cls = sizeclasses.class_for_esd(sizeclasses.esd_mm_from_area(areas, cal.aa, cal.exp), _EDGES)
    tables: list[tuple[int, int, np.ndarray]] = []
    for k in range(_N_CLASSES):
        sel = areas[cls == k]
        if k < _FIRST:
            tables.append((0, -1, np.zeros(0)))
            continue
        if sel.size == 0:
            raise ValueError(
                f"UVP calibration {cal}: no integer pixel area falls in the size class "
                f"{_EDGES[k]}-{_EDGES[k + 1]} mm; choose aa/exp resolving classes >= "
                f"{truth.MIN_ESD_MM} mm"
            )
        lo, hi = _EDGES[k], min(_EDGES[k + 1], _MAX_ESD_MM)
        d1 = np.clip(sizeclasses.esd_mm_from_area(sel - 0.5, cal.aa, cal.exp), lo, hi)
        d2 = np.clip(sizeclasses.esd_mm_from_area(sel + 0.5, cal.aa, cal.exp), lo, hi)
        d1[0], d2[-1] = lo, hi
        w = d1**-3.0 - d2**-3.0
        tables.append((int(sel[0]), int(sel[-1]), w / w.sum()))
    return tables


_TABLES: dict[Calibration, list[tuple[int, int, np.ndarray]]] = {}


def _tables(cal: Calibration) -> list[tuple[int, int, np.ndarray]]:
    if cal not in _TABLES:
        _TABLES[cal] = _area_tables(cal)
    return _TABLES[cal]


def _esd_to_area(esd_mm: np.ndarray, cal: Calibration) -> np.ndarray:
    return (np.pi * (esd_mm / 2.0) ** 2 / cal.aa) ** (1.0 / cal.exp)


def simulate_profile(
    spec: ProfileSpec,
    rng: np.random.Generator,
    *,
    noise: CastNoise | None = None,
    hidden: HiddenWorld | None = None,
) -> SimulatedProfile:
    """Simulate one cast: counts per metre and class, pixel areas, objects >= 1.02 mm.

    Parameters
    ----------
    spec : ProfileSpec
        Position, time, maximum depth (m, multiple of 5) and UVP unit.
    rng : numpy.random.Generator
        The cast's own generator (same generator state, same cast).
    noise : CastNoise, optional
        The realistic world's noise (:mod:`pipeline.demo.noise`: 6-20 images per metre,
        cast effect, calibration offsets, patchiness, gamma-Poisson counts); default the
        simple world's (20-50 images per metre, Poisson counts).
    hidden : HiddenWorld, optional
        The realistic world's hidden drivers and fine environment (the truth).

    Returns
    -------
    SimulatedProfile
    """
    cal = spec.calibration
    tables = _tables(cal)
    n_m = spec.max_depth_m
    metres = np.arange(n_m)
    n_bins = n_m // 5
    bin_depth = 2.5 + 5.0 * np.arange(n_bins)
    extra = {} if hidden is None else {"hidden": hidden, "bottom_m": spec.bottom_depth_m}
    env = truth.environment_at(
        spec.cell_lat,
        spec.cell_lon,
        year=spec.time.year,
        month=spec.time.month,
        depth_m=bin_depth,
        **extra,
    )
    conc = truth.expected_concentrations(env)
    fractions = truth.type_fractions(env)
    b = metres // 5
    if noise is None:
        imgcount = rng.integers(20, 51, size=n_m)
        vol_m = imgcount * cal.volimage_l
        lam = conc["particles"][b] * vol_m[:, None]  # (n_m, 45)
        lam_big = lam
        plank_m = None
    else:
        imgcount, lam, lam_big, plank_m = _noisy_rates(conc, b, cal, noise, rng)
    # small classes: Poisson counts per metre and class, then areas by multinomial
    rows_m: list[np.ndarray] = []
    rows_a: list[np.ndarray] = []
    rows_n: list[np.ndarray] = []
    for k in range(_FIRST, _FIRST_OBJECT):
        a0, _a1, w = tables[k]
        n = rng.poisson(lam[:, k])
        if w.size == 1:
            counts = n[:, None]
        else:
            counts = rng.multinomial(n, w)
        mm, jj = np.nonzero(counts)
        rows_m.append(mm)
        rows_a.append(a0 + jj)
        rows_n.append(counts[mm, jj])
    # large classes: individuals (particles with a type, plankton with a group)
    obj_m: list[np.ndarray] = []
    obj_k: list[np.ndarray] = []
    obj_kind: list[np.ndarray] = []
    n_types = len(truth.TYPES)
    n_part = rng.poisson(lam_big[:, _FIRST_OBJECT:])  # (n_m, K)
    mm, kk = np.nonzero(n_part)
    reps = n_part[mm, kk]
    pm = np.repeat(mm, reps)
    pk = np.repeat(kk + _FIRST_OBJECT, reps)
    cum = np.cumsum(fractions[pm // 5], axis=1)
    u = rng.random(pm.size)
    ptype = np.minimum((u[:, None] > cum).sum(axis=1), n_types - 1)
    obj_m.append(pm)
    obj_k.append(pk)
    obj_kind.append(ptype)
    p_class = truth.plankton_class_probabilities()[:, _FIRST_OBJECT:]  # (4, K)
    if plank_m is None:  # the simple world's expression, bit for bit
        lam_pl = conc["plankton"][b][:, :, None] * p_class[None] * vol_m[:, None, None]
    else:
        lam_pl = plank_m[:, :, None] * p_class[None]
    n_pl = rng.poisson(lam_pl)  # (n_m, 4, K)
    mm, gg, kk = np.nonzero(n_pl)
    reps = n_pl[mm, gg, kk]
    obj_m.append(np.repeat(mm, reps))
    obj_k.append(np.repeat(kk + _FIRST_OBJECT, reps))
    obj_kind.append(np.repeat(gg + n_types, reps))
    om = np.concatenate(obj_m)
    ok = np.concatenate(obj_k)
    okind = np.concatenate(obj_kind)
    lo = _EDGES[ok]
    hi = np.minimum(_EDGES[ok + 1], _MAX_ESD_MM)
    slope = 4.0
    u = rng.random(om.size)
    e = 1.0 - slope
    esd_c = (lo**e - u * (lo**e - hi**e)) ** (1.0 / e)
    area = np.rint(_esd_to_area(esd_c, cal)).astype(np.int64)
    amin = np.array([tables[k][0] for k in range(_N_CLASSES)])
    amax = np.array([tables[k][1] for k in range(_N_CLASSES)])
    area = np.clip(area, amin[ok], amax[ok])
    rows_m.append(om)
    rows_a.append(area)
    rows_n.append(np.ones(om.size, dtype=np.int64))
    # group identical (metre, area)
    m_all = np.concatenate(rows_m).astype(np.int64)
    a_all = np.concatenate(rows_a).astype(np.int64)
    n_all = np.concatenate(rows_n).astype(np.int64)
    key = m_all * (1 << 32) + a_all
    uniq, inv = np.unique(key, return_inverse=True)
    nbr = np.bincount(inv, weights=n_all).astype(np.int64)
    depth = uniq >> 32
    areas = uniq & ((1 << 32) - 1)
    g1 = rng.integers(3, 30, size=uniq.size)
    g2 = g1 + rng.integers(0, 20, size=uniq.size)
    g3 = g2 + rng.integers(0, 30, size=uniq.size)
    single = nbr == 1
    g2[single] = g1[single]
    g3[single] = g1[single]
    raw = {
        "depth": depth,
        "imgcount": imgcount[depth],
        "area": areas,
        "nbr": nbr,
        "greylimit1": g1,
        "greylimit2": g2,
        "greylimit3": g3,
    }
    kinds = np.array(list(truth.TYPES) + list(truth.GROUPS), dtype=object)
    objects = {
        "depth_m": om + np.round(rng.random(om.size), 1),
        "area_px": area,
        "esd_mm": sizeclasses.esd_mm_from_area(area, cal.aa, cal.exp),
        "kind": kinds[okind],
    }
    volume_bin = np.bincount(b, weights=imgcount * cal.volimage_l, minlength=n_bins)
    expected = {
        "volume_l": volume_bin,
        "classes": conc["classes"],
        "types": conc["types"],
        "plankton": conc["plankton"],
    }
    return SimulatedProfile(spec, imgcount, raw, objects, bin_depth, expected)


def _noisy_rates(
    conc: dict[str, np.ndarray],
    b: np.ndarray,
    cal: Calibration,
    noise: CastNoise,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images per metre and the expected counts per metre under the realistic noise."""
    n_m = b.size
    lo, hi = nz.IMAGES_PER_METRE
    imgcount = rng.integers(lo, hi + 1, size=n_m)
    vol_m = imgcount * cal.volimage_l
    common = vol_m * noise.cast_effect * nz.patchiness(rng, n_m)  # (n_m,)
    gam = rng.gamma(nz.GAMMA_SHAPE, 1.0 / nz.GAMMA_SHAPE, size=(n_m, _N_CLASSES))
    base = conc["particles"][b] * common[:, None] * gam
    lam = base * nz.class_offsets(noise.instrument)[None, :]
    gam_pl = rng.gamma(nz.GAMMA_SHAPE, 1.0 / nz.GAMMA_SHAPE, size=(n_m, len(truth.GROUPS)))
    plank = conc["plankton"][b] * common[:, None] * gam_pl
    return imgcount, lam, base, plank


def detailed_table(sim: SimulatedProfile) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Derive counts and biovolumes per 5 m bin from the raw rows, as EcoPart does.

    Parameters
    ----------
    sim : SimulatedProfile

    Returns
    -------
    bin_depth_m, volume_l, counts, biovolume_mm3 : numpy.ndarray
        Bins holding raw rows; counts and biovolumes have shape ``(n_bins, 45)``.
    """
    cal = sim.spec.calibration
    raw = sim.raw
    centre = sizeclasses.depth_bin_centre(raw["depth"], 5.0)
    bins, inv = np.unique(centre, return_inverse=True)
    # volume: distinct metres of each bin, imgcount x acq_volimage
    metres, first = np.unique(raw["depth"], return_index=True)
    mvol = raw["imgcount"][first] * cal.volimage_l
    mbin = np.searchsorted(bins, sizeclasses.depth_bin_centre(metres, 5.0))
    volume = np.bincount(mbin, weights=mvol, minlength=bins.size)
    esd = sizeclasses.esd_mm_from_area(raw["area"], cal.aa, cal.exp)
    cls = sizeclasses.class_for_esd(esd, _EDGES)
    # bincount adds in the rows' order, as np.add.at did: the same sums, 10x faster
    cell = inv * _N_CLASSES + cls
    size = bins.size * _N_CLASSES
    counts = np.bincount(cell, weights=raw["nbr"], minlength=size).reshape(bins.size, -1)
    biov = np.bincount(cell, weights=raw["nbr"] * np.pi / 6.0 * esd**3, minlength=size)
    return bins, volume, counts, biov.reshape(bins.size, -1)


def _fmt_floats(values: np.ndarray) -> pa.Array:
    """Shortest round-trip text of floats as Python's ``repr`` writes it, ``0.0`` for zeros.

    The text EcoPart's Python export writes, made by Arrow for a flat array (its cast
    gives the same shortest digits and, between 1e-4 and 1e9, the same fixed notation);
    the rare whole numbers (Arrow leaves out ``.0``) and values outside that range (Python
    writes an exponent) take ``repr`` itself.
    """
    flat = np.ascontiguousarray(values, dtype="float64").ravel()
    nonzero = flat != 0.0
    found = flat[nonzero]
    text = pc.cast(pa.array(found), pa.string())
    with np.errstate(invalid="ignore"):
        odd = (found == np.trunc(found)) | (np.abs(found) < 1e-4) | ~(np.abs(found) < 1e9)
    if odd.any():
        text = pc.replace_with_mask(
            text, pa.array(odd), pa.array(list(map(repr, found[odd].tolist())), pa.string())
        )
    zeros = pa.repeat(pa.scalar("0.0", pa.string()), flat.size)
    return pc.replace_with_mask(zeros, pa.array(nonzero), text)


def _write_latin1(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))


def detailed_name(spec: ProfileSpec) -> str:
    """File name of a cast's detailed PAR export."""
    return f"export_detailed_{EXPORT_STAMP}_PAR_{spec.profile_id}.tsv"


def raw_name(spec: ProfileSpec) -> str:
    """File name of a cast's raw PAR export."""
    return f"{spec.stamp}_{spec.profile_id}_PAR_raw_{EXPORT_STAMP}.tsv"


@functools.cache
def _detailed_header() -> tuple[str, ...]:
    """Name the 132 columns of the detailed PAR export (real EcoPart labels)."""
    lo, hi = _EDGES[:-1], _EDGES[1:]
    return tuple(
        ["Profile", "Rawfilename", "yyyy-mm-dd hh:mm", "Depth [m]", "Sampled volume [L]"]
        + [sizeclasses.export_label(a, b) for a, b in zip(lo, hi, strict=True)]
        + [
            sizeclasses.export_label(a, b)
            .replace("LPM (", "LPM biovolume (")
            .replace("[# l-1]", "[mm3 l-1]")
            for a, b in zip(lo, hi, strict=True)
        ]
        + list(CTD_COLUMNS)
    )


def write_detailed_export(sim: SimulatedProfile, folder: str | Path) -> Path:
    """Write the detailed PAR export of one cast (latin-1, CRLF, 132 columns).

    Parameters
    ----------
    sim : SimulatedProfile
    folder : str or pathlib.Path
        The ``ecopart`` folder.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    spec = sim.spec
    bins, volume, counts, biov = detailed_table(sim)
    header = _detailed_header()
    n = bins.size
    values = np.hstack([counts / volume[:, None], biov / volume[:, None]])
    text = _fmt_floats(values.T)  # column by column: column j is text[j * n : (j + 1) * n]
    lead = [
        [spec.profile_id] * n,
        [f"HDR{spec.stamp}"] * n,
        [spec.time.strftime("%Y-%m-%d %H:%M:%S")] * n,
        [repr(float(d)) for d in bins],
        [repr(round(float(v), 6)) for v in volume],
    ]
    columns = [pa.array(c, pa.string()) for c in lead]
    columns += [text.slice(j * n, n) for j in range(values.shape[1])]
    columns += [pa.array([""] * n, pa.string())] * len(CTD_COLUMNS)
    path = Path(folder) / detailed_name(spec)
    _write_table(path, header, pa.table(columns, names=[str(i) for i in range(len(header))]))
    return path


def write_raw_export(sim: SimulatedProfile, folder: str | Path) -> Path:
    """Write the raw PAR export of one cast (``depth imgcount area nbr greylimit1-3``).

    Parameters
    ----------
    sim : SimulatedProfile
    folder : str or pathlib.Path
        The ``ecopart/raw`` folder.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    cols = ("depth", "imgcount", "area", "nbr", "greylimit1", "greylimit2", "greylimit3")
    table = pa.table({c: np.asarray(sim.raw[c], dtype=np.int64) for c in cols})
    path = Path(folder) / raw_name(sim.spec)
    _write_table(path, cols, table)
    return path


def _write_table(path: Path, header: Sequence[str], table: pa.Table) -> None:
    """Write a latin-1 header and the table's rows, tab-separated, CRLF, never quoted."""
    buf = pa.BufferOutputStream()
    options = pacsv.WriteOptions(
        include_header=False, delimiter="\t", quoting_style="none", eol="\r\n"
    )
    pacsv.write_csv(table, buf, options)
    path.write_bytes(("\t".join(header) + "\r\n").encode("latin-1") + buf.getvalue().to_pybytes())


def write_metadata_summaries(
    specs: Sequence[ProfileSpec], ecopart: str | Path, raw_folder: str | Path
) -> tuple[Path, Path]:
    """Write the detailed (16 columns) and raw (90 columns) metadata summaries.

    Parameters
    ----------
    specs : sequence of ProfileSpec
    ecopart, raw_folder : str or pathlib.Path
        The ``ecopart`` and ``ecopart/raw`` folders.

    Returns
    -------
    tuple of pathlib.Path
        Detailed summary, raw summary.
    """
    det_rows = []
    raw_rows = []
    for s in specs:
        cal = s.calibration
        date = s.time.strftime("%Y-%m-%d %H:%M:%S")
        det_rows.append(
            [
                s.profile_id,
                s.cruise,
                s.site or s.basin,
                _OWNER,
                f"HDR{s.stamp}",
                s.instrument_type,
                "",
                date,
                repr(round(float(s.lat), 5)),
                repr(round(float(s.lon), 5)),
                repr(cal.aa),
                repr(cal.exp),
                repr(cal.pixel_mm),
                detailed_name(s),
                "no data available",
                s.project,
            ]
        )
        values = dict.fromkeys(RAW_METADATA_COLUMNS, "")
        values.update(
            {
                "psampleid": str(100000 + s.index),
                "pprojid": "1",
                "profileid": s.profile_id,
                "filename": s.stamp,
                "sampleid": str(200000 + s.index),
                "latitude": repr(round(float(s.lat), 5)),
                "longitude": repr(round(float(s.lon), 5)),
                "organizedbydeepth": "True",
                "histobrutavailable": "True",
                "winddir": "0",
                "winspeed": "0",
                "seastate": "0",
                "nebuloussness": "0",
                "comment": "synthetic",
                "stationid": s.site or s.basin,
                "firstimage": "1",
                "lastimg": "99999999999",
                "bottomdepth": str(int(s.bottom_depth_m)),
                "yoyo": "False",
                "sampledate": date,
                "instrumsn": cal.instrumsn,
                "acq_aa": repr(cal.aa),
                "acq_exp": repr(cal.exp),
                "acq_volimage": repr(cal.volimage_l),
                "acq_pixel": repr(cal.pixel_mm),
                "acq_smzoo": "80",
                "acq_exposure": "130",
                "acq_gain": "200",
                "acq_filedescription": f"{s.instrument.lower()} {cal.instrumsn} : demo",
                "acq_eraseborder": "0",
                "acq_tasktype": "2",
                "acq_threshold": "3",
                "acq_choice": "0",
                "acq_disktype": "0",
                "acq_smbase": "2",
                "acq_ratio": "3",
                "acq_descent_filter": "True",
                "acq_xsize": "2048",
                "acq_ysize": "2048",
                "proc_soft": "Zooprocess",
                "ptitle": s.project,
                "rawfolder": "demo/uvp5",
                "ownerid": _OWNER,
                "projid": "1",
                "instrumtype": s.instrument_type,
                "op_name": "oceanfields",
                "op_email": "demo@example.org",
                "cs_name": "oceanfields",
                "cs_email": "demo@example.org",
                "do_name": "oceanfields",
                "do_email": "demo@example.org",
                "prj_acronym": "demo",
                "cruise": s.cruise,
                "ship": "demo",
                "default_instrumsn": cal.instrumsn,
                "default_depthoffset": "0.0",
                "Particle filename": raw_name(s),
                "CTD filename": "no data available",
                "Plankton filename": "no data available",
            }
        )
        raw_rows.append([values[c] for c in RAW_METADATA_COLUMNS])
    det = Path(ecopart) / f"export_detailed_{EXPORT_STAMP}_Export_metadata_summary.tsv"
    raw = Path(raw_folder) / f"export_raw_{EXPORT_STAMP}_Export_metadata_summary.tsv"
    _write_latin1(det, DETAILED_METADATA_COLUMNS, det_rows)
    _write_latin1(raw, RAW_METADATA_COLUMNS, raw_rows)
    return det, raw
