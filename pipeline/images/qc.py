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

Nothing is deleted or changed.
:func:`~pipeline.images.qc_report.write_qc_report` writes ``qc.json``,
``conflicts.csv``, ``conflicts.png`` (a plate of the conflicting pairs), ``index.html``
with a "look at first" list for the curator, and with machine labels the consistency
report's figures (``confusion.png``, ``worst_examples.png``).

The hashes and duplicate pairs are found in :mod:`pipeline.images.duplicates`; the report
is written by :mod:`pipeline.images.qc_report`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.config import check_count, check_range
from pipeline.errors import ConfigError
from pipeline.images.consistency import ConsistencyResult, consistency
from pipeline.images.dataset import image_table, read_objects
from pipeline.images.duplicates import (
    copies_per_category,
    exact_groups,
    exact_pairs,
    image_hashes,
    near_pairs,
    pairs_frame,
)
from pipeline.images.labels import _require

__all__ = ["QCConfig", "QCResult", "quality_control"]

logger = logging.getLogger(__name__)


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
        Images sharing one hash band beyond this are not compared
        (:mod:`pipeline.images.duplicates`).
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
    pipeline.images.qc_report.write_qc_report : the files of the result.
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
    groups = exact_groups(hashes)
    exact = exact_pairs(groups, hashes)
    near_idx, skipped = near_pairs(
        hashes,
        near_bits=cfg.near_bits,
        near_size_px=cfg.near_size_px,
        near_grey=cfg.near_grey,
        max_bucket=cfg.max_bucket,
    )
    cats = hashes["category"].to_numpy()
    if len(near_idx):
        cross = cats[near_idx["i"].to_numpy()] != cats[near_idx["j"].to_numpy()]
        crossing = near_idx[cross]
    else:
        crossing = near_idx
    near = pairs_frame(
        hashes, crossing["i"].to_numpy(), crossing["j"].to_numpy(), "near", crossing["distance"]
    )
    conflicts = pd.concat([exact, near], ignore_index=True)
    conflicts = conflicts.sort_values(
        ["kind", "distance", "category_a", "category_b", "object_id_a"], kind="stable"
    ).reset_index(drop=True)
    per = hashes.groupby("category").size().rename("n_images").to_frame()
    exact_copies = (groups.groupby(["sha256", "category"]).size() - 1).groupby("category").sum()
    per["n_exact_copies"] = exact_copies.reindex(per.index).fillna(0).astype("int64")
    near_copies = copies_per_category(hashes, groups, near_idx)
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
