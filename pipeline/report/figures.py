"""The figures of the run's report: maps, intervals, predicted vs observed, skill.

Each ``*_png`` function returns the PNG bytes of one figure, built on
:class:`matplotlib.figure.Figure` with an explicit Agg canvas (never ``pyplot``: no global
backend switch, nothing left open, so it can run on a worker beside other plotting code).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter

from pipeline.report.page import figure_png, format_number

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh

__all__ = [
    "LAND_GREY",
    "colour_scale",
    "interval_png",
    "map_png",
    "plain_log_ticks",
    "scatter_png",
    "skill_png",
]

logger = logging.getLogger(__name__)

#: Colour of land (NaN) cells in every map: RGB (160, 160, 160).
LAND_GREY = "#a0a0a0"


_MODEL = "model"


_NOISE = "noise ceiling"


def _layer_order(step: xr.Dataset) -> list[str]:
    if "layer" in step.coords:
        return [str(v) for v in np.atleast_1d(step["layer"].values)]
    return []


def _layers_of(values: pd.Series, known: Sequence[str]) -> list[str]:
    """Layers present, in the fields' order, others sorted by their leading depth."""
    present = [str(v) for v in pd.unique(values.astype(str))]
    ordered = [v for v in known if v in present]

    def depth(name: str) -> tuple[float, str]:
        m = re.match(r"\s*(\d+(?:\.\d+)?)", name)
        return (float(m.group(1)) if m else math.inf, name)

    return ordered + sorted((v for v in present if v not in ordered), key=depth)


def _panels(step: xr.Dataset, name: str) -> list[tuple[str, xr.DataArray]]:
    """(layer label, 2-D lat/lon array) pairs of one variable."""
    da = step[name]
    extra = [d for d in da.dims if d not in ("layer", "lat", "lon")]
    if extra:
        da = da.isel({d: 0 for d in extra})
    if "layer" in da.dims:
        return [(str(da["layer"].values[i]), da.isel(layer=i)) for i in range(da.sizes["layer"])]
    return [("", da)]


#: Fixed margins of the panel grids (inches): drawn once, with no layout engine, whose
#: measuring of every tick label cost about half of the report's time.
_PANEL_W, _PANEL_H = 4.6, 3.4
_LEFT, _TOP, _BOTTOM, _RIGHT = 0.8, 0.6, 0.95, 0.3
_GAP_W, _GAP_H = 0.85, 0.75
_COLOURBAR_W = 1.3


def _grid_figure(n: int, *, colourbar: bool = False) -> tuple[Figure, list[Any]]:
    """Make a grid of ``n`` panels (at most 3 a row) with fixed margins in inches.

    With ``colourbar``, a column on the right is kept for one colour bar
    (:func:`_colourbar`); the bottom margin holds the x labels and a legend row.
    """
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    right = _RIGHT + (_COLOURBAR_W if colourbar else 0.0)
    width = _LEFT + right + ncols * _PANEL_W + (ncols - 1) * _GAP_W
    height = _TOP + _BOTTOM + nrows * _PANEL_H + (nrows - 1) * _GAP_H
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(
        nrows,
        ncols,
        squeeze=False,
        gridspec_kw={
            "left": _LEFT / width,
            "right": 1.0 - right / width,
            "bottom": _BOTTOM / height,
            "top": 1.0 - _TOP / height,
            "wspace": _GAP_W / _PANEL_W,
            "hspace": _GAP_H / _PANEL_H,
        },
    )
    axes = axes.ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


class _PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (``0.4``, ``6``, ``2e+03``), not mathtext."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:.3g}"


def _colourbar(fig: Figure, mesh: Any, *, label: str, extend: str) -> None:
    """One colour bar in the right margin of a :func:`_grid_figure` with ``colourbar``."""
    width, height = fig.get_size_inches()
    left = 1.0 - (_RIGHT + _COLOURBAR_W - 0.15) / width
    cax = fig.add_axes((left, _BOTTOM / height, 0.18 / width, 1.0 - (_TOP + _BOTTOM) / height))
    plain_log_ticks(fig.colorbar(mesh, cax=cax, label=label, extend=extend))


