"""The quality-control report: what :func:`~pipeline.images.qc.quality_control` found, as files.

:func:`write_qc_report` writes ``qc.json``, ``conflicts.csv``, ``conflicts.png`` (a plate
of the duplicate pairs that carry two categories), ``index.html`` with a "look at first"
list for the curator, and with machine labels the consistency report's figures
(``confusion.png``, ``worst_examples.png``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from pipeline.images.consistency import write_consistency_report
from pipeline.images.duplicates import PAIR_COLUMNS
from pipeline.images.qc import QCResult
from pipeline.report import escape, figure_png, format_number, html_table, index_html
from pipeline.store import OutputStore, as_store

__all__ = ["write_qc_report"]

logger = logging.getLogger(__name__)


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
            html_table(list(PAIR_COLUMNS), conf_rows, "conflicts"),
        ]
    )
