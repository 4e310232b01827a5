"""Targets per taxon for net samples (ZooScan): concentrations per sample, # m-3.

A net tow filters a known volume of water over a depth range and is imaged in
subsamples: each acquisition (a size fraction) is ``1/acq_sub_part`` of the sample, so
each of its objects stands for ``acq_sub_part / sample_tot_vol`` individuals per m³.
The objects table of :func:`pipeline.sources.ecotaxa.read_ecotaxa` carries that volume
per object (``volume_l = sample_tot_vol x 1000 / acq_sub_part``), so
:func:`build_net_targets` needs nothing else:

    conc_<category>_per_m3 = sum over the sample's objects of 1000 / (volume_l x subsample_fraction)

which is EcoTaxa's own concentration formula (``1 / subsample_coef /
total_water_volume``, ecotaxa_back ``ProjectVars``), summed over the sample's
acquisitions. Unlike :func:`pipeline.targets.objects.build_object_targets` (UVP casts, whose
volume comes from EcoPart per depth bin), a net sample is one row: its layer is the tow's
own depth range (``Layer(depth_min_m, depth_max_m)``, e.g. ``"0-114m"``), or, with
``layer_share``, the configured layer the tow matches.

Choices made and why (automatic choices are logged at INFO):

- **Which objects count**: as in :class:`~pipeline.targets.objects.ObjectTargetConfig`
  (``statuses``, ``categories``, ``min_objects``); its ``layers`` only with
  ``layer_share``; the labels options are the caller's, applied before
  (:func:`pipeline.images.labels.apply_labels`).
- **Layers**: a tow rarely spans a configured layer exactly (Tara WP2: 0-33 to
  0-114 m; APERO Bioness: 312-419 m). By default each sample keeps its own range, and
  ``depth_min_m``/``depth_max_m`` always say what the net sampled; ``layer_share``
  assigns a tow to a configured layer only when they overlap by that share of both,
  so a 0-33 m tow is never taken for the 0-100 m layer.
- **One row per sample** that has any object in the table; a category absent from it
  gives 0 (a zero is an observation).
- **Position**: the mean latitude and the *circular* mean longitude of the sample's
  objects (a sample whose rows straddle the dateline, 179.9 and -179.9, is placed at
  ±180, not at 0), in [-180, 180). Time: the earliest object time. Depths: the smallest
  ``depth_min_m`` and the largest ``depth_max_m``.
- **Volume** (``volume_l``, also ``weight``): the smallest volume among the sample's
  acquisitions, i.e. that of its most split fraction, which bounds the precision of
  its counts. A sample where a counted object has no volume (``sample_tot_vol``
  missing) is skipped with a reason, never given a concentration from a partial volume.

Developer note: one ``map_partitions`` sums per (sample, category) within each
partition; a groupby across partitions (``split_out=1``) merges them, so a sample split
across files is summed correctly. The graph grows with the partitions, not the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.targets.objects import (
    ObjectTargetConfig,
    ObjectTargetsResult,
    _columns,
    _seen_categories,
)
from pipeline.targets.particles import Layer

__all__ = ["build_net_targets"]

logger = logging.getLogger(__name__)

_REQUIRED = (
    "sample_id",
    "category",
    "status",
    "lat",
    "lon",
    "time",
    "depth_min_m",
    "depth_max_m",
    "volume_l",
)
_SUMS = ("n_rows", "lat_sum", "lon_sin", "lon_cos", "no_volume")


def _sample_part(part: pd.DataFrame, categories: tuple[str, ...], statuses: tuple[str, ...]):
    """Per-sample partial sums of one partition: counts, weights, position, depth, volume."""
    names = _columns(categories)
    ids = part["sample_id"].astype(str).to_numpy()
    lon = np.deg2rad(part["lon"].to_numpy(dtype="float64"))
    volume = part["volume_l"].to_numpy(dtype="float64")
    fraction = (
        part["subsample_fraction"].to_numpy(dtype="float64")
        if "subsample_fraction" in part
        else np.ones(len(part))
    )
    counted = (part["status"].isin(statuses) & part["category"].isin(categories)).to_numpy()
    frame = pd.DataFrame(
        {
            "id": ids,
            "n_rows": 1.0,
            "lat_sum": part["lat"].to_numpy(dtype="float64"),
            "lon_sin": np.sin(lon),
            "lon_cos": np.cos(lon),
            "no_volume": (counted & ~(volume > 0)).astype("float64"),
            "time_ns": pd.to_datetime(part["time"], utc=True)
            .dt.tz_convert(None)
            .to_numpy()
            .astype("datetime64[ns]")
            .astype("int64"),
            "depth_min_m": part["depth_min_m"].to_numpy(dtype="float64"),
            "depth_max_m": part["depth_max_m"].to_numpy(dtype="float64"),
            "volume_l": volume,
        }
    )
    code = pd.Categorical(part["category"], categories=list(categories)).codes
    weight = np.where(counted, 1000.0 / (volume * fraction), 0.0)
    for k, name in enumerate(names):
        mine = counted & (code == k)
        frame[f"count_{name}"] = mine.astype("float64")
        frame[f"w_{name}"] = np.where(mine, weight, 0.0)
    return _aggregate(frame, names)


def _aggregate(frame: pd.DataFrame | dd.DataFrame, names: list[str]):
    how = dict.fromkeys(_SUMS, "sum")
    how.update({"time_ns": "min", "depth_min_m": "min", "depth_max_m": "max", "volume_l": "min"})
    how.update({f"{p}_{n}": "sum" for n in names for p in ("count", "w")})
    kwargs = {"split_out": 1} if isinstance(frame, dd.DataFrame) else {}
    return frame.groupby("id").agg(how, **kwargs).reset_index()


def _sample_meta(names: list[str]) -> pd.DataFrame:
    cols = {"id": pd.Series([], dtype=str)}
    cols.update({c: pd.Series([], dtype="float64") for c in _SUMS})
    cols["time_ns"] = pd.Series([], dtype="int64")
    cols.update(
        {c: pd.Series([], dtype="float64") for c in ("depth_min_m", "depth_max_m", "volume_l")}
    )
    for n in names:
        cols[f"count_{n}"] = pd.Series([], dtype="float64")
        cols[f"w_{n}"] = pd.Series([], dtype="float64")
    return pd.DataFrame(cols)


def _layers_of(
    top: np.ndarray, bottom: np.ndarray, layers: Sequence[Layer], share: float | None
) -> list[Layer | None]:
    """Give each tow a configured layer it matches by ``share``, else its own range.

    A tow matches a configured layer when their overlap is at least ``share`` of the tow
    *and* of the layer (the largest overlap wins); None where the range is unknown.
    """
    out: list[Layer | None] = []
    for t, b in zip(top, bottom, strict=True):
        if not (np.isfinite(t) and np.isfinite(b)):
            out.append(None)
            continue
        best, best_overlap = Layer(t, b), 0.0
        for layer in layers if share is not None else ():
            overlap = min(b, layer.bottom_m) - max(t, layer.top_m)
            tow_share = overlap / (b - t) if b > t else 0.0
            layer_share = overlap / (layer.bottom_m - layer.top_m)
            if tow_share >= share and layer_share >= share and overlap >= best_overlap:
                best, best_overlap = layer, overlap
        out.append(best)
    return out


def _finish(
    sums: pd.DataFrame,
    names: list[str],
    min_objects: int,
    layers: Sequence[Layer] = (),
    share: float | None = None,
) -> pd.DataFrame:
    """Concentrations, position, layer and skip reason per sample, sorted by id."""
    sums = sums.sort_values("id", kind="stable").reset_index(drop=True)
    lon = np.rad2deg(np.arctan2(sums["lon_sin"], sums["lon_cos"]))
    lon = (lon + 180.0) % 360.0 - 180.0
    top, bottom = sums["depth_min_m"].to_numpy(), sums["depth_max_m"].to_numpy()
    matched = _layers_of(top, bottom, layers, share)
    out = pd.DataFrame(
        {
            "id": sums["id"].astype(str),
            "lat": sums["lat_sum"] / sums["n_rows"],
            "lon": lon,
            "time": pd.to_datetime(sums["time_ns"].astype("int64"), utc=True),
            "layer": pd.Series([la.name if la else "" for la in matched], dtype=str),
            "layer_top_m": [la.top_m if la else np.nan for la in matched],
            "layer_bottom_m": [la.bottom_m if la else np.nan for la in matched],
            "depth_min_m": top,
            "depth_max_m": bottom,
            "volume_l": sums["volume_l"],
        }
    )
    total = np.zeros(len(sums))
    for n in names:
        total += sums[f"count_{n}"].to_numpy()
        out[f"count_{n}"] = np.rint(sums[f"count_{n}"]).astype("int64")
    for n in names:
        out[f"conc_{n}_per_m3"] = sums[f"w_{n}"].to_numpy()
    out["weight"] = out["volume_l"]
    reason = np.where(
        sums["no_volume"].to_numpy() > 0,
        "no volume for counted objects (sample_tot_vol missing or not positive)",
        np.where(
            out["layer"] == "",
            "no depth range (object_depth_min/max missing)",
            np.where(
                total < min_objects, f"fewer than min_objects={min_objects} objects counted", ""
            ),
        ),
    )
    out["reason"] = pd.Series(reason, dtype=str)
    return out


def build_net_targets(
    objects: dd.DataFrame | pd.DataFrame,
    *,
    config: ObjectTargetConfig | None = None,
    layer_share: float | None = None,
) -> ObjectTargetsResult:
    """Concentrations (# m-3) per net sample and category from the objects table.

    Parameters
    ----------
    objects : dask.dataframe.DataFrame or pandas.DataFrame
        Canonical objects table of net samples (ZooScan, read by
        :func:`pipeline.sources.ecotaxa.read_ecotaxa` or
        :func:`pipeline.sources.zooprocess.pid_objects`): ``sample_id, category, status,
        lat, lon, time, depth_min_m, depth_max_m, volume_l`` (L of water per object's
        acquisition) and optionally ``subsample_fraction``.
    config : ObjectTargetConfig, optional
        ``categories`` (None: every category seen among the counted statuses),
        ``statuses``, ``min_objects``, and ``layers`` when ``layer_share`` is given.
    layer_share : float, optional
        None (default): each sample's layer is its tow's own range (``"0-114m"``). A
        share in (0, 1]: a tow whose overlap with one of ``config.layers`` is at least
        that share of the tow *and* of the layer is given that layer (so it meets the
        predictors of the run's layers); the others keep their own range. E.g. 0.8 puts
        the Tara 0-114 m tows in ``"0-100m"`` but not a 0-33 m tow.

    Returns
    -------
    ObjectTargetsResult
        ``targets``: ``id, lat, lon, time, layer, layer_top_m, layer_bottom_m,
        depth_min_m, depth_max_m`` (the tow), ``volume_l``,
        one ``conc_<category>_per_m3`` per category and ``weight``, one row per sample
        kept, sorted by id; ``counts``: ``id, layer, volume_l, count_<category>``;
        ``skipped``: ``id, layer, reason``. pandas for pandas input, lazy dask otherwise.

    Raises
    ------
    ConfigError
        When a required column is missing or no category is found.

    See Also
    --------
    pipeline.targets.objects.build_object_targets : the same per UVP cast and layer.

    Examples
    --------
    >>> objects = pd.DataFrame({"sample_id": ["s1", "s1", "s1"],
    ...     "category": ["Calanidae", "Calanidae", "detritus"], "status": "V",
    ...     "lat": 70.0, "lon": [179.9, -179.9, 179.9],
    ...     "time": pd.Timestamp("2013-09-27 22:17Z"), "depth_min_m": 0.0,
    ...     "depth_max_m": 114.0, "volume_l": [1312.5, 5250.0, 1312.5]})
    >>> res = build_net_targets(objects)
    >>> row = res.targets.iloc[0]
    >>> row["layer"], round(float(row["lon"]), 4)  # circular mean (a plain mean: 59.97)
    ('0-114m', 179.9667)
    >>> [round(float(row[c]), 4) for c in res.targets_columns]  # 1000/1312.5 + 1000/5250
    [0.9524, 0.7619]
    """
    config = config or ObjectTargetConfig()
    if layer_share is not None and not 0.0 < layer_share <= 1.0:
        raise ConfigError(
            f"build_net_targets: layer_share={layer_share!r}; expected a share in (0, 1] "
            "of the tow and of the layer (e.g. 0.8), or None to keep each tow's own range."
        )
    missing = [c for c in _REQUIRED if c not in objects.columns]
    if missing:
        raise ConfigError(
            f"build_net_targets: the objects table lacks {missing}; build it with "
            "pipeline.sources.ecotaxa.read_ecotaxa (ZooScan exports carry sample_tot_vol "
            "and acq_sub_part, read into volume_l)."
        )
    lazy = isinstance(objects, dd.DataFrame)
    categories = config.categories
    if categories is None:
        categories = _seen_categories(objects, config.statuses, "build_net_targets")
    names = _columns(categories)
    args = (tuple(categories), tuple(config.statuses))
    if lazy:
        parts = objects.map_partitions(_sample_part, *args, meta=_sample_meta(names))
        sums = _aggregate(parts, names)
        rows = sums.map_partitions(
            _finish,
            names,
            config.min_objects,
            config.layers,
            layer_share,
            meta=_finish(_sample_meta(names), names, 0),
        )
    else:
        rows = _finish(
            _sample_part(objects, *args), names, config.min_objects, config.layers, layer_share
        )
    columns = [f"conc_{n}_per_m3" for n in names]
    kept = rows[rows["reason"] == ""]
    head = ["id", "lat", "lon", "time", "layer", "layer_top_m", "layer_bottom_m"]
    head += ["depth_min_m", "depth_max_m", "volume_l"]
    result = ObjectTargetsResult(
        targets=kept[[*head, *columns, "weight"]],
        counts=kept[["id", "layer", "volume_l", *(f"count_{n}" for n in names)]],
        targets_columns=columns,
        categories=tuple(categories),
        skipped=rows[rows["reason"] != ""][["id", "layer", "reason"]],
    )
    if not lazy:
        for name in ("targets", "counts", "skipped"):
            setattr(result, name, getattr(result, name).reset_index(drop=True))
    logger.info(
        "net targets: %d categor%s, statuses %s%s",
        len(categories),
        "y" if len(categories) == 1 else "ies",
        "/".join(config.statuses),
        "" if lazy else f", {len(result.targets)} sample(s), {len(result.skipped)} skipped",
    )
    return result
