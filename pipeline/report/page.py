"""The page kit of oceanfields' HTML reports: numbers, tables, figures as PNG, one page.

Shared by the run's report (:mod:`pipeline.report.write`) and the consistency report of
the image classifier (:mod:`pipeline.images.consistency`). Numbers are printed with 4
significant digits (:func:`format_number`), the same in the HTML and in the figures.
Figures are rendered on an explicit Agg canvas (:func:`figure_png`), never through
``pyplot``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from io import BytesIO
from typing import Any
from urllib.parse import quote

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.products.cf import public_attributes

__all__ = ["escape", "figure_png", "format_number", "html_table", "index_html", "page_head"]

_DPI = 100


_MISSING = "n/a"


def format_number(value: Any) -> str:
    """Format a metric as the report prints it: 4 significant digits, "n/a" when missing.

    Parameters
    ----------
    value : number or None
        The value; integers keep all digits (with thousands separators).

    Returns
    -------
    str
        The printed text.

    Examples
    --------
    >>> format_number(0.123456), format_number(12345), format_number(None)
    ('0.1235', '12,345', 'n/a')
    >>> format_number(float("nan")), format_number(-2.5e-7)
    ('n/a', '-2.5e-07')
    """
    if value is None or isinstance(value, bool):
        return _MISSING if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return _MISSING if math.isnan(x) else f"{x:.4g}"


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:75em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}"
    "figure{margin:1em 0}img{max-width:100%}.note{color:#555}"
    "table.months img{width:22em;image-rendering:pixelated}"
)


def page_head(title: str) -> str:
    """Return the start of a report page, up to ``<body>``: charset, title, style.

    The page declares an empty icon, so a browser does not ask the server for
    ``/favicon.ico`` (a 404 and a console error wherever the report is published).

    Examples
    --------
    >>> page_head("a < b").splitlines()[4]
    '<title>a &lt; b</title>'
    """
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{escape(title)}</title>\n<link rel="icon" href="data:,">\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
    )


def escape(x: Any) -> str:
    """Escape any value's text for HTML (quotes included).

    Examples
    --------
    >>> escape('<a href="x">')
    '&lt;a href=&quot;x&quot;&gt;'
    """
    return html.escape(str(x), quote=True)


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    """Build an HTML table, every cell escaped.

    Examples
    --------
    >>> print(html_table(["a"], [["<1>"]], "t"), end="")
    <table class="t">
    <tr><th>a</th></tr>
    <tr><td>&lt;1&gt;</td></tr>
    </table>
    """
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>\n" for r in rows)
    return f'<table class="{cls}">\n<tr>{head}</tr>\n{body}</table>\n'


def figure_png(fig: Figure, *, crop: bool | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes on an explicit Agg canvas (no ``pyplot``).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    crop : bool, optional
        Crop to the contents (``bbox_inches="tight"``, which draws the figure twice).
        Default: only figures without a layout engine; a figure laid out by an engine
        (``layout="constrained"``) or by fixed margins (pass ``False``) is drawn once.

    Returns
    -------
    bytes
        The PNG.
    """
    FigureCanvasAgg(fig)  # explicit Agg canvas: no pyplot, no global backend
    buf = BytesIO()
    if crop is None:
        crop = fig.get_layout_engine() is None
    bbox = "tight" if crop else None
    fig.savefig(buf, format="png", dpi=_DPI, facecolor="white", bbox_inches=bbox)
    return buf.getvalue()


def _flatten(counts: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in counts.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flatten(value, f"{name} / ")
        else:
            out.append((name, value))
    return out


def index_html(
    *,
    title: str,
    fields: xr.Dataset | None,
    counts: Mapping[str, Any] | None,
    skill: str,
    images: Sequence[tuple[str, str]],
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """Build a whole report page: title, provenance, counts, skill, pages, every figure.

    Parameters
    ----------
    title : str
        Page title.
    fields : xarray.Dataset or None
        Its global attributes become the provenance table.
    counts : mapping or None
        Counts (nested mappings flattened to ``a / b``).
    skill : str
        An HTML fragment placed after the counts.
    images : sequence of (str, str)
        Relative link and caption of each figure.
    links : sequence of (str, str)
        Relative link and text of other pages of the report (listed under "Maps").

    Returns
    -------
    str
        The HTML document.
    """
    parts = [page_head(title), f"<h1>{escape(title)}</h1>\n"]
    if fields is not None and fields.attrs:
        rows = [[k, v] for k, v in public_attributes(fields.attrs).items()]
        parts += ["<h2>Provenance</h2>\n", html_table(["attribute", "value"], rows, "provenance")]
    if counts:
        rows = [[k, format_number(v)] for k, v in _flatten(counts)]
        parts += ["<h2>Counts</h2>\n", html_table(["count", "value"], rows, "counts")]
    parts.append(skill)
    if links:
        parts.append("<h2>Maps of every month and layer</h2>\n<ul>\n")
        parts += [
            f'<li><a href="{escape(quote(rel))}">{escape(txt)}</a></li>\n' for rel, txt in links
        ]
        parts.append("</ul>\n")
    parts.append("<h2>Figures</h2>\n<ul>\n")
    parts += [f'<li><a href="{escape(quote(rel))}">{escape(cap)}</a></li>\n' for rel, cap in images]
    parts.append("</ul>\n")
    parts += [
        f'<figure><img src="{escape(quote(rel))}" alt="{escape(cap)}">'
        f"<figcaption>{escape(cap)}</figcaption></figure>\n"
        for rel, cap in images
    ]
    parts.append("</body>\n</html>\n")
    return "".join(parts)
