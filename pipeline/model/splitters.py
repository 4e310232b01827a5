"""The buffer around held-out rows and the scikit-learn splitters over the folds.

:func:`buffer_mask` finds the training rows within ``buffer_km`` of a held-out row (a
haversine ``BallTree``); :class:`SpatialBlockCV` (over
:func:`~pipeline.model.split.assign_folds`) and :class:`RandomCV` (over
:func:`~pipeline.model.split_variants.random_folds`) yield ``(train_idx, valid_idx)`` per
CV fold, the training rows buffered, and work with scikit-learn's ``cross_val_score``.

``X`` is a table with ``lat`` and ``lon`` columns (degrees) or an ``(n, 2)`` array of
``(lat, lon)``; train on a dask table by computing ``lat``/``lon`` first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.neighbors import BallTree

from pipeline.config import check_range
from pipeline.errors import InputFormatError
from pipeline.geo import EARTH_RADIUS_KM
from pipeline.model.basins import _check_coords
from pipeline.model.split import SplitConfig, assign_folds
from pipeline.model.split_variants import random_folds

__all__ = [
    "RandomCV",
    "SpatialBlockCV",
    "buffer_mask",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- inputs


def _coords_of(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` of a DataFrame with ``lat``/``lon`` columns or an (n, 2) array."""
    columns = getattr(X, "columns", None)
    if columns is not None:
        missing = [c for c in ("lat", "lon") if c not in columns]
        if missing:
            raise InputFormatError(
                f"X has no column {', '.join(missing)}; columns: {', '.join(map(str, columns))}. "
                "Pass a table with lat and lon (degrees) or an (n, 2) array of (lat, lon)."
            )
        return _check_coords(X["lat"], X["lon"])
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise InputFormatError(
            f"X has shape {arr.shape}; expected a table with lat and lon columns or an "
            "(n, 2) array of (lat, lon) in degrees."
        )
    return _check_coords(arr[:, 0], arr[:, 1])


# --------------------------------------------------------------------------- buffer


def buffer_mask(lat: Any, lon: Any, held_out: Any, *, buffer_km: float) -> np.ndarray:
    """Rows to drop from training: not held out, but within ``buffer_km`` of one that is.

    Distances are great-circle (haversine on a sphere of radius
    :data:`EARTH_RADIUS_KM`), through a scikit-learn ``BallTree`` of the held-out
    rows; "within" includes the distance itself (``<=``).

    Parameters
    ----------
    lat : array-like of float, shape (n,)
        Latitude (degrees north, -90 .. 90).
    lon : array-like of float, shape (n,)
        Longitude (degrees east), any range.
    held_out : array-like of bool, shape (n,)
        True for the rows held out (validation fold and test set).
    buffer_km : float
        Buffer distance (km, >= 0); 0 drops nothing.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)
        True where a row is not held out and lies within ``buffer_km`` of a held-out
        row.

    Raises
    ------
    InputFormatError
        Bad coordinates, or ``held_out`` not a boolean array of their length.
    ConfigError
        ``buffer_km`` negative or not finite.

    Examples
    --------
    >>> # 1 degree of longitude on the equator is 111.2 km
    >>> buffer_mask([0, 0, 0], [0, 0.9, 1.1], [True, False, False], buffer_km=111.2).tolist()
    [False, True, False]
    """
    lat, lon = _check_coords(lat, lon)
    held = np.asarray(held_out)
    if held.dtype != bool or held.shape != lat.shape:
        raise InputFormatError(
            f"held_out has dtype {held.dtype} and shape {held.shape}; expected a boolean "
            f"mask of shape {lat.shape}, one per coordinate."
        )
    check_range("buffer_km", buffer_km, low=0, unit="km")
    out = np.zeros(lat.shape, dtype=bool)
    candidates = ~held
    if buffer_km == 0 or not held.any() or not candidates.any():
        return out
    points = np.radians(np.column_stack([lat, lon]))
    tree = BallTree(points[held], metric="haversine")
    counts = tree.query_radius(points[candidates], r=buffer_km / EARTH_RADIUS_KM, count_only=True)
    out[candidates] = counts > 0
    return out


# --------------------------------------------------------------------------- splitters


