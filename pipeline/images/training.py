"""Train (or fine-tune) an image classifier on labelled images; write a model directory.

:func:`train_classifier` takes an image table (:func:`pipeline.images.dataset.image_table`:
validated EcoTaxa objects or a class-folder tree) and:

1. keeps the classes with at least ``min_per_class`` images (the others are logged and
   left out: a class seen 3 times cannot be learnt or evaluated);
2. reads and prepares every image once (thread pool; quarantined images are counted and
   written to ``quarantine.parquet``) and keeps them as ``uint8`` in memory
   (``size``\\ :sup:`2` bytes each: 4 KB at 64 px, 4 GB for a million images);
3. splits a stratified validation set (``val_fraction``), or uses the caller's;
4. trains with AdamW and a one-cycle learning rate, **class-balanced sampling**
   (``balance="sampler"``, each class drawn equally often) or class-weighted loss
   (``"weights"``), **augmentation** (flips, 90° rotations, shifts of a few pixels,
   brightness gain: the images' orientation carries no information), mixed precision
   (bf16 autocast) and channels-last on CUDA (the epoch loop: :mod:`pipeline.images.epochs`);
5. stops early when the validation balanced accuracy has not improved for ``patience``
   epochs and keeps the best epoch's weights; after every epoch the whole state
   (weights, optimiser, schedule, random generator, history) goes to
   ``OUT/checkpoint.pt``, so the same command run again after an interruption resumes
   after the last finished epoch (and a finished training is not redone);
6. writes the model directory (:func:`pipeline.images.model.save_model_dir`) with
   ``metrics.json`` (accuracy, balanced accuracy, per-class precision/recall/F1, confusion
   matrix, on the validation set and on the caller's test set if given), ``history.json``
   (per-epoch loss and validation skill) and ``confusion.png``.

**Fine-tuning** (``init``: a loaded model): the new network starts from its weights;
when the classes differ, the last layer is re-initialised for the new classes and the
preprocessing of the parent is kept (it is part of what the weights learnt).

The options are :class:`~pipeline.images.training_config.ImageTrainConfig`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from pipeline.errors import ConfigError
from pipeline.images.abstention import abstention_scores, abstention_thresholds
from pipeline.images.dataset import Preprocess, prepare_images
from pipeline.images.epochs import Checkpoint, best_epoch, fit_epochs, run_key, start_network
from pipeline.images.evaluation import (
    calibration_error,
    classification_metrics,
    plot_confusion,
)
from pipeline.images.frames import embeddings_frame, handcrafted_frame
from pipeline.images.heads import HeadConfig, fit_head
from pipeline.images.model import (
    ImageModel,
    class_index,
    embed,
    predict_proba,
    resolve_device,
    save_model_dir,
)
from pipeline.images.recipe import choose_settings, longer_sides
from pipeline.images.training_config import ImageTrainConfig
from pipeline.store import OutputStore, as_store

__all__ = ["TrainedClassifier", "score_probs", "train_classifier"]

logger = logging.getLogger(__name__)


@dataclass
class TrainedClassifier:
    """What :func:`train_classifier` returns.

    Attributes
    ----------
    model : ImageModel
        The best epoch's model (eval mode, on the CPU).
    metrics : dict
        ``{"validation": ..., "test": ...}`` from
        :func:`pipeline.images.evaluation.classification_metrics`, plus counts.
    history : list of dict
        One entry per epoch: ``epoch, loss, val_accuracy, val_balanced_accuracy, seconds``.
    quarantine : pandas.DataFrame
        ``object_id, image, reason`` of the images that could not be read.
    dropped_classes : dict
        Class → image count of the classes left out (``min_per_class``).
    """

    model: ImageModel
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    quarantine: pd.DataFrame
    dropped_classes: dict[str, int] = field(default_factory=dict)


def _split(codes: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(codes.size)
    train, val = train_test_split(idx, test_size=fraction, stratify=codes, random_state=seed)
    return np.sort(train), np.sort(val)


def train_classifier(
    table: pd.DataFrame,
    *,
    config: ImageTrainConfig | None = None,
    out: str | OutputStore | None = None,
    init: ImageModel | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> TrainedClassifier:
    """Train a classifier on labelled images; write a model directory (module docstring).

    Parameters
    ----------
    table : pandas.DataFrame
        Labelled images (``image``, ``category``; :func:`~pipeline.images.dataset.image_table`).
    config : ImageTrainConfig, optional
    out : str or OutputStore, optional
        Model directory to write (local or fsspec URL, or its store); nothing written
        when None.
    init : ImageModel, optional
        Model to fine-tune.
    validation : pandas.DataFrame, optional
        Validation images (default: a stratified ``val_fraction`` of ``table``).
    test : pandas.DataFrame, optional
        Held-out images scored once with the final model (never used to train or stop).
    storage_options : mapping, optional
        fsspec options of the images, and of ``out`` when it is a URL.
    progress : callable, optional
        Called with each epoch's history entry (the CLI's progress bar).

    Returns
    -------
    TrainedClassifier

    Raises
    ------
    ConfigError
        Fewer than two classes with ``min_per_class`` readable images.
    """
    config = config or ImageTrainConfig()
    counts = table["category"].value_counts()
    usable = table[table["category"].isin(counts[counts >= config.min_per_class].index)]
    config = choose_settings(
        config,
        n_images=len(usable),
        sides=longer_sides(list(usable["image"]), storage_options=storage_options)
        if config.canvas_px is None and init is None
        else None,
        fine_tuning=init is not None,
    )
    store = as_store(out, storage_options=storage_options) if out is not None else None
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    pre = (
        init.preprocess
        if init is not None
        else Preprocess(size=config.size, canvas_px=config.canvas_px, invert=config.invert)
    )

    def load(frame: pd.DataFrame) -> tuple[pd.DataFrame, Any, pd.DataFrame]:
        res = prepare_images(
            list(frame["image"]),
            pre,
            pixel_size_um=list(
                frame["pixel_size_um"] if "pixel_size_um" in frame else [np.nan] * len(frame)
            ),
            storage_options=storage_options,
            threads=config.threads,
        )
        bad = frame.loc[~res.ok, [c for c in ("object_id", "image") if c in frame]].copy()
        bad["reason"] = [r for r in res.reasons if r]
        return frame.loc[res.ok].reset_index(drop=True), res, bad

    counts = table["category"].value_counts()
    dropped = {str(k): int(v) for k, v in counts[counts < config.min_per_class].items()}
    if dropped:
        logger.info("classes with < %d images left out: %s", config.min_per_class, dropped)
    table = table[table["category"].isin(counts[counts >= config.min_per_class].index)]
    t0 = time.perf_counter()
    table, data, quarantine = load(table.reset_index(drop=True))
    classes = sorted(table["category"].unique())
    if len(classes) < 2:
        raise ConfigError(
            f"training needs >= 2 classes with >= {config.min_per_class} readable images; "
            f"found {dict(table['category'].value_counts())}."
        )
    codes = class_index(classes, table["category"]).numpy()
    if validation is None:
        train_idx, val_idx = _split(codes, config.val_fraction, config.seed)
        val_pixels, val_extras, val_codes = (
            data.pixels[val_idx],
            data.extras[val_idx],
            codes[val_idx],
        )
    else:
        vtable, vdata, vbad = load(validation[validation["category"].isin(classes)])
        quarantine = pd.concat([quarantine, vbad], ignore_index=True)
        train_idx = np.arange(codes.size)
        val_pixels, val_extras = vdata.pixels, vdata.extras
        val_codes = class_index(classes, vtable["category"]).numpy()
    logger.info(
        "images read and prepared in %.1f s: %d train, %d validation, %d quarantined",
        time.perf_counter() - t0,
        train_idx.size,
        val_codes.size,
        len(quarantine),
    )

    net, params, arch = start_network(config, classes, init)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    model = ImageModel(network=net, classes=classes, preprocess=pre, arch=arch, params=params)
    history, best_state = fit_epochs(
        model,
        data.pixels[train_idx],
        data.extras[train_idx],
        codes[train_idx],
        val_pixels,
        val_extras,
        val_codes,
        config=config,
        device=device,
        progress=progress,
        checkpoint=Checkpoint(store, run_key(config, classes, table, init))
        if store is not None
        else None,
    )
    net.load_state_dict(best_state)
    net.eval()  # scored on the training device, then kept on the CPU

    mean_head = config.head == "handcrafted_mean"
    tta = config.tta or mean_head
    if config.head != "none":
        rows = _head_rows(train_idx, codes, config.head_rows, config.seed)
        inputs = (
            handcrafted_frame(
                rows, list(table["image"].iloc[rows]), storage_options=storage_options
            )
            if mean_head
            else _vectors(
                model,
                data.pixels[rows],
                data.extras[rows],
                table["image"].iloc[rows],
                config,
                storage_options,
            )
        )
        model.head = fit_head(
            inputs,
            [classes[i] for i in codes[rows]],
            config=HeadConfig(target_precision=None, seed=config.seed),
        )

    def probs_of(pixels: Any, extras: Any, urls: Any) -> np.ndarray:
        if model.head is None or mean_head:
            p = predict_proba(model, pixels, extras, device=device, tta=tta).numpy()
            if model.head is None:
                return p
            ids = np.arange(len(pixels))
            hand = handcrafted_frame(ids, list(urls), storage_options=storage_options)
            return (p + model.head.predict_proba(hand)) / 2
        return model.head.predict_proba(
            _vectors(model, pixels, extras, urls, config, storage_options)
        )

    val_urls = table["image"].iloc[val_idx] if validation is None else vtable["image"]
    val_probs = probs_of(val_pixels, val_extras, val_urls)
    abstention = (
        abstention_thresholds(
            val_probs, val_codes, classes, target_precision=config.target_precision
        )
        if config.target_precision is not None
        else None
    )
    metrics: dict[str, Any] = {
        "classes": classes,
        "counts": {
            "train": int(train_idx.size),
            "validation": int(val_codes.size),
            "quarantined": len(quarantine),
        },
        "validation": score_probs(val_probs, val_codes, classes, abstention),
    }
    if test is not None:
        ttable, tdata, tbad = load(test[test["category"].isin(classes)])
        metrics["test"] = score_probs(
            probs_of(tdata.pixels, tdata.extras, ttable["image"]),
            class_index(classes, ttable["category"]).numpy(),
            classes,
            abstention,
        )
        metrics["counts"]["test"] = len(ttable)
        metrics["counts"]["test_quarantined"] = len(tbad)
    net.to("cpu")
    net.to(memory_format=torch.contiguous_format)
    model.meta = {
        "trained": {
            "config": asdict(config),
            "device": str(device),
            "epochs": len(history),
            "best_epoch": best_epoch(history),
            "classes_left_out": dropped,
            "parent_model": init.model_id if init is not None else None,
        },
        "metrics": {k: metrics[k] for k in ("validation", "test") if k in metrics},
        "tta": tta,
    }
    if mean_head:
        model.meta["head_mode"] = "mean"
    if abstention is not None:
        model.meta["abstention"] = {
            k: abstention[k] for k in ("target_precision", "thresholds", "share_unassigned")
        }
        if model.head is not None:
            model.head.abstention = model.meta["abstention"]
    if store is not None:
        _write(store, model, metrics, history, quarantine)
    return TrainedClassifier(model, metrics, history, quarantine, dropped)


def _head_rows(train_idx: np.ndarray, codes: np.ndarray, most: int, seed: int) -> np.ndarray:
    """At most ``most`` training rows for the head, at most ``most / n_classes`` a class."""
    if train_idx.size <= most:
        return train_idx
    rng = np.random.default_rng(seed)
    per_class = max(1, most // len(np.unique(codes[train_idx])))
    picked = [
        rng.permutation(train_idx[codes[train_idx] == k])[:per_class]
        for k in np.unique(codes[train_idx])
    ]
    rows = np.sort(np.concatenate(picked))
    logger.info("head: fitted on %d of %d training images (head_rows)", rows.size, train_idx.size)
    return rows


def _vectors(
    model: ImageModel,
    pixels: np.ndarray,
    extras: np.ndarray,
    urls: Any,
    config: ImageTrainConfig,
    storage_options: Mapping[str, Any] | None,
) -> pd.DataFrame:
    """Embeddings (8 views) and handcrafted features of prepared images: a head's input."""
    vectors = embed(model, pixels, extras, tta=True)  # on the network's device
    ids = np.arange(len(pixels)).astype(str)
    return embeddings_frame(
        ids,
        [vectors],
        list(urls),
        handcrafted=config.head_handcrafted,
        storage_options=storage_options,
    )


