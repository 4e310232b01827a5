"""The CV honesty check: the true error of the global fields beside each CV estimate.

Only a world with a known truth allows it. The fields step predicts every ocean cell;
the demo's ``truth/fields.zarr`` holds the noise-free layer means there. The error a
cross-validation *estimates* is that of the model's prediction of a new observation at a
place like its held-out rows, so the true counterpart over cells far from every training
cast is, per target (transformed space, area-weighted over cells, months and layers)::

    true_mse = mean (field - truth)^2  +  noise_mse

where ``noise_mse`` is the irreducible observation noise: the noise ceiling's MSE of the
truth's own expectation of each observation (:func:`pipeline.demo.ceiling.noise_ceiling`).
Each CV variant's estimate (block, random by cast, random by cruise, leave one basin out)
is the mean over its folds of the same targets' MSE; the report says which estimate came
closest. Cells are "far" when the nearest training cast is at least ``far_km`` away
(default :data:`FAR_KM`); the error at every distance class is reported too.

This module belongs to the demo: the science stages never import it; the fields step
calls :func:`honesty_check` only when the run's inputs name a truth.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from pipeline.catalog import open_catalog, read_entry
from pipeline.model.intervals import DISTANCE_BINS_KM, distance_class, nearest_km
from pipeline.targets.particles import transform as transform_values

if TYPE_CHECKING:
    from pipeline.run.config import RunConfig
    from pipeline.store import OutputStore

__all__ = ["FAR_KM", "honesty_check", "honesty_line", "run_honesty_check"]

logger = logging.getLogger(__name__)

#: Distance (km) from the nearest training cast beyond which a cell counts as far.
FAR_KM = 500.0


def _cv_estimate(cv: Mapping[str, Any], targets: Sequence[str]) -> float:
    """Mean over folds of the mean over ``targets`` of the per-target MSE."""
    folds = cv.get("folds") or []
    values = [np.mean([f["mse_by_target"][t] for t in targets]) for f in folds]
    return float(np.mean(values)) if values else math.nan


def honesty_check(
    fields: xr.Dataset,
    truth: xr.Dataset,
    *,
    targets: Sequence[str],
    transform: Mapping[str, Any],
    train_lat: np.ndarray,
    train_lon: np.ndarray,
    noise_mse: Mapping[str, float] | None,
    cv_estimates: Mapping[str, Mapping[str, Any]],
    far_km: float = FAR_KM,
) -> dict[str, Any]:
    """Compare each CV estimate with the true error of the fields far from the casts.

    Parameters
    ----------
    fields : xarray.Dataset
        The run's fields, dims ``(time, layer, lat, lon)``, concentrations (not
        transformed).
    truth : xarray.Dataset
        The noise-free truth on a grid of the same or finer step (matched to the fields'
        cells by nearest centre and month).
    targets : sequence of str
        The model's targets; those present in both datasets are compared.
    transform : mapping
        The training transform (``{"name", "epsilon"}``).
    train_lat, train_lon : array
        Positions of the training casts (rows not in the test set).
    noise_mse : mapping of str to float, optional
        Irreducible observation-noise MSE per target (the noise ceiling's
        ``mse_by_target``); taken as 0 (and said) when None.
    cv_estimates : mapping
        ``{variant: score_folds result}`` of the model (block ``cv``, ``random_cv``, …).
    far_km : float
        Distance from the nearest training cast beyond which a cell is far.

    Returns
    -------
    dict
        ``targets``, ``far_km``, ``n_cells`` (far ocean cells x months x layers),
        ``field_mse`` and ``noise_mse`` per target, ``true_mse`` (far cells),
        ``by_distance`` (``{class: true_mse}``), ``estimates`` (``{variant: {"mse",
        "ratio"}}``: estimate / true), ``closest`` (the variant whose estimate is nearest
        the truth, in log ratio), ``noise_included``.
    """
    common = [t for t in targets if t in fields and t in truth]
    if not common:
        raise ValueError(f"honesty check: the truth has none of the targets {list(targets)!r}.")
    name, eps = str(transform.get("name", "none")), float(transform.get("epsilon", 0.0))
    truth = truth[common].sel(
        time=fields["time"], method="nearest", tolerance=np.timedelta64(16, "D")
    )
    truth = truth.sel(layer=fields["layer"]).sel(
        lat=fields["lat"], lon=fields["lon"], method="nearest"
    )
    lat2, lon2 = np.meshgrid(fields["lat"].values, fields["lon"].values, indexing="ij")
    km = nearest_km(lat2.ravel(), lon2.ravel(), train_lat, train_lon).reshape(lat2.shape)
    classes = distance_class(km.ravel()).reshape(km.shape)
    area = np.cos(np.radians(lat2))
    far = km >= far_km
    field_mse: dict[str, float] = {}
    by_class_sums: dict[str, list[float]] = {}
    n_cells = 0
    for t in common:
        pred = transform_values(np.asarray(fields[t].values, dtype=float), name=name, epsilon=eps)
        true = transform_values(np.asarray(truth[t].values, dtype=float), name=name, epsilon=eps)
        sq = (pred - true) ** 2
        ok = np.isfinite(sq)
        w = np.where(ok, area, 0.0)
        sel = w * far
        field_mse[t] = (
            float(np.nansum(np.where(ok, sq, 0) * sel) / sel.sum()) if sel.sum() else math.nan
        )
        n_cells = max(n_cells, int((ok & far).sum()))
        for label in np.unique(classes):
            m = w * (classes == label)
            value = float(np.nansum(np.where(ok, sq, 0) * m) / m.sum()) if m.sum() else math.nan
            by_class_sums.setdefault(str(label), []).append(value)
    noise = {t: float((noise_mse or {}).get(t, 0.0)) for t in common}
    true_mse = float(np.mean([field_mse[t] + noise[t] for t in common]))
    mean_noise = float(np.mean(list(noise.values())))
    order = distance_class(np.array([0.0, *DISTANCE_BINS_KM])).tolist()
    by_distance = {
        label: float(np.mean(by_class_sums[label])) + mean_noise
        for label in order
        if label in by_class_sums
    }
    estimates: dict[str, dict[str, float]] = {}
    for variant, cv in cv_estimates.items():
        est = _cv_estimate(cv, common)
        estimates[variant] = {"mse": est, "ratio": est / true_mse if true_mse > 0 else math.nan}
    finite = {k: v for k, v in estimates.items() if np.isfinite(v["ratio"]) and v["ratio"] > 0}
    closest = min(finite, key=lambda k: abs(math.log(finite[k]["ratio"]))) if finite else None
    logger.info(
        "honesty check: true MSE %.4g far from casts (>= %g km); closest CV: %s",
        true_mse,
        far_km,
        closest,
    )
    return {
        "targets": common,
        "far_km": far_km,
        "n_cells": n_cells,
        "field_mse": field_mse,
        "noise_mse": noise,
        "noise_included": noise_mse is not None,
        "true_mse": true_mse,
        "by_distance": by_distance,
        "estimates": estimates,
        "closest": closest,
    }


def run_honesty_check(config: RunConfig, store: OutputStore, fields: xr.Dataset) -> dict | None:
    """Run :func:`honesty_check` for a run whose catalog holds the demo's truth fields.

    Reads ``metrics.json`` (CV estimates, noise ceiling) and ``folds.parquet`` (the
    training casts' positions) of the run and the catalog's ``truth_fields`` entry; writes
    ``honesty.json``. Returns None (nothing written) without ``inputs.truth`` or without a
    ``truth_fields`` entry.
    """
    if not config.inputs.truth:
        return None
    catalog = open_catalog(config.inputs.catalog, **dict(config.inputs.params))
    if "truth_fields" not in list(catalog):
        logger.info("honesty check skipped: the catalog has no truth_fields entry")
        return None
    truth = read_entry(catalog, "truth_fields")
    metrics = store.read_json("metrics.json")
    folds = store.read_parquet("folds.parquet")
    if not {"lat", "lon"} <= set(folds.columns):
        logger.info("honesty check skipped: folds.parquet has no positions (older run)")
        return None
    train = folds[folds["fold"] != -1]
    model = metrics["model"]
    estimates = {
        "block": model["cv"],
        **{
            key[: -len("_cv")]: value
            for key, value in model.items()
            if key.endswith("_cv") and isinstance(value, dict)
        },
    }
    ceiling = metrics.get("noise_ceiling", {}).get("all")
    result = honesty_check(
        fields,
        truth,
        targets=metrics["targets"],
        transform=metrics["transform"],
        train_lat=train["lat"].to_numpy(dtype=float),
        train_lon=train["lon"].to_numpy(dtype=float),
        noise_mse=None if ceiling is None else ceiling["mse_by_target"],
        cv_estimates=estimates,
    )
    store.write_json("honesty.json", result)
    return result


def honesty_line(result: Mapping[str, Any]) -> str:
    """One line for the console: the true error and each CV estimate's ratio to it.

    Examples
    --------
    >>> line = honesty_line({"true_mse": 0.02, "far_km": 500, "closest": "block",
    ...                      "estimates": {"block": {"ratio": 0.9}, "random": {"ratio": 0.4}}})
    >>> line.split("; ")[1:]
    ['CV estimate / truth: block 0.90, random 0.40', 'closest: block']
    """
    ratios = ", ".join(f"{k} {v['ratio']:.2f}" for k, v in result["estimates"].items())
    return (
        f"honesty check: true MSE {result['true_mse']:.4g} (>= {result['far_km']:g} km from "
        f"casts); CV estimate / truth: {ratios}; closest: {result['closest']}"
    )
