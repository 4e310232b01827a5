"""Duplicate images: content and perceptual hashes, exact groups and near pairs.

The duplicate-finding part of :func:`pipeline.images.qc.quality_control`.
:func:`image_hashes` reads every image once (on the Dask workers for a dask table) and
keeps its sha256, a 64-bit difference hash of the grey image shrunk to 9 x 8, a 16 x 16
thumbnail and its size; :func:`exact_groups` and :func:`exact_pairs` find byte-identical
images, :func:`near_pairs` images whose hashes differ in at most ``near_bits`` bits, whose
sizes and thumbnails are close; :func:`pairs_frame` lists pairs as conflicts and
:func:`copies_per_category` counts the copies within a category.

Developer note: near duplicates are found without comparing every pair: the 64 bits are
cut into ``near_bits + 1`` bands and only images that share one band exactly are compared
(two hashes within ``near_bits`` bits agree on at least one band: pigeonhole), so the
work grows with the bucket sizes, not with n squared. Buckets larger than
``max_bucket`` (featureless images: blank, saturated) are skipped and counted.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from PIL import Image

from pipeline.errors import InputFormatError
from pipeline.images.dataset import decode_image
from pipeline.io import read_bytes

__all__ = [
    "PAIR_COLUMNS",
    "copies_per_category",
    "exact_groups",
    "exact_pairs",
    "image_hashes",
    "near_pairs",
    "pairs_frame",
]

logger = logging.getLogger(__name__)

_HASH_COLUMNS = (
    "object_id",
    "image",
    "category",
    "sha256",
    "dhash",
    "thumb",
    "height",
    "width",
    "reason",
)
_THUMB = 16
#: The columns of a table of duplicate pairs (:func:`pairs_frame`).
PAIR_COLUMNS = (
    "kind",
    "distance",
    "object_id_a",
    "category_a",
    "image_a",
    "object_id_b",
    "category_b",
    "image_b",
)


# --------------------------------------------------------------------------- hashes


def _dhash(image: np.ndarray) -> tuple[int, bytes]:
    """Return the 64-bit difference hash and a 16 x 16 thumbnail (256 bytes).

    Hash bits: is each of 8 x 8 cells brighter than its right neighbour. The
    area-averaged thumbnail confirms a near duplicate.
    """
    img = Image.fromarray(image)
    small = np.asarray(img.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    thumb = np.asarray(img.resize((_THUMB, _THUMB), Image.Resampling.BOX), dtype=np.uint8)
    return int(np.packbits(bits).view(">u8")[0]), thumb.tobytes()


def _thumb_distance(a: Sequence[bytes], b: Sequence[bytes]) -> np.ndarray:
    """Mean absolute grey difference of thumbnails over their mean grey (0: identical)."""
    x = np.frombuffer(b"".join(a), np.uint8).reshape(len(a), _THUMB**2).astype(np.float32)
    y = np.frombuffer(b"".join(b), np.uint8).reshape(len(b), _THUMB**2).astype(np.float32)
    scale = np.maximum((x.mean(axis=1) + y.mean(axis=1)) / 2, 1.0)
    return np.abs(x - y).mean(axis=1) / scale


def _hash_one(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, ...]:
    try:
        data = read_bytes(url, storage_options=storage_options)
        image = decode_image(data, url=url)
    except InputFormatError as err:
        return "", 0, b"", 0, 0, str(err)
    except Exception as err:  # one unreadable image never stops the check
        return "", 0, b"", 0, 0, f"{url}: cannot read ({type(err).__name__}: {err})"
    h, w = image.shape
    return hashlib.sha256(data).hexdigest(), *_dhash(image), h, w, ""


def _hash_part(
    part: pd.DataFrame, storage_options: Mapping[str, Any] | None = None, threads: int = 8
) -> pd.DataFrame:
    urls = part["image"].astype(str).tolist()
    if len(urls) > 1:
        with ThreadPoolExecutor(min(threads, len(urls))) as pool:
            rows = list(pool.map(lambda u: _hash_one(u, storage_options), urls))
    else:
        rows = [_hash_one(u, storage_options) for u in urls]
    sha, dh, thumb, h, w, reason = zip(*rows, strict=True) if rows else ((),) * 6
    return pd.DataFrame(
        {
            "object_id": part["object_id"].astype(str).to_numpy(),
            "image": urls,
            "category": part["category"].astype(str).to_numpy(),
            "sha256": pd.Series(sha, dtype=str),
            # signed view of the 64 bits (parquet and pandas have no uint64 comfort)
            "dhash": pd.Series(np.array(dh, dtype=np.uint64).view(np.int64), dtype="int64"),
            "thumb": pd.Series(thumb, dtype=object),
            "height": pd.Series(h, dtype="int64"),
            "width": pd.Series(w, dtype="int64"),
            "reason": pd.Series(reason, dtype=str),
        }
    )


def image_hashes(
    table: pd.DataFrame | dd.DataFrame,
    *,
    storage_options: Mapping[str, Any] | None = None,
    threads: int = 8,
) -> pd.DataFrame:
    """Content and perceptual hashes of every image of a table (one read per image).

    Parameters
    ----------
    table : pandas or dask DataFrame
        ``object_id, image, category`` (:func:`pipeline.images.dataset.image_table`). A
        dask table is hashed on the cluster, one task per partition.
    storage_options : mapping, optional
        fsspec options of the images.
    threads : int
        Reading threads per partition.

    Returns
    -------
    pandas.DataFrame
        ``object_id, image, category, sha256, dhash`` (the 64 bits as int64), ``thumb``
        (16 x 16 ``uint8`` thumbnail bytes), ``height, width`` (px) and ``reason``
        (``""`` when read; else sha256 is ``""``).

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
    >>> Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path)
    >>> t = pd.DataFrame({"object_id": ["a", "b"], "image": [path, "/no.png"],
    ...                   "category": ["x", "y"]})
    >>> h = image_hashes(t)
    >>> h["sha256"].str.len().tolist(), h["height"].tolist(), h["reason"].str[:7].tolist()
    ([64, 0], [8, 0], ['', '/no.png'])
    """
    meta = pd.DataFrame({c: pd.Series(dtype=str) for c in _HASH_COLUMNS})
    meta = meta.astype({"dhash": "int64", "thumb": object, "height": "int64", "width": "int64"})
    if isinstance(table, dd.DataFrame):
        cols = table[["object_id", "image", "category"]]
        return cols.map_partitions(_hash_part, storage_options, threads, meta=meta).compute()
    return _hash_part(table.reset_index(drop=True), storage_options, threads)


# --------------------------------------------------------------------------- pairs


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def exact_groups(hashes: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows of every group (one sha256) of more than one identical image.

    Parameters
    ----------
    hashes : pandas.DataFrame
        :func:`image_hashes`' table (unreadable images, ``sha256 == ""``, are left out).

    Returns
    -------
    pandas.DataFrame
        The rows of ``hashes`` (index kept) whose sha256 is shared by another row.
    """
    ok = hashes[hashes["sha256"] != ""]
    sizes = ok.groupby("sha256")["object_id"].transform("size")
    return ok[sizes > 1]


