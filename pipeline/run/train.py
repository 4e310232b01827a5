"""The train step of a run: folds, cross-validated training, baselines, skill, model card.

From ``matchup.parquet`` (targets + predictors), :func:`train_and_evaluate`:

1. transforms the targets as recorded by the targets step (default log10(c + eps));
2. assigns spatial blocks to a held-out test set and K folds, balanced on the targets
   (:func:`pipeline.model.split.assign_folds`), and a plain random split of the same shape
   (:func:`pipeline.model.split_variants.random_folds`); an optional buffer drops training
   rows near held-out ones (spatial CV only: the random split is the optimistic reference);
3. cross-validates the multi-output xgboost model and the baselines on the spatial
   folds, and the model alone on the random folds (:func:`pipeline.model.crossval.cross_validate`);
4. scores everything on the test blocks and per fold (:mod:`pipeline.model.evaluate`), adds
   the noise ceiling when the inputs name a truth entry (demo world:
   :func:`pipeline.demo.ceiling.noise_ceiling`), the split-conformal
   interval from the out-of-fold residuals and its coverage on the test blocks;
5. writes ``model/`` (booster + card), ``folds.parquet``, ``predictions.parquet`` and
   ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline.demo.ceiling import noise_ceiling
from pipeline.errors import ConfigError
from pipeline.fields.predict import envelope_of
from pipeline.model.basins import basin_of
from pipeline.model.card import hash_frame, model_card, save_model
from pipeline.model.crossval import cross_validate
from pipeline.model.split import assign_blocks, assign_folds
from pipeline.model.splitters import buffer_mask
from pipeline.model.train import TrainConfig
from pipeline.run.config import config_hash
from pipeline.run.context import StepContext
from pipeline.run.evaluation import cv_variants, evaluate_fit, excess_over_ceiling, resolve_split
from pipeline.targets.particles import transform

__all__ = ["train_and_evaluate"]

logger = logging.getLogger(__name__)


def _transformed(frame: pd.DataFrame, targets: list[str], tr: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            t: transform(
                frame[t].to_numpy(dtype=float), name=str(tr["name"]), epsilon=float(tr["epsilon"])
            )
            for t in targets
        },
        index=frame.index,
    )


def _predictions(
    matchup: pd.DataFrame, y: pd.DataFrame, folds: np.ndarray, cv: Any, targets: list[str]
) -> pd.DataFrame:
    """Long table for the report: id, layer, split, model, fold, <t>_obs, <t>_pred."""
    frames = []
    test = folds == -1
    for name, pred in cv.test.items():
        part = matchup.loc[test, ["id", "layer"]].reset_index(drop=True)
        part["split"], part["model"], part["fold"] = "test", name, -1
        for j, t in enumerate(targets):
            part[f"{t}_obs"] = y.loc[test, t].to_numpy()
            part[f"{t}_pred"] = np.asarray(pred)[:, j]
        frames.append(part)
    for name, pred in cv.oof_arrays().items():
        rows = ~test
        part = matchup.loc[rows, ["id", "layer"]].reset_index(drop=True)
        part["split"], part["model"], part["fold"] = "cv", name, folds[rows]
        for j, t in enumerate(targets):
            part[f"{t}_obs"] = y.loc[rows, t].to_numpy()
            part[f"{t}_pred"] = pred[:, j]
        frames.append(part)
    return pd.concat(frames, ignore_index=True)


def _cast_positions(lat: np.ndarray, lon: np.ndarray) -> tuple[list[float], list[float]]:
    """Return the unique (lat, lon) of the training rows: one per cast, not per layer."""
    pos = np.unique(np.round(np.column_stack([lat, lon]), 4), axis=0)
    return pos[:, 0].tolist(), pos[:, 1].tolist()


def _count_setup(
    train: TrainConfig, tr: dict[str, Any], matchup: pd.DataFrame, say: Any
) -> tuple[TrainConfig, np.ndarray | None]:
    """Return a count-aware objective's config (targets' epsilon) and exposure (L)."""
    if train.objective == "squarederror":
        return train, None
    if str(tr["name"]) != "log10":
        raise ConfigError(
            f"train.objective: {train.objective!r} needs the log10 transform of the targets "
            f"(targets.transform is {tr['name']!r})."
        )
    say(f"  count-aware objective {train.objective}: exposure = volume imaged per row (L)")
    exposure = matchup["volume_l"].to_numpy(dtype=float)
    return dataclasses.replace(train, count_epsilon=float(tr["epsilon"])), exposure


def train_and_evaluate(ctx: StepContext) -> dict[str, Any]:
    """Run the train step under a run's output (see the module docstring).

    Parameters
    ----------
    ctx : StepContext
        The run, its output store (reads ``matchup.parquet`` and the targets/matchup
        state; writes the model, folds, predictions and metrics), the Dask client and
        the echo callback.

    Returns
    -------
    dict
        The step's state: counts, targets, features, model id.
    """
    config, store, client, say = ctx.config, ctx.store, ctx.client, ctx.echo
    matchup = store.read_parquet("matchup.parquet")
    tstate = store.read_json("_state/targets.json")
    features = list(store.read_json("_state/matchup.json")["features"])
    targets = list(tstate["targets"])
    tr = dict(tstate["transform"])
    complete = matchup[targets].notna().all(axis=1)
    n_incomplete = int((~complete).sum())
    if n_incomplete:  # e.g. casts without EcoTaxa objects: no per-category observation
        say(f"  {n_incomplete} row(s) lack some target (no objects for the cast); left out")
        matchup = matchup[complete].reset_index(drop=True)
    x = matchup[features].astype("float64")
    y = _transformed(matchup, targets, tr)
    lat, lon = matchup["lat"].to_numpy(), matchup["lon"].to_numpy()
    layer = matchup["layer"].astype(str).to_numpy()
    split = resolve_split(config.split, y.to_numpy(), lat, lon, layer, say=say)
    blocks = assign_blocks(lat, lon, config=split)
    folds = assign_folds(lat, lon, y.to_numpy(), config=split)
    cast = matchup["id"].astype(str).to_numpy()
    exclude = None
    if split.buffer_km > 0:
        exclude = {
            k: buffer_mask(lat, lon, (folds == k) | (folds == -1), buffer_km=split.buffer_km)
            for k in range(split.n_folds)
        }
        exclude[-1] = buffer_mask(lat, lon, folds == -1, buffer_km=split.buffer_km)
    n_test = int((folds == -1).sum())
    say(
        f"  {len(matchup)} rows x {len(features)} predictors -> {len(targets)} targets; "
        f"{n_test} test rows, {split.n_folds} CV folds of whole "
        f"{'basins' if split.method == 'basins' else 'lat/lon blocks'}"
    )
    train_config, exposure = _count_setup(config.train, tr, matchup, say)
    cv = cross_validate(
        client,
        x,
        y,
        folds,
        layer=layer,
        config=train_config,
        exclude=exclude,
        groups=blocks,
        exposure=exposure,
    )
    test = folds == -1
    model = dict(cv.scores["model"])
    variants = cv_variants(folds, lat, lon, cast, matchup.get("cruise"), split)
    for name, vfolds in variants.items():
        vcv = cross_validate(
            client,
            x,
            y,
            vfolds,
            layer=layer,
            config=train_config,
            with_baselines=False,
            groups=blocks,
            final=False,
            exposure=exposure,
        )
        model[f"{name}_cv"] = vcv.scores["model"]["cv"]
    quantiles, diagnostics = evaluate_fit(
        cv,
        y,
        folds,
        lat=lat,
        lon=lon,
        layer=layer,
        blocks=blocks,
        x=x,
        targets=targets,
        coverage=config.fields.interval_coverage,
    )
    model["test"]["interval_coverage"] = diagnostics["intervals"]["test"]["per_target"]
    metrics: dict[str, Any] = {
        "model": model,
        "baselines": cv.scores.get("baselines", {}),
        "targets": targets,
        "transform": tr,
        "n_rows": {"all": len(matchup), "test": n_test, "cv": int((~test).sum())},
        "best_iterations": list(cv.best_iterations),
        "split": {
            "method": split.method,
            "block_deg": split.block_deg,
            "buffer_km": split.buffer_km,
            "n_folds": split.n_folds,
            "variants": sorted(["block", *variants]),
        },
        **diagnostics,
    }
    ceiling = noise_ceiling(
        config,
        matchup,
        y,
        test=test,
        targets=targets,
        transform=tr,
        coverage=config.fields.interval_coverage,
        by={"layer": layer, "basin": basin_of(lat, lon)},
    )
    if ceiling is not None:
        metrics["noise_ceiling"] = ceiling
        metrics["excess_over_ceiling"] = excess_over_ceiling(model, ceiling)
    train_rows = ~test
    keys = {
        "config_hash": config_hash(
            config.inputs, config.targets, config.predictors, config.split, config.train
        )
    }
    card = model_card(
        booster=cv.booster,
        features=features,
        targets=targets,
        transform=tr,
        config=train_config,
        scores=metrics,
        data_hash=hash_frame(matchup),
        config_hash=keys["config_hash"],
        extra={
            "residual_quantiles": {t: list(v) for t, v in quantiles["pooled"].items()},
            "residual_quantiles_by_layer": {
                g: {t: list(v) for t, v in q.items()} for g, q in quantiles["groups"].items()
            },
            "interval_method": "split-conformal per layer and distance to the nearest "
            "training cast (Mondrian), out-of-fold residuals",
            "train_positions": dict(
                zip(("lat", "lon"), _cast_positions(lat[train_rows], lon[train_rows]), strict=True)
            ),
            "interval_coverage_nominal": config.fields.interval_coverage,
            "envelope": {k: list(v) for k, v in envelope_of(x[train_rows]).items()},
        },
    )
    card.setdefault("model_id", f"{card.get('data_hash', '')[:8]}-{keys['config_hash'][:8]}")
    save_model(cv.booster, card, store.sub("model"))
    store.write_parquet(
        "folds.parquet",
        pd.DataFrame(
            {
                "id": matchup["id"],
                "layer": layer,
                "lat": lat,
                "lon": lon,
                "block": blocks,
                "fold": folds,
                **{f"{name}_fold": v for name, v in variants.items()},
            }
        ),
    )
    store.write_parquet("predictions.parquet", _predictions(matchup, y, folds, cv, targets))
    store.write_json("metrics.json", metrics)
    t = model["test"]
    say(
        f"  model test: MSE {t['mse']:.4g}, mv_mse {t['mv_mse']:.3f}, R2 mean "
        f"{t['r2_mean']:.3f}; block-CV MSE {model['cv']['mean']['mse']:.4g}"
        + (
            f", random-CV MSE {model['random_cv']['mean']['mse']:.4g}"
            if "random" in variants
            else ""
        )
    )
    return {
        "counts": {
            "train_rows": int(train_rows.sum()),
            "test_rows": n_test,
            "rows_without_every_target": n_incomplete,
        },
        "model_id": card["model_id"],
    }
