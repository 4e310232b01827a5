"""Abstention: machine labels below their class's probability threshold become ``unassigned``.

A concentration counted from machine labels is inflated by every wrong label. Each class
gets a probability threshold, chosen on validation images (never the training ones) so
that the labels kept reach a target precision; a label whose top-1 probability is below
its class's threshold becomes :data:`UNASSIGNED`. The object targets
(:func:`pipeline.targets.objects.build_object_targets`) count ``unassigned`` as a
category of its own and report its share, so low-confidence objects are visible instead
of silently inflating (or, if dropped, deflating) the other concentrations.

- :func:`abstention_thresholds`: per-class thresholds from validation probabilities;
- :func:`abstention_scores`: the share unassigned and the precision kept on other data;
- :func:`assign_labels`: labels with abstention from probabilities and thresholds.

The thresholds are stored with the model (``model.json``, key ``abstention``) by
:func:`pipeline.images.training.train_classifier` and applied by
:func:`pipeline.images.classify.classify_images` (and by the embedding heads,
:mod:`pipeline.images.heads`).

Choices made and why:

- **The threshold** of class *c* is the lowest top-1 probability *t* such that, among the
  validation images predicted *c* with probability >= *t*, the share truly *c* is at
  least ``target_precision``: as many labels as possible are kept at that precision.
- **Too few validation predictions** of a class (< ``min_support``) give a noisy
  precision: the class takes the threshold computed on all classes pooled.
- **A class that never reaches the target** gets threshold 1.0: its labels are all
  unassigned (logged), rather than a precision the validation data do not support.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.config import check_count, check_range
from pipeline.errors import ConfigError

__all__ = ["UNASSIGNED", "abstention_scores", "abstention_thresholds", "assign_labels"]

logger = logging.getLogger(__name__)

#: The label of an object whose top-1 probability is below its class's threshold.
UNASSIGNED = "unassigned"


def _lowest_threshold(top: np.ndarray, correct: np.ndarray, target: float) -> float | None:
    """Lowest t with precision(top >= t) >= target, or None when no t reaches it."""
    if top.size == 0:
        return None
    order = np.argsort(-top, kind="stable")
    top, correct = top[order], correct[order]
    precision = np.cumsum(correct) / np.arange(1, top.size + 1)
    # a threshold keeps every prediction at or above it: look at the last of equal probs
    last_of_tie = np.r_[top[1:] != top[:-1], True]
    ok = np.flatnonzero((precision >= target) & last_of_tie)
    return float(top[ok[-1]]) if ok.size else None


def abstention_thresholds(
    probs: Any,
    truth: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    *,
    target_precision: float = 0.9,
    min_support: int = 10,
) -> dict[str, Any]:
    """Per-class probability thresholds that reach a target precision on validation data.

    Parameters
    ----------
    probs : array-like
        (n, n_classes) class probabilities of validation images (not training ones).
    truth : sequence of int
        True class index of each image, in ``classes`` order.
    classes : sequence of str
    target_precision : float
        Share of the kept labels that must be right (0 to 1).
    min_support : int
        Classes predicted fewer times take the pooled threshold (module docstring).

    Returns
    -------
    dict
        ``target_precision``, ``thresholds`` (class → probability in [0, 1]), and on the
        given data ``share_unassigned``, ``precision_assigned`` and per class
        ``per_class`` (``n_predicted``, ``n_kept``, ``precision_kept``).

    Raises
    ------
    ConfigError
        ``target_precision`` outside (0, 1], or shapes that do not match.

    Examples
    --------
    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    >>> res = abstention_thresholds(probs, [0, 0, 1, 1, 1], ["a", "b"], min_support=1)
    >>> res["thresholds"], res["share_unassigned"]
    ({'a': 0.8, 'b': 0.55}, 0.2)
    """
    check_range("images.train.target_precision", target_precision, low=0, high=1, low_open=True)
    check_count("images.train.min_support", min_support, 1)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(truth, dtype=np.int64)
    if p.ndim != 2 or p.shape[1] != len(classes) or p.shape[0] != y.size:
        raise ConfigError(
            f"abstention_thresholds: probs {p.shape} do not match {y.size} truths and "
            f"{len(classes)} classes."
        )
    pred, top = p.argmax(axis=1), p.max(axis=1)
    correct = pred == y
    pooled = _lowest_threshold(top, correct, target_precision)
    pooled = 1.0 if pooled is None else pooled
    thresholds: dict[str, float] = {}
    for k, name in enumerate(classes):
        sel = pred == k
        if sel.sum() < min_support:
            thresholds[name] = pooled
            continue
        t = _lowest_threshold(top[sel], correct[sel], target_precision)
        if t is None:
            logger.info(
                "abstention: class %r never reaches precision %.2f on validation: every "
                "label of it becomes %r",
                name,
                target_precision,
                UNASSIGNED,
            )
        thresholds[name] = 1.0 if t is None else t
    result = {
        "target_precision": float(target_precision),
        "thresholds": thresholds,
        **abstention_scores(p, y, classes, thresholds),
    }
    logger.info(
        "abstention at precision %.2f: %.1f %% of the validation labels unassigned; "
        "precision of the others %s",
        target_precision,
        100 * result["share_unassigned"],
        result["precision_assigned"],
    )
    return result


def abstention_scores(
    probs: Any,
    truth: Sequence[int] | np.ndarray,
    classes: Sequence[str],
    thresholds: Mapping[str, float],
) -> dict[str, Any]:
    """How many labels thresholds leave unassigned, and how right the others are.

    Parameters
    ----------
    probs, truth, classes
        As :func:`abstention_thresholds` (any labelled images, e.g. a test set).
    thresholds : mapping
        Class → threshold.

    Returns
    -------
    dict
        ``share_unassigned``, ``precision_assigned`` (None when none is kept) and
        ``per_class``: ``n_predicted, n_kept, precision_kept`` of each class.

    Examples
    --------
    >>> abstention_scores([[0.9, 0.1], [0.6, 0.4]], [0, 1], ["a", "b"], {"a": 0.7, "b": 0.7})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'share_unassigned': 0.5, 'precision_assigned': 1.0,
     'per_class': {'a': {'n_predicted': 2, 'n_kept': 1, 'precision_kept': 1.0},
                   'b': {'n_predicted': 0, 'n_kept': 0, 'precision_kept': None}}}
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    y = np.asarray(truth, dtype=np.int64)
    pred, top = p.argmax(axis=1), p.max(axis=1)
    correct = pred == y
    limit = np.array([float(thresholds.get(str(c), 0.0)) for c in classes])
    kept = top >= limit[pred]
    per_class = {}
    for k, name in enumerate(classes):
        sel = pred == k
        n_kept = int((sel & kept).sum())
        per_class[name] = {
            "n_predicted": int(sel.sum()),
            "n_kept": n_kept,
            "precision_kept": float(correct[sel & kept].mean()) if n_kept else None,
        }
    return {
        "share_unassigned": float((~kept).mean()) if kept.size else 0.0,
        "precision_assigned": float(correct[kept].mean()) if kept.any() else None,
        "per_class": per_class,
    }


