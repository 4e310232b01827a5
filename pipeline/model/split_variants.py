"""The other splits with the fold convention of :mod:`pipeline.model.split`.

Each returns one integer per row (``-1`` test set, ``0 .. n_folds - 1`` CV fold), like
:func:`~pipeline.model.split.assign_folds`, so the train step can score a model on them
over the same rows (:func:`pipeline.run.evaluation.cv_variants`):

- :func:`random_folds`: random rows, or whole casts/cruises with ``groups`` (the random
  references that show how much neighbours flatter a score);
- :func:`basin_folds`: leave one ocean basin out;
- :func:`inner_split`: the early-stopping rows inside a fold's training rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputFormatError
from pipeline.model.basins import BASINS, _check_coords, _coords_doc, basin_of
from pipeline.model.split import SplitConfig, deal_blocks

__all__ = [
    "basin_folds",
    "inner_split",
    "random_folds",
]


def random_folds(n: int, *, config: SplitConfig | None = None, groups: Any = None) -> np.ndarray:
    """Random split of ``n`` rows or whole groups, as in :func:`~.split.assign_folds`.

    The random-split reference: without ``groups``, ``round(test_fraction * n)`` random
    rows form the test set and the others are dealt into ``n_folds`` folds whose sizes
    differ by at most one row. With ``groups`` (e.g. the cast of each row, so a cast's
    layers stay together, or its cruise), whole groups in a seeded random order are dealt
    to the test set or the fold least filled relative to its share of rows. Seeded by
    ``config.seed``.

    Parameters
    ----------
    n : int
        Number of rows (>= n_folds plus one if there is a test set).
    config : SplitConfig, optional
        ``n_folds``, ``test_fraction`` and ``seed``; default ``SplitConfig()``.
    groups : array-like, shape (n,), optional
        Group label of each row; rows of one group share a fold.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        ``-1`` for the test set, ``0 .. n_folds - 1`` for the CV fold.

    Raises
    ------
    ConfigError
        Too few rows (or groups) for the folds and the test set.

    See Also
    --------
    assign_folds : The spatial split this reference is compared with.

    Examples
    --------
    >>> folds = random_folds(10, config=SplitConfig(n_folds=2, test_fraction=0.2))
    >>> [int((folds == g).sum()) for g in (-1, 0, 1)]
    [2, 4, 4]
    >>> cast = np.repeat(np.arange(5), 3)  # three layers per cast
    >>> f = random_folds(15, config=SplitConfig(n_folds=2, test_fraction=0.2), groups=cast)
    >>> all(len(set(f[cast == c])) == 1 for c in range(5))
    True
    """
    config = config if config is not None else SplitConfig()
    n = int(n)
    if groups is not None:
        return _random_group_folds(n, np.asarray(groups), config)
    n_test = round(config.test_fraction * n)
    if config.test_fraction > 0:
        n_test = max(n_test, 1)
    if n - n_test < config.n_folds:
        raise ConfigError(
            f"split: {n} row(s) cannot fill n_folds={config.n_folds} folds and "
            f"{n_test} test row(s); use fewer n_folds or a smaller test_fraction."
        )
    order = np.random.default_rng(config.seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order[:n_test]] = -1
    folds[order[n_test:]] = np.arange(n - n_test) % config.n_folds
    return folds


def _random_group_folds(n: int, groups: np.ndarray, config: SplitConfig) -> np.ndarray:
    """:func:`random_folds` over whole groups (blocks dealt in random order, by rows)."""
    if groups.shape != (n,):
        raise InputFormatError(f"groups has shape {groups.shape}; expected ({n},).")
    labels, inverse, sizes = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    has_test = config.test_fraction > 0
    n_groups = config.n_folds + int(has_test)
    if labels.size < n_groups:
        raise ConfigError(
            f"split: {labels.size} group(s) cannot fill n_folds={config.n_folds} folds"
            f"{' and a test set' if has_test else ''}; use fewer n_folds."
        )
    shares = np.full(config.n_folds, (1.0 - config.test_fraction) / config.n_folds)
    if has_test:
        shares = np.append(shares, config.test_fraction)
    rng = np.random.default_rng(config.seed)
    group = deal_blocks(sizes.astype(float), np.zeros(labels.size), shares, rng)
    if has_test:
        group = np.where(group == config.n_folds, -1, group)
    return group[inverse].astype(np.int64)


@_coords_doc
def basin_folds(lat: Any, lon: Any, folds: Any) -> np.ndarray:
    """Leave-one-basin-out folds over the CV rows of ``folds``; test rows stay ``-1``.

    Each ocean basin (:func:`basin_of`) holding CV rows becomes one fold, numbered in
    the order of :data:`~pipeline.model.basins.BASINS`, so a model is scored on a whole
    basin it never saw (the hardest transfer a global map makes).

    Parameters
    ----------
    {coords_parameters}
    folds : array of int, shape (n,)
        A split (:func:`~.split.assign_folds`): its test rows (``-1``) stay the test set.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        ``-1`` for the test set, ``0 .. n_basins - 1`` for the basin of each CV row.

    Raises
    ------
    ConfigError
        The CV rows lie in fewer than two basins.

    Examples
    --------
    >>> basin_folds([38.0, 0.0, 0.0], [18.0, -30.0, -150.0], [0, 1, -1]).tolist()
    [1, 0, -1]
    """
    lat, lon = _check_coords(lat, lon)
    folds = np.asarray(folds).reshape(-1)
    basin = basin_of(lat, lon)
    cv = folds >= 0
    present = [b for b in BASINS if (basin[cv] == b).any()]
    if len(present) < 2:
        raise ConfigError(
            f"split: the CV rows lie in {len(present)} basin(s) {present!r}; "
            "leave-one-basin-out needs at least 2."
        )
    out = np.full(folds.shape, -1, dtype=np.int64)
    for k, name in enumerate(present):
        out[cv & (basin == name)] = k
    return out


def inner_split(
    train: np.ndarray, groups: Any, *, fraction: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training rows into rows to fit and rows to early-stop on.

    Whole groups (spatial blocks) in a seeded random order are moved to the
    early-stopping set until it holds at least ``fraction`` of the rows, so early
    stopping never looks at the fold that is scored and its rows are not neighbours of
    the rows that are fitted.

    Parameters
    ----------
    train : array of int
        Positions of the training rows.
    groups : array-like, shape (n_all,)
        Group (block) of every row, indexed by position.
    fraction : float
        Share of the training rows to early-stop on, in (0, 1).
    seed : int
        Seed of the group order.

    Returns
    -------
    fit, stop : numpy.ndarray of int
        Positions to fit on and to early-stop on (``stop`` is empty when the training
        rows hold a single group).

    Examples
    --------
    >>> fit, stop = inner_split(np.arange(10), np.repeat(np.arange(5), 2), fraction=0.2)
    >>> len(fit), len(stop), set(fit) & set(stop)
    (8, 2, set())
    """
    train = np.asarray(train, dtype=np.int64)
    labels = np.asarray(groups).astype(str)[train]
    unique = np.unique(labels)
    if unique.size < 2:
        return train, train[:0]
    order = np.random.default_rng(seed).permutation(unique)
    need = fraction * train.size
    chosen: list[str] = []
    taken = 0
    for label in order[:-1]:
        if taken >= need:
            break
        chosen.append(label)
        taken += int((labels == label).sum())
    stop = np.isin(labels, chosen)
    return train[~stop], train[stop]
