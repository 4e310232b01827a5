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
   (bf16 autocast) and channels-last on CUDA;
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
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import train_test_split
from torch import nn

from pipeline.config import check_choice, check_count, check_positive, check_range
from pipeline.errors import ConfigError
from pipeline.images.abstention import abstention_scores, abstention_thresholds
from pipeline.images.dataset import Preprocess, prepare_images
from pipeline.images.evaluation import (
    calibration_error,
    classification_metrics,
    plot_confusion,
)
from pipeline.images.heads import HeadConfig, fit_head
from pipeline.images.model import (
    ImageModel,
    build_network,
    class_index,
    embed,
    predict_proba,
    resolve_device,
    save_model_dir,
    to_batch,
)
from pipeline.images.outputs import embeddings_frame, handcrafted_frame
from pipeline.images.recipe import choose_settings, longer_sides
from pipeline.store import OutputStore, as_store

__all__ = ["ImageTrainConfig", "TrainedClassifier", "score_probs", "train_classifier"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ImageTrainConfig:
    """Options of :func:`train_classifier` (defaults live here only).

    Options left at None are chosen from the data when training starts
    (:func:`pipeline.images.recipe.choose_settings`, each choice logged): ``width``,
    ``canvas_px``, ``epochs``, ``patience`` and ``max_epoch_images``.

    Attributes
    ----------
    arch : str
        ``"compact"`` or a backbone (``"timm:<name>"``, ``"torchvision:<name>"``).
    width : int
        Channels of the compact CNN's first stage.
    size, canvas_px, invert
        Preprocessing (:class:`pipeline.images.dataset.Preprocess`); ignored when
        fine-tuning (the parent's preprocessing is kept).
    epochs : int
        Most epochs.
    batch_size : int
    lr : float
        Peak learning rate of the one-cycle schedule.
    weight_decay : float
    val_fraction : float
        Stratified share of the images kept for validation (early stopping, metrics).
    patience : int
        Epochs without a better validation balanced accuracy before stopping.
    balance : {"sampler", "weights", "none"}
        Class balance: equal draws per class, inverse-frequency loss weights, or none.
    augment : bool
        Flips, 90° rotations, small shifts and brightness gain.
    min_per_class : int
        Classes with fewer images are left out.
    seed : int
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    threads : int, optional
        Torch CPU threads and image-reading threads (default: torch's).
    weights_file : str, optional
        Local pretrained weights of a backbone.
    max_epoch_images : int, optional
        Images drawn per epoch (default: the training set's size).
    tta : bool
        Score the final model with test-time augmentation (8 flips/rotations); saved
        with the model so classification does the same.
    target_precision : float, optional
        Per-class probability thresholds are chosen on the validation images so that
        the labels kept reach this precision; saved with the model, classification
        labels the others ``unassigned`` (:mod:`pipeline.images.abstention`). None: no
        abstention.
    head : {"logistic", "handcrafted_mean", "none"}
        After the network, fit a logistic-regression head (:mod:`pipeline.images.heads`;
        saved as ``head.json``): "logistic" on the network's embeddings of the training
        images (with ``head_handcrafted`` the handcrafted features joined), which then
        classifies instead of the network's last layers; "handcrafted_mean" on the
        handcrafted features only, its probabilities averaged with the network's (8-view
        TTA); "none": the network alone.
    head_handcrafted : bool
        Join the handcrafted features (:mod:`pipeline.images.handcrafted`) to the
        embeddings the head reads.
    head_rows : int
        Most training images the head is fitted on (a class-balanced sample beyond:
        on 500,000 images the head's embeddings and fits would dwarf the network's
        training).
    """

    arch: str = "compact"
    width: int | None = None
    size: int = 64
    canvas_px: int | None = None
    invert: bool = False
    epochs: int | None = None
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    patience: int | None = None
    balance: Literal["sampler", "weights", "none"] = "sampler"
    augment: bool = True
    min_per_class: int = 5
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    weights_file: str | None = None
    max_epoch_images: int | None = None
    tta: bool = False
    target_precision: float | None = 0.9
    head: Literal["logistic", "handcrafted_mean", "none"] = "handcrafted_mean"
    head_handcrafted: bool = True
    head_rows: int = 50_000

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        check_choice("images.train.balance", self.balance, ("sampler", "weights", "none"))
        check_choice("images.train.head", self.head, ("logistic", "handcrafted_mean", "none"))
        check_range(
            "images.train.val_fraction",
            self.val_fraction,
            low=0,
            high=0.9,
            low_open=True,
            high_open=True,
        )
        for key in ("batch_size", "min_per_class", "head_rows"):
            check_count(f"images.train.{key}", getattr(self, key), 1)
        for key in ("threads", "max_epoch_images", "epochs", "patience", "width", "canvas_px"):
            check_count(f"images.train.{key}", getattr(self, key), 1, allow_none=True)
        check_positive("images.train.lr", self.lr)
        check_range("images.train.weight_decay", self.weight_decay, low=0)
        check_count("images.train.seed", self.seed, 0)
        if self.target_precision is not None:
            check_range(
                "images.train.target_precision",
                self.target_precision,
                low=0,
                high=1,
                low_open=True,
            )


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


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips, 90° rotations, shifts (±size/16 px) and brightness gain, per batch half."""
    n = x.shape[0]
    if n == 0:
        return x
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None].to(x.device), x.flip(-1), x)
    k = int(torch.randint(0, 4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    shift = max(1, x.shape[-1] // 16)
    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    gain = (0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=gen)).to(x.device)
    return (x * gain).clamp_(0.0, 1.0)


def _split(codes: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(codes.size)
    train, val = train_test_split(idx, test_size=fraction, stratify=codes, random_state=seed)
    return np.sort(train), np.sort(val)


def _network(
    config: ImageTrainConfig, classes: list[str], init: ImageModel | None
) -> tuple[nn.Module, dict[str, Any], str]:
    if init is None:
        params = {"width": config.width} if config.arch == "compact" else {}
        net = build_network(
            config.arch, len(classes), params=params, weights_file=config.weights_file
        )
        return net, params, config.arch
    net = build_network(init.arch, len(classes), params=init.params)
    own = net.state_dict()
    parent = init.network.state_dict()
    same = list(init.classes) == list(classes)
    last = [name for name, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    fitting = {
        k: v
        for k, v in parent.items()
        if k in own and own[k].shape == v.shape and (same or not k.startswith(f"{last}."))
    }
    net.load_state_dict(fitting, strict=False)
    logger.info(
        "fine-tuning from %s: %d of %d tensors loaded%s",
        init.model_id,
        len(fitting),
        len(own),
        "" if same else " (classes differ: new last layer)",
    )
    return net, dict(init.params), init.arch


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

    net, params, arch = _network(config, classes, init)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    model = ImageModel(network=net, classes=classes, preprocess=pre, arch=arch, params=params)
    history, best_state = _fit(
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
        checkpoint=_Checkpoint(store, _run_key(config, classes, table, init))
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
            "best_epoch": _best_epoch(history),
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


def _best_epoch(history: list[dict[str, float]]) -> int:
    if not history:
        return 0
    return int(max(history, key=lambda h: h["val_balanced_accuracy"])["epoch"])


def _fit(
    model: ImageModel,
    pixels: np.ndarray,
    extras: np.ndarray,
    codes: np.ndarray,
    val_pixels: np.ndarray,
    val_extras: np.ndarray,
    val_codes: np.ndarray,
    *,
    config: ImageTrainConfig,
    device: torch.device,
    progress: Callable[[dict[str, float]], None] | None,
    checkpoint: _Checkpoint | None = None,
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    net = model.network
    n_classes = len(model.classes)
    gen = torch.Generator().manual_seed(config.seed)
    per_class = np.bincount(codes, minlength=n_classes).astype("float64")
    n_draw = config.max_epoch_images or codes.size
    steps = max(1, math.ceil(n_draw / config.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=steps * config.epochs
    )
    weight = None
    if config.balance == "weights":
        weight = torch.tensor(
            per_class.sum() / (n_classes * np.maximum(per_class, 1)),
            dtype=torch.float32,
            device=device,
        )
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.05)
    draw_p = torch.tensor(
        (1.0 / per_class[codes]) if config.balance == "sampler" else np.ones(codes.size)
    )
    cuda = device.type == "cuda"
    pixels_t, extras_t, codes_t = (
        torch.from_numpy(pixels),
        torch.from_numpy(extras),
        torch.from_numpy(codes),
    )
    history: list[dict[str, float]] = []
    best, best_state, stale, first, finished = -1.0, _state(net), 0, 1, False
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])  # dropout draws from the global generator
        history, best, best_state, stale = (
            saved["history"],
            saved["best"],
            saved["best_state"],
            saved["stale"],
        )
        first, finished = saved["epoch"] + 1, saved["finished"]
        logger.info(
            "resuming training from %s after epoch %d%s",
            checkpoint.url,
            saved["epoch"],
            " (finished)" if finished else "",
        )
    for epoch in range(first, 0 if finished else config.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = torch.multinomial(
            draw_p, steps * config.batch_size, replacement=True, generator=gen
        )
        total = 0.0
        for step in range(steps):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, e = to_batch(pixels_t[idx], extras_t[idx], device=device, channels_last=cuda)
            if config.augment:
                x = _augment(x, gen)
            y = codes_t[idx].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(net(x, e).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        probs = predict_proba(model, val_pixels, val_extras, device=device)
        pred = probs.argmax(dim=1).numpy()
        bacc = float(balanced_accuracy_score(val_codes, pred))
        entry = {
            "epoch": epoch,
            "loss": total / steps,
            "val_accuracy": float((pred == val_codes).mean()),
            "val_balanced_accuracy": bacc,
            "seconds": time.perf_counter() - t0,
        }
        history.append(entry)
        logger.debug("epoch %s", entry)
        if bacc > best:
            best, best_state, stale = bacc, _state(net), 0
        else:
            stale += 1
        finished = stale >= config.patience or epoch == config.epochs
        if checkpoint is not None:
            checkpoint.save(
                {
                    "epoch": epoch,
                    "finished": finished,
                    "model": _state(net),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "best": best,
                    "best_state": best_state,
                    "stale": stale,
                }
            )
        if progress is not None:  # after the checkpoint: the epoch shown is saved
            progress(entry)
        if stale >= config.patience:
            logger.info(
                "early stop at epoch %d (best %d, balanced accuracy %.3f)",
                epoch,
                _best_epoch(history),
                best,
            )
            break
    return history, best_state


def _run_key(
    config: ImageTrainConfig, classes: list[str], table: pd.DataFrame, init: ImageModel | None
) -> str:
    """Identity of a training run: a checkpoint of another run is not resumed."""
    doc = [
        asdict(config),
        classes,
        table["image"].astype(str).tolist(),
        init.model_id if init is not None else None,
    ]
    return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()[:16]


class _Checkpoint:
    """``OUT/checkpoint.pt``: the state after the last epoch, written whole each epoch."""

    def __init__(self, store: OutputStore, key: str) -> None:
        self.store, self.key, self.url = store, key, store.path("checkpoint.pt")

    def load(self) -> dict[str, Any] | None:
        """Return the saved state of this run, or None (absent, or another run's)."""
        if not self.store.exists("checkpoint.pt"):
            return None
        data = self.store.read_bytes("checkpoint.pt")
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        if saved.get("key") != self.key:
            logger.info("checkpoint %s is of another training run; starting afresh", self.url)
            return None
        return saved

    def save(self, state: dict[str, Any]) -> None:
        """Write the state over the last one, whole (:meth:`OutputStore.open_atomic`)."""
        buf = io.BytesIO()
        torch.save({**state, "key": self.key}, buf)
        self.store.write_bytes("checkpoint.pt", buf.getvalue())


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


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
