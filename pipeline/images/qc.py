"""Quality control of the human sorting: duplicates with two labels, and machine disagreement.

:func:`quality_control` reads every image of a labelled image table once (on the Dask
workers when the table is a dask DataFrame, else in a thread pool) and finds:

- **exact duplicates**: images whose file content is the same (sha256 of the bytes);
- **near duplicates**: images whose perceptual hash (a 64-bit difference hash of the
  grey image shrunk to 9 x 8) differs in at most ``near_bits`` bits, whose sizes
  differ by at most ``near_size_px`` pixels and whose 16 x 16 thumbnails differ by at
  most ``near_grey`` of their mean grey level (a re-encoded, re-cropped or slightly
  re-thresholded copy of one vignette). The hash alone is not enough: small UVP
  vignettes, mostly dark background, share hashes with unrelated objects (on the uvpec
  sample 852 cross-class pairs at distance 0, none of them a copy);
- **label conflicts**: pairs of duplicates that carry **different** human categories,
  listed with both labels and both paths (exact first, then near, by distance);
- **duplicates within a class**: per category, the copies beyond the first of each
  group of identical images (they weigh an object twice in training and in the scores);
- with machine labels (``labels``), the per-category disagreement between validated
  categories and machine labels and the most confident disagreements
  (:func:`pipeline.images.consistency.consistency`, folded in).

Nothing is deleted or changed. :func:`write_qc_report` writes ``qc.json``,
``conflicts.csv``, ``conflicts.png`` (a plate of the conflicting pairs), ``index.html``
with a "look at first" list for the curator, and with machine labels the consistency
report's figures (``confusion.png``, ``worst_examples.png``).

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
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from pipeline.config import check_count, check_range
from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.consistency import (
    ConsistencyResult,
    consistency,
    write_consistency_report,
)
from pipeline.images.dataset import decode_image, image_table, read_objects
from pipeline.images.labels import _require
from pipeline.io import read_bytes
from pipeline.report import escape, figure_png, format_number, html_table, index_html
from pipeline.store import OutputStore, as_store

__all__ = ["QCConfig", "QCResult", "image_hashes", "quality_control", "write_qc_report"]

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
_PAIR_COLUMNS = (
    "kind",
    "distance",
    "object_id_a",
    "category_a",
    "image_a",
    "object_id_b",
    "category_b",
    "image_b",
)


@dataclass(frozen=True, kw_only=True)
class QCConfig:
    """Options of :func:`quality_control` (defaults live here only).

    Attributes
    ----------
    statuses : tuple of str
        Annotation statuses whose categories are checked (default validated ``V``).
    near_bits : int
        Most differing bits of the 64-bit perceptual hashes of near duplicates (0: only
        pixel-identical images; 0 to 15).
    near_size_px : int
        Most difference of height and of width (px) between near duplicates.
    near_grey : float
        Most mean absolute difference of their 16 x 16 thumbnails, as a share of their
        mean grey level (0.1: 10 %), which confirms the hash.
    max_bucket : int
        Images sharing one hash band beyond this are not compared (module note).
    n_examples : int
        Conflicting pairs drawn on the plate; machine disagreements kept per category.
    threads : int
        Image-reading threads (pandas tables).
    """

    statuses: tuple[str, ...] = ("V",)
    near_bits: int = 3
    near_size_px: int = 2
    near_grey: float = 0.1
    max_bucket: int = 2000
    n_examples: int = 24
    threads: int = 8

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        check_count("images.qc.near_bits", self.near_bits, 0, maximum=15)
        for key in ("near_size_px",):
            check_count(f"images.qc.{key}", getattr(self, key), 0)
        check_range("images.qc.near_grey", self.near_grey, low=0)
        for key in ("max_bucket", "n_examples", "threads"):
            check_count(f"images.qc.{key}", getattr(self, key), 1)
        object.__setattr__(self, "statuses", tuple(self.statuses))


@dataclass
class QCResult:
    """What :func:`quality_control` found (small pandas tables).

    Attributes
    ----------
    conflicts : pandas.DataFrame
        Pairs of duplicate images with different categories: ``kind`` (``"exact"`` or
        ``"near"``), ``distance`` (differing hash bits), then ``object_id``, ``category``
        and ``image`` of each (``_a``, ``_b``; ``category_a < category_b``).
    per_category : pandas.DataFrame
        ``category, n_images, n_exact_copies, n_near_copies, n_in_conflict`` (copies: the
        images of a duplicate group beyond the first, within the category).
    n_images, n_unreadable : int
    n_exact_groups, n_near_pairs : int
        Groups of byte-identical images (size > 1) and near-duplicate pairs (any labels).
    skipped_buckets : int
        Hash buckets too large to compare (``max_bucket``).
    consistency : ConsistencyResult or None
        Machine labels against the validated categories, when labels were given.
    unreadable : pandas.DataFrame
        ``object_id, image, reason``.
    source : str
    """

    conflicts: pd.DataFrame
    per_category: pd.DataFrame
    n_images: int
    n_unreadable: int
    n_exact_groups: int
    n_near_pairs: int
    skipped_buckets: int = 0
    consistency: ConsistencyResult | None = None
    unreadable: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""

    def look_first(self) -> list[str]:
        """List what a curator should look at first, most important first (sentences)."""
        items = []
        exact = self.conflicts[self.conflicts["kind"] == "exact"]
        near = self.conflicts[self.conflicts["kind"] == "near"]
        for what, frame in (("byte-identical", exact), ("near-identical", near)):
            if len(frame):
                pairs = frame.groupby(["category_a", "category_b"]).size()
                pairs = pairs.sort_values(ascending=False, kind="stable")
                listed = "; ".join(f"{a} / {b}: {n}" for (a, b), n in pairs.head(5).items())
                items.append(
                    f"{len(frame)} pair(s) of {what} images carry two different categories "
                    f"({listed}): decide each image's category (conflicts.csv)."
                )
        copies = self.per_category[self.per_category["n_exact_copies"] > 0]
        if len(copies):
            top = copies.sort_values("n_exact_copies", ascending=False, kind="stable").head(5)
            listed = ", ".join(f"{r.category} {r.n_exact_copies}" for r in top.itertuples())
            items.append(
                f"{int(copies['n_exact_copies'].sum())} extra copies of byte-identical images "
                f"within a category ({listed}): they count twice in training and in the "
                "scores."
            )
        if self.consistency is not None:
            per = self.consistency.per_category.dropna(subset=["disagreement"])
            per = per[per["disagreement"] > 0].sort_values(
                "disagreement", ascending=False, kind="stable"
            )
            if len(per):
                listed = ", ".join(
                    f"{r.category} {r.disagreement:.2f} (as {r.most_confused_with})"
                    for r in per.head(3).itertuples()
                )
                items.append(
                    f"categories the machine disagrees with most: {listed}; the most "
                    "confident disagreements are on worst_examples.png."
                )
        if self.n_unreadable:
            items.append(f"{self.n_unreadable} image(s) could not be read (qc.json).")
        return items or ["nothing found: no duplicate carries two categories."]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready view (what ``qc.json`` holds)."""
        kinds = self.conflicts["kind"].value_counts()
        return {
            "source": self.source,
            "n_images": self.n_images,
            "n_unreadable": self.n_unreadable,
            "n_exact_duplicate_groups": self.n_exact_groups,
            "n_near_duplicate_pairs": self.n_near_pairs,
            "n_conflicts_exact": int(kinds.get("exact", 0)),
            "n_conflicts_near": int(kinds.get("near", 0)),
            "skipped_buckets": self.skipped_buckets,
            "look_first": self.look_first(),
            "per_category": _records(self.per_category),
            "conflicts": _records(self.conflicts),
            "unreadable": _records(self.unreadable),
            "consistency": self.consistency.to_dict() if self.consistency is not None else None,
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    def clean(v: Any) -> Any:
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return None if np.isnan(v) else float(v)
        return v

    return [{k: clean(v) for k, v in r.items()} for r in frame.to_dict("records")]


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
    >>> import tempfile
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


# --------------------------------------------------------------------------- duplicates


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def _exact_groups(hashes: pd.DataFrame) -> pd.DataFrame:
    """Keep the rows of every group (one sha256) of more than one identical image."""
    ok = hashes[hashes["sha256"] != ""]
    sizes = ok.groupby("sha256")["object_id"].transform("size")
    return ok[sizes > 1]


def _near_pairs(hashes: pd.DataFrame, cfg: QCConfig) -> tuple[pd.DataFrame, int]:
    """Index pairs (i < j, positions in ``hashes``) of near duplicates; skipped buckets."""
    ok = np.flatnonzero(hashes["sha256"].to_numpy() != "")
    bits = hashes["dhash"].to_numpy().astype(np.int64).view(np.uint64)
    heights, widths = hashes["height"].to_numpy(), hashes["width"].to_numpy()
    thumbs = hashes["thumb"].to_numpy()
    sha = hashes["sha256"].to_numpy()
    n_bands = cfg.near_bits + 1
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
            if idx.size > cfg.max_bucket:
                skipped += 1
                continue
            a, b = np.triu_indices(idx.size, k=1)
            ia, ib = idx[a], idx[b]
            dist = _popcount(bits[ia] ^ bits[ib])
            keep = (
                (dist <= cfg.near_bits)
                & (np.abs(heights[ia] - heights[ib]) <= cfg.near_size_px)
                & (np.abs(widths[ia] - widths[ib]) <= cfg.near_size_px)
                & (sha[ia] != sha[ib])
            )
            ia, ib = ia[keep], ib[keep]
            keep = _thumb_distance(thumbs[ia], thumbs[ib]) <= cfg.near_grey
            pairs.update(zip(ia[keep].tolist(), ib[keep].tolist(), strict=True))
    if skipped:
        logger.info("qc: %d hash bucket(s) over %d images not compared", skipped, cfg.max_bucket)
    ordered = sorted(pairs)
    frame = pd.DataFrame(ordered, columns=["i", "j"], dtype="int64")
    frame["distance"] = (
        _popcount(bits[frame["i"].to_numpy()] ^ bits[frame["j"].to_numpy()]) if len(frame) else []
    )
    return frame, skipped


def _pairs_frame(
    hashes: pd.DataFrame, i: np.ndarray, j: np.ndarray, kind: str, dist: Any
) -> pd.DataFrame:
    """Pairs of rows ``i``, ``j`` of ``hashes`` as conflicts, the smaller category first."""
    swap = hashes["category"].to_numpy()[i] > hashes["category"].to_numpy()[j]
    first, second = np.where(swap, j, i), np.where(swap, i, j)
    out = pd.DataFrame({"kind": kind, "distance": np.broadcast_to(dist, i.shape)})
    out["distance"] = out["distance"].astype("int64")
    for suffix, rows in (("a", first), ("b", second)):
        for col in ("object_id", "category", "image"):
            out[f"{col}_{suffix}"] = hashes[col].astype(str).to_numpy()[rows]
    return out[list(_PAIR_COLUMNS)]


def _exact_pairs(groups: pd.DataFrame, hashes: pd.DataFrame) -> pd.DataFrame:
    """Every pair of one exact group with different categories."""
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
    return _pairs_frame(hashes, np.asarray(i_all, int), np.asarray(j_all, int), "exact", 0)


def _copies(hashes: pd.DataFrame, groups: pd.DataFrame, near: pd.DataFrame) -> pd.Series:
    """Near-duplicate images per category within that category (beyond the first)."""
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


def quality_control(
    source: Any,
    *,
    labels: str | pd.DataFrame | dd.DataFrame | None = None,
    config: QCConfig | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> QCResult:
    """Check the human sorting of a labelled image set (module docstring).

    Parameters
    ----------
    source : DataFrame, str or path
        Objects table, EcoTaxa export, parquet or class-folder tree
        (:func:`pipeline.images.dataset.read_objects`).
    labels : str or DataFrame, optional
        Machine labels (a labels folder, :mod:`pipeline.images.labels`), compared with
        the validated categories.
    config : QCConfig, optional
    storage_options : mapping, optional
        fsspec options of the images.

    Returns
    -------
    QCResult

    Raises
    ------
    ConfigError
        No image with a category among ``statuses``.

    See Also
    --------
    write_qc_report : the files of the result.
    pipeline.images.consistency.consistency : the machine-label part.
    """
    cfg = config or QCConfig()
    objects = read_objects(source, storage_options=storage_options)
    table = _labelled(objects, cfg.statuses, storage_options)
    hashes = image_hashes(table, storage_options=storage_options, threads=cfg.threads)
    if hashes.empty:
        raise ConfigError(
            f"images qc: {_name(source)} has no image with a category and status in "
            f"{list(cfg.statuses)}; check the source or pass other statuses."
        )
    hashes = hashes.reset_index(drop=True)
    unreadable = hashes.loc[hashes["reason"] != "", ["object_id", "image", "reason"]]
    groups = _exact_groups(hashes)
    exact = _exact_pairs(groups, hashes)
    near_idx, skipped = _near_pairs(hashes, cfg)
    cats = hashes["category"].to_numpy()
    if len(near_idx):
        cross = cats[near_idx["i"].to_numpy()] != cats[near_idx["j"].to_numpy()]
        crossing = near_idx[cross]
    else:
        crossing = near_idx
    near = _pairs_frame(
        hashes, crossing["i"].to_numpy(), crossing["j"].to_numpy(), "near", crossing["distance"]
    )
    conflicts = pd.concat([exact, near], ignore_index=True)
    conflicts = conflicts.sort_values(
        ["kind", "distance", "category_a", "category_b", "object_id_a"], kind="stable"
    ).reset_index(drop=True)
    per = hashes.groupby("category").size().rename("n_images").to_frame()
    exact_copies = (groups.groupby(["sha256", "category"]).size() - 1).groupby("category").sum()
    per["n_exact_copies"] = exact_copies.reindex(per.index).fillna(0).astype("int64")
    near_copies = _copies(hashes, groups, near_idx)
    per["n_near_copies"] = (
        (near_copies.reindex(per.index).fillna(0) - per["n_exact_copies"]).clip(lower=0)
    ).astype("int64")
    in_conflict = pd.concat(
        [
            conflicts[["object_id_a", "category_a"]].set_axis(["o", "c"], axis=1),
            conflicts[["object_id_b", "category_b"]].set_axis(["o", "c"], axis=1),
        ]
    ).drop_duplicates()
    per["n_in_conflict"] = in_conflict.groupby("c").size().reindex(per.index).fillna(0)
    per = per.astype({"n_in_conflict": "int64"}).reset_index()
    checked = None
    if labels is not None:
        checked = consistency(objects, labels, n_examples=cfg.n_examples)
    result = QCResult(
        conflicts=conflicts,
        per_category=per,
        n_images=len(hashes),
        n_unreadable=len(unreadable),
        n_exact_groups=int(groups["sha256"].nunique()),
        n_near_pairs=len(near_idx),
        skipped_buckets=skipped,
        consistency=checked,
        unreadable=unreadable.reset_index(drop=True),
        source=_name(source),
    )
    logger.info(
        "qc: %d images, %d exact duplicate groups, %d near pairs; conflicts: %d exact, %d near",
        result.n_images,
        result.n_exact_groups,
        result.n_near_pairs,
        len(exact),
        len(near),
    )
    return result


def _labelled(
    objects: Any, statuses: tuple[str, ...], storage_options: Mapping[str, Any] | None
) -> pd.DataFrame | dd.DataFrame:
    """``object_id, image, category`` of the objects with a category and a status kept."""
    if not isinstance(objects, dd.DataFrame):
        table = image_table(objects, statuses=statuses, storage_options=storage_options)
        return table[table["category"] != ""].reset_index(drop=True)
    _require(  # lazy: hashed on the cluster, one task per partition
        objects,
        ("object_id", "image", "category", "status"),
        where="images qc",
        what="objects table",
        error=ConfigError,
        fix="Pass an EcoTaxa objects table with its images.",
    )
    keep = objects["status"].fillna("").astype(str).isin(list(statuses))
    cats = objects["category"].fillna("").astype(str)
    table = objects[keep & (cats != "")][["object_id", "image", "category"]]
    return table.astype(str)


def _name(source: Any) -> str:
    return os.fspath(source) if isinstance(source, str | os.PathLike) else type(source).__name__


# --------------------------------------------------------------------------- report


def _conflicts_png(conflicts: pd.DataFrame, n: int) -> tuple[bytes, int]:
    """Plate of conflicting pairs: image a | image b, captions with both categories."""
    from pipeline.images.consistency import _vignette

    rows = []
    for rec in conflicts.head(n).itertuples():
        a, b = _vignette(rec.image_a), _vignette(rec.image_b)
        if a is not None and b is not None:
            rows.append((rec, a, b))
    n_cols = 4  # two pairs per row
    n_rows = max(1, -(-len(rows) // 2))
    fig = Figure(figsize=(1.8 * n_cols, 2.0 * n_rows))
    if not rows:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no duplicate with two categories", ha="center")
    for k, (rec, a, b) in enumerate(rows):
        for side, (pixels, cat) in enumerate(((a, rec.category_a), (b, rec.category_b))):
            ax = fig.add_subplot(n_rows, n_cols, 2 * k + side + 1)
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{cat}\n({rec.kind}, d={rec.distance})", fontsize=6)
            ax.axis("off")
    fig.suptitle("Duplicates with two human categories (pairs side by side)")
    return figure_png(fig), len(rows)


def write_qc_report(
    result: QCResult,
    out: str | OutputStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``qc.json``, ``conflicts.csv``, ``conflicts.png`` and ``index.html``.

    With machine labels also the consistency report's ``confusion.png`` and
    ``worst_examples.png`` (:func:`~pipeline.images.consistency.write_consistency_report`,
    into ``consistency/``).

    Parameters
    ----------
    result : QCResult
    out : str or OutputStore
        Folder (local path or fsspec URL) or its store; each file written whole.
    storage_options : mapping, optional
        fsspec options when ``out`` is a URL.

    Returns
    -------
    dict of str to str
        What → file name in the folder.
    """
    store = as_store(out, storage_options=storage_options)
    store.makedirs()
    files = {
        "json": "qc.json",
        "conflicts": "conflicts.csv",
        "plate": "conflicts.png",
        "index": "index.html",
    }
    doc = result.to_dict()
    store.write_json(files["json"], doc, indent=2)
    store.write_text(files["conflicts"], result.conflicts.to_csv(index=False))
    png, shown = _conflicts_png(result.conflicts, 24)
    store.write_bytes(files["plate"], png)
    images = [(files["plate"], f"Duplicates with two categories ({shown} pairs shown)")]
    if result.consistency is not None:
        sub = write_consistency_report(result.consistency, store.sub("consistency"))
        files["consistency"] = f"consistency/{sub['index']}"
        images += [
            (f"consistency/{sub['confusion']}", "Machine labels: confusion per human category"),
            (f"consistency/{sub['worst_examples']}", "Most confident machine disagreements"),
        ]
    counts = {
        "source": result.source,
        "images": result.n_images,
        "unreadable": result.n_unreadable,
        "exact duplicate groups": result.n_exact_groups,
        "near duplicate pairs": result.n_near_pairs,
        "conflicts (exact)": doc["n_conflicts_exact"],
        "conflicts (near)": doc["n_conflicts_near"],
    }
    if result.consistency is not None:
        counts["machine agreement"] = result.consistency.overall_agreement
    store.write_text(
        files["index"],
        index_html(
            title="Quality control of the human sorting",
            fields=None,
            counts=counts,
            skill=_tables_html(result),
            images=images,
        ),
    )
    logger.info("qc report: %d file(s) written to %s", len(files), store.url)
    return files


def _tables_html(result: QCResult) -> str:
    first = "".join(f"<li>{escape(item)}</li>\n" for item in result.look_first())
    per = result.per_category
    header = ["category", "images", "exact copies", "near copies", "in a conflict"]
    rows = [
        [r.category, *(format_number(int(v)) for v in r[1:])] for r in per.itertuples(index=False)
    ]
    shown = result.conflicts.head(200)
    conf_rows = [[str(v) for v in r] for r in shown.itertuples(index=False)]
    return "".join(
        [
            "<h2>Look at first</h2>\n<ol>\n",
            first,
            "</ol>\n<h2>Per category</h2>\n",
            html_table(header, rows, "per-category"),
            f"<h2>Conflicts ({len(result.conflicts)}; first 200, all in conflicts.csv)</h2>\n",
            html_table(list(_PAIR_COLUMNS), conf_rows, "conflicts"),
        ]
    )
