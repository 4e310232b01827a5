"""Training: one multi-output xgboost.dask model of all targets.

:func:`fit_model` trains one gradient-boosted model of every target jointly
(``multi_strategy="multi_output_tree"``: one tree, one vector leaf per target; or
``"one_output_per_tree"``) with ``xgboost.dask`` on the client's workers, in the
transformed target space (:func:`pipeline.targets.particles.transform`); :func:`predict` applies
it. The baselines it must beat are :mod:`pipeline.model.baselines`, the spatial
cross-validation of both and the final fit :mod:`pipeline.model.crossval`, and the model card
and the model files :mod:`pipeline.model.card`; each builds on this module.

Options are one frozen :class:`TrainConfig` (defaults live there only). Rows are chosen
by boolean masks or integer positions over the rows of ``X``/``Y`` (positions, never
index labels).

Developer note
--------------
*Determinism.* ``xgboost.dask`` gives each worker the partitions it holds and merges
histograms with an allreduce ordered by rank (ranks are sorted by worker name and
address). With ``deterministic=True`` each frame is cut into one contiguous partition
per worker, in row order, and partition ``i`` is scattered to the worker of rank ``i``,
so the same config, data and number of workers give the same booster bit for bit (the
row subsampling is seeded by ``seed``), whichever addresses the workers have. With
``deterministic=False`` dask places the partitions.

*Worker loss.* A fit that loses a worker cannot go on (its scattered data and the
allreduce are gone): the fit is redone from scratch once the cluster is back at its
worker count (a nanny or Kubernetes restarts the worker; survivors still blocked in the
broken allreduce are restarted through their nanny), at most three attempts, so a
killed worker costs time, not the run, and the model equals an undisturbed fit's.

*Device.* ``device="auto"`` asks the workers (``resources={"GPU": …}`` or a GPU that
``nvidia-smi -L`` lists, not hidden by ``CUDA_VISIBLE_DEVICES``, and an xgboost built with
CUDA) and logs the choice. Vector-leaf (multi-output) trees on CUDA are recent upstream
(dmlc/xgboost#9043); when xgboost refuses them on the chosen GPU under ``"auto"`` the fit
is redone on CPU with a warning, and ``"one_output_per_tree"`` remains the GPU path.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd
import xgboost
import xgboost.dask as dxgb
from distributed import KilledWorker

from pipeline.config import check_choice, check_count, check_range, check_strings

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["BASELINES", "TrainConfig", "count_prediction", "fit_model", "predict"]

logger = logging.getLogger(__name__)

#: The baselines :func:`pipeline.model.baselines.fit_baselines` knows, in the order they are fitted.
BASELINES: tuple[str, ...] = ("climatology", "linear", "per_target", "random_forest")

#: xgboost objective and evaluation metric of each ``train.objective``.
_OBJECTIVES: dict[str, tuple[str, str]] = {
    "squarederror": ("reg:squarederror", "rmse"),
    "poisson": ("count:poisson", "poisson-nloglik"),
    "tweedie": ("reg:tweedie", "tweedie-nloglik@1.5"),
}
_STRATEGIES = ("multi_output_tree", "one_output_per_tree")
_DEVICES = ("auto", "cpu", "cuda")
#: Fits of one model before a worker loss is final; wait for lost workers to come back (s).
_FIT_ATTEMPTS = 3
_WORKER_WAIT_S = 120.0
#: Errors of a fit broken by a lost worker; after one, wait this long for the scheduler
#: to notice the loss before calling it a plain error.
_LOSS_NOTICE_S = 1.0
_LOSS_ERRORS: tuple[type[BaseException], ...] = (
    concurrent.futures.CancelledError,  # distributed's FutureCancelledError: data forgotten
    KilledWorker,
    OSError,  # CommClosedError
    xgboost.core.XGBoostError,  # the allreduce lost a peer
    RuntimeError,  # xgboost.dask: "Missing required workers"
    ValueError,  # xgboost.dask: "Invalid worker address" (task moved to another worker)
)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Options of the training step (defaults live here only).

    Attributes
    ----------
    n_estimators : int
        Maximum boosting rounds (early stopping usually ends sooner).
    learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda
        xgboost's tree parameters of the same names. The defaults (shallow trees, leaves
        of at least 5 rows) suit a few thousand noisy target rows; on two demo worlds
        they lowered the block-CV multivariate MSE by 4-5 % against depth 5 / 2 rows.
    early_stopping_rounds : int
        Rounds without improvement on the validation rows before stopping.
    multi_strategy : {"multi_output_tree", "one_output_per_tree"}
        One tree with a vector leaf for all targets, or one tree per target per round.
    device : {"auto", "cpu", "cuda"}
        ``auto``: CUDA when the workers have a GPU, else CPU (logged).
    deterministic : bool
        Fixed partitioning and placement on the workers, so the same config and data give
        bit-identical models.
    seed : int
        Seed of xgboost's row/column subsampling and of the random forest.
    min_rows_per_worker : int
        A fit uses one worker per this many training rows (at least one, at most every
        worker): below it the allreduce of every boosting round between workers costs
        more than it saves (a 33-row fit took 1.4 s on 2 workers). With ``deterministic``
        the workers are the first ones in xgboost's rank order.
    baselines : tuple of str
        Baselines fitted beside the model, among :data:`BASELINES`.
    rf_n_estimators, rf_min_samples_leaf : int
        Trees and minimum leaf size of the random-forest baseline.
    objective : {"squarederror", "poisson", "tweedie"}
        ``squarederror`` fits the transformed targets (``log10(c + eps)``). The
        count-aware objectives fit the concentration itself with xgboost's Poisson or
        Tweedie deviance, each row weighted by its exposure (the volume imaged, L): the
        deviance of the rate with weight ``V`` is that of the counts ``N ~ Poisson(c V)``
        with the offset ``log V``, so sparse counts and zeros are modelled as counts,
        not as ``log(eps)``. Predictions are mapped back to ``log10(rate + eps)`` so that
        every score stays in the same transformed space as the other models.
    tweedie_variance_power : float
        Variance power of the Tweedie objective, in (1, 2) (1: Poisson, 2: gamma).
    count_epsilon : float, optional
        The targets' transform epsilon, set by the train step for a count-aware objective
        (not a run-file key).
    """

    n_estimators: int = 1000
    learning_rate: float = 0.05
    max_depth: int = 4
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 40
    multi_strategy: Literal["multi_output_tree", "one_output_per_tree"] = "multi_output_tree"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = True
    seed: int = 0
    min_rows_per_worker: int = 50_000
    baselines: tuple[str, ...] = BASELINES
    rf_n_estimators: int = 300
    rf_min_samples_leaf: int = 3
    objective: Literal["squarederror", "poisson", "tweedie"] = "squarederror"
    tweedie_variance_power: float = 1.5
    count_epsilon: float | None = None

    def __post_init__(self) -> None:
        """Check every option; raise ConfigError naming the key, the value and the choices."""
        check_choice("train.multi_strategy", self.multi_strategy, _STRATEGIES)
        check_choice("train.objective", self.objective, tuple(_OBJECTIVES))
        check_range(
            "train.tweedie_variance_power",
            self.tweedie_variance_power,
            low=1,
            high=2,
            low_open=True,
            high_open=True,
        )
        check_choice("train.device", self.device, _DEVICES)
        baselines = check_strings("train.baselines", self.baselines, valid=BASELINES)
        object.__setattr__(self, "baselines", baselines)
        for key in (
            "n_estimators",
            "max_depth",
            "rf_n_estimators",
            "rf_min_samples_leaf",
            "min_rows_per_worker",
        ):
            check_count(f"train.{key}", getattr(self, key), 1)
        check_count("train.early_stopping_rounds", self.early_stopping_rounds, 1)
        for key in ("learning_rate", "subsample", "colsample_bytree"):
            check_range(f"train.{key}", getattr(self, key), low=0, high=1, low_open=True)
        for key in ("min_child_weight", "reg_lambda"):
            check_range(f"train.{key}", getattr(self, key), low=0)


