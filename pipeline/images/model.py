"""Image classifiers: a compact CNN in plain torch, optional backbones, model directories.

**Built-in** (``arch="compact"``): a small VGG-like network for single-channel vignettes
(4 stages of conv3x3-BN-ReLU, the first three followed by 2x2 max pooling, then global
average and max pooling concatenated), with the size inputs of
:mod:`pipeline.images.dataset` (``N_EXTRA``) joined before the classifier head. About
0.1-0.4 M parameters: it trains on a CPU in minutes and classifies thousands of images a
second on a GPU.

**Backbones** (``arch="timm:<name>"`` or ``"torchvision:<name>"``): any timm or
torchvision model, when that package is installed, built without downloading anything
(``pretrained=False``); pretrained weights are loaded from a local file only
(``weights_file``). Nothing ever downloads.

**A model directory** (local or any fsspec URL) holds everything inference needs:

- ``model.json``: architecture and its parameters, the class list, the preprocessing
  (:class:`pipeline.images.dataset.Preprocess`), the model id (a hash of the weights),
  and whatever the trainer adds (metrics, data).
- ``weights.pt``: the ``state_dict`` (loaded with ``weights_only=True``);
- ``head.json``, optional: a head on the network's embeddings
  (:mod:`pipeline.images.heads`) that classifies instead of the network's last layers.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from torch import nn

from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.dataset import N_EXTRA, Preprocess
from pipeline.images.heads import Head, load_head, save_head
from pipeline.store import OutputStore, as_store

__all__ = [
    "CompactCNN",
    "ImageModel",
    "build_network",
    "class_index",
    "embed",
    "load_model_dir",
    "predict_proba",
    "resolve_device",
    "save_model_dir",
    "to_batch",
]

logger = logging.getLogger(__name__)

_FORMAT = "oceanfields-image-model/1"


class CompactCNN(nn.Module):
    """Small CNN for grey vignettes with size inputs.

    Parameters
    ----------
    n_classes : int
        Number of output classes.
    width : int
        Channels of the first stage (doubled at each of the 4 stages).
    n_extra : int
        Number of extra (size) inputs.
    dropout : float
        Dropout before the last layer.

    Examples
    --------
    >>> net = CompactCNN(3, width=8)
    >>> net(torch.zeros(2, 1, 32, 32), torch.zeros(2, N_EXTRA)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self, n_classes: int, *, width: int = 16, n_extra: int = N_EXTRA, dropout: float = 0.2
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for stage in range(4):
            c_out = width * 2**stage
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if stage < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.extra = nn.Sequential(nn.Linear(n_extra, 16), nn.ReLU(inplace=True))
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(2 * c_in + 16, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor, extras: torch.Tensor) -> torch.Tensor:
        """Logits (batch, n_classes) of images (batch, 1, H, W) and extras (batch, n_extra)."""
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(torch.cat([pooled, self.extra(extras)], dim=1))


class _Backbone(nn.Module):
    """A timm/torchvision network fed one channel, its features joined with the extras."""

    def __init__(self, body: nn.Module, n_features: int, n_classes: int, n_extra: int) -> None:
        super().__init__()
        self.body = body
        self.extra = nn.Sequential(nn.Linear(n_extra, 16), nn.ReLU(inplace=True))
        self.head = nn.Linear(n_features + 16, n_classes)

    def forward(self, x: torch.Tensor, extras: torch.Tensor) -> torch.Tensor:
        """Logits of images (batch, 1, H, W) and extras."""
        return self.head(torch.cat([self.body(x), self.extra(extras)], dim=1))


def build_network(
    arch: str,
    n_classes: int,
    *,
    params: Mapping[str, Any] | None = None,
    weights_file: str | None = None,
) -> nn.Module:
    """Build an untrained network (or a backbone with local pretrained weights).

    Parameters
    ----------
    arch : str
        ``"compact"``, ``"timm:<name>"`` or ``"torchvision:<name>"``.
    n_classes : int
    params : mapping, optional
        Keyword arguments of the architecture (``width``, ``dropout`` for compact).
    weights_file : str, optional
        Local file of pretrained backbone weights (a ``state_dict``; keys that do not fit
        the one-channel input or the new head are skipped and logged).

    Returns
    -------
    torch.nn.Module
        Called as ``net(images, extras)``.

    Raises
    ------
    ConfigError
        An unknown architecture, or a backbone whose package is not installed.

    Examples
    --------
    >>> sum(p.numel() for p in build_network("compact", 10).parameters()) > 50_000
    True
    >>> build_network("vgg", 2)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: model.arch: 'vgg'; expected 'compact', 'timm:<name>' or ...
    """
    params = dict(params or {})
    if arch == "compact":
        try:
            return CompactCNN(n_classes, **params)
        except TypeError as err:
            raise ConfigError(
                f"model.params: {params!r} ({err}); compact takes width, dropout."
            ) from err
    library, _, name = arch.partition(":")
    if library not in ("timm", "torchvision") or not name:
        raise ConfigError(
            f"model.arch: {arch!r}; expected 'compact', 'timm:<name>' or 'torchvision:<name>'."
        )
    body, n_features = _backbone(library, name, params)
    if weights_file:
        _load_backbone_weights(body, weights_file)
    return _Backbone(body, n_features, n_classes, N_EXTRA)


def _backbone(library: str, name: str, params: dict[str, Any]) -> tuple[nn.Module, int]:
    try:
        module = __import__(library)
    except ImportError as err:
        raise ConfigError(
            f"model.arch: '{library}:{name}' needs the {library} package, which is not "
            f"installed; install it or use arch 'compact'."
        ) from err
    if library == "timm":
        body = module.create_model(name, pretrained=False, in_chans=1, num_classes=0, **params)
        return body, int(body.num_features)
    import torchvision

    body = getattr(torchvision.models, name)(weights=None, **params)
    first = next(m for m in body.modules() if isinstance(m, nn.Conv2d))
    first.weight = nn.Parameter(first.weight.sum(dim=1, keepdim=True))  # 1 channel
    first.in_channels = 1
    last_name, last = [(n, m) for n, m in body.named_modules() if isinstance(m, nn.Linear)][-1]
    parent = body.get_submodule(last_name.rpartition(".")[0]) if "." in last_name else body
    setattr(parent, last_name.rpartition(".")[2], nn.Identity())
    return body, int(last.in_features)


def _load_backbone_weights(body: nn.Module, weights_file: str) -> None:
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    own = body.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(fitting))
    body.load_state_dict(fitting, strict=False)
    logger.info(
        "backbone weights from %s: %d tensors loaded, %d skipped (%s)",
        weights_file,
        len(fitting),
        len(skipped),
        ", ".join(skipped[:5]),
    )