def plain_log_ticks(bar: Any) -> None:
    """Label a colour bar on a log scale with plain numbers (no mathtext to typeset)."""
    if isinstance(bar.norm, LogNorm):
        bar.formatter = _PlainLogFormatter(labelOnlyBase=False)
        bar.minorformatter = _PlainLogFormatter(labelOnlyBase=False)


def _draw_map(ax: Axes, da: xr.DataArray, *, cmap: Any, norm: Normalize) -> QuadMesh:
    lat = da["lat"].values if "lat" in da.coords else np.arange(da.sizes["lat"])
    lon = da["lon"].values if "lon" in da.coords else np.arange(da.sizes["lon"])
    values = np.ma.masked_invalid(da.transpose("lat", "lon").values.astype("float64"))
    ax.set_facecolor(LAND_GREY)
    mesh = ax.pcolormesh(lon, lat, values, cmap=cmap, norm=norm, shading="auto")
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    return mesh


def _hatch_extrapolation(ax: Axes, step: xr.Dataset, layer_index: int) -> bool:
    if "extrapolation" not in step.data_vars:
        return False
    flag = step["extrapolation"]
    if "layer" in flag.dims:
        flag = flag.isel(layer=min(layer_index, flag.sizes["layer"] - 1))
    extra = [d for d in flag.dims if d not in ("lat", "lon")]
    if extra:
        flag = flag.isel({d: 0 for d in extra})
    values = np.nan_to_num(flag.transpose("lat", "lon").values.astype("float64"))
    if not (values >= 0.5).any():
        return False
    ax.contourf(
        flag["lon"].values,
        flag["lat"].values,
        values,
        levels=[0.5, 1.5],
        colors="none",
        hatches=["////"],
    )
    return True


def colour_scale(values: np.ndarray) -> tuple[Any, Normalize, str]:
    """Colour map, norm and scale name (``"log"`` or ``"linear"``) of a field's values.

    Non-negative values with some positive ones (concentrations, fluxes) get a log
    scale over the positive range, zeros the lowest colour; others a linear scale. NaN
    (land) is :data:`LAND_GREY`.

    Examples
    --------
    >>> _, norm, scale = colour_scale(np.array([0.0, 0.1, 10.0, np.nan]))
    >>> scale, norm.vmin, norm.vmax
    ('log', 0.1, 10.0)
    >>> colour_scale(np.array([-1.0, 1.0]))[2]
    'linear'
    """
    finite = np.asarray(values, dtype="float64").ravel()
    finite = finite[np.isfinite(finite)]
    positive = finite[finite > 0]
    cmap = colormaps["viridis"].with_extremes(bad=LAND_GREY)
    if finite.size and positive.size and (finite >= 0).all():
        vmin, vmax = float(positive.min()), float(positive.max())
        norm: Normalize = LogNorm(vmin=vmin, vmax=vmax if vmax > vmin else vmin * 10)
        return cmap.with_extremes(under=cmap(0.0)), norm, "log"  # zeros: lowest colour
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return cmap, Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1), "linear"


def map_png(step: xr.Dataset, target: str, when: str) -> bytes:
    """Draw one target's field for one time step, one panel per layer.

    Parameters
    ----------
    step : xarray.Dataset
        The fields at one time step (dims ``layer, lat, lon``).
    target : str
        The variable to draw; concentrations on a log colour scale.
    when : str
        The time step, for the title.

    Returns
    -------
    bytes
        PNG; land grey (:data:`LAND_GREY`), extrapolated cells hatched.
    """
    panels = _panels(step, target)
    values = np.concatenate([np.ravel(p.values) for _, p in panels])
    cmap, norm, scale = colour_scale(values)
    vmin = norm.vmin if scale == "log" else math.nan
    logger.info("report: %s map on a %s colour scale", target, scale)
    attrs = step[target].attrs
    fig, axes = _grid_figure(len(panels), colourbar=True)
    hatched = False
    mesh = None
    for i, (ax, (layer, da)) in enumerate(zip(axes, panels, strict=True)):
        plot = da.where(~(da <= 0), vmin) if scale == "log" else da  # keep 0 off the land
        mesh = _draw_map(ax, plot, cmap=cmap, norm=norm)
        hatched |= _hatch_extrapolation(ax, step, i)
        ax.set_title(layer or target)
    units = attrs.get("units", "")
    label = f"{attrs.get('long_name', target)}" + (f" [{units}]" if units else "")
    _colourbar(fig, mesh, label=label, extend="min" if scale == "log" else "neither")
    fig.suptitle(f"{target}, {when}")
    handles = [Patch(facecolor=LAND_GREY, label="land")]
    if hatched:
        handles.append(Patch(facecolor="white", hatch="////", label="extrapolation"))
    fig.legend(handles=handles, loc="lower right", fontsize="small", ncols=2, frameon=False)
    return figure_png(fig, crop=False)


