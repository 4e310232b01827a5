"""What each morphological type is: counts and feature means, and a plate of vignettes.

The types come from :mod:`pipeline.images.morphology`
(:func:`~pipeline.images.morphology.fit_types`,
:func:`~pipeline.images.morphology.assign_types`); this module shows them:

- :func:`describe_types`: count, share and mean features (original units) per type,
  streamed partition-wise when the labels were made from the same partitions, else by a
  join on ``object_id``;
- :func:`plot_type_plate`: a PNG with one row of example vignettes per type (a seeded
  random choice by hash of the object id, so it does not depend on the partitioning);
  :func:`type_plate_png` draws it without writing.

See Also
--------
pipeline.images.morphology : fit and assign the types (config, model, save/load).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.errors import InputFormatError
from pipeline.images.dataset import decode_image  # the one image decoder
from pipeline.images.morphology import MorphologyModel, _as_dask
from pipeline.io import read_bytes
from pipeline.store import file_in_store

__all__ = ["describe_types", "plot_type_plate", "type_plate_png"]

logger = logging.getLogger(__name__)


def _sums_part(objects: pd.DataFrame, labels: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Per label: count and feature sums (non-missing values) of one aligned partition."""
    typed = labels.dropna(subset=["label"])
    merged = typed[["object_id", "label"]].merge(objects, on="object_id", how="inner")
    values = merged[features].astype("float64")
    out = values.fillna(0.0).groupby(merged["label"]).sum().add_prefix("sum_")
    out = out.join(values.notna().groupby(merged["label"]).sum().add_prefix("n_"))
    out["count"] = merged.groupby("label").size()
    out["unmatched"] = 0
    extra = pd.DataFrame({"count": [0], "unmatched": [len(typed) - len(merged)]}, index=[""])
    return pd.concat([out, extra]).fillna(0.0).rename_axis("label").reset_index()


def describe_types(
    objects: pd.DataFrame | dd.DataFrame,
    labels: pd.DataFrame | dd.DataFrame,
    model: MorphologyModel,
) -> pd.DataFrame:
    """Count, share and mean features (original units) of each type.

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table (``object_id`` and the model's features).
    labels : pandas.DataFrame or dask.dataframe.DataFrame
        :func:`~pipeline.images.morphology.assign_types` of ``objects`` (``object_id``, ``label``).
    model : MorphologyModel

    Returns
    -------
    pandas.DataFrame
        One row per type of the model, in order: ``label``, ``count``, ``share`` (of the
        typed objects), then the mean of each feature (NaN for an empty type).

    Examples
    --------
    >>> from pipeline.images.morphology import MorphologyConfig, assign_types, fit_types
    >>> objects = pd.DataFrame({"object_id": ["a", "b", "c"], "area": [3.0, 5.0, 300.0],
    ...                         "feret": [2.0, 2.5, 40.0]})
    >>> cfg = MorphologyConfig(features=("area", "feret"), n_types=2, hierarchy_prefix=None,
    ...                        statuses=None)
    >>> model = fit_types(objects, config=cfg)
    >>> describe_types(objects, assign_types(objects, model), model)[["label", "count", "area"]]
        label  count   area
    0  type_1      2    4.0
    1  type_2      1  300.0
    """
    features = list(model.features)
    sub = objects[["object_id", *features]]
    lazy = isinstance(objects, dd.DataFrame) or isinstance(labels, dd.DataFrame)
    if not lazy:
        sums = _sums_part(sub, labels, features)
    elif (
        isinstance(objects, dd.DataFrame)
        and isinstance(labels, dd.DataFrame)
        and (objects.npartitions == labels.npartitions)
    ):  # labels made from these objects: partition-wise, no shuffle
        sums = dd.map_partitions(_sums_part, sub, labels, features, align_dataframes=False)
        sums = sums.compute()
    else:
        sums = None
    if sums is None or sums["unmatched"].sum() > 0:
        logger.info("describe_types: labels not aligned with the objects' partitions, joining")
        ids = {"object_id": "str"}
        left = _as_dask(labels)[["object_id", "label"]].astype(ids)
        merged = dd.merge(left, _as_dask(sub).astype(ids), on="object_id")
        sums = merged.map_partitions(
            lambda p: _sums_part(p[["object_id", *features]], p[["object_id", "label"]], features)
        ).compute()
    sums = sums[sums["label"] != ""].groupby("label").sum()
    table = pd.DataFrame(index=pd.Index(list(model.labels), name="label"))
    table["count"] = sums["count"].reindex(table.index).fillna(0).astype("int64")
    table["share"] = table["count"] / max(int(table["count"].sum()), 1)
    for f in features:
        table[f] = (sums[f"sum_{f}"] / sums[f"n_{f}"].replace(0, np.nan)).reindex(table.index)
    return table.reset_index()


