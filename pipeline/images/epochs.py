"""The network's training epochs: start the network, fit it epoch by epoch, checkpoint.

:func:`start_network` builds the network, or starts it from a parent model's weights
(fine-tuning); :func:`fit_epochs` trains it with **class-balanced sampling** or weighted
loss, **augmentation** (flips, 90° rotations, shifts of a few pixels, brightness gain),
AdamW under a one-cycle learning rate, mixed precision (bf16 autocast) and channels-last
on CUDA, and stops early on the validation balanced accuracy. After every epoch the whole
state (weights, optimiser, schedule, random generator, history) is written whole to
``OUT/checkpoint.pt`` (:class:`Checkpoint`, keyed by :func:`run_key`), so a training run
again after an interruption resumes after its last finished epoch. Called by
:func:`pipeline.images.training.train_classifier`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from pipeline.images.model import ImageModel, build_network, predict_proba, to_batch
from pipeline.images.training_config import ImageTrainConfig
from pipeline.store import OutputStore

__all__ = ["Checkpoint", "best_epoch", "fit_epochs", "run_key", "start_network"]

logger = logging.getLogger(__name__)


def start_network(
    config: ImageTrainConfig, classes: list[str], init: ImageModel | None
) -> tuple[nn.Module, dict[str, Any], str]:
    """Build the network to train, or start it from a parent model's weights.

    Without ``init``, a new network of ``config.arch`` (and ``config.width`` for the
    compact CNN; ``config.weights_file`` for a backbone's pretrained weights). With it,
    the parent's architecture with every tensor of the same name and shape loaded; when
    the classes differ, the last linear layer is left new for the new classes.

    Parameters
    ----------
    config : ImageTrainConfig
        ``arch``, ``width``, ``weights_file``.
    classes : list of str
        The classes to learn, in output order.
    init : ImageModel, optional
        The parent model to fine-tune.

    Returns
    -------
    (torch.nn.Module, dict, str)
        The network, its builder parameters and its architecture name.
    """
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


def fit_epochs(
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
    checkpoint: Checkpoint | None = None,
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """Train ``model.network`` epoch by epoch; early stop; resume from a checkpoint.

    Each epoch draws ``max_epoch_images`` (default: all) training images with
    replacement, each class equally often with ``balance="sampler"`` (or with
    inverse-frequency loss weights, ``"weights"``), augments them (flips, 90° rotations,
    shifts, brightness gain), and steps AdamW under a one-cycle learning rate (bf16
    autocast and channels-last on CUDA). After the epoch the validation balanced accuracy
    is measured; training stops after ``patience`` epochs without a better one. The
    whole state is saved to ``checkpoint`` after every epoch, and a saved state of the
    same run is resumed after its last epoch.

    Parameters
    ----------
    model : ImageModel
        Its ``network`` (on ``device``) is trained in place.
    pixels, extras, codes : numpy.ndarray
        The prepared training images, their extra inputs and class indices.
    val_pixels, val_extras, val_codes : numpy.ndarray
        The same for the validation images.
    config : ImageTrainConfig
        ``epochs``, ``patience``, ``batch_size``, ``lr``, ``weight_decay``, ``balance``,
        ``augment``, ``max_epoch_images``, ``seed`` (no option left at None).
    device : torch.device
        Where to train.
    progress : callable, optional
        Called with each epoch's history entry once its checkpoint is saved.
    checkpoint : Checkpoint, optional
        Where the state goes after every epoch (None: nowhere).

    Returns
    -------
    history : list of dict
        ``epoch, loss, val_accuracy, val_balanced_accuracy, seconds`` per epoch.
    best_state : dict of torch.Tensor
        The best epoch's weights (on the CPU).
    """
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
                best_epoch(history),
                best,
            )
            break
    return history, best_state


def best_epoch(history: list[dict[str, float]]) -> int:
    """Return the epoch of the best validation balanced accuracy (0 for no epoch).

    Parameters
    ----------
    history : list of dict
        The history entries of :func:`fit_epochs`.

    Returns
    -------
    int

    Examples
    --------
    >>> best_epoch([{"epoch": 1, "val_balanced_accuracy": 0.5},
    ...             {"epoch": 2, "val_balanced_accuracy": 0.7}])
    2
    """
    if not history:
        return 0
    return int(max(history, key=lambda h: h["val_balanced_accuracy"])["epoch"])


def run_key(
    config: ImageTrainConfig, classes: list[str], table: pd.DataFrame, init: ImageModel | None
) -> str:
    """Identity of a training run: a checkpoint of another run is not resumed.

    Parameters
    ----------
    config : ImageTrainConfig
        The options (all of them count).
    classes : list of str
        The classes learnt.
    table : pandas.DataFrame
        The training images (their ``image`` URLs count).
    init : ImageModel, optional
        The parent model (its id counts).

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    doc = [
        asdict(config),
        classes,
        table["image"].astype(str).tolist(),
        init.model_id if init is not None else None,
    ]
    return hashlib.sha256(json.dumps(doc, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    """``OUT/checkpoint.pt``: the state after the last epoch, written whole each epoch.

    Parameters
    ----------
    store : OutputStore
        The model directory.
    key : str
        The run's identity (:func:`run_key`): another run's checkpoint is not resumed.
    """

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
