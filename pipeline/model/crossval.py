"""Cross-validation of the model and the baselines over spatial folds, and the final fit.

:func:`cross_validate` trains the model (as :func:`pipeline.model.train.fit_model` does) and the
baselines it must beat (:mod:`pipeline.model.baselines`) in every spatial fold of
:mod:`pipeline.model.split` and predicts each fold out of fold; then it fits the final model
and baselines on every non-test row and predicts the test rows (fold ``-1``).
:mod:`pipeline.model.evaluate` scores them; everything is returned as one :class:`CVResult`.
Folds are given per row of ``X``/``Y``, by position, never by index label.

Developer note
--------------
Records keep the ``pipeline.model.train`` logger of the training step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost

from pipeline.model.baselines import Predictor, _fit_baselines
from pipeline.model.evaluate import score, score_folds, target_covariance
from pipeline.model.split_variants import inner_split
from pipeline.model.train import (
    TrainConfig,
    _check_fit_input,
    _config,
    _resolve_device,
    _train_device,
    predict,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["CVResult", "cross_validate"]

logger = logging.getLogger(__name__)

#: Name of the trained model in :class:`CVResult` (beside the baselines' names).
MODEL_NAME = "model"

#: Share of a fold's training rows (whole groups) held out to early-stop on.
_EARLY_STOP_FRACTION = 0.15


@dataclass
class CVResult:
    """Out-of-fold and test predictions, the final model and the scores.

    Attributes
    ----------
    oof : pandas.DataFrame
        Out-of-fold predictions, one row per non-test row (index of ``X``), columns
        ``(name, target)`` for ``"model"`` and each baseline.
    test : dict of str to array (n_test, k)
        Test-set predictions per name, rows in ``test_index`` order.
    booster : xgboost.Booster
        The final model, trained on every non-test row.
    best_iterations : list of int
        Best iteration of the model in each fold.
    scores : dict
        ``{"model": {"test": score, "cv": score_folds}, "baselines": {name: {...}}}``
        (:mod:`pipeline.model.evaluate`; ``test`` is None without test rows).
    baselines : dict of str to callable
        The final baselines, trained on every non-test row.
    folds : list of dict
        Per CV fold, then the final model as fold ``-1`` (its ``n_valid`` is the test
        rows it predicts): ``fold``, ``n_train``, ``n_valid``, ``n_excluded`` rows.
    test_index : pandas.Index
        Index labels of the test rows.
    targets : list of str
        Target names (columns of ``Y``).
    n_rounds : int
        Boosting rounds of the final model (mean fold best iteration + 1).
    """

    oof: pd.DataFrame
    test: dict[str, np.ndarray]
    booster: xgboost.Booster | None
    best_iterations: list[int]
    scores: dict[str, Any]
    baselines: dict[str, Predictor] = field(default_factory=dict)
    folds: list[dict[str, int]] = field(default_factory=list)
    test_index: pd.Index = field(default_factory=lambda: pd.Index([]))
    targets: list[str] = field(default_factory=list)
    n_rounds: int = 0

    def oof_arrays(self) -> dict[str, np.ndarray]:
        """Out-of-fold predictions per name as ``(n_non_test, k)`` arrays, in row order."""
        names = list(dict.fromkeys(self.oof.columns.get_level_values(0)))
        return {name: self.oof[name][self.targets].to_numpy(dtype="float64") for name in names}


def _mean_rounds(best_iterations: Sequence[int]) -> int:
    return max(1, round(float(np.mean(np.asarray(best_iterations) + 1))))


def _boost_weight(
    w: np.ndarray | None, exposure: np.ndarray | None, config: TrainConfig, n: int
) -> np.ndarray | None:
    """Row weights of the boosters: the exposure under a count objective, else ``w``."""
    if config.objective == "squarederror":
        return w
    if exposure is None:
        raise ValueError(
            f"train.objective {config.objective!r} needs the exposure (volume imaged) of "
            "each row; pass exposure=."
        )
    e = np.asarray(exposure, dtype="float64").reshape(-1)
    if e.shape != (n,) or not np.isfinite(e).all() or (e < 0).any():
        raise ValueError(f"exposure: expected {n} finite non-negative volume(s).")
    return e if w is None else e * w


def _fit_final(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    weights: tuple[np.ndarray | None, np.ndarray | None],
    lay: np.ndarray | None,
    fold_of: np.ndarray,
    exclude: Mapping[int, np.ndarray],
    names: Sequence[str],
    config: TrainConfig,
    base_config: TrainConfig,
    device: str,
    n_rounds: int,
    per_target_best: Sequence[Sequence[int]],
    fold_info: list[dict[str, int]],
) -> tuple[xgboost.Booster, dict[str, Predictor], dict[str, np.ndarray]]:
    """Fit the final model and baselines on every non-test row; predict the test rows."""
    w, w_boost = weights
    cv_rows = np.flatnonzero(fold_of >= 0)
    test_rows = np.flatnonzero(fold_of < 0)
    final_rows = cv_rows
    if -1 in exclude:
        final_rows = np.flatnonzero((fold_of >= 0) & ~np.asarray(exclude[-1]))
    fold_info.append(
        {
            "fold": -1,
            "n_train": int(final_rows.size),
            "n_valid": int(test_rows.size),
            "n_excluded": int(cv_rows.size - final_rows.size),
        }
    )
    logger.info(
        "final model: %d round(s) (mean of folds' best + 1) on %d row(s), %d excluded",
        n_rounds,
        final_rows.size,
        cv_rows.size - final_rows.size,
    )
    booster = _train_device(
        client, X, Y, w_boost, final_rows, None, config, device, rounds=n_rounds
    )
    pt_rounds = (
        [_mean_rounds(col) for col in zip(*per_target_best, strict=True)]
        if per_target_best
        else None
    )
    final = _fit_baselines(
        client, X, Y, w, lay, final_rows, None, base_config, device, pt_rounds, boost_weight=w_boost
    )
    Xt = X.iloc[test_rows]
    test = {MODEL_NAME: predict(booster, Xt)}
    for name in names[1:]:
        test[name] = final[name](Xt, None if lay is None else lay[test_rows])
    return booster, final, test


def cross_validate(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    folds: np.ndarray,
    *,
    layer: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    exclude: Mapping[int, np.ndarray] | None = None,
    config: TrainConfig | None = None,
    with_baselines: bool = True,
    groups: np.ndarray | None = None,
    final: bool = True,
    exposure: np.ndarray | None = None,
) -> CVResult:
    """Cross-validate the model and the baselines over spatial folds; fit the final model.

    For each CV fold ``k``: take the rows whose fold is neither ``-1`` nor ``k`` (and
    not in ``exclude[k]``), hold whole ``groups`` (blocks) of them out to early-stop on
    (:func:`pipeline.model.split_variants.inner_split`, about 15 % of the rows), fit on the rest
    and predict fold ``k`` (out of fold): the scored fold never chooses the number of
    rounds. Then the final model trains on every non-test row for the mean best number
    of rounds of the folds, with no eval set, and predicts the test rows (fold ``-1``).
    Each per-target baseline model is early-stopped the same way and uses its own
    target's mean rounds; the baselines without early stopping (climatology, linear,
    random forest) fit on all the fold's training rows.

    Parameters
    ----------
    client : distributed.Client
        Client of the cluster.
    X, Y, weight, config
        As in :func:`pipeline.model.train.fit_model`.
    folds : array of int, shape (n,)
        ``-1`` for test rows, ``0..K-1`` for the CV folds (:mod:`pipeline.model.split`).
    layer : array of str, optional
        Layer name per row (climatology baseline).
    exclude : mapping of int to array of bool, optional
        Per fold ``k``, training rows to leave out (e.g. the buffer around fold ``k``);
        key ``-1`` applies to the final model (the buffer around the test set).
    with_baselines : bool
        Fit and score ``config.baselines`` too.
    groups : array, shape (n,), optional
        Spatial block (or cast) of each row, for the early-stopping rows inside each
        fold's training rows; each row is its own group when None.
    exposure : array, shape (n,), optional
        Volume imaged per row (L): the boosters' row weight under a count-aware
        ``config.objective`` (Poisson/Tweedie); scores stay unweighted unless ``weight``.
    final : bool
        Fit the final model on all non-test rows and score the test rows; False for a
        CV variant that only needs its out-of-fold scores (``booster`` is then None and
        ``test`` empty).

    Returns
    -------
    CVResult
        Out-of-fold and test predictions, the final model and baselines, the scores
        (weighted by ``weight`` when given; ``mv_mse`` on the covariance of the non-test
        targets, one scale for every fold and the test set).

    Raises
    ------
    ValueError
        Fewer than 2 CV folds, or inputs of the wrong length.

    See Also
    --------
    pipeline.model.train.fit_model : one fit of the model.
    pipeline.model.baselines.fit_baselines : one fit of the baselines.
    pipeline.model.evaluate.score_folds : the CV scores.
    """
    config = _config(config)
    w, lay = _check_fit_input(X, Y, weight=weight, layer=layer)
    w_boost = _boost_weight(w, exposure, config, len(X))
    fold_of = np.asarray(folds).reshape(-1)
    if fold_of.shape != (len(X),) or not np.issubdtype(fold_of.dtype, np.integer):
        raise ValueError(
            f"folds: expected one integer per row ({len(X)}), got {fold_of.dtype} "
            f"shape {fold_of.shape}; use pipeline.model.split.assign_folds."
        )
    cv_folds = [int(k) for k in np.unique(fold_of[fold_of >= 0])]
    if len(cv_folds) < 2:
        raise ValueError(
            f"folds: {len(cv_folds)} CV fold(s) {cv_folds!r}; cross-validation needs >= 2 "
            "(fold -1 is the test set)."
        )
    exclude = dict(exclude or {})
    for k, mask in exclude.items():
        if np.asarray(mask).shape != (len(X),) or np.asarray(mask).dtype != bool:
            raise ValueError(f"exclude[{k}]: expected a boolean mask of {len(X)} row(s).")
    targets = [str(c) for c in Y.columns]
    names = [MODEL_NAME, *(config.baselines if with_baselines else ())]
    cv_rows = np.flatnonzero(fold_of >= 0)
    test_rows = np.flatnonzero(fold_of < 0)
    device = _resolve_device(client, config)
    base_config = config if with_baselines else dataclasses.replace(config, baselines=())

    oof = np.full((len(X), len(names), len(targets)), np.nan)
    filled = np.zeros(len(X), dtype=int)
    best_iterations: list[int] = []
    per_target_best: list[list[int]] = []
    fold_info: list[dict[str, int]] = []
    for k in cv_folds:
        valid = np.flatnonzero(fold_of == k)
        keep = (fold_of >= 0) & (fold_of != k)
        dropped = np.zeros(len(X), dtype=bool)
        if k in exclude:
            dropped = keep & np.asarray(exclude[k])
            keep &= ~dropped
        train = np.flatnonzero(keep)
        fold_info.append(
            {
                "fold": k,
                "n_train": int(train.size),
                "n_valid": int(valid.size),
                "n_excluded": int(dropped.sum()),
            }
        )
        fit, stop = inner_split(
            train,
            np.arange(len(X)) if groups is None else groups,
            fraction=_EARLY_STOP_FRACTION,
            seed=config.seed + k,
        )
        booster = _train_device(client, X, Y, w_boost, fit, stop, config, device)
        best_iterations.append(int(booster.attr("best_iteration")))
        Xv = X.iloc[valid]
        oof[valid, 0] = predict(booster, Xv)
        baselines = _fit_baselines(
            client,
            X,
            Y,
            w,
            lay,
            train,
            stop,
            base_config,
            device,
            fit_rows=fit,
            boost_weight=w_boost,
        )
        for i, name in enumerate(names[1:], start=1):
            oof[valid, i] = baselines[name](Xv, None if lay is None else lay[valid])
        if "per_target" in baselines:
            per_target_best.append(baselines["per_target"].best_iterations)  # type: ignore[attr-defined]
        filled[valid] += 1
        logger.info(
            "cv fold %d: %d train, %d valid, %d excluded; best iteration %d",
            k,
            train.size,
            valid.size,
            int(dropped.sum()),
            best_iterations[-1],
        )
    if not (filled[cv_rows] == 1).all():  # pragma: no cover - guards the loop above
        raise RuntimeError("out-of-fold predictions do not cover each CV row exactly once")

    n_rounds = _mean_rounds(best_iterations)
    booster = None
    final_baselines: dict[str, Predictor] = {}
    test: dict[str, np.ndarray] = {}
    if final:
        booster, final_baselines, test = _fit_final(
            client,
            X,
            Y,
            (w, w_boost),
            lay,
            fold_of,
            exclude,
            names,
            config,
            base_config,
            device,
            n_rounds,
            per_target_best,
            fold_info,
        )
    else:
        test_rows = test_rows[:0]

    y = Y.to_numpy(dtype="float64")
    cov = target_covariance(y[cv_rows], None if w is None else w[cv_rows])
    scores: dict[str, Any] = {"model": {}, "baselines": {}}
    for i, name in enumerate(names):
        entry = {
            "test": score(
                y[test_rows],
                test[name],
                targets=targets,
                weight=None if w is None else w[test_rows],
                cov=cov,
            )
            if test_rows.size
            else None,
            "cv": score_folds(
                y[cv_rows],
                oof[cv_rows, i],
                fold_of[cv_rows],
                targets=targets,
                weight=None if w is None else w[cv_rows],
                cov=cov,
            ),
        }
        if name == MODEL_NAME:
            scores["model"] = entry
        else:
            scores["baselines"][name] = entry
        logger.info(
            "scores %s: cv mse %.4g, test mse %s",
            name,
            entry["cv"]["mean"]["mse"],
            "n/a" if entry["test"] is None else f"{entry['test']['mse']:.4g}",
        )

    columns = pd.MultiIndex.from_product([names, targets], names=["model", "target"])
    oof_frame = pd.DataFrame(
        oof[cv_rows].reshape(cv_rows.size, -1), index=X.index[cv_rows], columns=columns
    )
    return CVResult(
        oof=oof_frame,
        test=test,
        booster=booster,
        best_iterations=best_iterations,
        scores=scores,
        baselines=final_baselines,
        folds=fold_info,
        test_index=X.index[test_rows],
        targets=targets,
        n_rounds=n_rounds,
    )