def near_pairs(
    hashes: pd.DataFrame,
    *,
    near_bits: int,
    near_size_px: int,
    near_grey: float,
    max_bucket: int,
) -> tuple[pd.DataFrame, int]:
    """Index pairs (i < j, positions in ``hashes``) of near duplicates; skipped buckets.

    Only images sharing one of ``near_bits + 1`` hash bands exactly are compared (module
    docstring); byte-identical pairs are not near pairs.

    Parameters
    ----------
    hashes : pandas.DataFrame
        :func:`image_hashes`' table, with a default index.
    near_bits, near_size_px, near_grey, max_bucket
        The limits of :class:`pipeline.images.qc.QCConfig`.

    Returns
    -------
    pairs : pandas.DataFrame
        ``i, j, distance`` (differing hash bits), sorted.
    skipped : int
        Hash buckets over ``max_bucket`` images, not compared.
    """
    ok = np.flatnonzero(hashes["sha256"].to_numpy() != "")
    bits = hashes["dhash"].to_numpy().astype(np.int64).view(np.uint64)
    heights, widths = hashes["height"].to_numpy(), hashes["width"].to_numpy()
    thumbs = hashes["thumb"].to_numpy()
    sha = hashes["sha256"].to_numpy()
    n_bands = near_bits + 1
    edges = np.linspace(0, 64, n_bands + 1).astype(int)
    pairs: set[tuple[int, int]] = set()
    skipped = 0
    for lo, hi in itertools.pairwise(edges):
        mask = np.uint64((1 << int(hi - lo)) - 1) << np.uint64(lo)
        keys = pd.Series((bits[ok] & mask).astype(np.uint64), index=ok)
        for _, members in keys.groupby(keys).groups.items():
            idx = np.asarray(members)
            if idx.size < 2:
                continue
            if idx.size > max_bucket:
                skipped += 1
                continue
            a, b = np.triu_indices(idx.size, k=1)
            ia, ib = idx[a], idx[b]
            dist = _popcount(bits[ia] ^ bits[ib])
            keep = (
                (dist <= near_bits)
                & (np.abs(heights[ia] - heights[ib]) <= near_size_px)
                & (np.abs(widths[ia] - widths[ib]) <= near_size_px)
                & (sha[ia] != sha[ib])
            )
            ia, ib = ia[keep], ib[keep]
            keep = _thumb_distance(thumbs[ia], thumbs[ib]) <= near_grey
            pairs.update(zip(ia[keep].tolist(), ib[keep].tolist(), strict=True))
    if skipped:
        logger.info("qc: %d hash bucket(s) over %d images not compared", skipped, max_bucket)
    ordered = sorted(pairs)
    frame = pd.DataFrame(ordered, columns=["i", "j"], dtype="int64")
    frame["distance"] = (
        _popcount(bits[frame["i"].to_numpy()] ^ bits[frame["j"].to_numpy()]) if len(frame) else []
    )
    return frame, skipped


