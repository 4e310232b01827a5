"""Report: maps, skill plots and the HTML page a scientist reads."""

from __future__ import annotations

from pipeline.report.write import (
    LAND_GREY,
    format_number,
    write_report,
)

__all__ = [
    "LAND_GREY",
    "format_number",
    "write_report",
]
