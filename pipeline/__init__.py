"""oceanfields: plankton and particle imaging data into global ocean fields.

The import package is ``pipeline``; the distribution is ``oceanfields``. Its subpackages
are the stages of the flow described in the repository's ``design.md``:

- :mod:`pipeline.sources` reads EcoPart, EcoTaxa and Copernicus Marine data into the
  canonical tables, with a quarantine of the rows it could not accept
  (:mod:`pipeline.catalog` opens the intake catalogs that name them);
- :mod:`pipeline.targets` computes per (cast, layer) concentrations and carbon flux;
- :mod:`pipeline.predictors` builds layer-mean environment features and matches them to
  the targets;
- :mod:`pipeline.model` cross-validates on spatial blocks and trains multi-output
  xgboost on the Dask cluster, with baselines and skill scores;
- :mod:`pipeline.fields` predicts every ocean cell, month and layer into zarr;
- :mod:`pipeline.report` draws the maps and skill and writes the report;
- :mod:`pipeline.run` runs these steps from a run file under one output store;
- :mod:`pipeline.images` classifies vignettes and finds morphological types;
- :mod:`pipeline.clusters` turns cluster files into a ``dask.distributed.Client``;
- :mod:`pipeline.demo` generates the demo world with a known truth;
- :mod:`pipeline.cli` is the ``oceanfields`` command.

:mod:`pipeline.io` opens any fsspec URL (local, ``s3://``, ``zip://``, ``.gz``).
:mod:`pipeline.store` is the one output store every writer writes through.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("oceanfields")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__"]
