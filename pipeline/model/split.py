"""Spatial block cross-validation: which rows train, validate and test.

Rows near each other in the ocean are not independent; a random split lets a model
score well by remembering its neighbours. This step groups rows into *blocks*
(regular latitude/longitude blocks, or ocean basins), holds out whole blocks as a
test set and deals the remaining blocks into cross-validation folds, balanced on the
target so that every fold sees the whole range of it. The result is one integer per
row (``-1`` test set, ``0 .. n_folds - 1`` CV fold), computed apart from any data
access, so that it can be stored beside a model and reused.

Blocks on the sphere
--------------------
Latitude is cut into ``n_lat = round(180 / block_deg)`` bands of equal height and
longitude into ``n_lon = round(360 / block_deg)`` sectors of equal width, so the grid
always closes around the globe without a sliver; when ``block_deg`` does not divide
360 (or 180) the effective size differs slightly from ``block_deg`` and is logged.
One sector is centred on the antimeridian: longitudes -179.9 and 179.9 (and -180 and
180) are in the same block whatever the block size, and no block is cut in two by the
dateline. Longitudes are wrapped to [-180, 180) first.

Balancing
---------
The test set is dealt first and blind to the targets (blocks in a seeded random order,
each to the test set or the rest, whichever is least filled relative to its share of
rows), so no test row's target shapes the split. The remaining blocks are ordered by
their mean target (ties and order within each stratum of ``n_folds`` consecutive blocks
shuffled by a seeded RNG), then dealt one by one to the fold that is least filled
relative to its share after receiving the block: each fold receives blocks across the
whole target range, and row counts stay close to ``test_fraction`` and
``(1 - test_fraction) / n_folds``. Every group receives at least one block.

Other splits with the same convention live in :mod:`pipeline.model.split_variants`
(random rows or casts, leave one basin out, the early-stopping rows inside a fold); the
buffer around held-out rows and the scikit-learn splitters over these folds in
:mod:`pipeline.model.splitters`.

Developer note: everything here is numpy on in-memory coordinates. The basins
(:data:`~pipeline.model.basins.BASINS`, :func:`~pipeline.model.basins.basin_of`) are
defined in :mod:`pipeline.model.basins`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pipeline.config import check_choice, check_count, check_range, check_strings
from pipeline.errors import ConfigError, InputFormatError
from pipeline.model.basins import _check_coords, _coords_doc, basin_of

__all__ = [
    "SplitConfig",
    "assign_blocks",
    "assign_folds",
    "deal_blocks",
]

logger = logging.getLogger(__name__)

_METHODS = ("blocks", "basins")
#: The CV variants the train step can score beside the block CV, in that order.
CV_VARIANTS = ("random", "random_cruise", "basins")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Options of the spatial split (defaults live here only).

    Attributes
    ----------
    method : {"blocks", "basins"}
        Regular latitude/longitude blocks, or the built-in ocean basins
        (:func:`basin_of`).
    block_deg : float or "auto"
        Size of the blocks (degrees, 0 < block_deg <= 180); the effective size is
        ``180 / round(180 / block_deg)`` by ``360 / round(360 / block_deg)``. ``"auto"``:
        the range of the targets' spatial autocorrelation, resolved by the train step
        (:func:`pipeline.run.evaluation.resolve_split`) before any split.
    n_folds : int
        Number of cross-validation folds (>= 2).
    test_fraction : float
        Fraction of rows held out as the test set, in whole blocks, so approximately
        (0 <= test_fraction < 1; 0 means no test set).
    buffer_km : float or "auto"
        Training rows within this great-circle distance (km) of any held-out row
        (validation fold or test set) are dropped from training (>= 0). ``"auto"``: the
        autocorrelation range, resolved like ``block_deg``.
    seed : int
        Seed of the RNG that orders blocks (>= 0).
    variants : tuple of str
        The CV variants scored beside the block CV, over the same CV rows (each one more
        set of fits): ``random`` (whole casts at random), ``random_cruise`` (whole
        cruises, when the rows name them), ``basins`` (leave one basin out); see
        :func:`pipeline.run.evaluation.cv_variants`. ``[]`` scores the block CV only.

    Examples
    --------
    >>> SplitConfig(n_folds=3).n_folds
    3
    >>> SplitConfig(method="grid")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: split.method: 'grid'; valid: 'blocks', 'basins'.
    """

    method: Literal["blocks", "basins"] = "blocks"
    block_deg: float | Literal["auto"] = 10.0
    n_folds: int = 5
    test_fraction: float = 0.2
    buffer_km: float | Literal["auto"] = 0.0
    seed: int = 0
    variants: tuple[str, ...] = CV_VARIANTS

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key, value and valid range."""
        check_choice("split.method", self.method, _METHODS)
        variants = check_strings("split.variants", self.variants, valid=CV_VARIANTS)
        object.__setattr__(self, "variants", variants)
        if self.block_deg != "auto":
            check_range(
                "split.block_deg", self.block_deg, low=0, high=180, low_open=True, unit="degrees"
            )
        check_count("split.n_folds", self.n_folds, 2)
        check_range("split.test_fraction", self.test_fraction, low=0, high=1, high_open=True)
        if self.buffer_km != "auto":
            check_range("split.buffer_km", self.buffer_km, low=0, unit="km")
        check_count("split.seed", self.seed, 0)


# --------------------------------------------------------------------------- inputs


def _row_scores(y: Any, n: int) -> np.ndarray | None:
    """One balancing score per row: ``y``, or the mean of its standardised columns."""
    if y is None:
        return None
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as err:
        raise InputFormatError(
            f"y: cannot balance folds on a non-numeric target ({err}); pass y=None to "
            "deal blocks without balancing."
        ) from err
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise InputFormatError(
            f"y has shape {arr.shape}; expected ({n},) or ({n}, k), one row per coordinate."
        )
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape[1] == 1:
        return arr[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(arr, axis=0)
        std = np.nanstd(arr, axis=0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = (arr - mean) / std
    with np.errstate(invalid="ignore"):
        counts = np.sum(np.isfinite(z), axis=1)
        sums = np.nansum(z, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# --------------------------------------------------------------------------- blocks


def _block_grid(block_deg: float) -> tuple[int, int]:
    """Return the numbers of latitude bands and longitude sectors for a block size."""
    return max(1, round(180.0 / block_deg)), max(1, round(360.0 / block_deg))


@_coords_doc
def assign_blocks(lat: Any, lon: Any, *, config: SplitConfig | None = None) -> np.ndarray:
    """Block label of each row: a regular lat/lon block, or an ocean basin.

    With ``method="blocks"``, latitude is cut into ``n_lat = round(180 / block_deg)``
    equal bands from the South Pole and longitude into ``n_lon = round(360 /
    block_deg)`` equal sectors, sector 0 centred on the antimeridian (so that
    -179.9 and 179.9 share a block and the grid closes on the sphere for any
    ``block_deg``). The label is ``band * n_lon + sector``. With ``method="basins"``,
    the label is the basin name (:func:`basin_of`).

    Parameters
    ----------
    {coords_parameters}
    config : SplitConfig, optional
        ``method`` and ``block_deg``; default ``SplitConfig()``.

    Returns
    -------
    numpy.ndarray, shape (n,)
        ``int64`` block labels (blocks) or basin names (basins).

    Raises
    ------
    {coords_raises}

    See Also
    --------
    assign_folds : Deals the blocks into folds and a test set.

    Examples
    --------
    >>> cfg = SplitConfig(block_deg=10)
    >>> b = assign_blocks([0.5, 0.5, 0.5, -90, 90], [-179.9, 179.9, 180.0, 0, 0], config=cfg)
    >>> bool(b[0] == b[1] == b[2]), int(b[3]), int(b[4])
    (True, 18, 630)
    >>> assign_blocks([38.0], [18.0], config=SplitConfig(method="basins")).tolist()
    ['Mediterranean']
    """
    config = config if config is not None else SplitConfig()
    lat, lon = _check_coords(lat, lon)
    if config.method == "basins":
        return basin_of(lat, lon)
    if config.block_deg == "auto":
        raise ConfigError(
            "split.block_deg: 'auto' is resolved from the targets by the train step "
            "(pipeline.run.evaluation.resolve_split); pass a number here."
        )
    n_lat, n_lon = _block_grid(config.block_deg)
    height, width = 180.0 / n_lat, 360.0 / n_lon
    band = np.clip(np.floor((lat + 90.0) / height).astype(np.int64), 0, n_lat - 1)
    sector = np.floor(((lon + 180.0 + width / 2) % 360.0) / width).astype(np.int64) % n_lon
    return band * n_lon + sector


# --------------------------------------------------------------------------- folds


def deal_blocks(
    sizes: np.ndarray, scores: np.ndarray, shares: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Group of each block: stratified by score, proportional to ``shares`` in rows.

    Blocks are ordered by score (NaN last), shuffled within strata of ``len(shares)``
    consecutive blocks, and each goes to the group least filled relative to its share
    after receiving it (a group still empty first); ties broken by a random priority.

    Parameters
    ----------
    sizes : numpy.ndarray of float, shape (n_blocks,)
        Rows in each block.
    scores : numpy.ndarray of float, shape (n_blocks,)
        Score of each block to stratify on (NaN last); zeros deal by rows only.
    shares : numpy.ndarray of float, shape (n_groups,)
        Target share of the rows of each group.
    rng : numpy.random.Generator
        The seeded RNG that orders blocks within strata and breaks ties.

    Returns
    -------
    numpy.ndarray of int64, shape (n_blocks,)
        Group of each block, ``0 .. n_groups - 1``; every group receives a block when
        there are at least as many blocks as groups.

    See Also
    --------
    assign_folds : Deals blocks into a test set and folds with it.

    Examples
    --------
    >>> deal_blocks(np.ones(4), np.zeros(4), np.array([0.5, 0.5]),
    ...             np.random.default_rng(0)).tolist().count(0)
    2
    """
    n_blocks, n_groups = len(sizes), len(shares)
    order = np.lexsort((rng.permutation(n_blocks), scores))
    for start in range(0, n_blocks, n_groups):
        rng.shuffle(order[start : start + n_groups])
    priority = rng.permutation(n_groups)
    filled = np.zeros(n_groups)
    empty = np.ones(n_groups, dtype=bool)
    group = np.empty(n_blocks, dtype=np.int64)
    for block in order:
        ratio = (filled + sizes[block]) / shares
        if empty.any():
            ratio = np.where(empty, ratio, np.inf)
        g = int(np.lexsort((priority, ratio))[0])
        group[block] = g
        filled[g] += sizes[block]
        empty[g] = False
    return group


