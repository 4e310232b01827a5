"""The train step of a run: folds, cross-validated training, baselines, skill, model card.

From ``matchup.parquet`` (targets + predictors), :func:`train_and_evaluate`:

1. transforms the targets as recorded by the targets step (default log10(c + eps));
2. assigns spatial blocks to a held-out test set and K folds, balanced on the targets
   (:func:`pipeline.model.split.assign_folds`), and a plain random split of the same shape
   (:func:`pipeline.model.split.random_folds`); an optional buffer drops training rows near
   held-out ones (spatial CV only: the random split is the optimistic reference);
3. cross-validates the multi-output xgboost model and the baselines on the spatial
   folds, and the model alone on the random folds (:func:`pipeline.model.crossval.cross_validate`);
4. scores everything on the test blocks and per fold (:mod:`pipeline.model.evaluate`), adds
   the noise ceiling when the inputs name a truth entry (demo world), the split-conformal
   interval from the out-of-fold residuals and its coverage on the test blocks;
5. writes ``model/`` (booster + card), ``folds.parquet``, ``predictions.parquet`` and
   ``metrics.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from pipeline.model.evaluate import interval_coverage, residual_quantiles, score
from pipeline.run.config import RunConfig, config_hash
from pipeline.run.context import StepContext
from pipeline.targets.particles import TargetConfig, transform

__all__ = ["expected_log_count", "train_and_evaluate", "truth_targets"]

logger = logging.getLogger(__name__)

_CONC = re.compile(r"^conc_([0-9p]+)_([0-9p]+|inf)um_per_l$")


def truth_targets(truth: pd.DataFrame, config: TargetConfig) -> pd.DataFrame:
    """Noise-free targets from the demo truth's per-class concentrations.

    The truth holds the expected concentration of every EcoPart detailed class per
    profile and layer (``conc_<lo>_<hi>um_per_l``). They are merged into the target
    classes by lower edge and summed into the Guidry flux exactly as
    :func:`pipeline.targets.particles.build_targets` does with counts, so the truth and the
    observations describe the same quantities.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``profile_id, layer`` + per-class ``conc_<lo>_<hi>um_per_l`` (# L-1).
    config : TargetConfig
        Size classes and flux coefficients of the targets.

    Returns
    -------
    pandas.DataFrame
        ``id, layer`` + the target columns.

    Examples
    --------
    >>> t = pd.DataFrame({"profile_id": ["p"], "layer": ["0-100m"],
    ...                   "conc_102_128um_per_l": [1.0], "conc_128_161um_per_l": [2.0]})
    >>> float(truth_targets(t, TargetConfig())["conc_102_203um_per_l"].iloc[0])
    3.0
    """
    classes = []
    for col in truth.columns:
        match = _CONC.match(col)
        if match:
            lo, hi = (float(g.replace("p", ".")) for g in match.groups())
            classes.append((col, lo, hi))
    # only the finest classes: drop aggregated columns that span several detailed ones
    los = sorted({lo for _, lo, _ in classes})
    fine = [(c, lo, hi) for c, lo, hi in classes if not any(lo < x < hi for x in los)]
    edges = np.asarray(config.size_edges_um)
    out = pd.DataFrame({"id": truth["profile_id"].astype(str), "layer": truth["layer"]})
    from pipeline.targets.particles import target_columns

    names = target_columns(config)
    sums = {n: np.zeros(len(truth)) for n in names}
    for col, lo, hi in fine:
        k = int(np.searchsorted(edges, lo, side="right")) - 1
        if 0 <= k < len(edges) - 1:
            sums[names[k]] += truth[col].to_numpy(dtype=float)
        if config.flux_range_um[0] <= lo and hi <= config.flux_range_um[1]:
            d_mm = math.sqrt(lo * hi) / 1000.0
            sums["flux_mgc_m2_d"] += (
                truth[col].to_numpy(dtype=float) * 1000.0 * config.flux_a * d_mm**config.flux_b
            )
    for name in names:
        out[name] = sums[name]
    return out


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


def _noise_ceiling(
    config: RunConfig,
    matchup: pd.DataFrame,
    y: pd.DataFrame,
    test: np.ndarray,
    targets: list[str],
    tr: dict[str, Any],
) -> dict[str, Any] | None:
    """Skill of the noise-free truth against the observations (demo world only).

    The truth's prediction of a transformed observation is its expectation under the
    counting noise, ``E[log10(N / V + eps)]`` with ``N ~ Poisson(c V)`` (``V`` the volume
    imaged, times the EcoTaxa subsample fraction for categories), not ``log10(c + eps)``:
    with a few objects per layer the two differ (Jensen), and only the former bounds what
    a model of the transformed observations can reach. Categories use the concentration
    as the demo annotated them (statuses, misclassification; :func:`_annotated`).
    """
    if not config.inputs.truth:
        return None
    from pipeline.catalog import open_catalog, read_entry

    truth = read_entry(
        open_catalog(config.inputs.catalog, **dict(config.inputs.params)), config.inputs.truth
    )
    truth = truth.compute() if hasattr(truth, "compute") else truth
    expected = truth_targets(truth, config.targets)
    info = _world_info(config)
    # machine labels (classifier, morphological types) are not the demo's annotation
    categories = (
        _annotated(truth, config, info) if config.object_targets.labels == "annotated" else truth
    )
    fraction = {}
    for name in targets:  # per-category targets are truth columns of the same name
        if name not in expected.columns and name in categories.columns:
            expected[name] = categories[name].to_numpy(dtype=float)
            fraction[name] = float((info or {}).get("subsample_fraction", 1.0))
    unknown = [name for name in targets if name not in expected.columns]
    if unknown:
        logger.info(
            "noise ceiling not computed: the truth has no %s (e.g. morphological "
            "types have no true counterpart)",
            unknown,
        )
        return None
    keyed = matchup[["id", "layer"]].astype(str).merge(expected, on=["id", "layer"], how="left")
    found = keyed[targets].notna().all(axis=1).to_numpy()
    if not found.any():
        logger.warning("truth entry %r matches no matchup row", config.inputs.truth)
        return None
    t = _transformed(keyed, targets, tr)
    volume = matchup["volume_l"].to_numpy(dtype=float)
    for name in targets:
        if name.startswith("conc_") and str(tr["name"]) == "log10":
            t[name] = expected_log_count(
                keyed[name].to_numpy(dtype=float),
                volume * fraction.get(name, 1.0),
                epsilon=float(tr["epsilon"]),
            )
    cov = np.cov(y[~test].to_numpy(dtype=float).T, bias=True)
    out: dict[str, Any] = {}
    sel = test & found
    if sel.any():
        out["test"] = score(y[sel], t[sel], targets=targets, cov=cov)
    out["all"] = score(y[found], t[found], targets=targets, cov=cov)
    out["rows_with_truth"] = int(found.sum())
    return out


def expected_log_count(
    conc: np.ndarray, volume: np.ndarray, *, epsilon: float, exact_below: float = 2000.0
) -> np.ndarray:
    """Compute the expectation of ``log10(N / V + eps)`` with ``N ~ Poisson(conc V)``.

    Exact sums over ``N`` where the expected count is below ``exact_below``; above it
    the counting noise is negligible against ``eps``-free logs and ``log10(conc + eps)``
    is used.

    Parameters
    ----------
    conc : array of float
        Expected concentrations (# L-1).
    volume : array of float
        Volumes (L) the counts come from.
    epsilon : float
        Offset of the transform.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> float(expected_log_count(np.array([0.0]), np.array([10.0]), epsilon=1e-3)[0])
    -3.0
    >>> e = expected_log_count(np.array([0.1]), np.array([10.0]), epsilon=1e-3)
    >>> bool(e[0] < np.log10(0.1 + 1e-3))   # Jensen: below the log of the mean
    True
    """
    from scipy.stats import poisson

    conc = np.asarray(conc, dtype=float)
    volume = np.asarray(volume, dtype=float)
    lam = conc * volume
    out = np.log10(conc + epsilon)
    small = np.isfinite(lam) & (lam < exact_below) & (volume > 0)
    if small.any():
        n_max = int(np.max(lam[small] + 12.0 * np.sqrt(lam[small]) + 20.0))
        n = np.arange(n_max + 1)[None, :]
        pmf = poisson.pmf(n, lam[small][:, None])
        values = np.log10(n / volume[small][:, None] + epsilon)
        out[small] = (pmf * values).sum(axis=1) / pmf.sum(axis=1)
    return out


def _world_info(config: RunConfig) -> dict[str, Any] | None:
    """Read the ``ecotaxa`` part of the demo's ``world.json`` at the catalog root, if any."""
    import fsspec

    root = config.inputs.params.get("root")
    if not root:
        return None
    try:
        with fsspec.open(f"{str(root).rstrip('/')}/world.json", "rb") as f:
            return dict(json.load(f).get("ecotaxa", {}))
    except (OSError, ValueError):
        return None


def _annotated(truth: pd.DataFrame, config: RunConfig, info: dict[str, Any] | None) -> Any:
    """Per-category truth as the demo's annotation would record it (else the raw truth).

    The demo's EcoTaxa statuses and misclassification (``world.json``) make the observed
    categories differ from the true kinds; the noise ceiling compares the observations
    with their own noise-free expectation.
    """
    from pipeline.demo.truth import annotated_concentrations

    if not info or "status_probabilities" not in info:
        logger.info("noise ceiling: no world.json annotation info; raw truth per category")
        return truth
    try:
        return annotated_concentrations(
            truth,
            statuses=config.object_targets.statuses,
            status_probabilities=info["status_probabilities"],
            misclassified_probability=info.get("predicted_misclassified_probability", 0.0),
        )
    except KeyError:
        return truth


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
    from pipeline.fields.predict import envelope_of
    from pipeline.model.card import hash_frame, model_card, save_model
    from pipeline.model.crossval import cross_validate
    from pipeline.model.split import assign_folds, buffer_mask, random_folds

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
    folds = assign_folds(lat, lon, y.to_numpy(), config=config.split)
    rfolds = random_folds(len(matchup), config=config.split)
    exclude = None
    if config.split.buffer_km > 0:
        exclude = {
            k: buffer_mask(lat, lon, (folds == k) | (folds == -1), buffer_km=config.split.buffer_km)
            for k in range(config.split.n_folds)
        }
        exclude[-1] = buffer_mask(lat, lon, folds == -1, buffer_km=config.split.buffer_km)
    n_test = int((folds == -1).sum())
    say(
        f"  {len(matchup)} rows x {len(features)} predictors -> {len(targets)} targets; "
        f"{n_test} test rows, {config.split.n_folds} CV folds of whole "
        f"{'basins' if config.split.method == 'basins' else 'lat/lon blocks'}"
    )
    cv = cross_validate(client, x, y, folds, layer=layer, config=config.train, exclude=exclude)
    rcv = cross_validate(
        client, x, y, rfolds, layer=layer, config=config.train, with_baselines=False
    )
    test = folds == -1
    model = dict(cv.scores["model"])
    model["random_cv"] = rcv.scores["model"]["cv"]
    model["random_test"] = rcv.scores["model"]["test"]
    oof = cv.oof_arrays()["model"]
    quantiles = residual_quantiles(
        y[~test], oof, targets=targets, coverage=config.fields.interval_coverage
    )
    pred_test = np.asarray(cv.test["model"])
    q_lo = np.array([quantiles[t][0] for t in targets])
    q_hi = np.array([quantiles[t][1] for t in targets])
    model["test"]["interval_coverage"] = interval_coverage(
        y[test].to_numpy(), pred_test + q_lo, pred_test + q_hi, targets=targets
    )
    metrics: dict[str, Any] = {
        "model": model,
        "baselines": cv.scores.get("baselines", {}),
        "targets": targets,
        "transform": tr,
        "n_rows": {"all": len(matchup), "test": n_test, "cv": int((~test).sum())},
        "best_iterations": list(cv.best_iterations),
    }
    ceiling = _noise_ceiling(config, matchup, y, test, targets, tr)
    if ceiling is not None:
        metrics["noise_ceiling"] = ceiling
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
        config=config.train,
        scores=metrics,
        data_hash=hash_frame(matchup),
        config_hash=keys["config_hash"],
        extra={
            "residual_quantiles": {t: list(v) for t, v in quantiles.items()},
            "interval_coverage_nominal": config.fields.interval_coverage,
            "envelope": {k: list(v) for k, v in envelope_of(x[train_rows]).items()},
        },
    )
    card.setdefault("model_id", f"{card.get('data_hash', '')[:8]}-{keys['config_hash'][:8]}")
    save_model(cv.booster, card, store.sub("model"))
    store.write_parquet(
        "folds.parquet",
        pd.DataFrame({"id": matchup["id"], "layer": layer, "fold": folds, "random_fold": rfolds}),
    )
    store.write_parquet("predictions.parquet", _predictions(matchup, y, folds, cv, targets))
    store.write_json("metrics.json", metrics)
    t = model["test"]
    say(
        f"  model test: mv_mse {t['mv_mse']:.3f}, R2 mean {t['r2_mean']:.3f}; "
        f"block-CV mv_mse {model['cv']['mean']['mv_mse']:.3f}, "
        f"random-CV mv_mse {model['random_cv']['mean']['mv_mse']:.3f}"
    )
    return {
        "counts": {
            "train_rows": int(train_rows.sum()),
            "test_rows": n_test,
            "rows_without_every_target": n_incomplete,
        },
        "model_id": card["model_id"],
    }
