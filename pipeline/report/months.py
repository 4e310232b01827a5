"""Every month of every layer of a field, on one page per target, and skill per layer.

:func:`months_html` draws a target's field for every time step and layer as small map
tiles (one colour scale for the whole page, land grey, cells where the model
extrapolates striped) and returns one self-contained HTML page (tiles and colour bar
embedded as ``data:`` PNGs: no extra files, nothing to go missing when the report is
copied). Tiles are coloured arrays written by Pillow, not matplotlib figures, so a
year of three layers of ten targets takes seconds, not minutes.

:func:`layer_skill_html` is the held-out skill (R², bias, rows) of each target in each
layer, from the test rows of the predictions.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from pipeline.report.figures import _r2, _test_rows, colour_scale, plain_log_ticks
from pipeline.report.page import escape, figure_png, format_number, html_table, page_head

__all__ = ["layer_skill_html", "months_html"]

logger = logging.getLogger(__name__)

_TILE_WIDTH = 360  # pixels: tiles of coarse grids are enlarged (nearest neighbour)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _tile(values: np.ndarray, flag: np.ndarray | None, cmap: object, norm: object) -> bytes:
    """One layer at one time step as a PNG: north up, land grey, extrapolation striped."""
    from PIL import Image

    v = np.ma.masked_invalid(np.asarray(values, dtype="float64"))
    rgba = np.asarray(cmap(norm(v)), dtype="float64")  # type: ignore[operator]
    if flag is not None:
        ny, nx = flag.shape
        stripes = ((np.arange(ny)[:, None] + np.arange(nx)[None, :]) % 2) == 0
        out = (np.asarray(flag) > 0.5) & stripes
        rgba[out, :3] = 0.55 * rgba[out, :3] + 0.45  # lighter every other cell
    img = Image.fromarray((rgba[::-1] * 255).round().astype(np.uint8), "RGBA")
    scale = max(1, _TILE_WIDTH // max(img.width, 1))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _colour_bar(cmap: object, norm: object, label: str) -> bytes:
    fig = Figure(figsize=(6.0, 0.9))
    ax = fig.add_axes((0.04, 0.62, 0.92, 0.3))  # fixed: room for ticks and label below
    plain_log_ticks(
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap), cax=ax, orientation="horizontal", label=label
        )  # type: ignore[arg-type]
    )
    return figure_png(fig, crop=False)


def months_html(fields: xr.Dataset, target: str, *, title: str) -> str:
    """Return the page of a target's field at every time step and layer.

    Parameters
    ----------
    fields : xarray.Dataset
        Dims ``(time, layer, lat, lon)`` (or without ``layer``); the target, optionally
        an ``extrapolation`` flag (1: the model extrapolates).
    target : str
        The variable to draw.
    title : str
        The report's title (the page links back to ``index.html``).

    Returns
    -------
    str
        A whole HTML page: a table of months (rows) by layers (columns).

    Examples
    --------
    >>> coords = {"time": pd.date_range("2020-01-01", periods=2, freq="MS"),
    ...           "layer": ["0-100m"], "lat": [0.5, 1.5], "lon": [0.5, 1.5, 2.5]}
    >>> f = xr.Dataset({"c": (("time", "layer", "lat", "lon"), np.ones((2, 1, 2, 3)))},
    ...                coords=coords)
    >>> page = months_html(f, "c", title="run")
    >>> page.count('<img src="data:image/png;base64,'), "2020-02" in page
    (3, True)
    """
    da = fields[target]
    if "layer" not in da.dims:
        da = da.expand_dims(layer=[""])
    da = da.transpose("time", "layer", "lat", "lon")
    values = np.asarray(da.values, dtype="float64")
    flag = None
    if "extrapolation" in fields.data_vars and set(fields["extrapolation"].dims) == set(da.dims):
        flag = np.asarray(fields["extrapolation"].transpose(*da.dims).values, dtype="float64")
    cmap, norm, scale = colour_scale(values)
    attrs = fields[target].attrs
    units = attrs.get("units", "")
    label = f"{attrs.get('long_name', target)}" + (f" [{units}]" if units else "")
    layers = [str(v) for v in da["layer"].values]
    months = pd.DatetimeIndex(da["time"].values).strftime("%Y-%m")
    rows = []
    for i, month in enumerate(months):
        cells = []
        for j, layer in enumerate(layers):
            f = None if flag is None else flag[i, j]
            uri = _data_uri(_tile(values[i, j], f, cmap, norm))
            alt = f"{target}, {layer}, {month}"
            cells.append(f'<td><img src="{uri}" alt="{escape(alt)}" title="{escape(alt)}"></td>')
        rows.append(f'<tr id="m{escape(month)}"><th>{escape(month)}</th>{"".join(cells)}</tr>\n')
    header = "".join(f"<th>{escape(layer)}</th>" for layer in layers)
    index = " ".join(f'<a href="#m{escape(m)}">{escape(m)}</a>' for m in months)
    logger.info(
        "report: %s, %d months x %d layers (%s scale)", target, len(months), len(layers), scale
    )
    return "".join(
        [
            page_head(f"{title}: {target}, every month and layer"),
            '<p><a href="index.html">back to the report</a></p>\n',
            f"<h1>{escape(target)}: every month and layer</h1>\n",
            f'<p class="note">{escape(label)}; {escape(scale)} colour scale, the same for '
            "every map of this page; land grey; striped cells: the model extrapolates "
            "(a predictor outside its training range). Time: the start of each month.</p>\n",
            f'<p><img src="{_data_uri(_colour_bar(cmap, norm, label))}" '
            f'alt="colour scale of {escape(target)}"></p>\n',
            f"<p>{index}</p>\n",
            f'<table class="months">\n<tr><th>month</th>{header}</tr>\n',
            *rows,
            "</table>\n</body>\n</html>\n",
        ]
    )


def layer_skill_html(predictions: pd.DataFrame, targets: Sequence[str]) -> str:
    """Return the held-out skill of the model per target and layer, as an HTML section.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Columns ``layer, split, model, <target>_obs, <target>_pred``; the
        ``model == "model"`` and ``split == "test"`` rows are scored.
    targets : sequence of str
        Target names.

    Returns
    -------
    str
        ``<h3>`` and a table: target, layer, rows, R², bias (transformed space).

    Examples
    --------
    >>> p = pd.DataFrame({"layer": ["a", "a", "a", "b", "b"], "split": "test",
    ...                   "model": "model", "c_obs": [0.0, 1.0, 2.0, 1.0, 3.0],
    ...                   "c_pred": [0.0, 1.0, 2.5, 1.0, 2.0]})
    >>> html = layer_skill_html(p, ["c"])
    >>> "<td>a</td><td>3</td><td>0.875</td><td>0.1667</td>" in html
    True
    """
    test = _test_rows(predictions)
    rows = []
    for target in targets:
        obs_col, pred_col = f"{target}_obs", f"{target}_pred"
        if obs_col not in test.columns or pred_col not in test.columns:
            continue
        for layer, part in test.groupby("layer", sort=False):
            ok = part[[obs_col, pred_col]].dropna()
            obs, pred = ok[obs_col].to_numpy(), ok[pred_col].to_numpy()
            bias = float(np.mean(pred - obs)) if len(ok) else None
            r2 = _r2(obs, pred) if len(ok) > 1 else None
            rows.append(
                [target, str(layer), format_number(len(ok)), format_number(r2), format_number(bias)]
            )
    header = ["target", "layer", "test rows", "R²", "bias (pred - obs)"]
    return (
        "<h3>Test skill per layer</h3>\n"
        '<p class="note">Held-out test blocks, in the transformed (training) space.</p>\n'
        + html_table(header, rows, "layer-skill")
    )