# --------------------------------------------------------------------------- inputs


def _check_fit_input(
    X: pd.DataFrame,
    Y: pd.DataFrame,
    *,
    weight: Any = None,
    layer: Any = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Check the one training input every entry point takes; return weight and layer arrays."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X: expected a pandas DataFrame of predictors, got {type(X).__name__}.")
    if not isinstance(Y, pd.DataFrame):
        raise TypeError(
            f"Y: expected a pandas DataFrame of (transformed) targets, got {type(Y).__name__}; "
            "pass Y[[name]] for a single target."
        )
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} row(s) but Y has {len(Y)}; pass the same rows.")
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise ValueError(f"X: non-numeric predictor column(s) {bad!r}; encode or drop them.")
    values = Y.to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        cols = [str(c) for c in Y.columns[~np.isfinite(values).all(axis=0)]]
        raise ValueError(
            f"Y: target column(s) {cols!r} hold NaN or infinite values; drop those rows or "
            "transform with an epsilon (pipeline.targets.particles.transform)."
        )
    w = None
    if weight is not None:
        w = np.asarray(weight, dtype="float64").reshape(-1)
        if w.shape != (len(X),) or not np.isfinite(w).all() or (w < 0).any():
            raise ValueError(
                f"weight: expected {len(X)} finite non-negative value(s), got shape {w.shape}."
            )
    lay = None
    if layer is not None:
        lay = np.asarray(layer).reshape(-1)
        if lay.shape != (len(X),):
            raise ValueError(f"layer: {lay.size} value(s) for {len(X)} row(s).")
    return w, lay


