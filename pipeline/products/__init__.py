"""Products the ocean digital twins pick up, made from a run's output.

- :mod:`~pipeline.products.cf`: CF-1.12 and ACDD-1.3 metadata of the fields (bounds,
  cell methods, coverage, provenance without local paths), used by the fields writer;
- :mod:`~pipeline.products.chunking`: consolidated metadata, time-series and map chunkings;
- :mod:`~pipeline.products.netcdf`: the fields as one CF NetCDF-4 file;
- :mod:`~pipeline.products.entries`: STAC Collection/Item and intake catalog of the fields;
- :mod:`~pipeline.products.serve`: the fields over OGC API EDR (xpublish);
- :mod:`~pipeline.products.dwca`: the sample-level targets as a Darwin Core Archive.

The libraries of the ``products`` extra (pystac, xpystac, xpublish, xpublish-edr,
compliance-checker, python-dwca-reader, netCDF4) are imported where they are used, so
a run without the extra still writes its fields and intake catalog.
"""

from __future__ import annotations

from pipeline.products.cf import (
    CONVENTIONS,
    STANDARD_NAME_VOCABULARY,
    VOLATILE,
    ProductConfig,
    bounds_names,
    cf_fields,
    product_attributes,
    public_attributes,
)
from pipeline.products.chunking import (
    CHUNKINGS,
    chunks_for,
    consolidate_metadata,
    write_rechunked,
)
from pipeline.products.dwca import dwca_tables, export_dwca
from pipeline.products.entries import stac_collection, stac_io, write_entries
from pipeline.products.netcdf import NETCDF_CONVENTIONS, export_netcdf, netcdf_dataset, open_fields
from pipeline.products.serve import edr_app, edr_dataset, serve_fields

__all__ = [
    "CHUNKINGS",
    "CONVENTIONS",
    "NETCDF_CONVENTIONS",
    "STANDARD_NAME_VOCABULARY",
    "VOLATILE",
    "ProductConfig",
    "bounds_names",
    "cf_fields",
    "chunks_for",
    "consolidate_metadata",
    "dwca_tables",
    "edr_app",
    "edr_dataset",
    "export_dwca",
    "export_netcdf",
    "netcdf_dataset",
    "open_fields",
    "product_attributes",
    "public_attributes",
    "serve_fields",
    "stac_collection",
    "stac_io",
    "write_entries",
    "write_rechunked",
]