def interval_png(step: xr.Dataset, target: str, when: str) -> bytes:
    """Draw the relative width of a target's prediction interval, one panel per layer.

    Parameters
    ----------
    step : xarray.Dataset
        The fields at one time step, with ``<target>_lower`` and ``<target>_upper``.
    target : str
        The variable.
    when : str
        The time step, for the title.

    Returns
    -------
    bytes
        PNG of ``(upper - lower) / |centre|``.
    """
    centre = step[target]
    width = (step[f"{target}_upper"] - step[f"{target}_lower"]) / abs(centre)
    width = width.where(np.isfinite(width))
    panels = _panels(xr.Dataset({"w": width}), "w")
    finite = np.concatenate([np.ravel(p.values) for _, p in panels])
    finite = finite[np.isfinite(finite)]
    hi = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    norm = Normalize(vmin=0.0, vmax=hi if hi > 0 else 1.0)
    cmap = colormaps["magma"].with_extremes(bad=LAND_GREY)
    fig, axes = _grid_figure(len(panels), colourbar=True)
    mesh = None
    for ax, (layer, da) in zip(axes, panels, strict=True):
        mesh = _draw_map(ax, da, cmap=cmap, norm=norm)
        ax.set_title(layer or target)
    _colourbar(fig, mesh, label="(upper - lower) / predicted", extend="max")
    fig.suptitle(f"{target}: relative interval width, {when}")
    return figure_png(fig, crop=False)


def _r2(obs: np.ndarray, pred: np.ndarray) -> float:
    if obs.size < 2:
        return math.nan
    sst = float(((obs - obs.mean()) ** 2).sum())
    return 1.0 - float(((obs - pred) ** 2).sum()) / sst if sst > 0 else math.nan


def _test_rows(predictions: pd.DataFrame) -> pd.DataFrame:
    """Select the model's (``model == "model"``) held-out (``split == "test"``) rows."""
    rows = predictions
    if "model" in rows.columns:
        rows = rows[rows["model"].astype(str) == _MODEL]
    if "split" in rows.columns:
        rows = rows[rows["split"].astype(str) == "test"]
    else:
        logger.info("report: predictions have no 'split' column; plotting every row")
    return rows


