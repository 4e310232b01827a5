"""Packing image tables into tar shards (the format: :mod:`pipeline.images.shards`).

:func:`write_shards` packs any image table (:func:`pipeline.images.dataset.image_table`:
an EcoTaxa export, an objects parquet, a class-folder tree) without decoding: the bytes
are copied, so a corrupt image is quarantined when it is classified, as from the folder;
an image that cannot be read is listed in the set's ``quarantine.parquet``.
:func:`shard_bytes` makes one shard of records.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd

from pipeline.config import check_count
from pipeline.errors import InputFormatError, StoreMismatchError
from pipeline.images.dataset import IMAGE_SUFFIXES
from pipeline.images.shards import SHARD_FORMAT, SHARD_INDEX
from pipeline.io import read_bytes
from pipeline.store import OutputStore, as_store

__all__ = ["ShardsWritten", "shard_bytes", "write_shards"]

logger = logging.getLogger(__name__)


@dataclass
class ShardsWritten:
    """What :func:`write_shards` did.

    Attributes
    ----------
    out : str
    shards : int
    images : int
        Images packed.
    quarantine : pandas.DataFrame
        ``object_id, image, reason`` of the images that could not be read.
    skipped : bool
        The set was already complete (nothing written).
    """

    out: str
    shards: int
    images: int
    quarantine: pd.DataFrame
    skipped: bool = False


def _suffix(url: str) -> str:
    """Image suffix of a URL (the member's), ``.png`` when it has none it knows."""
    ext = posixpath.splitext(url.split("::", 1)[0])[1].lower()
    return ext if ext in IMAGE_SUFFIXES else ".png"


def _meta(value: Any) -> Any:
    """Return a JSON-safe value (NaN becomes null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def shard_bytes(records: Iterable[tuple[str, str, bytes, Mapping[str, Any]]]) -> bytes:
    """One tar shard of ``(key, suffix, image bytes, meta)`` records (module docstring).

    Parameters
    ----------
    records : iterable of (str, str, bytes, mapping)
        ``key`` (no ``/`` nor ``.``), image suffix (``.png``), the image file's bytes and
        its metadata (``object_id``, ``category``, ``status``, ``pixel_size_um``).

    Returns
    -------
    bytes
        The tar file (members dated 0, so equal records give equal shards).

    Examples
    --------
    >>> from pipeline.images.shards import iter_shard
    >>> raw = shard_bytes([("000000", ".png", b"img", {"object_id": "a"})])
    >>> [(e.key, e.object_id, e.data) for e in iter_shard(raw)]
    [('000000', 'a', b'img')]
    """
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, suffix, data, meta in records:
            doc = json.dumps({k: _meta(v) for k, v in meta.items()}).encode()
            for name, blob in ((f"{key}{suffix}", data), (f"{key}.json", doc)):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(blob), 0o644
                tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _read_record(
    i: int, row: Mapping[str, Any], storage_options: Mapping[str, Any] | None
) -> tuple[str, str, bytes, dict[str, Any]] | str:
    """Return the shard record of a table row, or why its image cannot be read."""
    try:
        data = read_bytes(str(row["image"]), storage_options=storage_options)
    except InputFormatError as err:
        return str(err)
    meta = {k: row[k] for k in ("object_id", "category", "status", "pixel_size_um") if k in row}
    return f"{i:08d}", _suffix(str(row["image"])), data, meta


def _write_shard(
    rows: pd.DataFrame,
    start: int,
    store: OutputStore,
    name: str,
    storage_options: Mapping[str, Any] | None,
    threads: int,
) -> tuple[int, list[tuple[str, str, str]]]:
    """Pack one shard of table rows (numbered from ``start``); return count and quarantine."""
    records = rows.to_dict("records")
    with ThreadPoolExecutor(threads) as pool:
        read = list(
            pool.map(
                lambda i: _read_record(start + i, records[i], storage_options), range(len(rows))
            )
        )
    good = [r for r in read if not isinstance(r, str)]
    bad = [
        (str(records[i]["object_id"]), str(records[i]["image"]), r)
        for i, r in enumerate(read)
        if isinstance(r, str)
    ]
    store.write_bytes(name, shard_bytes(good))
    return len(good), bad


def _table_fingerprint(table: pd.DataFrame) -> str:
    text = "\n".join(table["object_id"].astype(str) + "\t" + table["image"].astype(str))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_shards(
    table: pd.DataFrame,
    out: str | OutputStore,
    *,
    per_shard: int = 5000,
    threads: int = 8,
    storage_options: Mapping[str, Any] | None = None,
) -> ShardsWritten:
    """Pack the images of a table into tar shards of ``per_shard`` vignettes (no decoding).

    One dask task per shard (on the current scheduler: a client's cluster when one is
    active, else threads) reads its images in a pool of ``threads`` and writes the shard
    whole (:class:`~pipeline.store.OutputStore`); ``shards.json`` is written last.

    Parameters
    ----------
    table : pandas.DataFrame
        ``object_id``, ``image`` (URL) and optionally ``category``, ``status``,
        ``pixel_size_um`` (:func:`pipeline.images.dataset.image_table`).
    out : str or OutputStore
        Folder of the shards (local path or fsspec URL).
    per_shard : int
        Vignettes per shard (1,000 to 10,000 keeps tasks long and objects few).
    threads : int
        Image-reading threads per task.
    storage_options : mapping, optional
        fsspec options of the images and of ``out``.

    Returns
    -------
    ShardsWritten

    Raises
    ------
    StoreMismatchError
        ``out`` holds the shards of another table.

    See Also
    --------
    pipeline.images.shards.open_shards : list a shard set for classification.

    Examples
    --------
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> png = os.path.join(root, "a.png"); _ = open(png, "wb").write(b"not decoded here")
    >>> table = pd.DataFrame({"object_id": ["a", "b"], "image": [png, root + "/gone.png"]})
    >>> res = write_shards(table, root + "/shards", per_shard=1)
    >>> res.shards, res.images, res.quarantine["object_id"].tolist()
    (2, 1, ['b'])
    >>> again = write_shards(table, root + "/shards", per_shard=1)  # complete: nothing to do
    >>> again.skipped, again.quarantine["reason"].str.contains("gone.png").tolist()
    (True, [True])
    """
    check_count("images.shard.per_shard", per_shard, 1)
    check_count("images.shard.threads", threads, 1)
    missing = {"object_id", "image"} - set(table.columns)
    if missing:
        raise InputFormatError(
            f"write_shards: the table has no column(s) {sorted(missing)}; found "
            f"{list(table.columns)[:20]}. Pass an image table (image_table(source))."
        )
    store = as_store(out, storage_options=storage_options)
    fingerprint = _table_fingerprint(table)
    if store.exists(SHARD_INDEX):
        index = store.read_json(SHARD_INDEX)
        if index.get("table") != fingerprint or index.get("per_shard") != per_shard:
            raise StoreMismatchError(
                f"{store.url}: holds the shards of another table or shard size (table "
                f"{index.get('table')!r} != {fingerprint!r} or per_shard "
                f"{index.get('per_shard')!r} != {per_shard}); write into a new folder."
            )
        logger.info("write_shards: %s is complete; nothing to do", store.url)
        n_images = sum(s["images"] for s in index["shards"])
        quarantine = store.read_parquet("quarantine.parquet")
        return ShardsWritten(store.url, len(index["shards"]), n_images, quarantine, skipped=True)
    rows = table.reset_index(drop=True)
    names = [f"shard-{j:05d}.tar" for j in range(max(1, math.ceil(len(rows) / per_shard)))]
    logger.info("write_shards: %d images into %d shards of %d", len(rows), len(names), per_shard)
    task = dask.delayed(_write_shard, pure=False)
    done = dask.compute(
        *[
            task(
                rows.iloc[j * per_shard : (j + 1) * per_shard],
                j * per_shard,
                store,
                name,
                storage_options,
                threads,
            )
            for j, name in enumerate(names)
        ]
    )
    quarantine = pd.DataFrame(
        [b for _, q in done for b in q], columns=["object_id", "image", "reason"]
    )
    index = {
        "format": SHARD_FORMAT,
        "table": fingerprint,
        "per_shard": per_shard,
        "images": sum(n for n, _ in done),
        "quarantined": len(quarantine),
        "shards": [{"name": n, "images": c} for n, (c, _) in zip(names, done, strict=True)],
    }
    store.write_parquet("quarantine.parquet", quarantine)
    store.write_json(SHARD_INDEX, index, indent=1, newline=False)  # last: the set is complete
    logger.info(
        "write_shards: %d images packed, %d unreadable (quarantine.parquet)",
        index["images"],
        len(quarantine),
    )
    return ShardsWritten(store.url, len(names), index["images"], quarantine)