def _positions(rows: Any, n: int, name: str) -> np.ndarray:
    """Row positions from a boolean mask or an array of integer positions."""
    array = np.asarray(rows)
    if array.dtype == bool:
        if array.shape != (n,):
            raise ValueError(f"{name}: boolean mask of {array.size} value(s) for {n} row(s).")
        return np.flatnonzero(array)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: expected a boolean mask or integer positions, got {array.dtype}.")
    array = array.astype("int64").reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"{name}: positions must lie in 0..{n - 1}.")
    return array


def _config(config: TrainConfig | None) -> TrainConfig:
    if config is None:
        return TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected TrainConfig, got {type(config).__name__}.")
    return config


# --------------------------------------------------------------------------- device


def _worker_has_gpu() -> bool:
    """Whether this process sees a usable NVIDIA GPU and xgboost was built with CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    if not xgboost.build_info().get("USE_CUDA", False):
        return False
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def _resolve_device(client: Client, config: TrainConfig) -> str:
    """Choose the device: the configured one, or the workers' GPU when present."""
    if config.device != "auto":
        logger.info("train: device %s (configured)", config.device)
        return config.device
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if workers and all(float(w.get("resources", {}).get("GPU", 0)) > 0 for w in workers.values()):
        logger.info("train: device cuda (auto: every worker declares a GPU resource)")
        return "cuda"
    seen = client.run(_worker_has_gpu)
    if seen and all(seen.values()):
        logger.info("train: device cuda (auto: nvidia-smi lists a GPU on every worker)")
        return "cuda"
    logger.info(
        "train: device cpu (auto: no GPU on %d of %d worker(s))",
        sum(not v for v in seen.values()),
        len(seen),
    )
    return "cpu"


# --------------------------------------------------------------------------- xgboost.dask


