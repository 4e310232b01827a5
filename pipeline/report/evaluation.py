"""The report's evaluation sections: comparisons, honesty check, intervals, autocorrelation.

Each function reads the parts of ``metrics.json`` that :mod:`pipeline.run.evaluation`
(and the fields step's CV honesty check, :mod:`pipeline.demo.honesty`) write, and returns
an HTML fragment or a PNG; a missing part gives an empty fragment, so older runs still
render. :func:`carbon_export_html` integrates the predicted flux over the ocean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from pipeline.geo import EARTH_RADIUS_KM
from pipeline.report.page import _DPI, escape, figure_png, format_number, html_table

__all__ = [
    "calibration_png",
    "carbon_export_html",
    "evaluation_html",
    "honesty_png",
]

_FLUX = "flux_mgc_m2_d"


def _comparisons_html(metrics: Mapping[str, Any]) -> str:
    comparisons = metrics.get("comparisons") or {}
    if not comparisons:
        return ""
    header = [
        "baseline",
        "split",
        "model - baseline MSE [90 % interval]",
        "verdict",
        "model - baseline mv_mse [90 % interval]",
    ]
    rows = []
    for name, entry in comparisons.items():
        for split in ("test", "cv"):
            part = entry.get(split)
            if not part:
                continue
            m, v = part["mse"], part["mv_mse"]
            verdict = (
                "model beats it"
                if m["beats"]
                else ("model worse" if m["worse"] else "no clear difference")
            )
            rows.append(
                [
                    name,
                    "test blocks" if split == "test" else "block CV (out of fold)",
                    f"{m['diff']:+.4g} [{m['lo']:+.4g}, {m['hi']:+.4g}]",
                    verdict,
                    f"{v['diff']:+.4g} [{v['lo']:+.4g}, {v['hi']:+.4g}]",
                ]
            )
    return (
        "<h3>Model against each baseline</h3>\n"
        "<p class=\"note\">Differences of the model's error minus the baseline's (negative: "
        "the model is better), with a 90 % interval from a bootstrap over whole spatial "
        'blocks. "Beats" only where the interval excludes 0.</p>\n'
        + html_table(header, rows, "comparisons")
    )


def _honesty_html(metrics: Mapping[str, Any]) -> str:
    h = metrics.get("honesty")
    if not h:
        return ""
    rows = [
        [name, format_number(e["mse"]), format_number(e["ratio"])]
        for name, e in h["estimates"].items()
    ]
    rows.append(["true error (fields vs truth + noise)", format_number(h["true_mse"]), "1"])
    dist = ", ".join(f"{k}: {format_number(v)}" for k, v in h.get("by_distance", {}).items())
    return (
        "<h3>CV honesty check</h3>\n"
        f'<p class="note">The true error of the fields against the world\'s truth over ocean '
        f"cells at least {escape(h['far_km'])} km from every training cast ({escape(h['n_cells'])} "
        "cell-months-layers), plus the irreducible observation noise (the noise ceiling), "
        f"beside each cross-validation's estimate of it. Closest: <b>{escape(h['closest'])}</b>. "
        f"True error by distance to the nearest cast: {escape(dist)}. On real data there is no "
        "truth: trust the CV that came closest here.</p>\n"
        + html_table(
            ["estimate", "MSE (targets with a truth)", "estimate / truth"], rows, "honesty"
        )
    )


def _layer_skill_html(metrics: Mapping[str, Any], targets: Sequence[str]) -> str:
    skill = (metrics.get("layer_skill") or {}).get("test")
    if not skill:
        return ""
    rows = [
        [layer, *(format_number(v.get(t)) for t in targets), format_number(v.get("mean"))]
        for layer, v in skill.items()
    ]
    return (
        "<h3>Skill against the climatology per layer (test blocks)</h3>\n"
        '<p class="note">1 - MSE(model) / MSE(per-layer climatology): 0 is no better than '
        "the climatology, 1 is perfect.</p>\n"
        + html_table(["layer", *targets, "mean"], rows, "layer-skill")
    )


def _groups_html(metrics: Mapping[str, Any]) -> str:
    basins = ((metrics.get("groups") or {}).get("test") or {}).get("basin")
    if not basins:
        return ""
    rows = [
        [
            name,
            str(g["n"]),
            format_number(g["mse"]),
            format_number(g["mv_mse"]),
            format_number(g["r2_mean"]),
        ]
        for name, g in basins["groups"].items()
    ]
    spread = basins.get("spread") or {}
    blocks = (((metrics.get("groups") or {}).get("test") or {}).get("block") or {}).get("spread")
    note = ""
    if blocks:
        n_blocks = len(metrics["groups"]["test"]["block"]["groups"])
        note = (
            f'<p class="note">Test MSE over {escape(n_blocks)} '
            f"spatial blocks: mean {format_number(blocks['mean'])}, std "
            f"{format_number(blocks['std'])}, range {format_number(blocks['min'])}-"
            f"{format_number(blocks['max'])}.</p>\n"
        )
    if spread:
        rows.append(["spread over basins (std)", "", format_number(spread.get("std")), "", ""])
    return (
        "<h3>Test scores per basin</h3>\n"
        + html_table(["basin", "rows", "MSE", "mv_mse", "R² mean"], rows, "basins")
        + note
    )


def _intervals_html(metrics: Mapping[str, Any]) -> str:
    iv = metrics.get("intervals") or {}
    test = iv.get("test")
    if not test:
        return ""
    rows = []
    oracle = (metrics.get("noise_ceiling") or {}).get("intervals") or {}
    checks = [("test", "test", test), ("CV folds", "cv", iv.get("cv") or {})]
    for split, key, report in checks:
        truth = oracle.get(key) or {}
        for by, groups in report.get("by", {}).items():
            for label, g in groups.items():
                own = truth.get("by", {}).get(by, {}).get(label)
                spread = truth.get("chance", {}).get("groups", {}).get(by, {}).get(label)
                rows.append(
                    [
                        split,
                        by,
                        label,
                        str(g["n"]),
                        str(g.get("blocks", "-")),
                        format_number(g["mean"]),
                        format_number(g["joint"]),
                        format_number(g["min_target"]) + (" (few rows)" if g.get("small") else ""),
                        format_number(own["mean"]) if own else "-",
                        f"{spread[0]:.2f}-{spread[1]:.2f}" if spread else "-",
                    ]
                )
    curve = ", ".join(f"{c['nominal']:.0%} → {c['mean']:.2f}" for c in iv.get("calibration", []))
    reference = ""
    if oracle:
        from pipeline.demo.oracle import oracle_line

        reference = (
            " The truth's own intervals (the central quantiles of each row's observation "
            "drawn under the world's noise) and the range a perfect interval's coverage "
            "takes over simulated worlds (90 %) show how far off the nominal a class lands "
            f"by chance alone: {escape(oracle_line(metrics))}."
        )
    return (
        "<h3>Prediction intervals</h3>\n"
        f'<p class="note">{escape(iv.get("method", ""))}. Nominal {iv.get("nominal", 0):.0%}: '
        f"test rows covered {format_number(test['mean'])} (all targets at once "
        f"{format_number(test['joint'])}). Calibration (nominal → observed): {escape(curve)}. "
        "The test blocks are a few regions; the CV-fold rows (each fold's intervals "
        "calibrated on the other folds only) span every block. Errors are correlated "
        "within a block, so a class's coverage is worth about as many independent checks "
        "as it has blocks: a basin of 2 or 3 blocks can land well off the nominal by "
        f"chance.{reference}</p>\n"
        + html_table(
            [
                "rows of",
                "by",
                "class",
                "rows",
                "blocks",
                "coverage (mean over targets)",
                "joint",
                "worst",
                "truth's own intervals",
                "perfect interval, chance range",
            ],
            rows,
            "coverage",
        )
    )


def _residuals_html(metrics: Mapping[str, Any]) -> str:
    res = metrics.get("residuals") or {}
    layers = res.get("layers")
    if not layers:
        return ""
    rows = [
        [
            name,
            str(v["n"]),
            format_number(v["morans_i"].get("mean")),
            format_number(v.get("range_km")),
        ]
        for name, v in layers.items()
    ]
    weak = metrics.get("weak_targets") or {}
    flagged = weak.get("flagged") or []
    note = (
        f'<p class="note">Targets without skill (block-CV R² below '
        f"{escape(weak.get('threshold_r2'))}): {escape(', '.join(flagged))}.</p>\n"
        if flagged
        else ""
    )
    return (
        "<h3>Residual spatial autocorrelation (out of fold)</h3>\n"
        f'<p class="note">Moran\'s I of the residuals with neighbours closer than '
        f"{escape(res.get('band_km'))} km (0: independent), and the range of an exponential "
        "variogram fitted to them: blocks and buffers narrower than the range let a random "
        "split look better than it is.</p>\n"
        + html_table(
            ["layer", "rows", "Moran's I (mean over targets)", "range (km)"], rows, "residuals"
        )
        + note
    )


def evaluation_html(metrics: Mapping[str, Any], targets: Sequence[str]) -> str:
    """Return the evaluation sections of the report page (empty parts left out)."""
    return "".join(
        [
            _comparisons_html(metrics),
            _honesty_html(metrics),
            _layer_skill_html(metrics, targets),
            _groups_html(metrics),
            _intervals_html(metrics),
            _residuals_html(metrics),
        ]
    )


def calibration_png(metrics: Mapping[str, Any]) -> bytes | None:
    """Calibration curve: observed against nominal coverage, overall and per layer."""
    curve = (metrics.get("intervals") or {}).get("calibration")
    if not curve:
        return None
    fig = Figure(figsize=(4.5, 4.2), dpi=_DPI)
    ax = fig.add_subplot()
    nominal = [c["nominal"] for c in curve]
    ax.plot([0.4, 1], [0.4, 1], color="0.6", lw=1, ls="--", label="perfect")
    ax.plot(nominal, [c["mean"] for c in curve], "o-", color="k", label="all test rows")
    layers = sorted({k for c in curve for k in c.get("by", {}).get("layer", {})})
    for layer in layers:
        ax.plot(
            nominal,
            [c["by"]["layer"].get(layer, {}).get("mean", np.nan) for c in curve],
            ".-",
            label=layer,
        )
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage (test blocks)")
    ax.set_title("interval calibration")
    ax.legend(fontsize=7)
    return figure_png(fig)


def honesty_png(metrics: Mapping[str, Any]) -> bytes | None:
    """Bar chart: each CV estimate against the true error of the fields."""
    h = metrics.get("honesty")
    if not h:
        return None
    names = list(h["estimates"])
    values = [h["estimates"][n]["mse"] for n in names]
    fig = Figure(figsize=(5, 3.4), dpi=_DPI)
    ax = fig.add_subplot()
    ax.bar(names, values, color=["C1" if n == h["closest"] else "C0" for n in names])
    ax.axhline(h["true_mse"], color="k", ls="--", label="true error far from casts")
    ax.set_ylabel("MSE (transformed)")
    ax.set_title("CV honesty check")
    ax.legend(fontsize=7)
    return figure_png(fig)


def carbon_export_html(fields: xr.Dataset | None) -> str:
    """Integrate the predicted flux over the ocean per layer, in Pg C per year.

    The flux target is a layer mean (mg C m-2 d-1); integrated over the ocean cells'
    areas and the year it reads as the export through that layer. Real data: 5.8-6.1 Pg
    C yr-1 at the base of the euphotic zone is the published sanity check.
    """
    if fields is None or _FLUX not in fields:
        return ""
    flux = fields[_FLUX]
    lat = np.radians(fields["lat"].values)
    dlat = np.radians(float(np.abs(np.diff(fields["lat"].values)).mean())) if lat.size > 1 else 0
    dlon = (
        np.radians(float(np.abs(np.diff(fields["lon"].values)).mean()))
        if fields.sizes["lon"] > 1
        else 0
    )
    r = EARTH_RADIUS_KM * 1e3
    area = xr.DataArray(
        r**2 * dlat * dlon * np.cos(lat), dims=["lat"], coords={"lat": fields["lat"]}
    )
    mean_flux = flux.mean("time") if "time" in flux.dims else flux
    total = (mean_flux * area).sum(["lat", "lon"]).compute()  # mg C d-1
    pg = total.values * 365.25 / 1e18
    rows = [
        [str(layer), format_number(v)] for layer, v in zip(fields["layer"].values, pg, strict=True)
    ]
    return (
        "<h3>Carbon flux integrated over the ocean</h3>\n"
        '<p class="note">Layer-mean flux, averaged over the months mapped and integrated over '
        "the ocean cells. For real data the published export at the base of the euphotic "
        "zone is 5.8-6.1 Pg C yr⁻¹.</p>\n" + html_table(["layer", "Pg C yr⁻¹"], rows, "carbon")
    )
