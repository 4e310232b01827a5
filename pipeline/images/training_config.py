"""The options of image training: :class:`ImageTrainConfig`, checked when made.

Read by :func:`pipeline.images.training.train_classifier` (and its epoch loop,
:mod:`pipeline.images.epochs`); the options left at None are chosen from the data by
:func:`pipeline.images.recipe.choose_settings`. Needs no torch: a run file or the command
line can build and check these options without the ``images`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.config import check_choice, check_count, check_positive, check_range

__all__ = ["ImageTrainConfig"]


@dataclass(frozen=True, kw_only=True)
class ImageTrainConfig:
    """Options of :func:`~pipeline.images.training.train_classifier` (defaults live here only).

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
