"""Sharded image archives: thousands of vignettes per object, read in one sequential pass.

One object per image caps an object store at a few thousand reads a second; web-scale
image pipelines pack images into **shards** instead. A shard set is a folder (local or
any fsspec URL) of plain tar files, webdataset-like:

- ``shard-NNNNN.tar``: per vignette, ``{key}.{png|jpg|...}`` (the image file's bytes, as
  exported) and ``{key}.json`` (``object_id``, ``category``, ``status``,
  ``pixel_size_um``; ``null`` when unknown), the two members adjacent. ``key`` is the
  vignette's running number in the set (object ids may hold ``/`` or dots). A member
  without its JSON is still read (its ``object_id`` is the key).
- ``shards.json``: the format, the shards with their image counts, the count of images
  that could not be read (listed in ``quarantine.parquet``: ``object_id, image,
  reason``) and a fingerprint of the packed table, written last (a set with it is
  complete: packing again does nothing).

:func:`~pipeline.images.shard_pack.write_shards` packs any image table without decoding
(:mod:`pipeline.images.shard_pack`): the bytes are copied, so a corrupt image is
quarantined when it is classified, as from the folder.
:func:`open_shards` lists a set (a folder, a glob, one ``.tar``) as a :class:`ShardSet`,
which :func:`pipeline.images.classify.classify_images` and ``embed_images`` take in place
of a table: **one task per shard**, which streams its members from one open file
(:func:`iter_shard`; on an object store a few large ranged reads, never a request per
image) and decodes them in the worker's thread pool (:func:`shard_batches`), the
handcrafted features from the same decode. A member's URL is
``tar://{key}.png::{shard URL}`` (readable alone by :func:`pipeline.io.read_bytes`).

A corrupt image is quarantined naming the shard and the member; a shard that cannot be
opened, or is truncated, gives a quarantine row naming the shard, the last member read
and the error, keeps what it read before, and never stops the other shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pandas as pd

from pipeline.errors import InputFormatError
from pipeline.images.dataset import PreparedImages, Preprocess, prepare_bytes
from pipeline.images.handcrafted import FEATURE_NAMES, handcrafted_features
from pipeline.io import chain_options

__all__ = [
    "SHARD_FORMAT",
    "SHARD_INDEX",
    "ImageBatch",
    "ShardEntry",
    "ShardSet",
    "is_shard_source",
    "iter_shard",
    "open_shards",
    "shard_batches",
]

logger = logging.getLogger(__name__)

#: ``format`` of ``shards.json``.
SHARD_FORMAT = "oceanfields-image-shards/1"
#: The set's index, written last (a set with it is complete).
SHARD_INDEX = "shards.json"


class ShardEntry(NamedTuple):
    """One vignette of a shard (:func:`iter_shard`).

    ``data`` is None when the entry is not an image: a JSON without its image, or the
    rest of an archive that cannot be read (``object_id`` ``""``); ``reason`` says why.
    """

    key: str
    object_id: str
    image: str
    data: bytes | None
    meta: dict[str, Any]
    reason: str = ""


@dataclass
class ImageBatch:
    """A batch of images read and prepared for the model, with what could not be read.

    Attributes
    ----------
    object_ids, images : list of str
        Id and URL of each requested image (in ``prepared``'s order).
    prepared : PreparedImages
    features : pandas.DataFrame, optional
        Handcrafted features (:data:`~pipeline.images.handcrafted.FEATURE_NAMES`) of the
        readable images, when computed from the same decode; None otherwise.
    errors : list of (object_id, image, reason)
        Entries that are not images (an unreadable archive's rest).
    """

    object_ids: list[str]
    images: list[str]
    prepared: PreparedImages
    features: pd.DataFrame | None = None
    errors: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class ShardSet:
    """The shards of a set, in order (:func:`open_shards`).

    Attributes
    ----------
    source : str
        What was opened (folder, glob or file URL).
    urls : tuple of str
        One URL per shard, sorted.
    sizes : tuple of int
        Their sizes (bytes).
    """

    source: str
    urls: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def fingerprint(self) -> str:
        """Hash of the shards' names and sizes (a re-run into the same output checks it)."""
        text = "\n".join(
            f"{posixpath.basename(u)}:{s}" for u, s in zip(self.urls, self.sizes, strict=True)
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        """Return the number of shards."""
        return len(self.urls)


def is_shard_source(source: Any, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``source`` names shards: a ``.tar`` URL or glob, or a folder with ``shards.json``.

    Examples
    --------
    >>> is_shard_source("s3://bucket/set/shard-*.tar"), is_shard_source("export.tsv")
    (True, False)
    """
    if not isinstance(source, str | os.PathLike):
        return False
    url = os.fspath(source).rstrip("/")
    if url.endswith(".tar"):
        return True
    if any(ch in url for ch in "*?[") or url.endswith((".parquet", ".tsv", ".gz", ".zip")):
        return False
    try:
        fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        return bool(fs.exists(f"{root}/{SHARD_INDEX}"))
    except (OSError, ValueError):
        return False


def open_shards(url: str, *, storage_options: Mapping[str, Any] | None = None) -> ShardSet:
    """List a shard set: a folder of ``*.tar``, a glob of them, or one ``.tar`` file.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    storage_options : mapping, optional

    Returns
    -------
    ShardSet
        Shards sorted by name, with their sizes (one listing; no shard is opened).

    Raises
    ------
    InputFormatError
        No shard there.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    pattern = root if (root.endswith(".tar") or any(c in root for c in "*?[")) else root + "/*.tar"
    found = fs.glob(pattern, detail=True)
    items = sorted((p, int(d.get("size") or 0)) for p, d in found.items() if p.endswith(".tar"))
    if not items:
        raise InputFormatError(
            f"{url}: no shard (*.tar) there. Pack images with 'oceanfields images shard "
            "SOURCE --out URL' and point at that folder."
        )
    protocol = url.split("://", 1)[0] + "://" if "://" in url else ""
    urls = tuple(p if "://" in p else protocol + p for p, _ in items)
    logger.info(
        "open_shards: %d shards (%.1f MB) in %s", len(urls), sum(s for _, s in items) / 1e6, url
    )
    return ShardSet(url, urls, tuple(s for _, s in items))


def _entry(url: str, key: str, members: dict[str, bytes]) -> ShardEntry:
    """Return the entry of one key's members (an image and its JSON)."""
    images = [n for n in members if not n.endswith(".json")]
    meta: dict[str, Any] = {}
    reason = ""
    doc = members.get(f"{key}.json")
    if doc is not None:
        try:
            meta = dict(json.loads(doc))
        except (ValueError, TypeError) as err:
            reason = f"{url}: member {key}.json is not a JSON object ({err})"
    object_id = str(meta.get("object_id", key))
    if not images:
        return ShardEntry(key, object_id, f"{url}#{key}", None, meta, f"{url}: {key} has no image")
    image = f"tar://{images[0]}::{url}"
    if reason:
        return ShardEntry(key, object_id, image, None, meta, reason)
    return ShardEntry(key, object_id, image, members[images[0]], meta)


def iter_shard(
    shard: str | bytes, *, storage_options: Mapping[str, Any] | None = None
) -> Iterator[ShardEntry]:
    """Stream the vignettes of one shard in order, from one open file (module docstring).

    Parameters
    ----------
    shard : str or bytes
        The shard's URL (local or fsspec), or its content.
    storage_options : mapping, optional

    Yields
    ------
    ShardEntry
        One per key. When the archive cannot be opened or read to its end (Python's
        ``tarfile`` ends a stream cut between two members silently; the end-of-archive
        block is checked here), a last entry with ``object_id`` ``""`` and ``data`` None
        whose reason names the shard, the last member read and the error; the complete
        entries before it are kept.

    Examples
    --------
    >>> from pipeline.images.shard_pack import shard_bytes
    >>> raw = shard_bytes([(f"{i}", ".png", b"x" * 600, {}) for i in range(3)])
    >>> [e.object_id or e.reason.split("; ")[1] for e in iter_shard(raw[:4400])]  # cut in 1.json
    ['0', 'member(s) 1.png and the rest are unreadable. Re-pack or re-upload it.']
    """
    url = shard if isinstance(shard, str) else "<bytes>"
    key, members, last, saw_json = "", {}, "(none)", False
    try:
        with _open_shard(shard, storage_options) as raw:
            tail = _Tail(raw)
            with tarfile.open(fileobj=tail, mode="r|") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    name = member.name
                    this = posixpath.join(
                        posixpath.dirname(name), posixpath.basename(name).split(".", 1)[0]
                    )
                    if members and this != key:
                        yield _entry(url, key, members)
                        members = {}
                    key = this
                    handle = tar.extractfile(member)
                    members[name] = handle.read() if handle is not None else b""
                    saw_json = saw_json or name.endswith(".json")
                    last = name
            tail.check_end()
    except Exception as err:  # a truncated or corrupt archive: keep what was whole, report
        whole = any(n.endswith(".json") for n in members) or not saw_json
        if members and whole:
            yield _entry(url, key, members)
            members = {}
        reason = (
            f"{url}: archive unreadable after member {last!r} ({type(err).__name__}: {err}); "
            f"{'member(s) ' + ', '.join(sorted(members)) + ' and ' if members else ''}"
            "the rest are unreadable. Re-pack or re-upload it."
        )
        yield ShardEntry("", "", url, None, {}, reason)
        return
    if members:
        yield _entry(url, key, members)


class _Tail:
    """A read-only file that remembers its last 512 bytes (the tar end-of-archive check)."""

    def __init__(self, raw: Any) -> None:
        self.raw, self.last, self.size = raw, b"", 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.size += len(data)
        self.last = (self.last + data)[-tarfile.BLOCKSIZE :]
        return data

    def check_end(self) -> None:
        """Read to the end; raise ``tarfile.ReadError`` unless it ends with a zero block."""
        while self.read(1 << 16):
            pass
        if self.size % tarfile.BLOCKSIZE or self.last != bytes(tarfile.BLOCKSIZE):
            raise tarfile.ReadError(f"no end-of-archive block after {self.size} bytes (truncated)")


@contextlib.contextmanager
def _open_shard(shard: str | bytes, storage_options: Mapping[str, Any] | None) -> Iterator[Any]:
    """Open a shard URL (or wrap its bytes) as a binary file, for sequential reading."""
    if isinstance(shard, bytes):
        yield io.BytesIO(shard)
        return
    with fsspec.open(shard, "rb", **chain_options(shard, storage_options)) as f:
        yield f


def _pixel_size(meta: Mapping[str, Any]) -> float:
    value = meta.get("pixel_size_um")
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def shard_batches(
    shard: str,
    pre: Preprocess,
    *,
    batch_size: int,
    pool: ThreadPoolExecutor | None = None,
    features: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Iterator[ImageBatch]:
    """Read one shard sequentially and yield its images prepared, ``batch_size`` at a time.

    Parameters
    ----------
    shard : str
        Shard URL.
    pre : Preprocess
        The model's preprocessing.
    batch_size : int
    pool : ThreadPoolExecutor, optional
        Where the images are decoded (the worker's pool).
    features : bool
        Also compute the handcrafted features, from the same decode.
    storage_options : mapping, optional

    Yields
    ------
    ImageBatch
    """
    describe: Callable[[np.ndarray], Any] | None = handcrafted_features if features else None
    entries: list[ShardEntry] = []

    def batch(chunk: list[ShardEntry]) -> ImageBatch:
        images = [e for e in chunk if e.data is not None]
        prepared = prepare_bytes(
            [e.data for e in images],  # type: ignore[misc]
            [e.image for e in images],
            pre,
            pixel_size_um=[_pixel_size(e.meta) for e in images],
            pool=pool,
            describe=describe,
        )
        table = (
            pd.DataFrame(prepared.described, columns=list(FEATURE_NAMES), dtype=np.float64)
            if features
            else None
        )
        errors = [(e.object_id, e.image, e.reason) for e in chunk if e.data is None]
        return ImageBatch(
            [e.object_id for e in images], [e.image for e in images], prepared, table, errors
        )

    for entry in iter_shard(shard, storage_options=storage_options):
        entries.append(entry)
        if len(entries) == batch_size:
            yield batch(entries)
            entries = []
    if entries:
        yield batch(entries)
