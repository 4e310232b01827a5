"""Images in, model inputs out: decode, pad at constant scale, resize, quarantine.

Every image the classifier sees goes through :func:`prepare_images`, in training and in
classification alike, so the two can never disagree on preprocessing:

1. **Read** through :func:`pipeline.io.read_bytes` (a local path, ``s3://``, a member of
   a zip archive as EcoTaxa exports ship them, ``.gz``), in a thread pool.
2. **Decode** with Pillow to one 8-bit channel (``L``); a colour image is converted.
3. **Pad to a square at constant scale**: the image is centred on a square canvas of
   side ``max(h, w, canvas_px)`` filled with its background (the median of its border
   pixels, 0 for UVP vignettes), so every object smaller than the canvas keeps its
   physical size in the model's input (size matters for plankton: a 1 mm copepod and a
   5 mm one are not the same image scaled). Larger objects are shrunk to fit.
4. **Resize** the square to ``size`` x ``size`` (box filter: area averaging keeps thin
   fibres and spines visible).
5. **Extra inputs**: the original size, which the pad/resize step loses for large
   objects: ``log1p(height_px)``, ``log1p(width_px)``, ``log1p(max side in mm)`` and a
   0/1 flag saying whether the pixel size was known (0 for the mm term otherwise).

A missing, empty, corrupt or truncated image is **quarantined** with its reason (the
same ``reason`` strings in training and classification), never fatal.

The tables the images come from (:func:`image_table`): an objects table (a pandas or
dask DataFrame, a parquet file or folder, EcoTaxa export TSVs), or a folder tree with one
sub-folder per class (:func:`folder_images`), as labelled sets are often shared. Their
contract is the columns ``object_id, image, category, status, pixel_size_um``.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from pipeline.config import check_count
from pipeline.errors import InputFormatError
from pipeline.io import expand_urls, read_bytes
from pipeline.sources.ecotaxa import read_ecotaxa

__all__ = [
    "IMAGE_COLUMNS",
    "IMAGE_SUFFIXES",
    "N_EXTRA",
    "PreparedImages",
    "Preprocess",
    "decode_image",
    "folder_images",
    "image_table",
    "prepare_array",
    "prepare_bytes",
    "prepare_images",
    "read_objects",
]

logger = logging.getLogger(__name__)

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")

#: Columns of an image table.
IMAGE_COLUMNS: tuple[str, ...] = ("object_id", "image", "category", "status", "pixel_size_um")
#: Number of extra (size) inputs made by :func:`prepare_array`.
N_EXTRA = 4
#: One image's pixels, extras, reason ("" when read) and description (or None).
_Prepared = tuple[np.ndarray | None, np.ndarray | None, str, Any]


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """How an image becomes a model input (saved with the model).

    Attributes
    ----------
    size : int
        Side of the model's square input (px).
    canvas_px : int
        Side of the constant-scale canvas (px of the original image): objects up to this
        size keep their size relative to each other; choose it near the 90th percentile
        of the images' longer side.
    invert : bool
        Invert grey levels first (dark objects on a light background, e.g. ZooScan),
        so objects are bright on a dark background as UVP vignettes are.
    """

    size: int = 64
    canvas_px: int = 128
    invert: bool = False

    def __post_init__(self) -> None:
        """Check the sizes."""
        check_count("preprocess.size", self.size, 8, maximum=1024)
        check_count("preprocess.canvas_px", self.canvas_px, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON) of the options."""
        return asdict(self)


@dataclass
class PreparedImages:
    """Model inputs of a batch of images, with the quarantine.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``uint8`` array (n_ok, size, size): the prepared images that could be read.
    extras : numpy.ndarray
        ``float32`` array (n_ok, N_EXTRA): the size inputs.
    ok : numpy.ndarray
        Boolean (n,): which of the requested images are in ``pixels`` (in order).
    reasons : list of str
        One per requested image: ``""`` when read, else why it was quarantined.
    described : list, optional
        What :func:`prepare_bytes`'s ``describe`` returned for each image in ``pixels``.
    """

    pixels: np.ndarray
    extras: np.ndarray
    ok: np.ndarray
    reasons: list[str]
    described: list[Any] | None = None

    @property
    def quarantine(self) -> pd.DataFrame:
        """Position and reason of each quarantined image."""
        bad = [(i, r) for i, r in enumerate(self.reasons) if r]
        return pd.DataFrame(bad, columns=["position", "reason"])


