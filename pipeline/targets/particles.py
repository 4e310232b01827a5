"""Targets: volume-weighted particle concentrations per profile and depth layer.

From the canonical particles table (counts per 5 m bin and EcoPart size class,
volume sampled per bin), :func:`build_targets` sums counts and volumes over the bins of
each depth layer and divides: concentration = sum(counts) / sum(volume) (#/L), never an
average of concentrations. EcoPart classes are merged into the coarser target classes
of :class:`TargetConfig` (an EcoPart class belongs to the target class holding its
lower edge). A derived carbon-flux target follows Guidi et al. (2008, Deep-Sea Res. I
55, 1364-1374):

    F = sum_i C_i * A * d_i ** b        (mg C m-2 d-1)

with C_i the concentration of EcoPart class i in # L-1 (as EcoPart exports it), d_i its
geometric-mean ESD in mm, A = 12.5 and b = 3.81 (configurable), over classes inside
``flux_range_um``. The concentration in # L-1, not # m-3: with # m-3 the real BATS UVP5
casts of ``shared/data/ecotaxatools_bats361_uvp5`` give 4,657 mg C m-2 d-1 in 0-100 m, ten
times the site's primary production, and the demo world ~950 Pg C yr-1 through 100 m;
with # L-1 they give 4.7 mg C m-2 d-1 (sediment traps at BATS: tens) and ~1 Pg C yr-1
(published export at the base of the euphotic zone: 5.8-6.1). The same reading (# L-1 mm-1
times the bin width in mm) is that of the CCE-LTER UVP flux code that compares Guidi's
flux with sediment traps and thorium export.

A profile that does not cover a layer well enough (sampled volume below
``min_volume_l`` or depth coverage below ``min_coverage``) yields no row for that
layer; the skipped (profile, layer) pairs are returned beside the targets, with the
reason, so they can be counted in the report.

Developer note: the work is one ``map_partitions`` over the particles table, so the
graph grows with partitions (files), not rows. Readers put each profile in one
partition (one file); a profile split across files would be summed per part.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.config import check_choice, check_positive, check_range, config_error
from pipeline.errors import ConfigError
from pipeline.sizeclasses import class_column

__all__ = [
    "DEFAULT_LAYERS",
    "Layer",
    "TargetConfig",
    "TargetsResult",
    "build_targets",
    "class_groups",
    "flux_diameters_mm",
    "guidi_flux",
    "inverse_transform",
    "particle_classes",
    "target_columns",
    "transform",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layer:
    """A depth layer, metres positive down, ``[top_m, bottom_m)``."""

    top_m: float
    bottom_m: float

    @property
    def name(self) -> str:
        """Self-describing name, e.g. ``"0-100m"``."""
        return f"{self.top_m:g}-{self.bottom_m:g}m"


#: The default layers: 0-100, 100-500 and 500-1000 m.
DEFAULT_LAYERS: tuple[Layer, ...] = (Layer(0, 100), Layer(100, 500), Layer(500, 1000))


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    """Options of :func:`build_targets` (defaults live here only).

    Attributes
    ----------
    layers : tuple of Layer
        Depth layers.
    size_edges_um : tuple of float
        Edges of the target size classes (ESD, µm, ascending; last may be inf).
    min_volume_l : float
        Minimum volume sampled in a layer (L) for a row.
    min_coverage : float
        Minimum fraction of the layer's height covered by sampled bins.
    bin_m : float
        Height of the particles table's depth bins (m).
    flux_a, flux_b : float
        Guidi et al. (2008) flux coefficients (d in mm, flux in mg C m-2 d-1).
    flux_range_um : tuple of float
        ESD range (µm) of the classes in the flux sum.
    transform : {"log10", "none"}
        Training transform recorded with the targets.
    epsilon_per_l : float
        Offset of ``log10(c + epsilon)`` (same unit as each target).
    """

    layers: tuple[Layer, ...] = DEFAULT_LAYERS
    size_edges_um: tuple[float, ...] = (102.0, 203.0, 512.0, 2050.0, math.inf)
    min_volume_l: float = 50.0
    min_coverage: float = 0.8
    bin_m: float = 5.0
    flux_a: float = 12.5
    flux_b: float = 3.81
    flux_range_um: tuple[float, float] = (102.0, 2580.0)
    transform: Literal["log10", "none"] = "log10"
    epsilon_per_l: float = 1e-3

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        edges = self.size_edges_um
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise config_error(
                "targets.size_edges_um", edges, "expected at least 2 ascending edges (µm)"
            )
        check_choice("targets.transform", self.transform, ("log10", "none"))
        for layer in self.layers:
            if not layer.bottom_m > layer.top_m >= 0:
                raise config_error("targets.layers", layer, "expected 0 <= top_m < bottom_m (m)")
        check_range("targets.min_volume_l", self.min_volume_l, low=0, unit="L")
        check_range("targets.min_coverage", self.min_coverage, low=0, high=1)
        check_positive("targets.bin_m", self.bin_m, unit="m")
        if self.transform == "log10":
            check_positive("targets.epsilon_per_l", self.epsilon_per_l)


@dataclass
class TargetsResult:
    """Targets and the (profile, layer) pairs skipped, both lazy.

    Attributes
    ----------
    targets : dask.dataframe.DataFrame
        ``id, lat, lon, time, cruise, layer, layer_top_m, layer_bottom_m, volume_l,
        coverage``, one ``conc_<lo>_<hi>um_per_l`` column per target class,
        ``flux_mgc_m2_d`` and ``weight`` (the volume sampled). ``cruise`` is the
        particles table's (empty when it has none), what the cruise-grouped random CV
        groups by.
    skipped : dask.dataframe.DataFrame
        ``id, layer, volume_l, coverage, reason`` of the pairs left out.
    targets_columns : list of str
        The target variables (concentrations and flux).
    transform : dict
        The training transform (``{"name": "log10", "epsilon": ...}``).
    """

    targets: dd.DataFrame
    skipped: dd.DataFrame
    targets_columns: list[str] = field(default_factory=list)
    transform: dict[str, object] = field(default_factory=dict)


def particle_classes(columns: Sequence[str]) -> list[tuple[str, float, float]]:
    """Find the count columns ``n_<lo>_<hi>um`` of a particles table.

    Parameters
    ----------
    columns : sequence of str
        Column names.

    Returns
    -------
    list of (str, float, float)
        ``(column, lo_um, hi_um)`` in the order given.

    Examples
    --------
    >>> particle_classes(["depth_m", "n_102_128um", "n_26000_infum", "n_1p26_1p59um"])
    [('n_102_128um', 102.0, 128.0), ('n_26000_infum', 26000.0, inf), ('n_1p26_1p59um', 1.26, 1.59)]
    """
    out = []
    for col in columns:
        if col.startswith("n_") and col.endswith("um"):
            lo, _, hi = col[2:-2].partition("_")
            out.append((col, float(lo.replace("p", ".")), float(hi.replace("p", "."))))
    return out


def _target_name(lo_um: float, hi_um: float) -> str:
    return "conc_" + class_column(lo_um / 1000.0, hi_um / 1000.0)[2:-2] + "um_per_l"


def class_groups(
    classes: Sequence[tuple[str, float, float]], *, config: TargetConfig
) -> dict[str, list[str]]:
    """Group size-class columns into the target classes holding their lower edge.

    An EcoPart class ``[lo, hi)`` belongs to the target class ``[e_k, e_k+1)`` of
    ``config.size_edges_um`` with ``e_k <= lo < e_k+1``; classes below the first edge or
    at/above the last are in no target class.

    Parameters
    ----------
    classes : sequence of (str, float, float)
        ``(column, lo_um, hi_um)`` per size class, as :func:`particle_classes` finds them.
    config : TargetConfig
        The target size classes (``size_edges_um``, ESD in µm).

    Returns
    -------
    dict of str to list of str
        Target column -> the class columns it sums, both in the order of ``classes``;
        target classes no column falls in are left out.

    See Also
    --------
    guidi_flux : the flux target over the same classes.

    Examples
    --------
    >>> classes = particle_classes(["n_80p6_102um", "n_102_128um", "n_128_161um", "n_203_256um"])
    >>> class_groups(classes, config=TargetConfig())
    {'conc_102_203um_per_l': ['n_102_128um', 'n_128_161um'],
     'conc_203_512um_per_l': ['n_203_256um']}
    """
    edges = np.asarray(config.size_edges_um)
    groups: dict[str, list[str]] = {}
    for col, lo, _ in classes:
        k = int(np.searchsorted(edges, lo, side="right")) - 1
        if 0 <= k < len(edges) - 1:
            groups.setdefault(_target_name(edges[k], edges[k + 1]), []).append(col)
    return groups


def flux_diameters_mm(
    classes: Sequence[tuple[str, float, float]], *, config: TargetConfig
) -> dict[str, float]:
    """Geometric-mean ESD (mm) of the size classes inside ``config.flux_range_um``.

    Parameters
    ----------
    classes : sequence of (str, float, float)
        ``(column, lo_um, hi_um)`` per size class, as :func:`particle_classes` finds them.
    config : TargetConfig
        ``flux_range_um``: a class counts when ``lo >= range[0]`` and ``hi <= range[1]``.

    Returns
    -------
    dict of str to float
        Column -> ``sqrt(lo * hi) / 1000`` (mm), in the order of ``classes``.

    Examples
    --------
    >>> classes = particle_classes(["n_80p6_102um", "n_250_1000um", "n_2050_2580um"])
    >>> flux_diameters_mm(classes, config=TargetConfig(flux_range_um=(100.0, 2000.0)))
    {'n_250_1000um': 0.5}
    """
    lo_um, hi_um = config.flux_range_um
    return {
        col: math.sqrt(lo * hi) / 1000.0 for col, lo, hi in classes if lo_um <= lo and hi <= hi_um
    }


def guidi_flux(
    conc_per_l: pd.DataFrame,
    classes: Sequence[tuple[str, float, float]],
    *,
    config: TargetConfig,
) -> np.ndarray:
    """Carbon flux of Guidi et al. (2008) from per-class concentrations.

    ``F = sum_i C_i * A * d_i ** b`` (mg C m-2 d-1) with ``C_i`` in # L-1 (see the module
    docstring for why not # m-3), ``d_i`` from :func:`flux_diameters_mm`,
    ``A = config.flux_a`` and ``b = config.flux_b``; the terms are added in the order of
    ``classes``.

    Parameters
    ----------
    conc_per_l : pandas.DataFrame
        Concentration (# L-1) of each size class in the flux range, one column per class
        named as in ``classes`` (other columns are ignored).
    classes : sequence of (str, float, float)
        ``(column, lo_um, hi_um)`` per size class.
    config : TargetConfig
        ``flux_a``, ``flux_b`` and ``flux_range_um``.

    Returns
    -------
    numpy.ndarray
        The flux per row (mg C m-2 d-1); zeros where no class is in the range.

    See Also
    --------
    class_groups : the concentration targets over the same classes.

    Examples
    --------
    >>> classes = [("n_1000_1000um", 1000.0, 1000.0)]
    >>> conc = pd.DataFrame({"n_1000_1000um": [0.0, 2.0]})
    >>> guidi_flux(conc, classes, config=TargetConfig(flux_a=12.5)).tolist()   # d = 1 mm
    [0.0, 25.0]
    """
    flux = np.zeros(len(conc_per_l))
    for col, d_mm in flux_diameters_mm(classes, config=config).items():
        flux += conc_per_l[col].to_numpy(dtype=float) * config.flux_a * d_mm**config.flux_b
    return flux


def _layer_rows(part: pd.DataFrame, config: TargetConfig) -> pd.DataFrame:
    classes = particle_classes(part.columns)
    groups = class_groups(classes, config=config)
    flux_cols = list(flux_diameters_mm(classes, config=config))
    rows = []
    for layer in config.layers:
        inside = part[(part["depth_m"] >= layer.top_m) & (part["depth_m"] < layer.bottom_m)]
        if inside.empty:
            continue
        grouped = inside.groupby("profile_id", sort=True)
        # One cython sum over every column (a per-column dict agg costs ~45x more).
        sums = grouped[["volume_l", *(c for c, _, _ in classes)]].sum()
        sums["depth_m"] = grouped["depth_m"].count()
        first = grouped[["lat", "lon", "time", *(["cruise"] if "cruise" in part else [])]].first()
        out = first.copy()
        if "cruise" not in out:
            out["cruise"] = ""  # a particles table without cruises: none known
        out["layer"] = layer.name
        out["layer_top_m"] = float(layer.top_m)
        out["layer_bottom_m"] = float(layer.bottom_m)
        out["volume_l"] = sums["volume_l"]
        out["coverage"] = sums["depth_m"] * config.bin_m / (layer.bottom_m - layer.top_m)
        for name, cols in groups.items():
            out[name] = sums[cols].sum(axis=1) / sums["volume_l"]
        conc = sums[flux_cols].div(sums["volume_l"], axis=0)
        out["flux_mgc_m2_d"] = guidi_flux(conc, classes, config=config)
        rows.append(out.reset_index().rename(columns={"profile_id": "id"}))
    if not rows:
        return _empty(config)
    frame = pd.concat(rows, ignore_index=True)
    # A partition holds a batch of files: rows go profile by profile in the order the
    # profiles come (the files' order), each profile's layers in their order, as one
    # partition per single-profile file gave them.
    profiles = pd.Index(pd.unique(part["profile_id"]))
    layer_index = {layer.name: i for i, layer in enumerate(config.layers)}
    order = np.lexsort(
        (frame["layer"].map(layer_index).to_numpy(), profiles.get_indexer(frame["id"]))
    )
    frame = frame.iloc[order]
    frame["weight"] = frame["volume_l"]
    return frame.reindex(columns=_empty(config).columns).reset_index(drop=True)


def target_columns(config: TargetConfig) -> list[str]:
    """Name the target columns of a configuration: one per size class, then the flux.

    Examples
    --------
    >>> target_columns(TargetConfig(size_edges_um=(102, 203, 406)))
    ['conc_102_203um_per_l', 'conc_203_406um_per_l', 'flux_mgc_m2_d']
    """
    e = config.size_edges_um
    return [_target_name(a, b) for a, b in itertools.pairwise(e)] + ["flux_mgc_m2_d"]


def _empty(config: TargetConfig) -> pd.DataFrame:
    cols = {
        "id": pd.Series([], dtype=str),
        "lat": pd.Series([], dtype="float64"),
        "lon": pd.Series([], dtype="float64"),
        "time": pd.Series([], dtype="datetime64[ns, UTC]"),
        "cruise": pd.Series([], dtype=str),
        "layer": pd.Series([], dtype=str),
        "layer_top_m": pd.Series([], dtype="float64"),
        "layer_bottom_m": pd.Series([], dtype="float64"),
        "volume_l": pd.Series([], dtype="float64"),
        "coverage": pd.Series([], dtype="float64"),
    }
    cols.update({c: pd.Series([], dtype="float64") for c in target_columns(config)})
    cols["weight"] = pd.Series([], dtype="float64")
    return pd.DataFrame(cols)


def _with_reasons(part: pd.DataFrame, config: TargetConfig) -> pd.DataFrame:
    frame = _layer_rows(part, config)
    reason = np.where(
        frame["volume_l"] < config.min_volume_l,
        f"sampled volume below min_volume_l={config.min_volume_l:g} L",
        np.where(
            frame["coverage"] < config.min_coverage,
            f"depth coverage below min_coverage={config.min_coverage:g}",
            "",
        ),
    )
    return frame.assign(reason=pd.Series(reason, index=frame.index, dtype=str))


def build_targets(particles: dd.DataFrame, *, config: TargetConfig | None = None) -> TargetsResult:
    """Volume-weighted concentrations per profile and layer, and a carbon-flux target.

    Parameters
    ----------
    particles : dask.dataframe.DataFrame
        Canonical particles table (counts ``n_<lo>_<hi>um`` per 5 m bin, ``volume_l``).
    config : TargetConfig, optional
        Layers, target classes, coverage thresholds, flux coefficients, transform.

    Returns
    -------
    TargetsResult
        Lazy targets and skipped pairs, the target columns and the transform.

    Raises
    ------
    ConfigError
        When the particles table has no count column or lacks a required column.

    Examples
    --------
    >>> pdf = pd.DataFrame({"profile_id": ["p"] * 20, "lat": 1.0, "lon": 2.0,
    ...     "time": pd.Timestamp("2020-01-01", tz="UTC"), "depth_m": np.arange(20) * 5 + 2.5,
    ...     "volume_l": 10.0, "n_102_128um": 5.0, "n_128_161um": 15.0})
    >>> res = build_targets(dd.from_pandas(pdf, npartitions=1))
    >>> row = res.targets.compute().iloc[0]
    >>> row["layer"], float(row["volume_l"]), float(row["conc_102_203um_per_l"])
    ('0-100m', 200.0, 2.0)
    """
    config = config or TargetConfig()
    required = {"profile_id", "lat", "lon", "time", "depth_m", "volume_l"}
    missing = sorted(required - set(particles.columns))
    if missing:
        raise ConfigError(
            f"particles table lacks {missing}; build it with pipeline.sources.ecopart readers."
        )
    if not particle_classes(particles.columns):
        raise ConfigError("particles table has no count column n_<lo>_<hi>um.")
    meta = _empty(config).assign(reason=pd.Series([], dtype=str))
    rows = particles.map_partitions(_with_reasons, config, meta=meta)
    targets = rows[rows["reason"] == ""].drop(columns="reason")
    skipped = rows[rows["reason"] != ""][["id", "layer", "volume_l", "coverage", "reason"]]
    logger.info(
        "targets: %d layer(s), %d size class(es), transform %s",
        len(config.layers),
        len(config.size_edges_um) - 1,
        config.transform,
    )
    return TargetsResult(
        targets=targets,
        skipped=skipped,
        targets_columns=target_columns(config),
        transform={"name": config.transform, "epsilon": config.epsilon_per_l},
    )


def transform(values: np.ndarray, *, name: str = "log10", epsilon: float = 1e-3) -> np.ndarray:
    """Apply the training transform recorded with the targets.

    Parameters
    ----------
    values : array of float
        Concentrations (or flux).
    name : {"log10", "none"}
        The transform.
    epsilon : float
        Offset of ``log10(c + epsilon)``.

    Returns
    -------
    numpy.ndarray
        Transformed values.

    See Also
    --------
    inverse_transform : back to concentrations.

    Examples
    --------
    >>> transform(np.array([0.999, 9.999]), epsilon=1e-3).round(6).tolist()
    [0.0, 1.0]
    """
    values = np.asarray(values, dtype="float64")
    if name == "none":
        return values
    return np.log10(values + epsilon)


def inverse_transform(
    values: np.ndarray, *, name: str = "log10", epsilon: float = 1e-3
) -> np.ndarray:
    """Undo :func:`transform`, clipped at 0 for log10 (a concentration is never negative).

    Parameters
    ----------
    values : array of float
        Transformed values (e.g. a model's predictions).
    name : {"log10", "none"}
        The transform that was applied.
    epsilon : float
        Offset of ``log10(c + epsilon)``.

    Returns
    -------
    numpy.ndarray
        Concentrations (or flux): ``max(10 ** values - epsilon, 0)`` for log10.

    See Also
    --------
    transform : the forward transform.

    Examples
    --------
    >>> inverse_transform(np.array([0.0, 1.0, -4.0]), epsilon=1e-3).round(6).tolist()
    [0.999, 9.999, 0.0]
    """
    values = np.asarray(values, dtype="float64")
    if name == "none":
        return values
    return np.maximum(np.power(10.0, values) - epsilon, 0.0)
