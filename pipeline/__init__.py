"""oceanfields: plankton and particle imaging data into global ocean fields.

The import package is ``pipeline``; the distribution is ``oceanfields``. Each module
is one step of the flow described in the repository's ``design.md``:

- :mod:`pipeline.io` opens any fsspec URL (local, ``s3://``, ``zip://``, ``.gz``);
- :mod:`pipeline.sources` reads EcoPart, EcoTaxa and Copernicus Marine data into the
  canonical tables, with a quarantine of the rows it could not accept;
- :mod:`pipeline.catalog` opens the intake catalogs in ``catalogs/``;
- :mod:`pipeline.demo` generates the demo world with a known truth.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oceanfields")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
