"""The tables an image classification writes: labels, embeddings, handcrafted features.

Built from a task's batches of model outputs (:mod:`pipeline.images.classify`) or, in
training, from the training images (:mod:`pipeline.images.training`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.images.abstention import assign_labels
from pipeline.images.handcrafted import FEATURE_NAMES, features_from_urls

if TYPE_CHECKING:
    from pipeline.images.model import ImageModel

__all__ = ["embeddings_frame", "handcrafted_frame", "labels_frame"]


def embeddings_frame(
    object_ids: np.ndarray,
    vectors: list[Any],
    urls: list[str],
    *,
    handcrafted: bool,
    storage_options: Mapping[str, Any] | None = None,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Embeddings table: ``object_id, e_0000 ...`` and, with ``handcrafted``, ``h_<feature>``.

    Parameters
    ----------
    object_ids : numpy.ndarray
        One id per row.
    vectors : list of torch.Tensor
        Batches of embeddings (:func:`pipeline.images.model.embed`), in row order.
    urls : list of str
        The images of the rows (read again for the handcrafted features).
    handcrafted : bool
        Add :data:`pipeline.images.handcrafted.FEATURE_NAMES` as ``h_*`` columns.
    storage_options : mapping, optional
    features : pandas.DataFrame, optional
        The rows' handcrafted features when already computed (shards: from the same
        decode); default: read ``urls`` again.

    Returns
    -------
    pandas.DataFrame
    """
    import torch

    e = torch.cat(vectors).numpy() if vectors else np.zeros((0, 0), np.float32)
    frame = pd.DataFrame(e.astype(np.float32), columns=[f"e_{j:04d}" for j in range(e.shape[1])])
    frame.insert(0, "object_id", pd.Series(object_ids, dtype=str))
    if handcrafted:
        h = handcrafted_frame(object_ids, urls, storage_options=storage_options, features=features)
        frame = pd.concat([frame, h.drop(columns="object_id")], axis=1)
    return frame


def handcrafted_frame(
    object_ids: np.ndarray,
    urls: list[str],
    *,
    storage_options: Mapping[str, Any] | None = None,
    features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """``object_id`` and the handcrafted features of the images as ``h_<feature>`` columns.

    ``features``, when given, are the images' features already computed (one row each,
    :data:`~pipeline.images.handcrafted.FEATURE_NAMES`); else ``urls`` are read.
    """
    feats = (
        features
        if features is not None
        else features_from_urls(urls, storage_options=storage_options)
    )
    h = feats[list(FEATURE_NAMES)].astype("float32").add_prefix("h_").reset_index(drop=True)
    h.insert(0, "object_id", pd.Series(np.asarray(object_ids), dtype=str))
    return h


def labels_frame(
    object_ids: np.ndarray, probs: list[Any], model: ImageModel, top_k: int
) -> pd.DataFrame:
    """Labels table of a classification: top-``k`` classes and probabilities per image.

    ``label`` is the top-1 class, or ``unassigned`` where its probability is below the
    class threshold recorded with the model (:mod:`pipeline.images.abstention`);
    ``predicted`` is always the top-1 class.
    """
    import torch

    p = torch.cat(probs) if probs else torch.zeros((0, len(model.classes)))
    k = min(top_k, len(model.classes))
    values, idx = torch.topk(p, k, dim=1)
    classes = np.asarray(model.classes, dtype=object)
    frame = pd.DataFrame({"object_id": pd.Series(object_ids, dtype=str)})
    for j in range(k):
        suffix = "" if j == 0 else f"_{j + 1}"
        frame[f"label{suffix}"] = pd.Series(classes[idx[:, j].numpy()], dtype=str)
        frame[f"prob{suffix}"] = values[:, j].numpy().astype("float32")
    thresholds = (model.meta.get("abstention") or {}).get("thresholds")
    frame.insert(3, "predicted", frame["label"])  # the top-1 class, whatever its prob
    if thresholds:
        label, _, _ = assign_labels(p.numpy(), model.classes, thresholds)
        frame["label"] = pd.Series(label, dtype=str)
    frame["model_id"] = model.model_id
    return frame
