"""Report: the pages a scientist reads.

- :mod:`~pipeline.report.page`: the page kit (numbers, HTML tables, PNG figures, one
  page), shared with the image classifier's consistency report;
- :mod:`~pipeline.report.figures`: maps, intervals, predicted vs observed, skill;
- :mod:`~pipeline.report.write`: :func:`write_report`, the run's report folder.
"""

from __future__ import annotations

from pipeline.report.figures import LAND_GREY, interval_png, map_png, scatter_png, skill_png
from pipeline.report.page import escape, figure_png, format_number, html_table, index_html
from pipeline.report.write import write_report

__all__ = [
    "LAND_GREY",
    "escape",
    "figure_png",
    "format_number",
    "html_table",
    "index_html",
    "interval_png",
    "map_png",
    "scatter_png",
    "skill_png",
    "write_report",
]