def score_probs(
    probs: np.ndarray,
    truth: np.ndarray,
    classes: list[str],
    abstention: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of probabilities: classification, calibration and, given, abstention.

    Parameters
    ----------
    probs : numpy.ndarray
        (n, n_classes) probabilities.
    truth : numpy.ndarray
        True class index per row.
    classes : list of str
    abstention : dict, optional
        :func:`~pipeline.images.abstention.abstention_thresholds`' result.

    Returns
    -------
    dict
        :func:`~pipeline.images.evaluation.classification_metrics` plus
        ``calibration_error`` and ``abstention``
        (:func:`~pipeline.images.abstention.abstention_scores`).
    """
    pred = [classes[i] for i in probs.argmax(axis=1).tolist()] if len(probs) else []
    metrics = classification_metrics([classes[i] for i in truth], pred, classes)
    metrics["calibration_error"] = calibration_error(probs, truth)
    if abstention is not None:
        metrics["abstention"] = abstention_scores(probs, truth, classes, abstention["thresholds"])
    return metrics


def _write(
    store: OutputStore,
    model: ImageModel,
    metrics: dict[str, Any],
    history: list[dict[str, float]],
    quarantine: pd.DataFrame,
) -> None:
    save_model_dir(model, store)
    store.write_json(
        "metrics.json", {"model_id": model.model_id, **metrics}, indent=2, newline=False
    )
    store.write_json("history.json", history, indent=2, newline=False)
    store.write_parquet("quarantine.parquet", quarantine.astype(str))
    which = "test" if "test" in metrics else "validation"
    with store.open_atomic("confusion.png") as f:
        plot_confusion(
            metrics[which]["confusion_matrix"],
            metrics["classes"],
            f,
            title=f"{model.model_id}: {which} set",
        )
