"""The report a scientist reads: maps, skill plots and one HTML page.

:func:`write_report` writes, into one folder (a local path or any fsspec URL, so
``./out/report`` and ``s3://bucket/run/report`` share one code path):

- ``maps_<target>.png``: the field of each target for one month, one panel per layer,
  log colour scale for concentrations, land grey, extrapolated cells hatched;
- ``interval_<target>.png``: the relative width of the prediction interval, when the
  fields carry ``<target>_lower`` and ``<target>_upper``;
- ``predicted_vs_observed.png``: observed against predicted (transformed space) on the
  held-out test rows, one panel per target, coloured by layer, with the 1:1 line;
- ``skill.png``: test skill of the model and each baseline, and block CV against
  random CV for the model;
- ``skill_table.html``: the skill tables as an HTML fragment, and ``index.html``: the
  whole page (title, provenance, counts, skill, noise ceiling, every figure).

Notes for developers
--------------------
Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas and
never through ``pyplot``: no global backend switch, no figure registry, nothing left
open, so the report can be written from a worker or beside other plotting code.
Numbers are printed with 4 significant digits (:func:`format_number`), the same in the
HTML and in the figures. Only one time step of the fields is loaded.
"""

from __future__ import annotations

import html
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import xarray as xr
from fsspec.core import url_to_fs
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = ["LAND_GREY", "format_number", "write_report"]

logger = logging.getLogger(__name__)

#: Colour of land (NaN) cells in every map: RGB (160, 160, 160).
LAND_GREY = "#a0a0a0"
_DPI = 100
_MODEL = "model"
_NOISE = "noise ceiling"
_MISSING = "n/a"


def format_number(value: Any) -> str:
    """Format a metric as the report prints it: 4 significant digits, "n/a" when missing.

    Parameters
    ----------
    value : number or None
        The value; integers keep all digits (with thousands separators).

    Returns
    -------
    str
        The printed text.

    Examples
    --------
    >>> format_number(0.123456), format_number(12345), format_number(None)
    ('0.1235', '12,345', 'n/a')
    >>> format_number(float("nan")), format_number(-2.5e-7)
    ('n/a', '-2.5e-07')
    """
    if value is None or isinstance(value, bool):
        return _MISSING if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return _MISSING if math.isnan(x) else f"{x:.4g}"