@_coords_doc
def assign_folds(
    lat: Any, lon: Any, y: Any = None, *, config: SplitConfig | None = None
) -> np.ndarray:
    """Deal whole blocks into a test set and CV folds, the folds balanced on the target.

    The test set is dealt first, blind to the targets: blocks (:func:`assign_blocks`)
    in a seeded random order go to the test set or the rest so that the test set holds
    about ``test_fraction`` of the rows. The remaining blocks are then ordered by their
    mean of ``y`` (the targets of training rows only) and dealt in strata so that every
    fold receives blocks across the whole range of the target, in proportion to its
    share of rows; the order within each stratum comes from an RNG seeded with
    ``config.seed``. Every group receives at least one block; the row fractions hold to
    about one block's rows.

    Parameters
    ----------
    {coords_parameters}
    y : array-like of float, shape (n,) or (n, k), optional
        Target(s) to balance on: a block's score is its mean of ``y`` (or of the mean
        of the standardised columns); NaN ignored. ``None`` deals blocks at random,
        balancing row counts only.
    config : SplitConfig, optional
        Method, block size, ``n_folds``, ``test_fraction`` and ``seed``; default
        ``SplitConfig()``.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        ``-1`` for the test set, ``0 .. n_folds - 1`` for the CV fold.

    Raises
    ------
    ConfigError
        Fewer blocks hold data than the groups to fill (``n_folds`` plus the test
        set); names the counts and the keys to change.
    InputFormatError
        Bad coordinates, or ``y`` not numeric or of the wrong length.

    See Also
    --------
    pipeline.model.split_variants.random_folds : The same convention for a plain random split.
    pipeline.model.splitters.SpatialBlockCV : The scikit-learn splitter over these folds.

    Examples
    --------
    >>> lat = np.repeat(np.arange(-75.0, 80.0, 10.0), 4)
    >>> lon = np.tile([-135.0, -45.0, 45.0, 135.0], 16)
    >>> folds = assign_folds(lat, lon, lat, config=SplitConfig(n_folds=3, test_fraction=0.25))
    >>> [int((folds == g).sum()) for g in (-1, 0, 1, 2)]
    [16, 16, 16, 16]
    """
    config = config if config is not None else SplitConfig()
    lat, lon = _check_coords(lat, lon)
    scores = _row_scores(y, lat.size)
    blocks = assign_blocks(lat, lon, config=config)
    has_test = config.test_fraction > 0
    n_groups = config.n_folds + int(has_test)
    labels, inverse, sizes = np.unique(blocks, return_inverse=True, return_counts=True)
    if labels.size < n_groups:
        raise ConfigError(
            f"split: {labels.size} block(s) hold data but n_folds={config.n_folds}"
            f"{' and a test set' if has_test else ''} need at least {n_groups}; "
            + (
                "use method 'blocks' or fewer n_folds."
                if config.method == "basins"
                else f"use a smaller block_deg (now {config.block_deg}) or fewer n_folds."
            )
        )
    if scores is None:
        block_scores = np.zeros(labels.size)
    else:
        finite = np.isfinite(scores)
        sums = np.bincount(inverse, weights=np.where(finite, scores, 0.0), minlength=labels.size)
        counts = np.bincount(inverse, weights=finite.astype(float), minlength=labels.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            block_scores = np.where(counts > 0, sums / counts, np.nan)
    rng = np.random.default_rng(config.seed)
    sizes = sizes.astype(float)
    group = np.zeros(labels.size, dtype=np.int64)
    if has_test:  # the test blocks first, blind to every target (rows only)
        shares = np.array([1.0 - config.test_fraction, config.test_fraction])
        group = np.where(deal_blocks(sizes, np.zeros(labels.size), shares, rng) == 1, -1, 0)
    rest = np.flatnonzero(group == 0)
    if rest.size < config.n_folds:  # few blocks: give the smallest test blocks back
        test_blocks = np.flatnonzero(group == -1)
        back = test_blocks[np.argsort(sizes[test_blocks], kind="stable")]
        group[back[: config.n_folds - rest.size]] = 0
        rest = np.flatnonzero(group == 0)
    group[rest] = deal_blocks(
        sizes[rest], block_scores[rest], np.full(config.n_folds, 1.0 / config.n_folds), rng
    )
    folds = group[inverse]
    _log_folds(folds, labels.size, config)
    return folds


def _log_folds(folds: np.ndarray, n_blocks: int, config: SplitConfig) -> None:
    """Log the automatic choices of a split at INFO."""
    n = folds.size
    if config.method == "blocks":
        n_lat, n_lon = _block_grid(config.block_deg)
        what = f"{n_blocks} blocks of {180 / n_lat:.4g} x {360 / n_lon:.4g} deg"
    else:
        what = f"{n_blocks} basins"
    rows = [int((folds == k).sum()) for k in range(config.n_folds)]
    n_test = int((folds == -1).sum())
    logger.info(
        "split: %s hold %d rows; test set %d rows (%.1f%%); rows per fold %s",
        what,
        n,
        n_test,
        100.0 * n_test / max(n, 1),
        rows,
    )
