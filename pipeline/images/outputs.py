"""What the ``oceanfields images`` commands write, apart from their printing.

The command line (:mod:`pipeline.cli.images`) parses, shows progress and prints; the
files come from here and from the writers of each step, all through one
:class:`~pipeline.store.OutputStore`:

- :func:`train_with_holdout`: a classifier trained with a stratified held-out test set,
  its model directory written by :func:`~pipeline.images.training.train_classifier`;
- :func:`write_types`: morphological types fitted, assigned, described and drawn
  (``model.json``, ``labels/part-0.parquet``, ``types.csv``, ``plate.png``);
- :func:`write_consistency`: machine labels against the validated human categories
  (:func:`~pipeline.images.consistency.write_consistency_report`).

Classifying images writes its own parts on the workers
(:func:`pipeline.images.classify.classify_images`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import dask.dataframe as dd
import pandas as pd

from pipeline.images.consistency import (
    ConsistencyResult,
    consistency,
    write_consistency_report,
)
from pipeline.images.evaluation import stratified_holdout
from pipeline.images.morphology import (
    MorphologyConfig,
    MorphologyModel,
    assign_types,
    fit_types,
    save_model,
)
from pipeline.images.morphology_describe import describe_types, type_plate_png
from pipeline.store import OutputStore, as_store

if TYPE_CHECKING:  # torch is optional (the images extra): imported where training runs
    from pipeline.images.model import ImageModel
    from pipeline.images.training import TrainedClassifier
    from pipeline.images.training_config import ImageTrainConfig

__all__ = ["train_with_holdout", "write_consistency", "write_types"]

logger = logging.getLogger(__name__)


def train_with_holdout(
    table: pd.DataFrame,
    *,
    config: ImageTrainConfig | None = None,
    out: str | OutputStore | None = None,
    init: ImageModel | None = None,
    holdout: float = 0.2,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> tuple[TrainedClassifier, pd.DataFrame | None]:
    """Train with a stratified share of the images held out and scored once at the end.

    The classes with fewer than ``min_per_class`` images are left out first, so every
    class kept can be split; then :func:`~pipeline.images.training.train_classifier`
    trains on the rest and scores the held-out images (``metrics["test"]``) with the
    final model.

    Parameters
    ----------
    table : pandas.DataFrame
        Labelled images (``image``, ``category``).
    config : ImageTrainConfig, optional
    out : str or OutputStore, optional
        Model directory to write (see :func:`~pipeline.images.training.train_classifier`).
    init : ImageModel, optional
        Model to fine-tune.
    holdout : float
        Share of each class held out as the test set, in [0, 1) (0: none).
    storage_options : mapping, optional
        fsspec options of the images, and of ``out`` when it is a URL.
    progress : callable, optional
        Called with each epoch's history entry.

    Returns
    -------
    (TrainedClassifier, pandas.DataFrame or None)
        The trained classifier and the held-out images (None when ``holdout`` is 0).

    See Also
    --------
    pipeline.images.evaluation.stratified_holdout : the split.
    """
    from pipeline.images.training import train_classifier  # deferred: needs torch
    from pipeline.images.training_config import ImageTrainConfig

    config = config or ImageTrainConfig()
    counts = table["category"].value_counts()
    table = table[table["category"].isin(counts[counts >= config.min_per_class].index)]
    test = None
    if holdout > 0:
        train_idx, test_idx = stratified_holdout(
            table["category"].tolist(), test_fraction=holdout, seed=config.seed
        )
        table, test = table.iloc[train_idx], table.iloc[test_idx]
    trained = train_classifier(
        table,
        config=config,
        out=out,
        init=init,
        test=test,
        storage_options=storage_options,
        progress=progress,
    )
    return trained, test


def write_types(
    objects: pd.DataFrame | dd.DataFrame,
    out: str | OutputStore,
    *,
    config: MorphologyConfig | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[MorphologyModel, pd.DataFrame, pd.DataFrame]:
    """Fit, assign, describe and draw the morphological types of the particles; write them.

    Writes, each whole, ``labels/part-0.parquet`` (``object_id, label, distance``),
    ``model.json`` (:func:`~pipeline.images.morphology.save_model`), ``types.csv``
    (count, share and feature means per type) and ``plate.png`` (example vignettes).

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table (features, selection columns, ``image`` URLs for the plate).
    out : str or OutputStore
        Output folder (local path or fsspec URL) or its store.
    config : MorphologyConfig, optional
        Selection, features, number of types.
    storage_options : mapping, optional
        fsspec options of the images, and of ``out`` when it is a URL.

    Returns
    -------
    (MorphologyModel, pandas.DataFrame, pandas.DataFrame)
        The model, the labels (computed) and the per-type table.

    Examples
    --------
    >>> import tempfile
    >>> objects = pd.DataFrame({"object_id": ["a", "b", "c"], "area": [3.0, 5.0, 300.0],
    ...                         "feret": [2.0, 2.5, 40.0], "image": "missing.png"})
    >>> cfg = MorphologyConfig(features=("area", "feret"), n_types=2, hierarchy_prefix=None,
    ...                        statuses=None)
    >>> store = OutputStore(tempfile.mkdtemp())
    >>> model, labels, table = write_types(objects, store, config=cfg)
    >>> table[["label", "count"]].to_dict("list")
    {'label': ['type_1', 'type_2'], 'count': [2, 1]}
    >>> store.listdir(), store.listdir("labels")
    (['labels', 'model.json', 'plate.png', 'types.csv'], ['part-0.parquet'])
    """
    store = as_store(out, storage_options=storage_options)
    model = fit_types(objects, config=config)
    labels = assign_types(objects, model)
    labels = labels.compute() if hasattr(labels, "compute") else labels
    store.write_parquet("labels/part-0.parquet", labels)
    save_model(model, store.path("model.json"), storage_options=store.storage_options)
    table = describe_types(objects, labels, model)
    store.write_text("types.csv", table.to_csv(index=False))
    png, _ = type_plate_png(objects, labels, storage_options=storage_options)
    store.write_bytes("plate.png", png)
    logger.info("types: %d types written to %s", len(table), store.url)
    return model, labels, table


def write_consistency(
    objects: pd.DataFrame | dd.DataFrame,
    labels: str | pd.DataFrame | dd.DataFrame,
    out: str | OutputStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ConsistencyResult:
    """Compare machine labels with the validated human categories and write the report.

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table (``object_id``, ``category``, ``status``, ``image``).
    labels : str or DataFrame
        Machine labels (a labels folder or table, :mod:`pipeline.images.labels`).
    out : str or OutputStore
        Report folder (local path or fsspec URL) or its store.
    storage_options : mapping, optional
        Passed to the store when ``out`` is a URL.

    Returns
    -------
    ConsistencyResult
        What :func:`~pipeline.images.consistency.consistency` found.

    See Also
    --------
    pipeline.images.consistency.write_consistency_report : the files written.
    """
    result = consistency(objects, labels)
    write_consistency_report(result, as_store(out, storage_options=storage_options))
    return result