class _FoldsCV(BaseCrossValidator):
    """Shared protocol: a fold array per row, buffered training sets per fold."""

    def __init__(self, config: SplitConfig | None = None) -> None:
        self.config = config

    @property
    def _config(self) -> SplitConfig:
        return self.config if self.config is not None else SplitConfig()

    def folds(self, X: Any, y: Any = None) -> np.ndarray:  # pragma: no cover - abstract
        """Fold of each row: ``-1`` test set, ``0 .. n_folds - 1`` CV fold."""
        raise NotImplementedError

    def _buffer_km(self) -> float:
        return self._config.buffer_km

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        """Return the number of CV folds (``config.n_folds``); the arguments are ignored."""
        return self._config.n_folds

    def test_indices(self, X: Any, y: Any = None) -> np.ndarray:
        """Indices of the held-out test rows (``folds(X, y) == -1``)."""
        return np.flatnonzero(self.folds(X, y) == -1)

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, valid_idx)`` for each CV fold over the non-test rows.

        Training rows exclude the test set, the validation fold and, when
        ``buffer_km > 0``, rows within ``buffer_km`` of either. ``groups`` is ignored
        (the blocks are the groups).
        """
        folds = self.folds(X, y)
        buffer_km = self._buffer_km()
        lat = lon = None
        if buffer_km > 0:
            lat, lon = _coords_of(X)
        test = folds == -1
        for k in range(self._config.n_folds):
            valid = folds == k
            held = valid | test
            train = ~held
            if lat is not None:
                dropped = buffer_mask(lat, lon, held, buffer_km=buffer_km)
                train &= ~dropped
                logger.info(
                    "split: fold %d: %d train, %d valid, %d dropped within %g km",
                    k,
                    int(train.sum()),
                    int(valid.sum()),
                    int(dropped.sum()),
                    buffer_km,
                )
            yield np.flatnonzero(train), np.flatnonzero(valid)


class SpatialBlockCV(_FoldsCV):
    """Spatial block cross-validation as a scikit-learn splitter.

    ``SpatialBlockCV(config).split(X, y)`` yields ``(train_idx, valid_idx)`` per CV
    fold of :func:`assign_folds` over the non-test rows; training rows exclude the
    test set, the validation fold and rows within ``config.buffer_km`` of either.
    Works with ``cross_val_score(..., cv=SpatialBlockCV(config))``; balancing uses
    the ``y`` that scikit-learn passes to ``split``.

    Parameters
    ----------
    config : SplitConfig, optional
        Default ``SplitConfig()``.

    Notes
    -----
    ``X`` is a table with ``lat`` and ``lon`` columns (degrees; other columns are
    ignored here) or an ``(n, 2)`` array of ``(lat, lon)``.

    See Also
    --------
    RandomCV : The random-split baseline with the same protocol.

    Examples
    --------
    >>> lat = np.repeat(np.arange(-75.0, 80.0, 10.0), 4)
    >>> lon = np.tile([-135.0, -45.0, 45.0, 135.0], 16)
    >>> cv = SpatialBlockCV(SplitConfig(n_folds=3, test_fraction=0.25))
    >>> X = np.column_stack([lat, lon])
    >>> [(len(train), len(valid)) for train, valid in cv.split(X, lat)]
    [(32, 16), (32, 16), (32, 16)]
    >>> len(cv.test_indices(X, lat)), cv.get_n_splits()
    (16, 3)
    """

    def folds(self, X: Any, y: Any = None) -> np.ndarray:
        """Fold of each row (:func:`assign_folds` on the coordinates of ``X``)."""
        lat, lon = _coords_of(X)
        return assign_folds(lat, lon, y, config=self._config)


class RandomCV(_FoldsCV):
    """Random-row cross-validation (the baseline) with the protocol of SpatialBlockCV.

    Folds come from :func:`random_folds` (same ``n_folds``, ``test_fraction`` and
    ``seed``). No buffer is applied, whatever ``config.buffer_km``: the baseline
    measures the skill obtained with neighbours in training.

    Parameters
    ----------
    config : SplitConfig, optional
        Default ``SplitConfig()``.

    See Also
    --------
    SpatialBlockCV : The spatial splitter this baseline is compared with.

    Examples
    --------
    >>> cv = RandomCV(SplitConfig(n_folds=2, test_fraction=0.2))
    >>> [(len(train), len(valid)) for train, valid in cv.split(np.zeros((10, 3)))]
    [(4, 4), (4, 4)]
    """

    def folds(self, X: Any, y: Any = None) -> np.ndarray:
        """Fold of each row (:func:`random_folds` over the rows of ``X``)."""
        return random_folds(len(X), config=self._config)

    def _buffer_km(self) -> float:
        return 0.0
