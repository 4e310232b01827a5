"""Machine labels into the objects table, for the object targets.

A **labels table** gives each imaged object a label: a parquet file or a folder of parquet
part files with one row per object, columns ``object_id`` (str) and ``label`` (str),
optionally ``prob`` (top-1 probability; absent for the morphological types) and, from the
CNN classifier, ``label_2, prob_2, ..., model_id``. Its two producers are
``oceanfields images classify`` (plankton groups / particle types) and
:mod:`pipeline.images.morphology` (``type_1 .. type_n``).

- :func:`read_labels` opens such a table lazily and checks its columns;
  :func:`labels_fingerprint` tells cheaply whether it changed (the run's step key).
- :func:`apply_labels` replaces each object's ``category`` by its label, so the object
  targets (:func:`pipeline.targets.objects.build_object_targets`) count machine labels:
  ``use="machine"`` relabels every object (status becomes ``"P"``, predicted);
  ``use="human_first"`` keeps the category of validated objects (status ``"V"``) and
  relabels the others. An object without a label, or whose ``prob`` is below
  ``min_prob``, gets category ``""`` and status ``""`` (unclassified), which the object
  targets never count. A label ``unassigned`` (the classifier abstained below its
  class's threshold, :mod:`pipeline.images.abstention`) becomes the category
  ``unassigned``, which the object targets count as a category of its own. The column
  ``label_source`` says what happened to each object (:data:`LABEL_SOURCES`).
- :func:`pipeline.images.consistency.consistency` compares the labels with the
  validated human categories (same join, same labels table).

Choices made and why:

- **hierarchy** (the taxonomic path of the category) is kept where the category is
  unchanged and set to ``""`` where a label changed it: the labels table carries no
  hierarchy, and a stale path would contradict the category.
- **Row order**: pandas inputs keep the objects' row order (new ``RangeIndex``); dask
  inputs are partitioned by the join (a hash shuffle on ``object_id`` with the tasks
  method, or a broadcast of a one-partition labels table). Object targets sum across
  partitions, so neither matters to them.
- **Repeated object ids** in the labels table would count an object twice; they are an
  :class:`~pipeline.errors.InputFormatError` (checked per partition after the join, where
  repeats of one id meet).

Developer note: everything is lazy for dask inputs; the graph grows with the partitions
of both tables, not with their rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any, Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.abstention import UNASSIGNED

__all__ = [
    "LABEL_SOURCES",
    "apply_labels",
    "labels_fingerprint",
    "read_labels",
]

logger = logging.getLogger(__name__)

#: Values of the ``label_source`` column :func:`apply_labels` adds: the category kept
#: (validated, ``human_first``), taken from the labels, the label ``unassigned`` (the
#: classifier abstained: category ``unassigned``, counted as such by the object
#: targets), or emptied for want of a label or of probability.
LABEL_SOURCES: tuple[str, ...] = (
    "human",
    "machine",
    "unassigned",
    "unlabelled",
    "below_min_prob",
)
_USES = ("machine", "human_first")
_REQUIRED = ("object_id", "label")
_OBJECTS = ("object_id", "category", "status")
_LABEL, _PROB = "_label", "_prob"  # private names during the join


# --------------------------------------------------------------------------- reading


def read_labels(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dd.DataFrame:
    """Open a labels table lazily and check its columns.

    Parameters
    ----------
    url : str
        A parquet file or a folder of parquet part files, local path or fsspec URL.
    storage_options : mapping, optional
        Passed to the fsspec filesystem.

    Returns
    -------
    dask.dataframe.DataFrame
        The table; only its schema has been read.

    Raises
    ------
    InputFormatError
        When the URL cannot be read as parquet, or lacks ``object_id`` or ``label``
        (names the URL and the columns found).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.parquet")
    >>> pd.DataFrame({"object_id": ["a"], "label": ["Copepoda"]}).to_parquet(path)
    >>> read_labels(path).compute().to_dict("records")
    [{'object_id': 'a', 'label': 'Copepoda'}]
    """
    try:
        # listed afresh: the classify workers (other processes) may have just written it
        fs, path = url_to_fs(url, **dict(storage_options or {}))
        fs.invalidate_cache(path)
        table = dd.read_parquet(url, storage_options=dict(storage_options or {}))
    except Exception as err:  # missing path, not parquet: one clear error
        raise InputFormatError(
            f"{url}: cannot read the labels table as parquet ({type(err).__name__}: {err}). "
            "Give the labels/ folder that 'oceanfields images classify' writes, or a parquet "
            "file with columns object_id, label[, prob]."
        ) from err
    _check_labels(table, url)
    return table


def _require(
    table: pd.DataFrame | dd.DataFrame,
    columns: tuple[str, ...],
    *,
    where: str,
    what: str,
    fix: str,
    error: type[Exception],
) -> None:
    """Raise ``error`` naming ``where``, the missing and the found columns, and the fix."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = list(map(str, table.columns))
        raise error(f"{where}: the {what} lacks {missing}; found columns {found!r}. {fix}")


