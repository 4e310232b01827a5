"""How far machine labels agree with validated human sorting, and its report.

:func:`consistency` compares a labels table (:mod:`pipeline.images.labels`) with the
categories of the validated objects (status ``"V"``): per human category the count, the
agreement and disagreement rates and the category it is most often taken for; the overall
agreement; the confusion table (human x machine); and the worst examples, validated
objects the labels contradict with the highest probability. Labels ``unassigned`` (the
classifier abstained) count as unlabelled. Only validated objects are
compared: predicted (``"P"``) categories are themselves machine output, dubious ones
(``"D"``) are not a reference.

:func:`write_consistency_report` writes ``consistency.json``, ``confusion.png`` (shares
per human category), ``worst_examples.png`` (a plate of the vignettes, read through
fsspec; unreadable ones are skipped and counted) and ``index.html``, with the helpers and
page layout of :mod:`pipeline.report.write`.

Developer note: one compute for dask inputs: the join on ``object_id`` (as
:func:`pipeline.images.labels.apply_labels`), a tree reduction of the (human, machine)
counts into one partition and the top examples per category of each partition; only
those small tables come back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.abstention import UNASSIGNED
from pipeline.images.labels import _LABEL, _PROB, _check_objects, _joined, _label_columns, _open
from pipeline.io import read_bytes
from pipeline.report import escape, figure_png, format_number, html_table, index_html
from pipeline.store import OutputStore, as_store

__all__ = ["ConsistencyResult", "consistency", "write_consistency_report"]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- consistency


@dataclass
class ConsistencyResult:
    """Machine labels against validated human categories (small pandas tables).

    Attributes
    ----------
    per_category : pandas.DataFrame
        One row per human category: ``category, n_validated, n_labelled, n_unlabelled,
        n_agree, agreement, disagreement, most_confused_with, n_most_confused``
        (rates over the labelled objects; NaN when none is labelled).
    confusion : pandas.DataFrame
        Counts, human categories (index) x machine labels (columns), labelled objects.
    overall_agreement : float
        Share of the labelled validated objects whose label is their category.
    worst_examples : pandas.DataFrame
        ``object_id, image, human, machine, prob``: validated objects whose label
        differs, the highest ``prob`` first, at most ``n_examples`` per human category.
    model_ids : list of str
        The labels' ``model_id`` values (empty when the table has none).
    source : str
        Where the labels came from.
    """

    per_category: pd.DataFrame
    confusion: pd.DataFrame
    overall_agreement: float
    worst_examples: pd.DataFrame
    model_ids: list[str] = field(default_factory=list)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready view (what ``consistency.json`` holds)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float | np.floating):
                return None if math.isnan(value) else float(value)
            if isinstance(value, np.integer):
                return int(value)
            return value

        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: clean(v) for k, v in r.items()} for r in frame.to_dict("records")]

        per = self.per_category
        return {
            "source": self.source,
            "model_ids": list(self.model_ids),
            "overall_agreement": clean(self.overall_agreement),
            "n_validated": int(per["n_validated"].sum()),
            "n_labelled": int(per["n_labelled"].sum()),
            "n_unlabelled": int(per["n_unlabelled"].sum()),
            "per_category": records(per),
            "confusion": {
                str(h): {str(m): int(n) for m, n in row.items()}
                for h, row in self.confusion.iterrows()
            },
            "worst_examples": records(self.worst_examples),
        }


_EXAMPLE_COLUMNS = ("object_id", "image", "human", "machine", "prob")


def _top_examples(part: pd.DataFrame, n: int) -> pd.DataFrame:
    """At most ``n`` rows per human category, highest prob first (ties: object_id)."""
    ordered = part.sort_values(
        ["human", "prob", "object_id"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    )
    return ordered.groupby("human", sort=False).head(n).reset_index(drop=True)


def _disagreements(part: pd.DataFrame) -> pd.DataFrame:
    has = part[_LABEL].notna() & (part[_LABEL].astype(str) != "")
    sel = part[has & (part[_LABEL].astype(str) != part["category"].astype(str))]
    return pd.DataFrame(
        {
            "object_id": sel["object_id"].astype(str),
            "image": sel["image"].astype(str) if "image" in sel else "",
            "human": sel["category"].astype(str),
            "machine": sel[_LABEL].astype(str),
            "prob": sel[_PROB].astype("float64") if _PROB in sel else np.nan,
        }
    ).reset_index(drop=True)


def _part_examples(part: pd.DataFrame, n: int) -> pd.DataFrame:
    return _top_examples(_disagreements(part), n)


def _per_category(confusion: pd.DataFrame, unlabelled: pd.Series) -> pd.DataFrame:
    rows = []
    for human in sorted(set(confusion.index) | set(unlabelled.index)):
        counts = confusion.loc[human] if human in confusion.index else pd.Series(dtype="int64")
        n_lab = int(counts.sum())
        n_agree = int(counts.get(human, 0))
        others = counts.drop(human, errors="ignore")
        others = others[others > 0].sort_values(ascending=False, kind="stable")
        rows.append(
            {
                "category": human,
                "n_validated": n_lab + int(unlabelled.get(human, 0)),
                "n_labelled": n_lab,
                "n_unlabelled": int(unlabelled.get(human, 0)),
                "n_agree": n_agree,
                "agreement": n_agree / n_lab if n_lab else np.nan,
                "disagreement": (n_lab - n_agree) / n_lab if n_lab else np.nan,
                "most_confused_with": str(others.index[0]) if len(others) else "",
                "n_most_confused": int(others.iloc[0]) if len(others) else 0,
            }
        )
    return pd.DataFrame(rows)


def consistency(
    objects: pd.DataFrame | dd.DataFrame,
    labels: str | pd.DataFrame | dd.DataFrame,
    *,
    n_examples: int = 8,
) -> ConsistencyResult:
    """Compare machine labels with the validated human categories.

    Only validated objects (status ``"V"``) are compared. One compute: the join on
    ``object_id``, a tree reduction of the (human, machine) counts into one partition and
    the top ``n_examples`` disagreements per category of each partition.

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table with ``object_id, category, status`` and optionally ``image``.
    labels : str, pandas.DataFrame or dask.dataframe.DataFrame
        Labels table (a URL is opened with :func:`read_labels`): ``object_id, label``,
        optional ``prob`` and ``model_id``.
    n_examples : int
        Worst examples kept per human category.

    Returns
    -------
    ConsistencyResult

    Raises
    ------
    ConfigError
        When the objects table lacks a column or there is no validated object.
    InputFormatError
        When the labels table lacks ``object_id`` or ``label``.

    See Also
    --------
    write_consistency_report : the JSON, figures and HTML page of the result.
    pipeline.images.labels.apply_labels : the labels into the object targets.

    Examples
    --------
    >>> objects = pd.DataFrame({"object_id": list("abcd"), "status": ["V", "V", "V", "P"],
    ...                         "category": ["fiber", "fiber", "Copepoda", "fiber"]})
    >>> labels = pd.DataFrame({"object_id": list("abcd"), "prob": [0.9, 0.8, 0.7, 0.6],
    ...                        "label": ["fiber", "Copepoda", "Copepoda", "Copepoda"]})
    >>> res = consistency(objects, labels)
    >>> res.overall_agreement, res.per_category["disagreement"].tolist()
    (0.6666666666666666, [0.0, 0.5])
    >>> res.worst_examples[["object_id", "human", "machine"]].values.tolist()
    [['b', 'fiber', 'Copepoda']]
    """
    _check_objects(objects, "consistency")
    labels, where = _open(labels)
    cols = _label_columns(labels, 0.0, where)
    keep = [c for c in ("object_id", "category", "status", "image") if c in objects.columns]
    validated = objects[objects["status"] == "V"][keep]
    joined = _joined(validated, labels, cols)
    # an abstention (unassigned) is no label: it neither agrees nor disagrees
    joined = joined.assign(**{_LABEL: joined[_LABEL].fillna("").replace(UNASSIGNED, "")})
    pair = joined[["category", _LABEL]]
    ex_meta = pd.DataFrame(
        {c: pd.Series([], dtype="float64" if c == "prob" else str) for c in _EXAMPLE_COLUMNS}
    )
    has_model = "model_id" in labels.columns
    if isinstance(joined, dd.DataFrame):
        pairs = pair.groupby(["category", _LABEL]).size(split_out=1)
        examples = joined.map_partitions(_part_examples, n_examples, meta=ex_meta)
        models = labels["model_id"].drop_duplicates(split_out=1) if has_model else None
        pairs, examples, models = dask.compute(pairs, examples, models)
    else:
        pairs = pair.groupby(["category", _LABEL]).size()
        examples = _disagreements(joined)
        models = labels["model_id"].drop_duplicates() if has_model else None
    if pairs.sum() == 0:
        raise ConfigError(
            "consistency: the objects table has no validated object (status 'V'); there "
            "is nothing to compare the labels with."
        )
    table = pairs.rename("n").reset_index()
    table["n"] = table["n"].astype("int64")
    labelled = table[table[_LABEL] != ""]
    confusion = labelled.pivot_table(
        index="category", columns=_LABEL, values="n", aggfunc="sum", fill_value=0
    ).astype("int64")
    confusion.index = pd.Index(confusion.index.astype(str), name="human")
    confusion.columns = pd.Index(confusion.columns.astype(str), name="machine")
    unlabelled = table[table[_LABEL] == ""].set_index("category")["n"]
    per = _per_category(confusion, unlabelled)
    n_lab = int(per["n_labelled"].sum())
    overall = float(per["n_agree"].sum() / n_lab) if n_lab else float("nan")
    worst = _top_examples(examples, n_examples).astype(ex_meta.dtypes.to_dict())
    model_ids = sorted(str(m) for m in models.dropna()) if models is not None else []
    logger.info(
        "consistency: %d validated object(s), %d labelled, agreement %.3f, %d example(s)",
        int(per["n_validated"].sum()),
        n_lab,
        overall,
        len(worst),
    )
    return ConsistencyResult(
        per_category=per,
        confusion=confusion,
        overall_agreement=overall,
        worst_examples=worst,
        model_ids=model_ids,
        source=where,
    )


# --------------------------------------------------------------------------- report


def _confusion_png(confusion: pd.DataFrame) -> bytes:
    labels = sorted(set(map(str, confusion.index)) | set(map(str, confusion.columns)))
    rows = [h for h in labels if h in confusion.index]
    cols = [m for m in labels if m in confusion.columns]
    counts = confusion.reindex(index=rows, columns=cols, fill_value=0).to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = counts / counts.sum(axis=1, keepdims=True)
    size = 2.5 + 0.55 * max(len(rows), len(cols), 1)
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("machine label")
    ax.set_ylabel("validated human category")
    ax.set_title("Confusion, normalised per human category")
    if len(rows) * len(cols) <= 400:
        for i in range(len(rows)):
            for j in range(len(cols)):
                if counts[i, j] > 0:
                    colour = "white" if share[i, j] > 0.6 else "black"
                    ax.text(
                        j,
                        i,
                        f"{share[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color=colour,
                    )
    fig.colorbar(image, ax=ax, label="share of the human category")
    return figure_png(fig)


def _vignette(url: str) -> np.ndarray | None:
    try:
        with Image.open(BytesIO(read_bytes(url))) as img:
            return np.asarray(img.convert("L"))
    except (InputFormatError, UnidentifiedImageError, OSError, ValueError) as err:
        logger.debug("consistency report: vignette %s skipped (%s)", url, err)
        return None


def _examples_png(worst: pd.DataFrame, per_category: int) -> tuple[bytes, int, int]:
    """Plate of the vignettes, one row per human category; (png, shown, skipped)."""
    cells: list[list[tuple[np.ndarray, str]]] = []
    skipped = 0
    for _, group in worst.groupby("human", sort=True):
        row = []
        for rec in group.head(per_category).itertuples():
            pixels = _vignette(rec.image) if rec.image else None
            if pixels is None:
                skipped += 1
                continue
            prob = "" if pd.isna(rec.prob) else f"\np={rec.prob:.2f}"
            row.append((pixels, f"{rec.human}\n→ {rec.machine}{prob}"))
        if row:
            cells.append(row)
    n_cols = max((len(r) for r in cells), default=1)
    fig = Figure(figsize=(1.7 * n_cols + 0.5, 2.1 * max(len(cells), 1)))
    if not cells:
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, "no disagreement with a readable vignette", ha="center")
    for i, row in enumerate(cells):
        for j, (pixels, caption) in enumerate(row):
            ax = fig.add_subplot(len(cells), n_cols, i * n_cols + j + 1)
            ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_title(caption, fontsize=7)
            ax.axis("off")
    fig.suptitle("Worst disagreements: human → machine, highest probability first")
    shown = sum(len(r) for r in cells)
    return figure_png(fig), shown, skipped


def write_consistency_report(
    result: ConsistencyResult,
    out_url: str | OutputStore,
    *,
    examples_per_category: int = 8,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Write ``consistency.json``, ``confusion.png``, ``worst_examples.png`` and ``index.html``.

    Parameters
    ----------
    result : ConsistencyResult
        Output of :func:`consistency`.
    out_url : str or OutputStore
        Folder (local path or fsspec URL) or its store, created when missing; files there
        with the same names are replaced, each written whole.
    examples_per_category : int
        Vignettes shown per human category on the plate (unreadable ones are skipped,
        counted and logged).
    storage_options : mapping, optional
        Passed to the fsspec filesystem when ``out_url`` is a URL.

    Returns
    -------
    dict of str to str
        ``{"json", "confusion", "worst_examples", "index"}`` → file name in the folder.

    See Also
    --------
    consistency : computes the result.
    pipeline.report.write.write_report : the run's report, whose page layout this reuses.
    """
    store = as_store(out_url, storage_options=storage_options)
    store.makedirs()
    files = {
        "json": "consistency.json",
        "confusion": "confusion.png",
        "worst_examples": "worst_examples.png",
        "index": "index.html",
    }
    plate, shown, skipped = _examples_png(result.worst_examples, examples_per_category)
    if skipped:
        logger.info("consistency report: %d vignette(s) unreadable, left off the plate", skipped)
    doc = result.to_dict()
    doc["plate"] = {"shown": shown, "unreadable": skipped}
    store.write_json(files["json"], doc, indent=2)
    store.write_bytes(files["confusion"], _confusion_png(result.confusion))
    store.write_bytes(files["worst_examples"], plate)
    page = index_html(
        title="Machine labels against validated human categories",
        fields=None,
        counts={
            "labels": result.source,
            "models": ", ".join(result.model_ids) or "n/a",
            "validated objects": doc["n_validated"],
            "labelled": doc["n_labelled"],
            "unlabelled": doc["n_unlabelled"],
            "overall agreement": result.overall_agreement,
            "vignettes shown / unreadable": f"{shown} / {skipped}",
        },
        skill=_tables_html(result),
        images=[
            (files["confusion"], "Confusion, normalised per human category"),
            (files["worst_examples"], "Worst disagreements (vignettes)"),
        ],
    )
    store.write_text(files["index"], page)
    logger.info("consistency report: %d file(s) written to %s", len(files), store.url)
    return files


