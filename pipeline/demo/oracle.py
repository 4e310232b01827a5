"""The truth's own prediction intervals: what coverage a perfect interval reaches by chance.

A 90 % interval that is exactly right still covers a group of 30 held-out rows anywhere
from ~0.80 to ~0.97: the rows are a sample, and the rows of a spatial block share their
errors. A check such as "every layer and basin covered 85-95 %" therefore needs a
reference: how often would the *true* observation distribution pass it on these very rows?

The realistic demo world knows that distribution (:mod:`pipeline.demo.noise`):
:func:`pipeline.demo.ceiling.noise_ceiling` draws every row's transformed observation
many times under the world's full noise. :func:`oracle_coverage` splits those draws in
two: the first half gives each row its **oracle interval** (the draws' central
quantiles), the second half are **pseudo-observations**, each draw a world the run could
have observed. The oracle interval's coverage of the real observations is reported as the
model's intervals are (:func:`pipeline.model.intervals.coverage_report`), and across the
pseudo-worlds the spread of each group's coverage and the share of worlds in which every
group of at least ``min_rows`` rows lands inside the band. In each pseudo-world the layers
of a cast share its cast effect and the casts of a cruise their instrument, as in the
world's own casts (:func:`pipeline.demo.noise.draw_cast_effects`), so groups that share
casts or cruises move together as the real ones do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.model.intervals import coverage_report

__all__ = ["band_misses", "oracle_coverage", "oracle_line"]


def band_misses(
    report: Mapping[str, Any],
    band: Sequence[float],
    *,
    by: Sequence[str] = ("layer", "basin"),
) -> list[str]:
    """List the groups of a coverage report whose mean coverage lies outside ``band``.

    Groups flagged ``small`` (fewer rows than the report's ``min_rows``) are not checked.

    Parameters
    ----------
    report : mapping
        A :func:`~pipeline.model.intervals.coverage_report` dict.
    band : (float, float)
        The accepted range.
    by : sequence of str
        The categories to check.

    Returns
    -------
    list of str
        ``"<category> <label>"`` of each group outside the band.

    Examples
    --------
    >>> r = {"by": {"layer": {"a": {"mean": 0.8, "small": False},
    ...                       "b": {"mean": 0.9, "small": False},
    ...                       "c": {"mean": 0.5, "small": True}}}}
    >>> band_misses(r, (0.85, 0.95))
    ['layer a']
    """
    low, high = band
    return [
        f"{name} {label}"
        for name in by
        for label, group in report.get("by", {}).get(name, {}).items()
        if not group.get("small") and not low <= group["mean"] <= high
    ]


def oracle_coverage(
    draws: np.ndarray,
    y: np.ndarray,
    rows: Mapping[str, np.ndarray],
    *,
    targets: Sequence[str],
    by: Mapping[str, Sequence[Any]],
    coverage: float = 0.9,
    band: tuple[float, float] | None = None,
    min_rows: int = 30,
) -> dict[str, Any]:
    """Coverage of the truth's own intervals, and the chance spread of group coverage.

    Parameters
    ----------
    draws : numpy.ndarray, shape (draws, n, k)
        Transformed observations of every row drawn under the world's noise, given the
        truth (at least 4 draws).
    y : numpy.ndarray, shape (n, k)
        The real transformed observations.
    rows : mapping of str to boolean array, shape (n,)
        The row sets to check (e.g. ``{"test": ..., "cv": ...}``).
    targets : sequence of str
        Target names (the ``k`` columns).
    by : mapping of str to sequence
        Categories to condition on (``{"layer": ..., "basin": ...}``), one label per row.
    coverage : float
        Nominal coverage of the intervals.
    band : (float, float), optional
        The accepted range of a group's coverage; ``coverage -/+ 0.05`` by default.
    min_rows : int
        Groups with fewer rows are left out of the band check (and flagged ``small``).

    Returns
    -------
    dict
        ``nominal``, ``band``, ``min_rows``, ``draws`` (pseudo-worlds), and per row set:
        :func:`~pipeline.model.intervals.coverage_report` of the real observations by
        the oracle intervals, plus ``chance``: ``{"groups": {by: {label: [p05, p95]}}``
        (the 90 % range of the group's mean coverage over the pseudo-worlds),
        ``"all_in_band"`` (share of pseudo-worlds with every checked group inside the band),
        ``"misses_mean"`` (groups outside the band per pseudo-world), ``"checked"`` (groups
        of at least ``min_rows`` rows)}, and ``misses``: the groups the real observations
        put outside the band.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = rng.normal(size=(400, 300, 1))
    >>> y = rng.normal(size=(300, 1))
    >>> out = oracle_coverage(d, y, {"all": np.ones(300, bool)}, targets=["t"],
    ...                       by={"g": ["a"] * 150 + ["b"] * 150})
    >>> 0.85 < out["all"]["mean"] < 0.95, out["all"]["chance"]["checked"]
    (True, 2)
    """
    sims = np.asarray(draws, dtype="float64")
    half = sims.shape[0] // 2
    if half < 2:
        raise ValueError(f"oracle_coverage needs at least 4 draws, got {sims.shape[0]}")
    alpha = (1.0 - coverage) / 2.0
    lo, hi = np.quantile(sims[:half], [alpha, 1.0 - alpha], axis=0)
    pseudo = sims[half:]
    inside = ((pseudo >= lo) & (pseudo <= hi)).mean(axis=-1)  # (worlds, n): over targets
    low, high = band if band is not None else (coverage - 0.05, coverage + 0.05)
    labels = {name: np.asarray(v).astype(str) for name, v in by.items()}
    out: dict[str, Any] = {
        "nominal": coverage,
        "band": [low, high],
        "min_rows": min_rows,
        "draws": int(pseudo.shape[0]),
    }
    for split, sel in rows.items():
        sel = np.asarray(sel, dtype=bool)
        if not sel.any():
            continue
        report = coverage_report(
            y[sel],
            lo[sel],
            hi[sel],
            targets=targets,
            by={k: v[sel] for k, v in labels.items()},
            min_rows=min_rows,
        )
        spread: dict[str, dict[str, list[float]]] = {}
        misses = np.zeros(pseudo.shape[0], dtype=int)
        checked = 0
        for name, lab in labels.items():
            spread[name] = {}
            for value, group in report["by"][name].items():
                members = sel & (lab == value)
                per_world = inside[:, members].mean(axis=1)
                spread[name][value] = [float(v) for v in np.quantile(per_world, [0.05, 0.95])]
                if group["small"]:
                    continue
                checked += 1
                misses += (per_world < low) | (per_world > high)
        report["chance"] = {
            "groups": spread,
            "all_in_band": float(np.mean(misses == 0)),
            "misses_mean": float(misses.mean()),
            "checked": checked,
        }
        report["misses"] = band_misses(report, (low, high), by=list(labels))
        out[split] = report
    return out


def oracle_line(metrics: Mapping[str, Any]) -> str:
    """One line: the model's and the truth's own intervals against the coverage band.

    Examples
    --------
    >>> group = {"mean": 0.9, "small": False}
    >>> rep = {"mean": 0.9, "by": {"layer": {"a": group, "b": {"mean": 0.8, "small": False}}}}
    >>> chance = {"checked": 2, "all_in_band": 0.6}
    >>> m = {"intervals": {"nominal": 0.9, "test": rep, "cv": rep},
    ...      "noise_ceiling": {"intervals": {"band": [0.85, 0.95], "min_rows": 30,
    ...          "test": {**rep, "misses": [], "chance": chance},
    ...          "cv": {**rep, "misses": ["layer b"], "chance": chance}}}}
    >>> print(oracle_line(m))  # doctest: +NORMALIZE_WHITESPACE
    layers and basins of >= 30 rows with coverage outside 0.85-0.95 (test / CV folds):
    model 1 / 1 of 2 / 2, the truth's own 90% intervals 0 / 1; a perfect interval keeps
    all of them inside in 60% / 60% of simulated worlds
    """
    oracle = metrics["noise_ceiling"]["intervals"]
    low, high = oracle["band"]
    splits = [s for s in ("test", "cv") if s in oracle and s in metrics.get("intervals", {})]
    model = " / ".join(str(len(band_misses(metrics["intervals"][s], (low, high)))) for s in splits)
    truth = " / ".join(str(len(oracle[s]["misses"])) for s in splits)
    checked = " / ".join(str(oracle[s]["chance"]["checked"]) for s in splits)
    share = " / ".join(f"{oracle[s]['chance']['all_in_band']:.0%}" for s in splits)
    names = " / ".join({"test": "test", "cv": "CV folds"}[s] for s in splits)
    return (
        f"layers and basins of >= {oracle['min_rows']} rows with coverage outside "
        f"{low:.2f}-{high:.2f} ({names}): model {model} of {checked}, the truth's own "
        f"{metrics['intervals']['nominal']:.0%} intervals {truth}; a perfect interval keeps "
        f"all of them inside in {share} of simulated worlds"
    )