@dataclass
class ImageModel:
    """A classifier ready for inference: network, classes, preprocessing, identity.

    Attributes
    ----------
    network : torch.nn.Module
    classes : list of str
        Output order of the network's logits.
    preprocess : Preprocess
    arch : str
    params : dict
        Architecture parameters.
    model_id : str
        ``<arch>-<first 12 hex of the weights' sha256>``.
    meta : dict
        Anything else of ``model.json`` (metrics, training data, parent model).
    head : Head, optional
        A head on the network's embeddings (:mod:`pipeline.images.heads`, saved as
        ``head.json``): when present, classification is the head's, not the network's
        last layers'.
    """

    network: nn.Module
    classes: list[str]
    preprocess: Preprocess
    arch: str = "compact"
    params: dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    head: Head | None = None


def _weights_bytes(network: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, buf)
    return buf.getvalue()


def save_model_dir(
    model: ImageModel,
    url: str | OutputStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """Write a model directory (``model.json`` + ``weights.pt``); return the model id.

    Each file is written whole (:class:`~pipeline.store.OutputStore`), ``model.json`` last:
    a directory with a ``model.json`` is complete.

    Parameters
    ----------
    model : ImageModel
    url : str or OutputStore
        Directory (local path or fsspec URL), or its store; created if needed.
    storage_options : mapping, optional
        Passed to fsspec when ``url`` is a URL.

    Returns
    -------
    str
        The model id, also set on ``model``.
    """
    store = as_store(url, storage_options=storage_options)
    weights = _weights_bytes(model.network)
    model.model_id = f"{model.arch.replace(':', '-')}-{hashlib.sha256(weights).hexdigest()[:12]}"
    if model.head is not None:
        model.model_id += f"-{model.head.head_id}"
        save_head(model.head, store)
    doc = {
        "format": _FORMAT,
        "model_id": model.model_id,
        "arch": model.arch,
        "params": model.params,
        "classes": list(model.classes),
        "preprocess": model.preprocess.to_dict(),
        **model.meta,
    }
    store.write_bytes("weights.pt", weights)
    # written last: the directory is complete
    store.write_json("model.json", doc, indent=2, default=str, newline=False)
    logger.info("saved image model %s to %s", model.model_id, store.url)
    return model.model_id


def load_model_dir(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> ImageModel:
    """Load a model directory written by :func:`save_model_dir`, in eval mode.

    Parameters
    ----------
    url : str
        The directory (local path or fsspec URL).
    storage_options : mapping, optional
    device : str or torch.device
        Where the network goes.

    Returns
    -------
    ImageModel

    Raises
    ------
    InputFormatError
        No ``model.json``/``weights.pt`` there, or not an oceanfields image model.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    try:
        with fs.open(f"{root}/model.json", "r") as f:
            doc = json.load(f)
        with fs.open(f"{root}/weights.pt", "rb") as f:
            weights = f.read()
    except FileNotFoundError as err:
        raise InputFormatError(
            f"{url}: not a model directory (needs model.json and weights.pt, as written by "
            "'oceanfields images train')."
        ) from err
    if doc.get("format") != _FORMAT:
        raise InputFormatError(
            f"{url}/model.json: format {doc.get('format')!r}; expected {_FORMAT!r}."
        )
    network = build_network(doc["arch"], len(doc["classes"]), params=doc.get("params"))
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    network.to(device).eval()
    head = (
        load_head(url, storage_options=storage_options) if fs.exists(f"{root}/head.json") else None
    )
    known = {"format", "model_id", "arch", "params", "classes", "preprocess"}
    return ImageModel(
        network=network,
        classes=list(doc["classes"]),
        preprocess=Preprocess(**doc["preprocess"]),
        arch=doc["arch"],
        params=dict(doc.get("params") or {}),
        model_id=str(doc["model_id"]),
        meta={k: v for k, v in doc.items() if k not in known},
        head=head,
    )


def to_batch(
    pixels: Any, extras: Any, *, device: torch.device | str = "cpu", channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs from prepared ``uint8`` pixels (n, s, s) and extras (n, N_EXTRA).

    Pixels are scaled to [0, 1]; on CUDA the copies are non-blocking from pinned memory.

    Examples
    --------
    >>> import numpy as np
    >>> x, e = to_batch(np.full((2, 4, 4), 255, np.uint8), np.zeros((2, N_EXTRA), np.float32))
    >>> tuple(x.shape), float(x.max())
    ((2, 1, 4, 4), 1.0)
    """
    x = torch.as_tensor(pixels).unsqueeze(1)
    e = torch.as_tensor(extras)
    device = torch.device(device)
    if device.type == "cuda":
        x, e = x.pin_memory(), e.pin_memory()
    x = x.to(device, non_blocking=True).float().div_(255.0)
    e = e.to(device, non_blocking=True).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, e


def class_index(classes: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
    """Index of each label in ``classes`` (long tensor); unknown labels raise ConfigError."""
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted({str(v) for v in labels if v not in lookup})
    if unknown:
        raise ConfigError(
            f"labels {unknown[:10]} are not classes of the model ({list(classes)[:20]})."
        )
    return torch.tensor([lookup[v] for v in labels], dtype=torch.long)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when this process sees a GPU, else CPU; otherwise as given.

    Examples
    --------
    >>> resolve_device("cpu").type
    'cpu'
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.inference_mode()
def predict_proba(
    model: ImageModel,
    pixels: Any,
    extras: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    tta: bool = False,
) -> torch.Tensor:
    """Class probabilities (n, n_classes, float32 on the CPU) of prepared images.

    On CUDA the forward pass runs under bf16 autocast with channels-last inputs. With
    ``tta`` (test-time augmentation) the probabilities are averaged over the 8 flips and
    90° rotations of each image (8x the inference cost; orientation carries no
    information in plankton vignettes).

    Parameters
    ----------
    model : ImageModel
    pixels, extras : array-like
        Prepared images (:func:`pipeline.images.dataset.prepare_images`).
    batch_size : int
    device : torch.device or str, optional
        Default: where the network's parameters are.
    tta : bool
        Average over the 8 flips/rotations.
    """
    device = torch.device(device) if device is not None else next(model.network.parameters()).device
    if device.type == "cuda":
        model.network.to(memory_format=torch.channels_last)

    def probs(view: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model.network(view, e).float(), dim=1)

    out = _mean_over_views(model, probs, pixels, extras, batch_size, device, tta)
    return out if out is not None else torch.zeros((0, len(model.classes)))


def _mean_over_views(
    model: ImageModel,
    fn: Any,
    pixels: Any,
    extras: Any,
    batch_size: int,
    device: torch.device,
    tta: bool,
) -> torch.Tensor | None:
    """``fn(view, extras)`` per batch, averaged over the views (8 with ``tta``); None if empty."""
    model.network.eval()
    cuda = device.type == "cuda"
    out = []
    for start in range(0, len(pixels), batch_size):
        x, e = to_batch(
            pixels[start : start + batch_size],
            extras[start : start + batch_size],
            device=device,
            channels_last=cuda,
        )
        views = _views(x) if tta else [x]
        total = 0.0
        for view in views:
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                total = total + fn(view, e).float()
        out.append((total / len(views)).cpu())
    return torch.cat(out) if out else None


def _views(x: torch.Tensor) -> list[torch.Tensor]:
    """Return the 8 flips and 90° rotations of a batch (batch, 1, H, W)."""
    rotations = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
    return rotations + [r.flip(-1) for r in rotations]


def _network_features(network: nn.Module, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Return the vector the network's classifier head reads (before its last layers)."""
    if isinstance(network, CompactCNN):
        f = network.features(x)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), network.extra(e)], dim=1)
    if isinstance(network, _Backbone):
        return torch.cat([network.body(x), network.extra(e)], dim=1)
    raise ConfigError(f"embed: no embedding for a {type(network).__name__} network.")


@torch.inference_mode()
def embed(
    model: ImageModel,
    pixels: Any,
    extras: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    tta: bool = True,
) -> torch.Tensor:
    """Per-image embeddings (n, d, float32 on the CPU): what the classifier head reads.

    For the compact CNN the global mean- and max-pooled features of the last stage and
    the size inputs' hidden layer (``d = 16 * width + 16``); for a backbone its pooled
    features and the same size layer. With ``tta`` they are averaged over the 8 flips and
    90° rotations of each image (orientation carries no information).

    Parameters
    ----------
    model, pixels, extras, batch_size, device, tta
        As :func:`predict_proba` (``tta`` on by default here).

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> import numpy as np
    >>> m = ImageModel(CompactCNN(2, width=4), ["a", "b"], Preprocess(size=16))
    >>> embed(m, np.zeros((3, 16, 16), np.uint8), np.zeros((3, N_EXTRA), np.float32)).shape
    torch.Size([3, 80])
    """
    device = torch.device(device) if device is not None else next(model.network.parameters()).device

    def features(view: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return _network_features(model.network, view, e)

    out = _mean_over_views(model, features, pixels, extras, batch_size, device, tta)
    return out if out is not None else torch.zeros((0, 0))