def write_report(
    out_url: str,
    *,
    metrics: Mapping[str, Any],
    predictions: pd.DataFrame,
    fields: xr.Dataset | None = None,
    targets: Sequence[str],
    month: int | str | None = None,
    counts: Mapping[str, Any] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    title: str = "oceanfields run",
) -> dict[str, str]:
    """Write the maps, skill figures and HTML summary of a run into one folder.

    Parameters
    ----------
    out_url : str
        Folder to write into, a local path or fsspec URL (``s3://bucket/run/report``);
        created when missing. Files already there with the same names are replaced.
    metrics : mapping
        Skill, as :mod:`pipeline.model.evaluate` writes it: ``{"model": {"test": {...},
        "cv": {"folds": [...], "mean": {...}, "std": {...}}, "random_cv": {...}},
        "baselines": {name: {"test": {...}, "cv": {...}}}, "noise_ceiling": {"test":
        {...}}}``, where each ``{...}`` holds ``mse``, ``mv_mse``, ``r2`` (per target),
        ``r2_mean`` and ``bias`` (per target). Every part but ``model.test`` is optional,
        and missing values print as "n/a".
    predictions : pandas.DataFrame
        Columns ``id, layer, split`` ("test" or "cv"), ``model`` (``"model"`` or a
        baseline's name) and ``<target>_obs``, ``<target>_pred`` (transformed space).
        The ``model == "model"``, ``split == "test"`` rows are plotted.
    fields : xarray.Dataset, optional
        The predicted fields, dims ``(time, layer, lat, lon)``, one variable per target
        with ``units`` (and ``long_name``) attributes, land NaN; optional
        ``<target>_lower``/``<target>_upper`` interval bounds and an ``extrapolation``
        flag (1 where the model extrapolates). Without it, no maps are drawn.
    targets : sequence of str
        Target names, as in the fields' variables and the predictions' columns.
    month : int or str, optional
        Month to map: a month number (1-12, the first such time step) or an ISO date
        (``"2021-03"``, the time step in that year and month). Default: the first time
        step.
    counts : mapping, optional
        Numbers to print as a table (rows read, skipped, missing, ...), flat or nested
        (nested keys print as ``outer / inner``).
    storage_options : mapping, optional
        Passed to the fsspec filesystem (e.g. ``{"client_kwargs": {"endpoint_url": …}}``).
    title : str
        Title of the HTML page.

    Returns
    -------
    dict of str to str
        ``{name: path relative to out_url}``: ``"maps_<target>"``,
        ``"interval_<target>"``, ``"predicted_vs_observed"``, ``"skill"``,
        ``"skill_table"`` and ``"index"``, in the order written.

    Raises
    ------
    ValueError
        When ``month`` matches no time step of the fields (the message lists them), or
        when ``targets`` is empty or ``metrics`` has no ``model`` entry.

    See Also
    --------
    format_number : How every number is printed.

    Examples
    --------
    >>> import tempfile
    >>> preds = pd.DataFrame({"id": ["a", "b", "c"], "layer": "0-100m", "split": "test",
    ...                       "model": "model", "c_obs": [0.0, 1.0, 2.0],
    ...                       "c_pred": [0.1, 0.9, 2.2]})
    >>> metrics = {"model": {"test": {"mse": 0.02, "mv_mse": 0.02, "r2": {"c": 0.97},
    ...                                "r2_mean": 0.97}}}
    >>> out = write_report(tempfile.mkdtemp(), metrics=metrics, predictions=preds,
    ...                    targets=["c"])
    >>> sorted(out)
    ['index', 'predicted_vs_observed', 'skill', 'skill_table']
    """
    targets = [str(t) for t in targets]
    if not targets:
        raise ValueError("write_report: targets is empty; pass the target names, e.g. ['c'].")
    if not isinstance(metrics, Mapping) or not isinstance(metrics.get(_MODEL), Mapping):
        got = sorted(metrics) if isinstance(metrics, Mapping) else type(metrics).__name__
        raise ValueError(
            f"write_report: metrics has no 'model' entry (keys: {got!r}); pass the "
            "evaluation's output, {'model': {'test': {...}, 'cv': {...}}, ...}."
        )
    fs, root = url_to_fs(out_url, **dict(storage_options or {}))
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    written: dict[str, str] = {}
    used: set[str] = set()

    def put(name: str, stem: str, suffix: str, data: bytes) -> None:
        rel = _unique_name(stem, suffix, used)
        fs.pipe_file(f"{root}/{rel}", data)
        written[name] = rel
        logger.debug("report: wrote %s (%d bytes)", rel, len(data))

    figures: list[tuple[str, str]] = []  # (name, caption) in page order
    if fields is not None:
        step, when = _select_time(fields, month)
        layer_order = _layer_order(step)
        for target in targets:
            if target not in step.data_vars:
                warnings.warn(
                    f"write_report: the fields have no variable {target!r} (have "
                    f"{sorted(map(str, step.data_vars))}); its map is left out.",
                    stacklevel=2,
                )
                continue
            put(f"maps_{target}", f"maps_{target}", ".png", _map_png(step, target, when))
            figures.append((f"maps_{target}", f"{target}: predicted field, {when}"))
            bounds = (f"{target}_lower", f"{target}_upper")
            if all(b in step.data_vars for b in bounds):
                put(
                    f"interval_{target}",
                    f"interval_{target}",
                    ".png",
                    _interval_png(step, target, when),
                )
                figures.append((f"interval_{target}", f"{target}: relative interval width, {when}"))
    else:
        layer_order = []
        logger.info("report: no fields given; maps left out")

    put(
        "predicted_vs_observed",
        "predicted_vs_observed",
        ".png",
        _scatter_png(predictions, targets, layer_order),
    )
    figures.append(("predicted_vs_observed", "Observed vs predicted, test rows"))
    put("skill", "skill", ".png", _skill_png(metrics))
    figures.append(("skill", "Skill of the model and the baselines"))

    fragment = _skill_html(metrics, targets)
    put("skill_table", "skill_table", ".html", fragment.encode("utf-8"))
    page = _index_html(
        title=title,
        fields=fields,
        counts=counts,
        skill=fragment,
        images=[(written[n], cap) for n, cap in figures],
    )
    put("index", "index", ".html", page.encode("utf-8"))
    logger.info("report: %d file(s) written to %s", len(written), out_url)
    return written