def assign_labels(
    probs: Any, classes: Sequence[str], thresholds: Mapping[str, float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-1 labels with abstention: below its class's threshold a label is unassigned.

    Parameters
    ----------
    probs : array-like
        (n, n_classes) probabilities.
    classes : sequence of str
    thresholds : mapping, optional
        Class → threshold (:func:`abstention_thresholds`); None: no abstention.

    Returns
    -------
    label : numpy.ndarray
        (n,) ``object``: the class, or :data:`UNASSIGNED`.
    predicted : numpy.ndarray
        (n,) ``object``: the top-1 class whatever its probability.
    prob : numpy.ndarray
        (n,) top-1 probability.

    Examples
    --------
    >>> label, predicted, prob = assign_labels([[0.9, 0.1], [0.4, 0.6]], ["a", "b"],
    ...                                        {"a": 0.5, "b": 0.7})
    >>> label.tolist(), predicted.tolist()
    (['a', 'unassigned'], ['a', 'b'])
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1, len(classes))
    names = np.asarray(list(classes), dtype=object)
    idx = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
    predicted = names[idx]
    prob = p[np.arange(len(p)), idx] if len(p) else np.zeros(0)
    if not thresholds:
        return predicted.copy(), predicted, prob
    t = np.array([float(thresholds.get(str(c), 0.0)) for c in classes])[idx]
    label = np.where(prob >= t, predicted, UNASSIGNED).astype(object)
    return label, predicted, prob