def pairs_frame(
    hashes: pd.DataFrame, i: np.ndarray, j: np.ndarray, kind: str, dist: Any
) -> pd.DataFrame:
    """Pairs of rows ``i``, ``j`` of ``hashes`` as conflicts, the smaller category first.

    Parameters
    ----------
    hashes : pandas.DataFrame
        :func:`image_hashes`' table, with a default index.
    i, j : numpy.ndarray of int
        Positions of the two images of each pair.
    kind : str
        ``"exact"`` or ``"near"``.
    dist : int or array-like of int
        Differing hash bits of each pair.

    Returns
    -------
    pandas.DataFrame
        The columns of :data:`PAIR_COLUMNS`, ``category_a <= category_b``.
    """
    swap = hashes["category"].to_numpy()[i] > hashes["category"].to_numpy()[j]
    first, second = np.where(swap, j, i), np.where(swap, i, j)
    out = pd.DataFrame({"kind": kind, "distance": np.broadcast_to(dist, i.shape)})
    out["distance"] = out["distance"].astype("int64")
    for suffix, rows in (("a", first), ("b", second)):
        for col in ("object_id", "category", "image"):
            out[f"{col}_{suffix}"] = hashes[col].astype(str).to_numpy()[rows]
    return out[list(PAIR_COLUMNS)]


def exact_pairs(groups: pd.DataFrame, hashes: pd.DataFrame) -> pd.DataFrame:
    """Every pair of one exact group with different categories.

    Parameters
    ----------
    groups : pandas.DataFrame
        :func:`exact_groups` of ``hashes``.
    hashes : pandas.DataFrame
        :func:`image_hashes`' table, with a default index.

    Returns
    -------
    pandas.DataFrame
        :func:`pairs_frame` of kind ``"exact"``, distance 0.
    """
    i_all, j_all = [], []
    for _, members in groups.groupby("sha256").groups.items():
        idx = np.asarray(sorted(hashes.index.get_indexer(members)))
        cats = hashes["category"].to_numpy()[idx]
        if len(set(cats)) < 2:
            continue
        a, b = np.triu_indices(idx.size, k=1)
        diff = cats[a] != cats[b]
        i_all += idx[a][diff].tolist()
        j_all += idx[b][diff].tolist()
    return pairs_frame(hashes, np.asarray(i_all, int), np.asarray(j_all, int), "exact", 0)


def copies_per_category(
    hashes: pd.DataFrame, groups: pd.DataFrame, near: pd.DataFrame
) -> pd.Series:
    """Near-duplicate images per category within that category (beyond the first).

    Same-category near pairs and exact groups are joined (union-find); each group counts
    its images beyond the first.

    Parameters
    ----------
    hashes : pandas.DataFrame
        :func:`image_hashes`' table, with a default index.
    groups : pandas.DataFrame
        :func:`exact_groups` of ``hashes``.
    near : pandas.DataFrame
        :func:`near_pairs` of ``hashes``.

    Returns
    -------
    pandas.Series
        Copies per category (categories without copies absent).
    """
    cats = hashes["category"].to_numpy()
    same = near[cats[near["i"].to_numpy()] == cats[near["j"].to_numpy()]] if len(near) else near
    # union-find of the same-category near pairs and exact groups: images beyond the first
    parent = np.arange(len(hashes))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    links = list(zip(same["i"].tolist(), same["j"].tolist(), strict=True)) if len(same) else []
    for _, members in groups.groupby(["sha256", "category"]).groups.items():
        idx = hashes.index.get_indexer(members)
        links += [(int(idx[0]), int(k)) for k in idx[1:]]
    for i, j in links:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = np.array([root(k) for k in range(len(hashes))])
    extra = roots != np.arange(len(hashes))
    return pd.Series(cats[extra]).value_counts()
