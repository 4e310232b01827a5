"""Readers: EcoPart and EcoTaxa exports into tables; environment sources into Datasets.

Each tabular reader returns a :class:`~pipeline.sources.table.ReadResult`: the accepted
rows, a quarantine (file, line, column, reason, raw line) and per-file counts that
reconcile (read = accepted + quarantined), read from exports as exported (folders, globs,
zips of zips, ``s3://`` prefixes: :mod:`~pipeline.sources.archive`) in batches of files
sized by bytes (:func:`~pipeline.sources.table.plan_batches`), with an inventory of every
file found and what was done with it. :mod:`~pipeline.sources.table` holds the
shared tokenizer, cell parsers and lazy per-file reads. The environment readers (ARCO
zarr: :mod:`~pipeline.sources.copernicus`, NetCDF: :mod:`~pipeline.sources.netcdf`) give
normalised Datasets, and :mod:`~pipeline.sources.environment` reads each run source's
variables, time kind and depth kind.
"""

from __future__ import annotations

from pipeline.sources.archive import (
    INVENTORY_META,
    ArchiveFile,
    list_files,
)
from pipeline.sources.copernicus import (
    describe_environment,
    normalise_environment,
    open_environment,
)
from pipeline.sources.ecopart import (
    read_ecopart,
)
from pipeline.sources.ecopart_export import (
    particles_meta,
    read_par_export,
)
from pipeline.sources.ecopart_raw import (
    read_par_raw,
)
from pipeline.sources.ecopart_summary import (
    SUMMARY_META,
    read_metadata_summary,
)
from pipeline.sources.ecotaxa import (
    DEFAULT_FEATURES,
    objects_meta,
    read_ecotaxa,
)
from pipeline.sources.ecotaxa_columns import (
    parse_degrees,
)
from pipeline.sources.environment import (
    EnvironmentSource,
    SourceData,
    open_source,
    parse_sources,
)
from pipeline.sources.netcdf import open_netcdf
from pipeline.sources.table import (
    BATCH_BYTES,
    MISSING_SENTINELS,
    QUARANTINE_META,
    STATS_META,
    Batch,
    FileResult,
    RawTable,
    ReadResult,
    RowChecker,
    conform,
    file_failure,
    plan_batches,
    read_many,
    to_float,
    tokenize,
)

__all__ = [
    "BATCH_BYTES",
    "DEFAULT_FEATURES",
    "INVENTORY_META",
    "MISSING_SENTINELS",
    "QUARANTINE_META",
    "STATS_META",
    "SUMMARY_META",
    "ArchiveFile",
    "Batch",
    "EnvironmentSource",
    "FileResult",
    "RawTable",
    "ReadResult",
    "RowChecker",
    "SourceData",
    "conform",
    "describe_environment",
    "file_failure",
    "list_files",
    "normalise_environment",
    "objects_meta",
    "open_environment",
    "open_netcdf",
    "open_source",
    "parse_degrees",
    "parse_sources",
    "particles_meta",
    "plan_batches",
    "read_ecopart",
    "read_ecotaxa",
    "read_many",
    "read_metadata_summary",
    "read_par_export",
    "read_par_raw",
    "to_float",
    "tokenize",
]