def decode_image(data: bytes, *, url: str = "<bytes>") -> np.ndarray:
    """Decode an image file's bytes to a 2-D ``uint8`` array (one grey channel).

    Parameters
    ----------
    data : bytes
        The file's content (PNG, JPEG, TIFF, BMP... anything Pillow reads).
    url : str
        Where it came from, for the error message.

    Returns
    -------
    numpy.ndarray
        ``uint8`` (height, width).

    Raises
    ------
    InputFormatError
        Empty, not an image, truncated or zero-sized; the message names ``url``.

    Examples
    --------
    >>> buf = io.BytesIO(); Image.new("L", (5, 3), 7).save(buf, format="PNG")
    >>> decode_image(buf.getvalue()).shape
    (3, 5)
    >>> decode_image(b"", url="a.png")
    Traceback (most recent call last):
    ...
    pipeline.errors.InputFormatError: a.png: empty image file
    """
    if not data:
        raise InputFormatError(f"{url}: empty image file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            grey = img.convert("L") if img.mode != "L" else img
            array = np.asarray(grey, dtype=np.uint8)
    except UnidentifiedImageError as err:
        raise InputFormatError(f"{url}: not an image Pillow can read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise InputFormatError(f"{url}: corrupt or truncated image ({err})") from err
    if array.ndim != 2 or 0 in array.shape:
        raise InputFormatError(f"{url}: image has no pixel (shape {array.shape})")
    return array


def prepare_array(
    image: np.ndarray, pre: Preprocess, *, pixel_size_um: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pad one decoded image to a constant-scale square and resize it (module docstring).

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` (height, width).
    pre : Preprocess
    pixel_size_um : float, optional
        Pixel size (µm); NaN or None when unknown.

    Returns
    -------
    pixels : numpy.ndarray
        ``uint8`` (size, size).
    extras : numpy.ndarray
        ``float32`` (N_EXTRA,): log1p height, log1p width (px), log1p longer side (mm),
        pixel size known (0/1).

    Examples
    --------
    >>> img = np.zeros((10, 20), np.uint8); img[4:6, 5:15] = 200
    >>> px, ex = prepare_array(img, Preprocess(size=16, canvas_px=40), pixel_size_um=100)
    >>> px.shape, int(px.max()) > 0, [round(float(v), 3) for v in ex]
    ((16, 16), True, [2.398, 3.045, 1.099, 1.0])
    """
    if pre.invert:
        image = 255 - image
    h, w = image.shape
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    background = int(np.median(border))
    side = max(h, w, pre.canvas_px)
    canvas = np.full((side, side), background, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image
    resized = Image.fromarray(canvas).resize((pre.size, pre.size), Image.Resampling.BOX)
    known = pixel_size_um is not None and np.isfinite(pixel_size_um) and pixel_size_um > 0
    longer_mm = max(h, w) * float(pixel_size_um) / 1000.0 if known else 0.0
    extras = np.array(
        [np.log1p(h), np.log1p(w), np.log1p(longer_mm), 1.0 if known else 0.0], dtype=np.float32
    )
    return np.asarray(resized, dtype=np.uint8), extras


def _guarded(action: Callable[[], Any], url: str, verb: str) -> tuple[Any, str]:
    """Run one image's read or decode; an error becomes its reason, never an exception."""
    try:
        return action(), ""
    except InputFormatError as err:
        return None, str(err)
    except Exception as err:  # one image's storage or decoder failure never stops the batch
        return None, f"{url}: cannot {verb} ({type(err).__name__}: {err})"


def _prepare_one(
    url: str,
    pixel_size_um: float | None,
    pre: Preprocess,
    storage_options: Mapping[str, Any] | None,
) -> _Prepared:
    if not isinstance(url, str) or not url:
        return None, None, "no image URL", None
    data, reason = _guarded(lambda: read_bytes(url, storage_options=storage_options), url, "read")
    if reason:
        return None, None, reason, None
    return _prepare_data(data, url, pixel_size_um, pre, None)


def _prepare_data(
    data: bytes,
    url: str,
    pixel_size_um: float | None,
    pre: Preprocess,
    describe: Callable[[np.ndarray], Any] | None,
) -> _Prepared:
    """Decode and prepare one image's bytes (and describe the decoded image)."""
    image, reason = _guarded(lambda: decode_image(data, url=url), url, "decode")
    if reason:
        return None, None, reason, None
    pixels, extras = prepare_array(image, pre, pixel_size_um=pixel_size_um)
    return pixels, extras, "", describe(image) if describe is not None else None


def _assemble(results: list[_Prepared], pre: Preprocess, describe: bool) -> PreparedImages:
    """One :class:`PreparedImages` of per-image results, in order."""
    ok = np.array([r[0] is not None for r in results], dtype=bool)
    pixels = np.zeros((int(ok.sum()), pre.size, pre.size), dtype=np.uint8)
    extras = np.zeros((int(ok.sum()), N_EXTRA), dtype=np.float32)
    j = 0
    for p, e, _, _ in results:
        if p is not None:
            pixels[j], extras[j] = p, e
            j += 1
    described = [r[3] for r in results if r[0] is not None] if describe else None
    return PreparedImages(pixels, extras, ok, [r[2] for r in results], described)


def prepare_images(
    urls: Sequence[str],
    pre: Preprocess,
    *,
    pixel_size_um: Sequence[float] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    threads: int | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> PreparedImages:
    """Read, decode and prepare a batch of images in a thread pool; quarantine failures.

    Parameters
    ----------
    urls : sequence of str
        Image URLs (any fsspec URL :func:`pipeline.io.read_bytes` opens).
    pre : Preprocess
    pixel_size_um : sequence of float, optional
        Pixel size per image (µm; NaN when unknown).
    storage_options : mapping, optional
        fsspec options for the images' filesystem.
    threads : int, optional
        Size of the thread pool made for this call (default ``min(8, cpu count)``).
    pool : ThreadPoolExecutor, optional
        A pool to use instead (kept open: the classifier reuses one per worker).

    Returns
    -------
    PreparedImages

    Examples
    --------
    >>> res = prepare_images(["/nonexistent.png"], Preprocess())
    >>> res.ok.tolist(), res.pixels.shape, "nonexistent.png" in res.reasons[0]
    ([False], (0, 64, 64), True)
    """
    n = len(urls)
    sizes = [None] * n if pixel_size_um is None else list(pixel_size_um)

    def one(i: int) -> _Prepared:
        return _prepare_one(urls[i], sizes[i], pre, storage_options)

    return _assemble(_map(one, n, threads, pool), pre, describe=False)


def _map(
    one: Callable[[int], _Prepared], n: int, threads: int | None, pool: ThreadPoolExecutor | None
) -> list[_Prepared]:
    """``one(i)`` for ``i < n``, in the given pool, a pool of ``threads``, or inline."""
    if pool is not None:
        return list(pool.map(one, range(n)))
    if n <= 1:
        return [one(i) for i in range(n)]
    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as own:
        return list(own.map(one, range(n)))


def prepare_bytes(
    blobs: Sequence[bytes],
    urls: Sequence[str],
    pre: Preprocess,
    *,
    pixel_size_um: Sequence[float] | None = None,
    pool: ThreadPoolExecutor | None = None,
    describe: Callable[[np.ndarray], Any] | None = None,
) -> PreparedImages:
    """Decode and prepare images already read (members of a shard) in a thread pool.

    As :func:`prepare_images`, for bytes in memory: the same decoding, preprocessing and
    quarantine ``reason`` strings, so an image gives the same model input whether it is
    read from a file or from an archive.

    Parameters
    ----------
    blobs : sequence of bytes
        Each image file's content.
    urls : sequence of str
        Where each came from (named in the reasons), e.g. ``tar://key.png::shard.tar``.
    pre : Preprocess
    pixel_size_um : sequence of float, optional
        Pixel size per image (µm; NaN when unknown).
    pool : ThreadPoolExecutor, optional
        Where to decode (default: this thread).
    describe : callable, optional
        Applied to each decoded image (``uint8`` 2-D array) in the pool; the results of
        the readable images are ``described`` (e.g.
        :func:`pipeline.images.handcrafted.handcrafted_features`: one decode for both).

    Returns
    -------
    PreparedImages

    See Also
    --------
    prepare_images : the same for image URLs.

    Examples
    --------
    >>> buf = io.BytesIO(); Image.new("L", (5, 3), 7).save(buf, format="PNG")
    >>> res = prepare_bytes([buf.getvalue(), b""], ["a.png", "b.png"], Preprocess(size=8),
    ...                     describe=lambda image: image.shape)
    >>> res.ok.tolist(), res.pixels.shape, res.reasons[1], res.described
    ([True, False], (1, 8, 8), 'b.png: empty image file', [(3, 5)])
    """
    n = len(blobs)
    sizes = [None] * n if pixel_size_um is None else list(pixel_size_um)

    def one(i: int) -> _Prepared:
        return _prepare_data(blobs[i], urls[i], sizes[i], pre, describe)

    results = list(pool.map(one, range(n))) if pool is not None else [one(i) for i in range(n)]
    return _assemble(results, pre, describe=describe is not None)


def image_table(
    source: Any,
    *,
    statuses: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """List the images of a source as a table of ``IMAGE_COLUMNS``.

    Parameters
    ----------
    source : DataFrame, str or path
        - a pandas or dask objects table (:func:`pipeline.sources.ecotaxa.read_ecotaxa`'s
          ``accepted``, computed here);
        - a ``.parquet`` file or folder of the objects table;
        - EcoTaxa export TSV(s) (``.tsv``, ``.tsv.gz``, a glob), read with their images;
        - a folder with one sub-folder per class (``<class>/<image>.png``; the folder
          name is the category, status ``V``, pixel size unknown).
    statuses : sequence of str, optional
        Keep only these annotation statuses (e.g. ``("V",)`` for training).
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    pandas.DataFrame
        ``object_id, image, category, status, pixel_size_um`` (the objects' other
        columns are dropped), in the source's order.

    Raises
    ------
    InputFormatError
        A source that is none of the above, or a table without ``object_id``/``image``.
    """
    frame = _source_frame(source, storage_options)
    missing = [c for c in ("object_id", "image") if c not in frame.columns]
    if missing:
        raise InputFormatError(
            f"{_name(source)}: image table has no column(s) {missing}; found "
            f"{sorted(frame.columns)[:20]}. Expected an EcoTaxa objects table or a folder "
            "with one sub-folder of images per class."
        )
    table = pd.DataFrame(
        {"object_id": frame["object_id"].astype(str), "image": frame["image"].astype(str)}
    )
    table["category"] = frame["category"].fillna("").astype(str) if "category" in frame else ""
    table["status"] = frame["status"].fillna("").astype(str) if "status" in frame else ""
    table["pixel_size_um"] = (
        pd.to_numeric(frame["pixel_size_um"], errors="coerce").astype("float64")
        if "pixel_size_um" in frame
        else np.nan
    )
    if statuses is not None:
        keep = table["status"].isin(list(statuses))
        logger.info(
            "image_table: %d of %d objects with status in %s",
            keep.sum(),
            len(table),
            list(statuses),
        )
        table = table[keep]
    return table.reset_index(drop=True)


def _name(source: Any) -> str:
    return source if isinstance(source, str | os.PathLike) else type(source).__name__


def read_objects(source: Any, *, storage_options: Mapping[str, Any] | None = None) -> Any:
    """Open an image source as a table, lazily where it can be (the one dispatch).

    Parameters
    ----------
    source : DataFrame, str or path
        As :func:`image_table`.
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    pandas or dask DataFrame
        Tables pass through; ``.parquet`` and EcoTaxa TSVs give a dask DataFrame (nothing
        read yet but the TSVs' partitions); a class-folder tree a pandas one
        (``object_id`` = path under the root, ``category`` = folder, status ``V``).

    Raises
    ------
    InputFormatError
        A source that is none of these.
    """
    if isinstance(source, pd.DataFrame) or (
        hasattr(source, "compute") and hasattr(source, "columns")
    ):
        return source
    if not isinstance(source, str | os.PathLike):
        raise InputFormatError(
            f"image source {type(source).__name__!r}: expected a table, "
            "a parquet/TSV URL or a class-folder tree."
        )
    url = os.fspath(source)
    stripped = url.rstrip("/")
    if stripped.endswith(".parquet") or _is_parquet_dir(stripped, storage_options):
        return dd.read_parquet(stripped, storage_options=dict(storage_options or {}) or None)
    if any(stripped.endswith(s) for s in (".tsv", ".tsv.gz", ".txt", ".zip")) or "*" in url:
        return read_ecotaxa(url, storage_options=storage_options).accepted
    if os.path.isdir(stripped):
        table = folder_images(stripped)
        return table.assign(
            object_id=[os.path.relpath(p, stripped) for p in table["image"]], status="V"
        )
    raise InputFormatError(
        f"{url}: not an objects table (.parquet), an EcoTaxa export (.tsv) or a folder of "
        "class sub-folders."
    )


def _source_frame(source: Any, storage_options: Mapping[str, Any] | None) -> pd.DataFrame:
    frame = read_objects(source, storage_options=storage_options)
    return frame.compute() if hasattr(frame, "compute") else frame


def _is_parquet_dir(url: str, storage_options: Mapping[str, Any] | None) -> bool:
    if not os.path.isdir(url):
        return False
    return any(name.endswith(".parquet") for name in os.listdir(url))


def folder_images(root: str, *, storage_options: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """List a labelled folder tree ``root/<class>/<image>`` as a table.

    Parameters
    ----------
    root : str
        Folder path or fsspec URL holding one sub-folder per class.
    storage_options : mapping, optional
        fsspec options.

    Returns
    -------
    pandas.DataFrame
        Columns ``image`` (path or URL) and ``category`` (the sub-folder's full name: the
        uvpec sets name them ``<taxon>__<ecotaxa id>``, kept whole so the class stays
        unique; ``category.str.split("__").str[0]`` gives the taxon), sorted by category
        then image. Files with other suffixes than PNG/JPEG/TIFF/BMP/GIF are ignored.

    Raises
    ------
    InputFormatError
        When ``root`` holds no image in a sub-folder.

    See Also
    --------
    image_table : the same tree as an image table (object ids, status ``V``).

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> for name in ("b__2/x.png", "a__1/y.png", "a__1/notes.txt"):
    ...     os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
    ...     _ = open(os.path.join(root, name), "wb").write(b"")
    >>> folder_images(root)["category"].tolist()
    ['a__1', 'b__2']
    """
    pattern = root.rstrip("/") + "/*/*"
    try:
        urls = expand_urls(pattern, storage_options=storage_options)
    except InputFormatError:
        urls = []
    urls = [u for u in urls if u.lower().endswith(IMAGE_SUFFIXES)]
    if not urls:
        raise InputFormatError(
            f"{root}: no image in a class sub-folder (expected {root}/<class>/<image>.png). "
            "Point at the folder that holds one sub-folder per class."
        )
    table = pd.DataFrame({"image": urls, "category": [u.rsplit("/", 2)[-2] for u in urls]})
    table = table.sort_values(["category", "image"], kind="stable", ignore_index=True)
    logger.info(
        "folder_images: %d images in %d classes under %s",
        len(table),
        table["category"].nunique(),
        root,
    )
    return table
