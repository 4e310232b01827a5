"""Light heads on stored embeddings: re-trained in seconds for a new label set.

A CNN is expensive to train; its embeddings (:func:`pipeline.images.model.embed`, written
per object by ``oceanfields images embed``) are cheap to reuse. A **head** is a
multinomial logistic regression on standardised embedding columns (and, when stored,
the handcrafted features), fitted in seconds on a CPU:

- :func:`fit_head` -> :class:`Head`, options in :class:`HeadConfig`: the inverse
  regularisation ``C`` is chosen by stratified cross-validation on the training rows
  (balanced accuracy), and the out-of-fold probabilities of that choice set the
  abstention thresholds (:mod:`pipeline.images.abstention`) without a separate
  validation split;
- :meth:`Head.predict_proba` / :func:`head_labels`: probabilities and a labels table
  (the columns of ``images classify``: ``object_id, label, prob, predicted, ...``);
- :func:`read_embeddings` / :func:`fit_head_on`: the stored embeddings joined to the
  labelled objects;
- :func:`save_head` / :func:`load_head`: one JSON file (weights, scaler, classes,
  thresholds, feature columns); no pickle, readable anywhere.

Same rows, labels and seed give the same head and the same labels (deterministic
solver, seeded folds).

Developer note: the fits run with one BLAS thread (``threadpoolctl``): on 2 cores
shared with other jobs, OpenBLAS's threads made one fit on 1,250 x 100 features take
11 s instead of 0.08 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.class_weight import compute_sample_weight
from threadpoolctl import threadpool_limits

from pipeline.config import check_count, check_range
from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.abstention import abstention_thresholds, assign_labels
from pipeline.images.evaluation import classification_metrics
from pipeline.store import OutputStore, as_store

__all__ = [
    "Head",
    "HeadConfig",
    "feature_columns",
    "fit_head",
    "fit_head_on",
    "head_labels",
    "load_head",
    "read_embeddings",
    "save_head",
]

logger = logging.getLogger(__name__)

_FORMAT = "oceanfields-image-head/1"
#: Prefixes of the feature columns of an embeddings table: CNN embedding, handcrafted.
PREFIXES = ("e_", "h_")


@dataclass(frozen=True, kw_only=True)
class HeadConfig:
    """Options of :func:`fit_head` (defaults live here only).

    Attributes
    ----------
    c_grid : tuple of float
        Inverse regularisation strengths tried; the best by cross-validated balanced
        accuracy is kept (ties: the stronger regularisation).
    n_folds : int
        Stratified folds of the cross-validation (fewer when a class has fewer rows).
    balanced : bool
        Class-balanced sample weights (each class weighs the same).
    max_iter : int
        Most solver iterations.
    target_precision : float, optional
        Abstention thresholds from the out-of-fold probabilities; None: no abstention.
    seed : int
        Seed of the folds.
    """

    c_grid: tuple[float, ...] = (0.03, 0.1, 0.3)
    n_folds: int = 4
    balanced: bool = True
    max_iter: int = 3000
    target_precision: float | None = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        grid = tuple(float(c) for c in self.c_grid)
        if not grid or any(c <= 0 for c in grid):
            raise ConfigError(f"images.head.c_grid: {self.c_grid!r}; expected positive values.")
        object.__setattr__(self, "c_grid", grid)
        check_count("images.head.n_folds", self.n_folds, 2)
        check_count("images.head.max_iter", self.max_iter, 1)
        check_count("images.head.seed", self.seed, 0)
        if self.target_precision is not None:
            check_range(
                "images.head.target_precision", self.target_precision, low=0, high=1, low_open=True
            )


@dataclass
class Head:
    """A fitted head (the result of :func:`fit_head`).

    Attributes
    ----------
    classes : list of str
    columns : list of str
        Feature columns, in the order of ``coef``'s columns.
    mean, scale : numpy.ndarray
        Standardisation of each column (NaN inputs become the mean).
    coef : numpy.ndarray
        (n_classes, n_columns) weights; ``intercept`` (n_classes,).
    intercept : numpy.ndarray
    c : float
        The chosen inverse regularisation.
    abstention : dict, optional
        :func:`~pipeline.images.abstention.abstention_thresholds`' result.
    meta : dict
        Cross-validation scores, config, embedding model id, seconds.
    head_id : str
        ``head-<first 12 hex of the weights' sha256>``.
    """

    classes: list[str]
    columns: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    c: float
    abstention: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    head_id: str = ""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities (n, n_classes) of the rows of an embeddings table.

        Raises
        ------
        InputFormatError
            The table lacks some of :attr:`columns`.
        """
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise InputFormatError(
                f"head {self.head_id}: the embeddings lack {len(missing)} column(s) it was "
                f"fitted on ({missing[:5]}); embed with the same model and options."
            )
        x = _standardise(frame[self.columns].to_numpy(np.float64), self.mean, self.scale)
        with threadpool_limits(1):
            logits = x @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Return the feature columns of an embeddings table (``e_*`` then ``h_*``)."""
    return [c for p in PREFIXES for c in frame.columns if str(c).startswith(p)]


def _standardise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    x = (x - mean) / scale
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _model(c: float, cfg: HeadConfig) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=cfg.max_iter, tol=1e-4)


def fit_head(
    frame: pd.DataFrame,
    labels: Sequence[str],
    *,
    config: HeadConfig | None = None,
    columns: Sequence[str] | None = None,
) -> Head:
    """Fit a logistic-regression head on embeddings (module docstring).

    Parameters
    ----------
    frame : pandas.DataFrame
        Embeddings table (``e_*``, optional ``h_*`` columns), one row per object.
    labels : sequence of str
        Class of each row (at least 2 classes with 2 rows each).
    config : HeadConfig, optional
    columns : sequence of str, optional
        Feature columns used (default :func:`feature_columns`).

    Returns
    -------
    Head

    Raises
    ------
    InputFormatError
        Lengths differ, or no feature column.
    ConfigError
        Fewer than 2 classes, or a class with a single row.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = pd.DataFrame({"e_0": np.r_[rng.normal(0, 1, 20), rng.normal(4, 1, 20)]})
    >>> head = fit_head(f, ["a"] * 20 + ["b"] * 20, config=HeadConfig(target_precision=None))
    >>> head.predict_proba(pd.DataFrame({"e_0": [-1.0, 5.0]})).argmax(axis=1).tolist()
    [0, 1]
    """
    cfg = config or HeadConfig()
    y = np.asarray(labels).astype(str)
    if len(y) != len(frame):
        raise InputFormatError(f"fit_head: {len(frame)} rows but {len(y)} labels.")
    cols = list(columns) if columns is not None else feature_columns(frame)
    if not cols:
        raise InputFormatError(
            f"fit_head: no feature column (e_*, h_*) in {list(frame.columns)[:10]}; pass "
            "the embeddings written by 'oceanfields images embed'."
        )
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes)
    if len(classes) < 2 or counts.min() < 2:
        raise ConfigError(
            f"fit_head: need >= 2 classes with >= 2 rows each; found "
            f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))}."
        )
    start = time.perf_counter()
    with threadpool_limits(1):  # BLAS threads on a shared CPU: 100x slower (module note)
        head = _fit(frame[cols].to_numpy(np.float64), y, classes, codes, counts, cols, cfg)
    head.meta["seconds"] = time.perf_counter() - start
    logger.info(
        "fit_head: %d rows, %d columns, %d classes; C=%g (CV balanced accuracy %.3f) in %.1f s",
        len(y),
        len(cols),
        len(classes),
        head.c,
        head.meta["cv_balanced_accuracy"][str(head.c)],
        head.meta["seconds"],
    )
    return head


def _fit(
    raw: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    codes: np.ndarray,
    counts: np.ndarray,
    cols: list[str],
    cfg: HeadConfig,
) -> Head:
    mean = np.nanmean(raw, axis=0)
    scale = np.nanstd(raw, axis=0)
    mean = np.nan_to_num(mean)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    x = _standardise(raw, mean, scale)
    weight = compute_sample_weight("balanced", codes) if cfg.balanced else np.ones(len(codes))
    folds = StratifiedKFold(
        min(cfg.n_folds, int(counts.min())), shuffle=True, random_state=cfg.seed
    )
    splits = list(folds.split(x, codes))
    scores, oof = {}, {}
    for c in cfg.c_grid:
        probs = np.zeros((len(codes), len(classes)))
        for fit_idx, val_idx in splits:
            m = _model(c, cfg).fit(x[fit_idx], codes[fit_idx], sample_weight=weight[fit_idx])
            probs[np.ix_(val_idx, m.classes_)] = m.predict_proba(x[val_idx])
        pred = classes[probs.argmax(axis=1)]
        scores[c] = classification_metrics(y, pred, classes)["balanced_accuracy"]
        oof[c] = probs
    best = max(cfg.c_grid, key=lambda c: (round(scores[c], 6), -c))
    final = _model(best, cfg).fit(x, codes, sample_weight=weight)
    abstention = (
        abstention_thresholds(
            oof[best], codes, classes.tolist(), target_precision=cfg.target_precision
        )
        if cfg.target_precision is not None
        else None
    )
    coef, intercept = final.coef_.astype(np.float64), final.intercept_.astype(np.float64)
    if coef.shape[0] == 1:  # two classes: one logit, p(second) = sigmoid; as a softmax
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    head = Head(
        classes=classes.tolist(),
        columns=cols,
        mean=mean,
        scale=scale,
        coef=coef,
        intercept=intercept,
        c=best,
        abstention=abstention,
        meta={
            "cv_balanced_accuracy": {str(c): float(sc) for c, sc in scores.items()},
            "n_rows": len(y),
            "config": asdict(cfg),
        },
    )
    head.head_id = _head_id(head)
    return head


def _head_id(head: Head) -> str:
    digest = hashlib.sha256()
    for a in (head.mean, head.scale, head.coef, head.intercept):
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    digest.update(json.dumps([head.classes, head.columns]).encode())
    return f"head-{digest.hexdigest()[:12]}"


def head_labels(head: Head, frame: pd.DataFrame, *, top_k: int = 3) -> pd.DataFrame:
    """Labels table of an embeddings table, as ``images classify`` writes it.

    Parameters
    ----------
    head : Head
    frame : pandas.DataFrame
        ``object_id`` and the head's feature columns.
    top_k : int
        Labels and probabilities kept per object.

    Returns
    -------
    pandas.DataFrame
        ``object_id, label, prob, predicted, label_2, prob_2, ..., model_id`` (``label``
        is ``unassigned`` below the class's threshold, ``predicted`` the top-1 class).
    """
    p = head.predict_proba(frame)
    thresholds = (head.abstention or {}).get("thresholds")
    label, predicted, prob = assign_labels(p, head.classes, thresholds)
    out = pd.DataFrame({"object_id": frame["object_id"].astype(str).to_numpy()})
    out["label"] = pd.Series(label, dtype=str)
    out["prob"] = prob.astype("float32")
    out["predicted"] = pd.Series(predicted, dtype=str)
    order = np.argsort(-p, axis=1, kind="stable")
    names = np.asarray(head.classes, dtype=object)
    for j in range(1, min(top_k, len(head.classes))):
        out[f"label_{j + 1}"] = pd.Series(names[order[:, j]], dtype=str)
        out[f"prob_{j + 1}"] = p[np.arange(len(p)), order[:, j]].astype("float32")
    out["model_id"] = head.head_id
    return out


def save_head(
    head: Head, url: str | OutputStore, *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """Write ``head.json`` (whole) into a folder; return the head id."""
    store = as_store(url, storage_options=storage_options)
    doc = {
        "format": _FORMAT,
        "head_id": head.head_id,
        "classes": head.classes,
        "columns": head.columns,
        "mean": head.mean.tolist(),
        "scale": head.scale.tolist(),
        "coef": head.coef.tolist(),
        "intercept": head.intercept.tolist(),
        "c": head.c,
        "abstention": head.abstention,
        "meta": head.meta,
    }
    store.write_json("head.json", doc, indent=1, default=str, newline=False)
    logger.info("saved head %s to %s", head.head_id, store.url)
    return head.head_id


def load_head(url: str | OutputStore, *, storage_options: Mapping[str, Any] | None = None) -> Head:
    """Read a folder's ``head.json`` (:func:`save_head`).

    Raises
    ------
    InputFormatError
        No ``head.json`` there, or another format.
    """
    store = as_store(url, storage_options=storage_options)
    if not store.exists("head.json"):
        raise InputFormatError(
            f"{store.url}: no head.json (write one with 'oceanfields images head')."
        )
    doc = store.read_json("head.json")
    if doc.get("format") != _FORMAT:
        raise InputFormatError(
            f"{store.url}/head.json: format {doc.get('format')!r}; expected {_FORMAT!r}."
        )
    return Head(
        classes=list(doc["classes"]),
        columns=list(doc["columns"]),
        mean=np.asarray(doc["mean"], dtype=np.float64),
        scale=np.asarray(doc["scale"], dtype=np.float64),
        coef=np.asarray(doc["coef"], dtype=np.float64),
        intercept=np.asarray(doc["intercept"], dtype=np.float64),
        c=float(doc["c"]),
        abstention=doc.get("abstention"),
        meta=dict(doc.get("meta") or {}),
        head_id=str(doc["head_id"]),
    )


def read_embeddings(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dd.DataFrame:
    """Open the embeddings parts written by ``images embed`` (``OUT/embeddings``) lazily.

    Parameters
    ----------
    url : str
        The embeddings folder, or the ``images embed`` output folder holding it.
    storage_options : mapping, optional

    Returns
    -------
    dask.dataframe.DataFrame

    Raises
    ------
    InputFormatError
        No parquet part there, or no ``object_id``/feature column.
    """
    store = as_store(url, storage_options=storage_options)
    if "embeddings" in store.listdir():
        store = store.sub("embeddings")
    parts = [n for n in store.listdir() if n.endswith(".parquet")]
    if not parts:
        raise InputFormatError(
            f"{store.url}: no embeddings part (write them with 'oceanfields images embed')."
        )
    frame = dd.read_parquet(store.url, storage_options=dict(storage_options or {}) or None)
    if "object_id" not in frame.columns or not feature_columns(frame._meta):
        raise InputFormatError(
            f"{store.url}: not an embeddings table (needs object_id and e_*/h_* columns)."
        )
    return frame


def fit_head_on(
    embeddings: pd.DataFrame | dd.DataFrame,
    labelled: pd.DataFrame,
    *,
    config: HeadConfig | None = None,
) -> Head:
    """Fit a head on the embeddings of the labelled objects (joined on ``object_id``).

    Parameters
    ----------
    embeddings : pandas or dask DataFrame
        :func:`read_embeddings`' table.
    labelled : pandas.DataFrame
        ``object_id, category`` of the labelled objects (e.g. ``image_table(...,
        statuses=("V",))``); classes with fewer than 2 rows are left out (logged).
    config : HeadConfig, optional

    Returns
    -------
    Head

    Raises
    ------
    ConfigError
        No labelled object has an embedding.
    """
    ids = labelled[["object_id", "category"]].astype(str)
    if isinstance(embeddings, dd.DataFrame):
        wanted = set(ids["object_id"])
        embeddings = embeddings.map_partitions(
            lambda p: p[p["object_id"].astype(str).isin(wanted)]
        ).compute()
    joined = embeddings.assign(object_id=embeddings["object_id"].astype(str)).merge(
        ids, on="object_id", how="inner"
    )
    counts = joined["category"].value_counts()
    rare = counts[counts < 2]
    if len(rare):
        logger.info("fit_head_on: classes with < 2 embedded objects left out: %s", dict(rare))
        joined = joined[~joined["category"].isin(rare.index)]
    if joined.empty:
        raise ConfigError(
            "fit_head_on: no labelled object has an embedding; embed the same source "
            "('oceanfields images embed') and check its object ids."
        )
    joined = joined.sort_values("object_id", kind="stable").reset_index(drop=True)
    return fit_head(joined, joined["category"].tolist(), config=config)