def scatter_png(predictions: pd.DataFrame, targets: Sequence[str], known: Sequence[str]) -> bytes:
    """Draw observed against predicted on the held-out test rows, one panel per target.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The run's ``predictions.parquet`` (``split, model, layer, <t>_obs, <t>_pred``).
    targets : sequence of str
        The targets, one panel each (transformed space).
    known : sequence of str
        The layers in their order, for the colours.

    Returns
    -------
    bytes
        PNG with the 1:1 line and R² per panel.
    """
    rows = _test_rows(predictions)
    layers = _layers_of(rows["layer"], known) if "layer" in rows.columns else []
    colours = colormaps["tab10"]
    fig, axes = _grid_figure(len(targets))
    for ax, target in zip(axes, targets, strict=True):
        cols = (f"{target}_obs", f"{target}_pred")
        if not all(c in rows.columns for c in cols):
            ax.text(
                0.5, 0.5, f"no columns {cols[0]}, {cols[1]}", ha="center", transform=ax.transAxes
            )
            ax.set_title(target)
            continue
        sub = rows.dropna(subset=list(cols))
        obs, pred = sub[cols[0]].to_numpy(float), sub[cols[1]].to_numpy(float)
        groups = [(la, sub["layer"].astype(str) == la) for la in layers] or [("", None)]
        for k, (layer, mask) in enumerate(groups):
            o, p = (obs, pred) if mask is None else (obs[mask.to_numpy()], pred[mask.to_numpy()])
            ax.scatter(
                o, p, s=9, alpha=0.6, color=colours(k % 10), label=layer or None, edgecolors="none"
            )
        if obs.size:
            lo = float(min(obs.min(), pred.min()))
            hi = float(max(obs.max(), pred.max()))
            ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="1:1")
        else:
            ax.text(0.5, 0.5, "no test rows", ha="center", transform=ax.transAxes)
        ax.set_title(f"{target}: R² = {format_number(_r2(obs, pred))} (n = {obs.size})")
        ax.set_xlabel("observed (transformed)")
        ax.set_ylabel("predicted (transformed)")
        if obs.size:
            ax.legend(fontsize="small", title="layer" if layers else None)
    fig.suptitle("Observed vs predicted, test rows")
    return figure_png(fig, crop=False)


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def _cv_summary(cv: Any, key: str) -> tuple[float | None, float | None]:
    """(mean, std) of one metric over folds: the given summary, else computed (ddof=1)."""
    mean, std = _get(cv, "mean", key), _get(cv, "std", key)
    folds = [f.get(key) for f in (_get(cv, "folds") or []) if isinstance(f, Mapping)]
    values = np.array([v for v in folds if v is not None], dtype="float64")
    if mean is None and values.size:
        mean = float(values.mean())
    if std is None and values.size > 1:
        std = float(values.std(ddof=1))
    return mean, std


def _models(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(name, entry) for the model, then each baseline."""
    baselines = metrics.get("baselines") or {}
    return [(_MODEL, metrics[_MODEL])] + [(str(k), v) for k, v in baselines.items()]


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def skill_png(metrics: Mapping[str, Any]) -> bytes:
    """Draw the test skill of the model and each baseline, and block against random CV.

    Parameters
    ----------
    metrics : mapping
        The run's ``metrics.json``.

    Returns
    -------
    bytes
        PNG.
    """
    models = _models(metrics)
    names = [n for n, _ in models]
    colours = ["tab:blue"] + ["tab:gray"] * (len(models) - 1)
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, label in (
        (axes[0], "mse", "test MSE (lower is better)"),
        (axes[1], "r2_mean", "test mean R² (higher is better)"),
    ):
        values = [_num(_get(m, "test", key)) for _, m in models]
        bars = ax.bar(range(len(names)), np.nan_to_num(values), color=colours)
        ax.bar_label(bars, labels=[format_number(v) for v in values], fontsize="small")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(label)
        ceiling = _get(metrics, "noise_ceiling", "test", key)
        if ceiling is not None and not _get(metrics, "noise_ceiling", "targets"):
            ax.axhline(float(ceiling), color="black", ls="--", lw=1, label=_NOISE)
            ax.legend(fontsize="small", loc="upper right")
    ax = axes[2]
    model = metrics[_MODEL]
    kinds = [
        (label, _get(model, key))
        for label, key in (
            ("block CV", "cv"),
            ("random CV", "random_cv"),
            ("by cruise", "random_cruise_cv"),
            ("one basin out", "basins_cv"),
        )
        if _get(model, key) is not None
    ]
    summaries = [_cv_summary(cv, "mse") for _, cv in kinds]
    means = [m for m, _ in summaries]
    stds = [s for _, s in summaries]
    xs = list(range(len(kinds)))
    bars = ax.bar(
        xs,
        np.nan_to_num([_num(m) for m in means]),
        yerr=np.nan_to_num([_num(s) for s in stds]),
        capsize=4,
        color=[f"C{i}" for i in xs],
    )
    ax.bar_label(bars, labels=[format_number(m) for m in means], fontsize="small")
    test = _get(model, "test", "mse")
    if test is not None:
        ax.axhline(float(test), color="black", ls=":", lw=1, label="test")
    truth = _get(metrics, "honesty", "true_mse")
    if truth is not None:
        ax.axhline(float(truth), color="black", ls="--", lw=1, label="true error (far)")
    if test is not None or truth is not None:
        ax.legend(fontsize="small")
    ax.set_xticks(xs, [k for k, _ in kinds], rotation=15)
    ax.set_title("model MSE: CV variants")
    return figure_png(fig)
