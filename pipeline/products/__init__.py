"""Products the ocean digital twins pick up, made from a run's output.

- :mod:`~pipeline.products.cf`: CF-1.12 and ACDD-1.3 metadata of the fields (bounds,
  cell methods, coverage, provenance without local paths), used by the fields writer.
"""

from __future__ import annotations

from pipeline.products.cf import (
    CONVENTIONS,
    STANDARD_NAME_VOCABULARY,
    bounds_names,
    cf_fields,
    product_attributes,
    public_attributes,
)

__all__ = [
    "CONVENTIONS",
    "STANDARD_NAME_VOCABULARY",
    "bounds_names",
    "cf_fields",
    "product_attributes",
    "public_attributes",
]