# --- plate ----------------------------------------------------------------------------------


def _sample_part(labels: pd.DataFrame, per_type: int, seed: int) -> pd.DataFrame:
    """Keep the ``per_type`` typed objects of each type with the smallest seeded hash."""
    typed = labels.dropna(subset=["label"])[["object_id", "label"]]
    key = pd.util.hash_pandas_object(typed["object_id"], index=False, hash_key=f"{seed:016d}"[-16:])
    typed = typed.assign(key=key.to_numpy())
    return typed.sort_values("key").groupby("label", sort=False).head(per_type)


def plot_type_plate(
    objects: pd.DataFrame | dd.DataFrame,
    labels: pd.DataFrame | dd.DataFrame,
    url_or_path: str,
    *,
    per_type: int = 8,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Save a PNG plate: one row of example vignettes per type.

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table with ``object_id`` and ``image`` (URL of each vignette).
    labels : pandas.DataFrame or dask.dataframe.DataFrame
        :func:`~pipeline.images.morphology.assign_types` output. Every type present gets
        a row, in name order.
    url_or_path : str
        Where to write the PNG (local path or fsspec URL), whole
        (:meth:`pipeline.store.OutputStore.open_atomic`).
    per_type : int
        Vignettes per row (a seeded random choice; images that fail to open are skipped).
    seed : int
        Seed of the choice.
    storage_options : mapping, optional
        fsspec options for the images and the output.

    Returns
    -------
    dict of str to list of str
        The object ids shown in each row, by type (the row order).

    See Also
    --------
    type_plate_png : the same plate as PNG bytes (nothing written).
    """
    png, shown = type_plate_png(
        objects, labels, per_type=per_type, seed=seed, storage_options=storage_options
    )
    store, name = file_in_store(url_or_path, storage_options=storage_options)
    store.write_bytes(name, png)
    logger.info("type plate: %d types x <= %d vignettes -> %s", len(shown), per_type, url_or_path)
    return shown


def type_plate_png(
    objects: pd.DataFrame | dd.DataFrame,
    labels: pd.DataFrame | dd.DataFrame,
    *,
    per_type: int = 8,
    seed: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[bytes, dict[str, list[str]]]:
    """Draw the plate of :func:`plot_type_plate` and return it as PNG bytes.

    Parameters
    ----------
    objects, labels, per_type, seed
        As for :func:`plot_type_plate`.
    storage_options : mapping, optional
        fsspec options for the images.

    Returns
    -------
    (bytes, dict of str to list of str)
        The PNG, and the object ids shown in each row, by type.
    """
    sample = (
        labels.map_partitions(_sample_part, 3 * per_type, seed).compute()
        if isinstance(labels, dd.DataFrame)
        else _sample_part(labels, 3 * per_type, seed)
    )
    sample = _sample_part(sample, 3 * per_type, seed)  # the global smallest hashes
    wanted = objects[objects["object_id"].isin(sample["object_id"].tolist())]
    wanted = wanted[["object_id", "image"]]
    urls = dict((wanted.compute() if isinstance(wanted, dd.DataFrame) else wanted).to_numpy())
    types = sorted(sample["label"].unique(), key=lambda s: (len(s), s))
    shown: dict[str, list[tuple[str, np.ndarray]]] = {t: [] for t in types}
    for row in sample.sort_values("key").itertuples(index=False):
        if len(shown[row.label]) >= per_type or row.object_id not in urls:
            continue
        try:
            data = read_bytes(str(urls[row.object_id]), storage_options=storage_options)
            shown[row.label].append((row.object_id, decode_image(data, url=urls[row.object_id])))
        except InputFormatError as err:
            logger.info("type plate: skipped %s (%s)", row.object_id, err)
    fig = Figure(figsize=(1.2 * per_type + 1.0, 1.2 * max(len(types), 1)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(max(len(types), 1), per_type, squeeze=False)
    for r, name in enumerate(types):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_frame_on(False)
            if c < len(shown[name]):
                ax.imshow(shown[name][c][1], cmap="gray", vmin=0, vmax=255)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")
    return buf.getvalue(), {name: [oid for oid, _ in shown[name]] for name in types}
