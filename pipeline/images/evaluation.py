"""The split and the scores shared by the image classifiers, so both are judged alike.

:func:`stratified_holdout` (the same stratified 80/20 split),
:func:`classification_metrics` (the same JSON metrics) and :func:`plot_confusion` (the
same figure), used by the gradient-boosted-trees baseline, the CNN's training and
benchmark, and the consistency report.

See Also
--------
pipeline.images.gbt : the gradient-boosted-trees baseline on handcrafted features.
pipeline.images.training : the CNN's training loop (its metrics JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.errors import ConfigError

__all__ = ["calibration_error", "classification_metrics", "plot_confusion", "stratified_holdout"]


def stratified_holdout(
    categories: Sequence[str], *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split rows into stratified train and test parts (shared by the GBT and the CNN).

    Parameters
    ----------
    categories : sequence of str
        The class of each row.
    test_fraction : float
        Share of each class held out for testing, in (0, 1).
    seed : int
        ``random_state`` of :func:`sklearn.model_selection.train_test_split`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted row positions of the training and the test part.

    Raises
    ------
    ConfigError
        When ``test_fraction`` is not in (0, 1) or a class has fewer than 2 rows.

    Examples
    --------
    >>> train, test = stratified_holdout(["a"] * 5 + ["b"] * 5, test_fraction=0.4)
    >>> len(train), len(test), test.tolist()
    (6, 4, [3, 4, 8, 9])
    """
    labels = np.asarray(categories)
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction: {test_fraction!r}; expected a fraction in (0, 1).")
    names, counts = np.unique(labels, return_counts=True)
    if (counts < 2).any():
        raise ConfigError(
            f"stratified_holdout: classes {names[counts < 2].tolist()} have a single row; "
            "a stratified split needs at least 2 per class. Drop or merge them."
        )
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=seed
    )
    return np.sort(train), np.sort(test)


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class precision/recall/F1 and the confusion matrix.

    Shared by the GBT baseline and the CNN (its metrics JSON), so both are scored alike.

    Parameters
    ----------
    y_true, y_pred : sequence of str
        True and predicted class of each row.
    classes : sequence of str
        Every class, in the order of the confusion matrix and of ``per_class``.

    Returns
    -------
    dict
        JSON-serialisable (plain ints, floats, strings and lists):

        - ``n``: rows; ``accuracy``: share of rows predicted right;
        - ``balanced_accuracy``: mean recall over the classes present in ``y_true``;
        - ``macro_f1``: mean F1 over the same classes;
        - ``classes``: the class list;
        - ``per_class``: ``{class: {"precision", "recall", "f1", "support"}}``, 0.0
          where undefined (no prediction of the class, or no row of it);
        - ``confusion_matrix``: rows = true class, columns = predicted, in ``classes``
          order.

    Raises
    ------
    ConfigError
        When the lengths differ or a label is not in ``classes``.

    Examples
    --------
    >>> m = classification_metrics(["a", "a", "b", "c"], ["a", "b", "b", "b"], ["a", "b", "c"])
    >>> m["accuracy"], m["balanced_accuracy"], m["confusion_matrix"]
    (0.5, 0.5, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])
    >>> m["per_class"]["b"]
    {'precision': 0.3333333333333333, 'recall': 1.0, 'f1': 0.5, 'support': 1}
    """
    names = [str(c) for c in classes]
    true, pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    if len(true) != len(pred):
        raise ConfigError(
            f"classification_metrics: {len(true)} true labels but {len(pred)} predictions."
        )
    unknown = sorted((set(true.tolist()) | set(pred.tolist())) - set(names))
    if unknown:
        raise ConfigError(
            f"classification_metrics: labels {unknown[:10]} are not in classes {names[:10]}; "
            "pass every class that can occur."
        )
    order = {c: i for i, c in enumerate(names)}
    k = len(names)
    codes = np.array([order[t] for t in true], dtype=np.int64) * k + np.array(
        [order[p] for p in pred], dtype=np.int64
    )
    cm = np.bincount(codes, minlength=k * k).reshape(k, k)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    return {
        "n": len(true),
        "accuracy": float(tp.sum() / len(true)) if len(true) else float("nan"),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "classes": names,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(names)
        },
        "confusion_matrix": cm.tolist(),
    }


def calibration_error(probs: Any, truth: Sequence[int] | np.ndarray, *, n_bins: int = 10) -> float:
    """Return the expected calibration error of top-1 probabilities (0: calibrated).

    The images are binned by top-1 probability into ``n_bins`` equal-width bins; the
    error is the mean, weighted by bin size, of ``|accuracy - mean probability|`` per
    bin. Probabilities are used downstream (abstention thresholds, ``prob`` columns),
    so they should mean what they say.

    Parameters
    ----------
    probs : array-like
        (n, n_classes) probabilities.
    truth : sequence of int
        True class index per row.
    n_bins : int

    Returns
    -------
    float
        NaN when there is no row.

    Examples
    --------
    >>> calibration_error([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]], [0, 0, 0, 1])
    0.09999999999999998
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(truth, dtype=np.int64)
    if p.size == 0:
        return float("nan")
    top, right = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((top * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(right[sel].mean() - top[sel].mean())
    return float(total / len(top))


def plot_confusion(matrix: Any, classes: list[str], target: Any, *, title: str = "") -> None:
    """Save a row-normalised confusion matrix (true rows, predicted columns) as PNG.

    Parameters
    ----------
    matrix : array-like
        Counts (n_classes, n_classes), rows true, columns predicted.
    classes : list of str
    target : path or binary file object
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype="float64")
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised; counts shown)", fontsize=9)
    fig.tight_layout()
    fig.savefig(target, format="png", dpi=110)
    plt.close(fig)