def _check_labels(labels: pd.DataFrame | dd.DataFrame, where: str) -> None:
    _require(
        labels,
        _REQUIRED,
        where=where,
        what="labels table",
        error=InputFormatError,
        fix="A labels table has one row per object: object_id, label and optionally "
        "prob (top-1 probability).",
    )


def labels_fingerprint(url: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Short hash of a labels table's file names, sizes and modification stamps.

    One listing (no file is read), so it is cheap on object stores; it changes when a
    part file is added, removed, rewritten or resized.

    Parameters
    ----------
    url : str
        The labels table (file or folder), local path or fsspec URL.
    storage_options : mapping, optional
        Passed to the fsspec filesystem.

    Returns
    -------
    str
        16 hex digits.

    Raises
    ------
    InputFormatError
        When nothing exists at the URL.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.parquet")
    >>> pd.DataFrame({"object_id": ["a"], "label": ["x"]}).to_parquet(path)
    >>> len(labels_fingerprint(path)), labels_fingerprint(path) == labels_fingerprint(path)
    (16, True)
    """
    fs, root = url_to_fs(url, **dict(storage_options or {}))
    root = root.rstrip("/")
    if not fs.exists(root):
        raise InputFormatError(
            f"{url}: the labels table does not exist; check inputs.labels (a relative path "
            "is taken from the working directory)."
        )
    infos = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    stamp_keys = ("ETag", "etag", "mtime", "LastModified", "last_modified", "md5", "created")
    rows = []
    for name, info in sorted(infos.items()):
        stamp = next((info[k] for k in stamp_keys if info.get(k) is not None), "")
        rows.append([name[len(root) :], info.get("size"), str(stamp)])
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- apply


def _open(labels: str | pd.DataFrame | dd.DataFrame) -> tuple[pd.DataFrame | dd.DataFrame, str]:
    """Return the labels table and the name errors give it (its URL when given one)."""
    if isinstance(labels, str):
        return read_labels(labels), labels
    where = str(getattr(labels, "attrs", {}).get("source", "<labels table>"))
    _check_labels(labels, where)
    return labels, where


def _label_columns(labels: pd.DataFrame | dd.DataFrame, min_prob: float, where: str) -> list[str]:
    has_prob = "prob" in labels.columns
    if min_prob > 0 and not has_prob:
        raise ConfigError(
            f"min_prob={min_prob}: the labels table {where} has no 'prob' column (the "
            "morphological types have none); set object_targets.min_prob to 0."
        )
    return ["object_id", "label", *(["prob"] if has_prob else [])]


def _relabel_part(part: pd.DataFrame, use: str, min_prob: float, where: str) -> pd.DataFrame:
    """Replace category/status/hierarchy of one joined partition; drop the join columns."""
    repeated = part["object_id"].duplicated()
    if repeated.any():
        raise InputFormatError(
            f"{where}: object_id {part['object_id'][repeated].iloc[0]!r} has more than one "
            "row after joining the labels; the labels table must give each object one "
            "label (drop the repeated rows, e.g. a partition written twice)."
        )
    label = part[_LABEL]
    has = label.notna().to_numpy() & (label.fillna("").astype(str) != "").to_numpy()
    prob = part[_PROB].to_numpy(dtype="float64") if _PROB in part.columns else None
    if prob is None:
        low = np.zeros(len(part), dtype=bool)
    else:  # an unknown (NaN) probability does not pass a positive threshold
        low = has & ((prob < min_prob) | (np.isnan(prob) & (min_prob > 0)))
    human = (part["status"] == "V").to_numpy() if use == "human_first" else np.zeros_like(has)
    unassigned = has & ~low & (label.fillna("").astype(str) == UNASSIGNED).to_numpy()
    source = np.select(
        [human, unassigned, has & ~low, low],
        ["human", "unassigned", "machine", "below_min_prob"],
        "unlabelled",
    )
    machine = (source == "machine") | (source == "unassigned")
    out = part.drop(columns=[c for c in (_LABEL, _PROB) if c in part.columns])
    old = out["category"].astype(str).to_numpy()
    new = np.where(machine, label.fillna("").astype(str).to_numpy(), np.where(human, old, ""))
    out["category"] = pd.Series(new, index=out.index, dtype=str)
    status = np.where(machine, "P", np.where(human, out["status"].astype(str).to_numpy(), ""))
    out["status"] = pd.Series(status, index=out.index, dtype=str)
    if "hierarchy" in out.columns:
        keep = new == old
        hierarchy = np.where(keep, out["hierarchy"].fillna("").astype(str).to_numpy(), "")
        out["hierarchy"] = pd.Series(hierarchy, index=out.index, dtype=str)
    out["label_source"] = pd.Series(source, index=out.index, dtype=str)
    return out


def _check_objects(objects: pd.DataFrame | dd.DataFrame, who: str) -> None:
    _require(
        objects,
        _OBJECTS,
        where=who,
        what="objects table",
        error=ConfigError,
        fix="Build it with pipeline.sources.ecotaxa.read_ecotaxa.",
    )


def _joined(
    objects: pd.DataFrame | dd.DataFrame, labels: pd.DataFrame | dd.DataFrame, cols: list[str]
) -> pd.DataFrame | dd.DataFrame:
    """Left join of the labels' ``cols`` (renamed private) onto the objects by object_id."""
    lab = labels[cols].rename(columns={"label": _LABEL, "prob": _PROB})
    lab = lab.astype({"object_id": objects["object_id"].dtype})
    lazy = isinstance(objects, dd.DataFrame) or isinstance(labels, dd.DataFrame)
    if not lazy:
        return objects.merge(lab, on="object_id", how="left")
    objs = objects if isinstance(objects, dd.DataFrame) else dd.from_pandas(objects, 1)
    lab = lab if isinstance(lab, dd.DataFrame) else dd.from_pandas(lab, 1)
    # tasks shuffle (not p2p): no scheduler warnings, works on any scheduler
    return objs.merge(lab, on="object_id", how="left", shuffle_method="tasks")


def apply_labels(
    objects: pd.DataFrame | dd.DataFrame,
    labels: str | pd.DataFrame | dd.DataFrame,
    *,
    use: Literal["machine", "human_first"] = "machine",
    min_prob: float = 0.0,
) -> pd.DataFrame | dd.DataFrame:
    """Replace the objects' categories by their labels (lazy for dask inputs).

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table (:func:`pipeline.sources.ecotaxa.read_ecotaxa`): ``object_id``,
        ``category``, ``status`` (V/P/D) and optionally ``hierarchy``.
    labels : str, pandas.DataFrame or dask.dataframe.DataFrame
        Labels table: ``object_id``, ``label``, optional ``prob``; a URL is opened
        with :func:`read_labels` and named in errors.
    use : {"machine", "human_first"}
        ``"machine"``: every object takes its label, status ``"P"``. ``"human_first"``:
        validated objects (``"V"``) keep their category and status, the others take
        their label.
    min_prob : float
        Labels whose ``prob`` is below this are not used (0 to 1; needs ``prob``).

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        The objects with ``category``, ``status`` and ``hierarchy`` replaced (``""``
        where no usable label) and a ``label_source`` column (:data:`LABEL_SOURCES`).
        Same type as ``objects`` (dask when either input is dask).

    Raises
    ------
    ConfigError
        Unknown ``use``, ``min_prob`` outside [0, 1] or > 0 without ``prob``, or
        an objects table without ``object_id``/``category``/``status``.
    InputFormatError
        The labels table lacks ``object_id``/``label``, or repeats an object id (when
        computed).

    See Also
    --------
    pipeline.images.consistency.consistency : how often the labels agree with validated
        human categories.

    Examples
    --------
    >>> objects = pd.DataFrame({"object_id": ["a", "b", "c"], "status": ["V", "P", "D"],
    ...                         "category": ["Copepoda", "fiber", "fiber"]})
    >>> labels = pd.DataFrame({"object_id": ["a", "b"], "label": ["Rhizaria", "Copepoda"],
    ...                        "prob": [0.9, 0.4]})
    >>> apply_labels(objects, labels)[["category", "status", "label_source"]].values.tolist()
    [['Rhizaria', 'P', 'machine'], ['Copepoda', 'P', 'machine'], ['', '', 'unlabelled']]
    >>> out = apply_labels(objects, labels, use="human_first", min_prob=0.5)
    >>> out[["category", "status", "label_source"]].values.tolist()
    [['Copepoda', 'V', 'human'], ['', '', 'below_min_prob'], ['', '', 'unlabelled']]
    """
    if use not in _USES:
        raise ConfigError(f"apply_labels: use={use!r}; valid: {', '.join(map(repr, _USES))}.")
    if not 0.0 <= float(min_prob) <= 1.0:
        raise ConfigError(f"apply_labels: min_prob={min_prob!r} must be between 0 and 1.")
    _check_objects(objects, "apply_labels")
    labels, where = _open(labels)
    cols = _label_columns(labels, float(min_prob), where)
    joined = _joined(objects, labels, cols)
    args = (use, float(min_prob), where)
    if isinstance(joined, dd.DataFrame):
        meta = _relabel_part(joined._meta, *args)
        out = joined.map_partitions(_relabel_part, *args, meta=meta)
        logger.info(
            "labels: %s from %s (min_prob %g), %d x %d partition(s); counts come with the "
            "compute (label_source)",
            use,
            where,
            min_prob,
            objects.npartitions if isinstance(objects, dd.DataFrame) else 1,
            labels.npartitions if isinstance(labels, dd.DataFrame) else 1,
        )
        return out
    out = _relabel_part(joined, *args).reset_index(drop=True)
    counts = out["label_source"].value_counts().to_dict()
    logger.info(
        "labels: %s from %s (min_prob %g): %s",
        use,
        where,
        min_prob,
        {k: int(counts.get(k, 0)) for k in LABEL_SOURCES},
    )
    return out