# --- names and selection ---------------------------------------------------------------


def _unique_name(stem: str, suffix: str, used: set[str]) -> str:
    """Return a store-safe file name (ASCII letters, digits, ``_.-``), unique in ``used``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "file"
    name, i = safe + suffix, 2
    while name.lower() in used:
        name, i = f"{safe}_{i}{suffix}", i + 1
    used.add(name.lower())
    return name


def _select_time(fields: xr.Dataset, month: int | str | None) -> tuple[xr.Dataset, str]:
    """One time step of the fields, loaded, and its label (``YYYY-MM``)."""
    if "time" not in fields.dims:
        return fields.load(), "all times"
    times = pd.DatetimeIndex(fields["time"].values)
    if month is None:
        index = 0
    elif isinstance(month, (int, np.integer)) and not isinstance(month, bool):
        hits = np.flatnonzero(times.month == int(month))
        if not hits.size:
            raise ValueError(
                f"write_report: month={month!r} matches no time step of the fields "
                f"(months present: {sorted(set(times.month.tolist()))}); pass one of them."
            )
        index = int(hits[0])
    else:
        try:
            wanted = pd.Timestamp(str(month))
        except ValueError as err:
            raise ValueError(
                f"write_report: month={month!r} is neither a month number nor an ISO "
                "date; pass e.g. 3 or '2021-03'."
            ) from err
        hits = np.flatnonzero((times.year == wanted.year) & (times.month == wanted.month))
        if not hits.size:
            raise ValueError(
                f"write_report: month={month!r} matches no time step of the fields "
                f"({', '.join(times.strftime('%Y-%m'))}); pass one of them."
            )
        index = int(hits[0])
    label = times[index].strftime("%Y-%m")
    logger.info("report: mapping time step %d (%s)", index, label)
    return fields.isel(time=index).load(), label


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


# --- figures ---------------------------------------------------------------------------


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend
    buf = BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, facecolor="white", bbox_inches="tight")
    return buf.getvalue()


def _panels(step: xr.Dataset, name: str) -> list[tuple[str, xr.DataArray]]:
    """(layer label, 2-D lat/lon array) pairs of one variable."""
    da = step[name]
    extra = [d for d in da.dims if d not in ("layer", "lat", "lon")]
    if extra:
        da = da.isel({d: 0 for d in extra})
    if "layer" in da.dims:
        return [(str(da["layer"].values[i]), da.isel(layer=i)) for i in range(da.sizes["layer"])]
    return [("", da)]


def _grid_figure(n: int) -> tuple[Figure, list[Any]]:
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _draw_map(ax: Any, da: xr.DataArray, *, cmap: Any, norm: Normalize) -> Any:
    lat = da["lat"].values if "lat" in da.coords else np.arange(da.sizes["lat"])
    lon = da["lon"].values if "lon" in da.coords else np.arange(da.sizes["lon"])
    values = np.ma.masked_invalid(da.transpose("lat", "lon").values.astype("float64"))
    ax.set_facecolor(LAND_GREY)
    mesh = ax.pcolormesh(lon, lat, values, cmap=cmap, norm=norm, shading="auto")
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    return mesh


def _hatch_extrapolation(ax: Any, step: xr.Dataset, layer_index: int) -> bool:
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


def _map_png(step: xr.Dataset, target: str, when: str) -> bytes:
    panels = _panels(step, target)
    finite = np.concatenate([np.ravel(p.values) for _, p in panels]).astype("float64")
    finite = finite[np.isfinite(finite)]
    positive = finite[finite > 0]
    cmap = colormaps["viridis"].with_extremes(bad=LAND_GREY)
    vmin = math.nan
    if finite.size and positive.size and (finite >= 0).all():
        vmin, vmax = float(positive.min()), float(positive.max())
        norm: Normalize = LogNorm(vmin=vmin, vmax=vmax if vmax > vmin else vmin * 10)
        cmap = cmap.with_extremes(under=cmap(0.0))  # zeros: the lowest colour, not land
        scale = "log"
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
        scale = "linear"
    logger.info("report: %s map on a %s colour scale", target, scale)
    attrs = step[target].attrs
    fig, axes = _grid_figure(len(panels))
    hatched = False
    mesh = None
    for i, (ax, (layer, da)) in enumerate(zip(axes, panels, strict=True)):
        plot = da.where(~(da <= 0), vmin) if scale == "log" else da  # keep 0 off the land
        mesh = _draw_map(ax, plot, cmap=cmap, norm=norm)
        hatched |= _hatch_extrapolation(ax, step, i)
        ax.set_title(layer or target)
    units = attrs.get("units", "")
    label = f"{attrs.get('long_name', target)}" + (f" [{units}]" if units else "")
    fig.colorbar(mesh, ax=axes, label=label, extend="min" if scale == "log" else "neither")
    fig.suptitle(f"{target}, {when}")
    handles = [Patch(facecolor=LAND_GREY, label="land")]
    if hatched:
        handles.append(Patch(facecolor="white", hatch="////", label="extrapolation"))
    fig.legend(handles=handles, loc="outside lower right", fontsize="small", ncols=2)
    return _png(fig)


def _interval_png(step: xr.Dataset, target: str, when: str) -> bytes:
    centre = step[target]
    width = (step[f"{target}_upper"] - step[f"{target}_lower"]) / abs(centre)
    width = width.where(np.isfinite(width))
    panels = _panels(xr.Dataset({"w": width}), "w")
    finite = np.concatenate([np.ravel(p.values) for _, p in panels])
    finite = finite[np.isfinite(finite)]
    hi = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    norm = Normalize(vmin=0.0, vmax=hi if hi > 0 else 1.0)
    cmap = colormaps["magma"].with_extremes(bad=LAND_GREY)
    fig, axes = _grid_figure(len(panels))
    mesh = None
    for ax, (layer, da) in zip(axes, panels, strict=True):
        mesh = _draw_map(ax, da, cmap=cmap, norm=norm)
        ax.set_title(layer or target)
    fig.colorbar(mesh, ax=axes, label="(upper - lower) / predicted", extend="max")
    fig.suptitle(f"{target}: relative interval width, {when}")
    return _png(fig)


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


def _scatter_png(predictions: pd.DataFrame, targets: Sequence[str], known: Sequence[str]) -> bytes:
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
    return _png(fig)


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


def _skill_png(metrics: Mapping[str, Any]) -> bytes:
    models = _models(metrics)
    names = [n for n, _ in models]
    colours = ["tab:blue"] + ["tab:gray"] * (len(models) - 1)
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, label in (
        (axes[0], "mv_mse", "test mv_mse (lower is better)"),
        (axes[1], "r2_mean", "test mean R² (higher is better)"),
    ):
        values = [_num(_get(m, "test", key)) for _, m in models]
        bars = ax.bar(range(len(names)), np.nan_to_num(values), color=colours)
        ax.bar_label(bars, labels=[format_number(v) for v in values], fontsize="small")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
        ax.set_title(label)
        ceiling = _get(metrics, "noise_ceiling", "test", key)
        if ceiling is not None:
            ax.axhline(float(ceiling), color="black", ls="--", lw=1, label=_NOISE)
            ax.legend(fontsize="small", loc="upper right")
    ax = axes[2]
    model = metrics[_MODEL]
    kinds = [("block CV", _get(model, "cv")), ("random CV", _get(model, "random_cv"))]
    means, stds = zip(*(_cv_summary(cv, "mv_mse") for _, cv in kinds), strict=True)
    bars = ax.bar(
        [0, 1],
        np.nan_to_num([_num(m) for m in means]),
        yerr=np.nan_to_num([_num(s) for s in stds]),
        capsize=4,
        color=["tab:blue", "tab:orange"],
    )
    ax.bar_label(bars, labels=[format_number(m) for m in means], fontsize="small")
    test = _get(model, "test", "mv_mse")
    if test is not None:
        ax.axhline(float(test), color="black", ls=":", lw=1, label="test")
        ax.legend(fontsize="small")
    ax.set_xticks([0, 1], [k for k, _ in kinds])
    ax.set_title("model mv_mse: block vs random CV")
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------

_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:75em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}"
    "figure{margin:1em 0}img{max-width:100%}.note{color:#555}"
)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>\n" for r in rows)
    return f'<table class="{cls}">\n<tr>{head}</tr>\n{body}</table>\n'


def _pm(mean: Any, std: Any) -> str:
    if mean is None:
        return format_number(None)
    return format_number(mean) + ("" if std is None else f" ± {format_number(std)}")


def _skill_html(metrics: Mapping[str, Any], targets: Sequence[str]) -> str:
    models = _models(metrics)
    ceiling = _get(metrics, "noise_ceiling", "test")
    header = [
        "model",
        "test mse",
        "test mv_mse",
        "test r2_mean",
        "block-CV mv_mse (mean ± std)",
        "random-CV mv_mse (mean ± std)",
    ]
    rows = []
    for name, entry in models:
        test = _get(entry, "test") or {}
        rows.append(
            [
                name,
                format_number(test.get("mse")),
                format_number(test.get("mv_mse")),
                format_number(test.get("r2_mean")),
                _pm(*_cv_summary(_get(entry, "cv"), "mv_mse")),
                _pm(*_cv_summary(_get(entry, "random_cv"), "mv_mse")),
            ]
        )
    if isinstance(ceiling, Mapping):
        rows.append(
            [
                _NOISE,
                format_number(ceiling.get("mse")),
                format_number(ceiling.get("mv_mse")),
                format_number(ceiling.get("r2_mean")),
                _MISSING,
                _MISSING,
            ]
        )
    parts = ["<h2>Skill</h2>\n", _table(header, rows, "skill")]
    block, _ = _cv_summary(_get(metrics, _MODEL, "cv"), "mv_mse")
    rand, _ = _cv_summary(_get(metrics, _MODEL, "random_cv"), "mv_mse")
    if block is not None and rand is not None and block > 0:
        pct = 100 * (1 - rand / block)
        side = f"{format_number(abs(pct))}% {'lower' if pct >= 0 else 'higher'}"
        parts.append(
            f'<p class="note">Random CV gives mv_mse {_e(format_number(rand))} against '
            f"{_e(format_number(block))} for block CV ({_e(side)}): random folds put "
            "neighbouring, correlated samples on both sides of the split, so they overstate "
            "skill away from the data. Trust the block-CV and test numbers.</p>\n"
        )
    names = [n for n, _ in models] + ([_NOISE] if isinstance(ceiling, Mapping) else [])
    entries = [_get(e, "test") for _, e in models]
    entries += [ceiling] if isinstance(ceiling, Mapping) else []
    header = ["target", *(f"R² {n}" for n in names), "bias model"]
    rows = [
        [
            t,
            *(format_number(_get(e, "r2", t)) for e in entries),
            format_number(_get(metrics, _MODEL, "test", "bias", t)),
        ]
        for t in targets
    ]
    parts += ["<h3>Test R² per target</h3>\n", _table(header, rows, "r2")]
    return "".join(parts)


def _flatten(counts: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in counts.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, f"{name} / ")
        else:
            out.append((name, value))
    return out


def _index_html(
    *,
    title: str,
    fields: xr.Dataset | None,
    counts: Mapping[str, Any] | None,
    skill: str,
    images: Sequence[tuple[str, str]],
) -> str:
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        f"<h1>{_e(title)}</h1>\n",
    ]
    if fields is not None and fields.attrs:
        rows = [[k, v] for k, v in fields.attrs.items()]
        parts += ["<h2>Provenance</h2>\n", _table(["attribute", "value"], rows, "provenance")]
    if counts:
        rows = [[k, format_number(v)] for k, v in _flatten(counts)]
        parts += ["<h2>Counts</h2>\n", _table(["count", "value"], rows, "counts")]
    parts.append(skill)
    parts.append("<h2>Figures</h2>\n<ul>\n")
    parts += [f'<li><a href="{_e(quote(rel))}">{_e(cap)}</a></li>\n' for rel, cap in images]
    parts.append("</ul>\n")
    parts += [
        f'<figure><img src="{_e(quote(rel))}" alt="{_e(cap)}">'
        f"<figcaption>{_e(cap)}</figcaption></figure>\n"
        for rel, cap in images
    ]
    parts.append("</body>\n</html>\n")
    return "".join(parts)