def _count_label(Y: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """Return the label xgboost fits: ``Y``, or the concentration for a count objective."""
    if config.objective == "squarederror":
        return Y
    if config.count_epsilon is None:
        raise ValueError(
            f"train.objective {config.objective!r} fits concentrations: count_epsilon (the "
            "targets' log10 epsilon) must be set; the train step sets it from the targets."
        )
    values = np.maximum(10.0 ** Y.to_numpy(dtype="float64") - config.count_epsilon, 0.0)
    return pd.DataFrame(values, index=Y.index, columns=Y.columns)


def count_prediction(booster: xgboost.Booster, rate: np.ndarray) -> np.ndarray:
    """Map a count-aware booster's predicted rate to ``log10(rate + eps)`` (else unchanged).

    Examples
    --------
    >>> b = xgboost.train({}, xgboost.DMatrix(np.zeros((2, 1)), label=[0.0, 1.0]), 1)
    >>> count_prediction(b, np.array([9.0])).tolist()   # a squared-error booster
    [9.0]
    >>> b.set_attr(objective="poisson", count_epsilon="1.0")
    >>> count_prediction(b, np.array([9.0])).tolist()
    [1.0]
    """
    if booster.attr("objective") not in ("poisson", "tweedie"):
        return rate
    eps = float(booster.attr("count_epsilon") or 0.0)
    return np.log10(np.maximum(rate, 0.0) + eps)


def _params(config: TrainConfig, *, device: str, n_targets: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "objective": _OBJECTIVES[config.objective][0],
        "tree_method": "hist",
        "device": device,
        "learning_rate": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": config.min_child_weight,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample_bytree,
        "reg_lambda": config.reg_lambda,
        "eval_metric": _OBJECTIVES[config.objective][1],
        "seed": config.seed,
    }
    if config.objective == "tweedie":
        params["tweedie_variance_power"] = config.tweedie_variance_power
        params["eval_metric"] = f"tweedie-nloglik@{config.tweedie_variance_power:g}"
    if n_targets > 1:
        params["multi_strategy"] = config.multi_strategy
    return params


def _workers(client: Client) -> list[str]:
    """Worker addresses in xgboost's rank order (its task id: name, then address)."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    if not info:  # e.g. the nannies are restarting them: wait, as for a lost worker
        logger.warning(
            "train: the dask cluster has no worker; waiting up to %.0f s", _WORKER_WAIT_S
        )
        try:
            client.wait_for_workers(1, timeout=_WORKER_WAIT_S)
        except TimeoutError:
            raise RuntimeError(
                f"the dask cluster has had no worker for {_WORKER_WAIT_S:.0f} s; "
                "start workers or wait for them."
            ) from None
        info = client.scheduler_info(n_workers=-1)["workers"]
    rank_key = {a: f"[xgboost.dask-{w.get('name', a)}]:{a}" for a, w in info.items()}
    return sorted(info, key=rank_key.__getitem__)


def _lost_workers(client: Client, workers: list[str], err: BaseException) -> set[str]:
    """Workers of a failed fit that have left the cluster (waits briefly for the news)."""
    deadline = time.monotonic() + (_LOSS_NOTICE_S if isinstance(err, _LOSS_ERRORS) else 0.0)
    while True:
        lost = set(workers) - set(client.scheduler_info(n_workers=-1)["workers"])
        if lost or time.monotonic() >= deadline:
            return lost
        time.sleep(0.1)


def _restart_stuck(client: Client, survivors: list[str]) -> None:
    """Restart surviving workers still running a broken fit (blocked in its allreduce).

    Their thread would wait for the lost peer until xgboost's collective timeout
    (minutes) and hold the worker's slot; a restart by the nanny takes seconds.
    """
    busy = client.processing(workers=survivors) if survivors else {}
    stuck = sorted(a for a, keys in busy.items() if any(str(k).startswith("fn-") for k in keys))
    if not stuck:
        return
    logger.warning("train: restarting worker(s) %s, blocked in the broken fit", ", ".join(stuck))
    status = client.restart_workers(stuck, timeout=_WORKER_WAIT_S, raise_for_error=False)
    failed = {a: s for a, s in status.items() if s != "OK"}
    if failed:  # without a nanny the worker is "removed": the fit goes on without it
        logger.warning("train: restarting workers: %s", failed)


def _fit_surviving_worker_loss(client: Client, fit: Callable[[list[str]], Any]) -> Any:
    """``fit(workers)``, fitted again from scratch when a worker dies during it.

    ``xgboost.dask`` cannot continue a fit that lost a worker (the data scattered there
    is gone and the allreduce is broken), so the whole fit is redone: after waiting (up
    to ``_WORKER_WAIT_S``) for the cluster to be back at the worker count it had, the
    data are placed again, partition ``i`` on rank ``i``, which gives the same booster
    bit for bit as an undisturbed fit. At most ``_FIT_ATTEMPTS`` attempts; an error
    with every worker still there is raised at once.
    """
    wanted = len(_workers(client))
    for attempt in range(1, _FIT_ATTEMPTS + 1):
        workers = _workers(client)
        try:
            return fit(workers)
        except Exception as err:
            lost = _lost_workers(client, workers, err)
            if not lost or attempt == _FIT_ATTEMPTS:
                raise
            logger.warning(
                "train: worker(s) %s lost during the fit (%s: %s); fitting again when %d "
                "worker(s) are back (attempt %d of %d)",
                ", ".join(sorted(lost)),
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
                wanted,
                attempt + 1,
                _FIT_ATTEMPTS,
            )
            _restart_stuck(client, [a for a in workers if a not in lost])
            try:
                client.wait_for_workers(wanted, timeout=_WORKER_WAIT_S)
            except TimeoutError:
                logger.warning(
                    "train: %d worker(s) after %.0f s instead of %d; fitting on those "
                    "(the model may differ in its last bits from a fit on %d)",
                    len(_workers(client)),
                    _WORKER_WAIT_S,
                    wanted,
                    wanted,
                )
    raise AssertionError("unreachable")  # pragma: no cover


def _to_dask(
    client: Client, frame: pd.DataFrame | pd.Series, workers: list[str], *, pinned: bool
) -> dd.DataFrame | dd.Series:
    """One contiguous partition per worker; with ``pinned`` partition i lives on worker i."""
    n_parts = max(1, min(len(workers), len(frame)))
    if not pinned:
        return dd.from_pandas(frame, npartitions=n_parts, sort=False)
    bounds = np.linspace(0, len(frame), n_parts + 1).round().astype(int)
    futures = [
        client.scatter(frame.iloc[a:b], workers=[w], hash=False)
        for a, b, w in zip(bounds[:-1], bounds[1:], workers, strict=False)
    ]
    return dd.from_delayed(futures, meta=frame.iloc[:0], verify_meta=False)


def _dmatrix(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    w: np.ndarray | None,
    rows: np.ndarray,
    workers: list[str],
    *,
    pinned: bool,
    ref: dxgb.DaskQuantileDMatrix | None = None,
) -> dxgb.DaskQuantileDMatrix:
    data = X.iloc[rows].reset_index(drop=True)
    label = Y.iloc[rows].reset_index(drop=True).astype("float64")
    weight = None if w is None else pd.Series(w[rows], name="weight")
    return dxgb.DaskQuantileDMatrix(
        client,
        _to_dask(client, data, workers, pinned=pinned),
        _to_dask(client, label, workers, pinned=pinned),
        weight=None if weight is None else _to_dask(client, weight, workers, pinned=pinned),
        ref=ref,
    )


def _train(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    w: np.ndarray | None,
    train: np.ndarray,
    valid: np.ndarray | None,
    config: TrainConfig,
    device: str,
    rounds: int | None = None,
) -> xgboost.Booster:
    """Fit one booster on positions ``train`` (early stopping on ``valid``), best rounds kept."""
    if train.size == 0:
        raise ValueError("no training rows: the train mask selects no row.")
    pinned = config.deterministic
    params = _params(config, device=device, n_targets=Y.shape[1])
    with_valid = valid is not None and valid.size > 0 and rounds is None
    n_rounds = config.n_estimators if rounds is None else int(rounds)

    label = _count_label(Y, config)

    def fit(workers: list[str]) -> Any:
        workers = workers[: max(1, -(-train.size // config.min_rows_per_worker))]
        dtrain = _dmatrix(client, X, label, w, train, workers, pinned=pinned)
        evals = None
        if with_valid:
            dvalid = _dmatrix(client, X, label, w, valid, workers, pinned=pinned, ref=dtrain)
            evals = [(dvalid, "valid")]
        return dxgb.train(
            client,
            params,
            dtrain,
            num_boost_round=n_rounds,
            evals=evals,
            early_stopping_rounds=config.early_stopping_rounds if with_valid else None,
            verbose_eval=False,
        )

    out = _fit_surviving_worker_loss(client, fit)
    booster: xgboost.Booster = out["booster"]
    trained = booster.num_boosted_rounds()
    best = int(booster.attr("best_iteration")) if booster.attr("best_iteration") else trained - 1
    history = out["history"].get("valid", {}).get(params["eval_metric"], [])
    if best + 1 < trained:
        booster = booster[: best + 1]
    booster.set_attr(
        best_iteration=str(best),
        rounds_trained=str(trained),
        device=device,
        n_train_rows=str(train.size),
        n_valid_rows=str(valid.size if with_valid else 0),  # type: ignore[union-attr]
        best_valid_rmse=repr(float(history[best])) if history else None,
    )
    if config.objective != "squarederror":
        booster.set_attr(objective=config.objective, count_epsilon=repr(config.count_epsilon))
    booster.feature_names = [str(c) for c in X.columns]
    logger.debug(
        "train: %d row(s), %d valid, %d round(s) trained, best %d",
        train.size,
        valid.size if with_valid else 0,  # type: ignore[union-attr]
        trained,
        best,
    )
    return booster


def _train_device(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    w: np.ndarray | None,
    train: np.ndarray,
    valid: np.ndarray | None,
    config: TrainConfig,
    device: str,
    rounds: int | None = None,
) -> xgboost.Booster:
    """:func:`_train`, redone on CPU when ``auto`` chose a GPU that refuses vector leaves."""
    try:
        return _train(client, X, Y, w, train, valid, config, device, rounds)
    except xgboost.core.XGBoostError as err:
        if not (config.device == "auto" and device == "cuda" and Y.shape[1] > 1):
            raise
        if config.multi_strategy != "multi_output_tree":
            raise
        warnings.warn(
            f"xgboost refused multi_output_tree on CUDA ({str(err).splitlines()[0]}); "
            "training on CPU. Set train.multi_strategy: one_output_per_tree to use the GPU.",
            stacklevel=3,
        )
        return _train(client, X, Y, w, train, valid, config, "cpu", rounds)


def fit_model(
    client: Client,
    X: pd.DataFrame,
    Y: pd.DataFrame,
    *,
    train: np.ndarray,
    valid: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    config: TrainConfig | None = None,
) -> xgboost.Booster:
    """Train one xgboost model of all targets jointly on the dask workers.

    Parameters
    ----------
    client : distributed.Client
        Client of the cluster to train on.
    X : pandas.DataFrame
        Predictors, one numeric column per feature.
    Y : pandas.DataFrame
        Targets in the transformed space, one column per target (finite).
    train : array of bool or int
        Rows (mask or positions) to train on.
    valid : array of bool or int, optional
        Rows for early stopping (the eval set). Without them all ``n_estimators`` rounds
        are trained.
    weight : array of float, optional
        Row weights (e.g. the volume sampled, L).
    config : TrainConfig, optional
        Hyperparameters, multi-output strategy, device, determinism.

    Returns
    -------
    xgboost.Booster
        Cut to its best iteration; attributes ``best_iteration``, ``rounds_trained``,
        ``device``, ``n_train_rows``, ``n_valid_rows`` record the fit.

    Raises
    ------
    ValueError, TypeError
        Inputs of the wrong type, length or content (see the message).

    See Also
    --------
    predict : predictions of the returned booster.
    pipeline.model.baselines.fit_baselines : the references the model is compared with.
    pipeline.model.crossval.cross_validate : the model and the baselines over spatial folds.
    """
    config = _config(config)
    w, _ = _check_fit_input(X, Y, weight=weight)
    rows = _positions(train, len(X), "train")
    valid_rows = None if valid is None else _positions(valid, len(X), "valid")
    device = _resolve_device(client, config)
    return _train_device(client, X, Y, w, rows, valid_rows, config, device)


def predict(booster: xgboost.Booster, X: pd.DataFrame) -> np.ndarray:
    """Predict every target for the rows of ``X`` with the booster's best iteration.

    Parameters
    ----------
    booster : xgboost.Booster
        A booster from :func:`fit_model` (or :func:`pipeline.model.card.load_model`).
    X : pandas.DataFrame
        Predictors; the booster's features are taken by name (other columns are ignored).

    Returns
    -------
    numpy.ndarray, shape (n, k)
        Predictions in the transformed space, one column per target.

    Raises
    ------
    ValueError
        When a feature the booster was trained on is missing from ``X``.

    Examples
    --------
    >>> X = pd.DataFrame({"a": np.arange(20.0)})
    >>> b = xgboost.train({"max_depth": 2}, xgboost.DMatrix(X, label=X["a"]), 5)
    >>> predict(b, X).shape
    (20, 1)
    """
    names = booster.feature_names
    if names is not None:
        missing = [f for f in names if f not in X.columns]
        if missing:
            raise ValueError(
                f"X lacks the feature(s) {missing!r} the model was trained on; "
                "build X with the same matchup predictors."
            )
        X = X[list(names)]
    if len(X) == 0:
        return np.empty((0, _n_targets(booster)))
    best = booster.attr("best_iteration")
    end = int(best) + 1 if best is not None else booster.num_boosted_rounds()
    out = booster.inplace_predict(X, iteration_range=(0, end))
    return count_prediction(booster, np.asarray(out, dtype="float64").reshape(len(X), -1))


def _n_targets(booster: xgboost.Booster) -> int:
    learner = json.loads(booster.save_config())["learner"]
    return max(1, int(learner["learner_model_param"].get("num_target", "1")))
