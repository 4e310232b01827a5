"""Readers: EcoPart and EcoTaxa exports into canonical tables, Copernicus zarr into a Dataset.

Each tabular reader returns a :class:`~pipeline.sources.table.ReadResult`: the accepted
rows, a quarantine (file, line, column, reason, raw line) and per-file counts that
reconcile (read = accepted + quarantined). :mod:`~pipeline.sources.table` holds the
shared tokenizer, cell parsers and lazy per-file reads.
"""

from __future__ import annotations

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
    MISSING_SENTINELS,
    QUARANTINE_META,
    STATS_META,
    FileResult,
    RawTable,
    ReadResult,
    RowChecker,
    conform,
    file_failure,
    read_many,
    to_float,
    tokenize,
)

__all__ = [
    "DEFAULT_FEATURES",
    "MISSING_SENTINELS",
    "QUARANTINE_META",
    "STATS_META",
    "SUMMARY_META",
    "EnvironmentSource",
    "FileResult",
    "RawTable",
    "ReadResult",
    "RowChecker",
    "SourceData",
    "conform",
    "describe_environment",
    "file_failure",
    "normalise_environment",
    "objects_meta",
    "open_environment",
    "open_netcdf",
    "open_source",
    "parse_degrees",
    "parse_sources",
    "particles_meta",
    "read_ecopart",
    "read_ecotaxa",
    "read_many",
    "read_metadata_summary",
    "read_par_export",
    "read_par_raw",
    "to_float",
    "tokenize",
]
