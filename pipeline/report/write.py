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

import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.report.evaluation import (
    calibration_png,
    carbon_export_html,
    evaluation_html,
    honesty_png,
)
from pipeline.report.figures import (
    _MODEL,
    _NOISE,
    _cv_summary,
    _get,
    _layer_order,
    _models,
    interval_png,
    map_png,
    scatter_png,
    skill_png,
)
from pipeline.report.months import layer_skill_html, months_html
from pipeline.report.page import _MISSING, escape, format_number, html_table, index_html
from pipeline.store import OutputStore, as_store

__all__ = ["write_report"]

logger = logging.getLogger(__name__)


def write_report(
    out_url: str | OutputStore,
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
    out_url : str or OutputStore
        Folder to write into, a local path or fsspec URL (``s3://bucket/run/report``), or
        its store; created when missing. Files already there with the same names are
        replaced, each written whole (:meth:`~pipeline.store.OutputStore.open_atomic`).
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
        Passed to the fsspec filesystem (e.g. ``{"client_kwargs": {"endpoint_url": …}}``)
        when ``out_url`` is a URL.
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
    store = as_store(out_url, storage_options=storage_options)
    store.makedirs()
    written: dict[str, str] = {}
    used: set[str] = set()

    def put(name: str, stem: str, suffix: str, data: bytes) -> None:
        rel = _unique_name(stem, suffix, used)
        store.write_bytes(rel, data)
        written[name] = rel
        logger.debug("report: wrote %s (%d bytes)", rel, len(data))

    figures: list[tuple[str, str]] = []  # (name, caption) in page order
    pages: list[tuple[str, str]] = []  # (name, link text) of the month pages
    if fields is not None and "time" in fields.dims:
        for target in targets:
            if target in fields.data_vars:
                html = months_html(fields, target, title=title)
                put(f"months_{target}", f"months_{target}", ".html", html.encode("utf-8"))
                pages.append((f"months_{target}", f"{target}: every month and layer"))
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
            put(f"maps_{target}", f"maps_{target}", ".png", map_png(step, target, when))
            figures.append((f"maps_{target}", f"{target}: predicted field, {when}"))
            bounds = (f"{target}_lower", f"{target}_upper")
            if all(b in step.data_vars for b in bounds):
                put(
                    f"interval_{target}",
                    f"interval_{target}",
                    ".png",
                    interval_png(step, target, when),
                )
                figures.append((f"interval_{target}", f"{target}: relative interval width, {when}"))
    else:
        layer_order = []
        logger.info("report: no fields given; maps left out")

    put(
        "predicted_vs_observed",
        "predicted_vs_observed",
        ".png",
        scatter_png(predictions, targets, layer_order),
    )
    figures.append(("predicted_vs_observed", "Observed vs predicted, test rows"))
    put("skill", "skill", ".png", skill_png(metrics))
    figures.append(("skill", "Skill of the model and the baselines"))
    for name, caption, png in (
        ("honesty", "CV honesty check: each CV estimate and the true error", honesty_png(metrics)),
        ("calibration", "Prediction interval calibration (test blocks)", calibration_png(metrics)),
    ):
        if png is not None:
            put(name, name, ".png", png)
            figures.append((name, caption))

    fragment = (
        _skill_html(metrics, targets)
        + evaluation_html(metrics, targets)
        + carbon_export_html(fields)
    )
    put("skill_table", "skill_table", ".html", fragment.encode("utf-8"))
    page = index_html(
        title=title,
        fields=fields,
        counts=counts,
        skill=fragment + layer_skill_html(predictions, targets),
        images=[(written[n], cap) for n, cap in figures],
        links=[(written[n], text) for n, text in pages],
    )
    put("index", "index", ".html", page.encode("utf-8"))
    logger.info("report: %d file(s) written to %s", len(written), store.url)
    return written


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


def _pm(mean: Any, std: Any) -> str:
    if mean is None:
        return format_number(None)
    return format_number(mean) + ("" if std is None else f" ± {format_number(std)}")


def _skill_html(metrics: Mapping[str, Any], targets: Sequence[str]) -> str:
    models = _models(metrics)
    ceiling = _get(metrics, "noise_ceiling", "test")
    header = [
        "model",
        "test MSE",
        "test mv_mse",
        "test R² mean",
        "block-CV MSE (mean ± std)",
        "random-CV MSE (by cast)",
        "leave-one-basin-out MSE",
        "block-CV mv_mse",
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
                _pm(*_cv_summary(_get(entry, "cv"), "mse")),
                _pm(*_cv_summary(_get(entry, "random_cv"), "mse")),
                _pm(*_cv_summary(_get(entry, "basins_cv"), "mse")),
                _pm(*_cv_summary(_get(entry, "cv"), "mv_mse")),
            ]
        )
    subset = _get(metrics, "noise_ceiling", "targets")
    if isinstance(ceiling, Mapping):
        rows.append(
            [
                _NOISE + (f" ({len(subset)} of {len(targets)} targets)" if subset else ""),
                format_number(ceiling.get("mse")),
                format_number(ceiling.get("mv_mse")),
                format_number(ceiling.get("r2_mean")),
                *([_MISSING] * 4),
            ]
        )
    parts = [
        "<h2>Skill</h2>\n",
        '<p class="note">MSE is the mean over targets of each target\'s MSE in the '
        "transformed space (the headline); mv_mse weighs errors by the targets' covariance "
        "(1 = predicting the mean).</p>\n",
        html_table(header, rows, "skill"),
    ]
    block, _ = _cv_summary(_get(metrics, _MODEL, "cv"), "mse")
    rand, _ = _cv_summary(_get(metrics, _MODEL, "random_cv"), "mse")
    if block is not None and rand is not None and block > 0:
        pct = 100 * (1 - rand / block)
        side = f"{format_number(abs(pct))}% {'lower' if pct >= 0 else 'higher'}"
        parts.append(
            f'<p class="note">Random CV gives MSE {escape(format_number(rand))} against '
            f"{escape(format_number(block))} for block CV ({escape(side)}): random folds put "
            "neighbouring, correlated samples on both sides of the split, so they overstate "
            "skill away from the data. See the CV honesty check below where the world has a "
            "truth.</p>\n"
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
    parts += ["<h3>Test R² per target</h3>\n", html_table(header, rows, "r2")]
    return "".join(parts)
