"""Fields: the model applied to every ocean cell, month and layer, written to zarr.

:mod:`~pipeline.fields.predict` builds the lazy fields (intervals, extrapolation mask);
:mod:`~pipeline.fields.write` writes them region by region, resumably, to zarr v3.
"""

from __future__ import annotations

from pipeline.fields.predict import (
    FieldsConfig,
    envelope_of,
    predict_fields,
)
from pipeline.fields.write import (
    WriteReport,
    write_fields,
)

__all__ = [
    "FieldsConfig",
    "WriteReport",
    "envelope_of",
    "predict_fields",
    "write_fields",
]