_WORST_NOTE = "Validated objects the labels contradict, highest probability first."


def _tables_html(result: ConsistencyResult) -> str:
    per = result.per_category
    header = [
        "human category",
        "validated",
        "labelled",
        "agreement",
        "disagreement",
        "most confused with",
        "n",
    ]
    rows = [
        [
            r.category,
            format_number(r.n_validated),
            format_number(r.n_labelled),
            format_number(r.agreement),
            format_number(r.disagreement),
            r.most_confused_with,
            format_number(r.n_most_confused),
        ]
        for r in per.itertuples()
    ]
    conf = result.confusion
    conf_rows = [[str(h), *(format_number(int(v)) for v in row)] for h, row in conf.iterrows()]
    worst = result.worst_examples
    ex_rows = [
        [r.human, r.machine, format_number(r.prob), r.object_id, r.image]
        for r in worst.itertuples()
    ]
    return "".join(
        [
            "<h2>Per category</h2>\n",
            html_table(header, rows, "per-category"),
            "<h2>Confusion (counts)</h2>\n",
            html_table(["human \\ machine", *map(str, conf.columns)], conf_rows, "confusion"),
            "<h2>Worst examples</h2>\n",
            f'<p class="note">{escape(_WORST_NOTE)}</p>\n',
            html_table(["human", "machine", "prob", "object_id", "image"], ex_rows, "examples"),
        ]
    )
