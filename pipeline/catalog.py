"""Intake catalogs -> oceanfields readers: where the data are, and which reader reads them.

A catalog is an intake v1 YAML file (``catalogs/*.yaml``, shipped inside the package as
``pipeline/catalogs``) that plain intake opens
(``intake.open_catalog(path)``). Each entry uses a standard intake driver (``csv``,
``zarr`` from intake-xarray, or :class:`ParquetSource` below) so intake alone can read it,
and names the oceanfields reader in its metadata::

    metadata:
      oceanfields:
        reader: ecopart_par          # copernicus | ecopart_par | ecopart_raw | ecotaxa
        options:                     # default keyword arguments of the reader
          metadata_url: "{{ root }}/ecopart/export_detailed_*_Export_metadata_summary.tsv"

:func:`read_entry` renders the entry's URL with the user parameters (jinja, as intake
does), expands globs with :func:`pipeline.io.expand_urls` and calls that reader, so the
result carries the quarantine and the canonical columns. Entries without a reader are
read by intake itself (``to_dask()``).

Parameters come in two kinds. Catalog parameters (``metadata.parameters`` in the YAML,
e.g. the demo world's ``root``) are set when opening: ``open_catalog("demo",
root="out/world")``. Entry parameters (``parameters`` of an entry, e.g. ``url``) and
reader options (``variables``, ``time``, ``check_images``, ``storage_options``, …) are
given to :func:`read_entry`. Parameters listed in ``metadata.oceanfields.required``
must have a non-empty value (from the call or their default).
Unknown names raise :class:`~pipeline.errors.ConfigError` listing the valid ones.

No credentials live in catalogs: storage options come from the environment (``AWS_*``,
``~/.aws``, fsspec's ``FSSPEC_S3_ENDPOINT_URL``) or from ``storage_options=`` in code.

Notes for developers
--------------------
Rendering and entry lookup use intake's v1 catalog objects (``intake.catalog.local``),
which intake 2 keeps for backward compatibility: ``Catalog.__getitem__`` merges the
catalog parameters into the entry, ``LocalCatalogEntry._create_open_args`` renders the
templates (with intake's own jinja environment, ``getshell=False``). Both are used in
:func:`_entry` and :func:`_render` only. intake warns "Shell command not executed" for
every string default it expands; that noise is silenced in those two places.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import intake
import yaml
from intake.catalog.base import Catalog
from intake.readers.datatypes import Parquet
from intake.readers.readers import DaskParquet, PandasParquet
from intake.source.base import DataSource

from pipeline.errors import ConfigError, InputFormatError, OceanfieldsError
from pipeline.io import expand_urls, read_bytes

__all__ = [
    "CATALOG_DIR",
    "READERS",
    "ParquetSource",
    "is_catalog_name",
    "list_entries",
    "open_catalog",
    "read_entry",
]

logger = logging.getLogger(__name__)

#: Folder of the catalogs shipped with oceanfields: the package data ``pipeline/catalogs``
#: (the one copy; the repository's top-level ``catalogs`` is a link to it), found through
#: importlib.resources, so a wheel has them as a checkout does.
CATALOG_DIR = Path(str(importlib.resources.files("pipeline").joinpath("catalogs")))

#: oceanfields reader name -> "module:function" (imported when first used).
READERS: dict[str, str] = {
    "copernicus": "pipeline.sources.copernicus:open_environment",
    "ecopart_par": "pipeline.sources.ecopart:read_par_export",
    "ecopart_raw": "pipeline.sources.ecopart:read_par_raw",
    "ecotaxa": "pipeline.sources.ecotaxa:read_ecotaxa",
    "netcdf": "pipeline.sources.netcdf:open_netcdf",
}

#: Readers that take one store URL (no glob expansion); the others take a list of files.
_SINGLE_URL_READERS = {"copernicus"}
#: Reader options that are URLs and may be globs matching exactly one file.
_URL_OPTIONS = {"metadata_url"}


def open_catalog(name_or_path: str | os.PathLike[str], **params: Any) -> Catalog:
    """Open an intake catalog by name (``catalogs/<name>.yaml``) or path/URL.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped catalog's name (``"demo"``, ``"copernicus"``, ``"ecotaxa"``,
        ``"ecopart"``) or the path or fsspec URL of a YAML catalog.
    **params
        Catalog parameters (``metadata.parameters`` of the YAML), e.g. ``root=`` for the
        demo catalog. Entry parameters go to :func:`read_entry`.

    Returns
    -------
    intake.catalog.Catalog
        The intake catalog (plain intake objects), with the parameters set.

    Raises
    ------
    ConfigError
        When the name is unknown (lists the shipped catalogs), the file is missing, not
        valid YAML (line and column), not an intake v1 catalog, or a parameter is unknown
        (lists the valid ones) or invalid.

    See Also
    --------
    list_entries : what a catalog holds.
    read_entry : read one entry through its oceanfields reader.

    Examples
    --------
    >>> cat = open_catalog("demo", root="/data/world")
    >>> sorted(cat)[:3]
    ['bathymetry', 'biogeochemistry', 'ecopart_detailed']
    >>> open_catalog("demo", rot="/data/world")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: .../demo.yaml: unknown catalog parameter 'rot'; valid: root...
    """
    url = _catalog_url(name_or_path)
    _check_yaml(url)
    try:
        with _quiet_intake():
            # ttl=None: no reload after 60 s, which would drop the parameters given here.
            catalog = intake.open_catalog(url, ttl=None)
            names = list(catalog)
    except OceanfieldsError:
        raise
    except Exception as err:
        raise ConfigError(
            f"{url}: not a valid intake v1 catalog ({type(err).__name__}: {err}). "
            "Each entry needs a driver and args; see catalogs/demo.yaml for an example."
        ) from err
    valid = sorted(catalog.user_parameters)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"{url}: unknown catalog parameter {', '.join(map(repr, unknown))}; valid: "
            f"{', '.join(valid) or '(none)'}. Entry parameters go to read_entry()."
        )
    for key, value in params.items():
        _validate(catalog.user_parameters[key], value, url)
    if params:
        with _quiet_intake():
            catalog = catalog(**params)
    logger.info("catalog %s: %d entries %s", url, len(names), params or "")
    return catalog


def list_entries(catalog: Catalog) -> list[dict[str, Any]]:
    """Describe every entry of a catalog.

    Parameters
    ----------
    catalog : intake.catalog.Catalog
        From :func:`open_catalog` (or ``intake.open_catalog``).

    Returns
    -------
    list of dict
        One dict per entry, in catalog order: ``name``, ``description``, ``reader``
        (oceanfields reader name or None), ``driver`` (intake driver), ``parameters``
        (list of ``{"name", "description", "type", "default", "allowed"?, "required"}``,
        catalog parameters first), ``options`` (the reader's default options from the
        catalog) and ``url`` (the data URL with the current parameter values, or None
        while a required parameter is missing).

    Examples
    --------
    >>> entries = list_entries(open_catalog("demo", root="/data/world"))
    >>> [(e["name"], e["reader"]) for e in entries][:2]
    [('environment', 'copernicus'), ('biogeochemistry', 'copernicus')]
    >>> entries[0]["url"]
    '/data/world/environment.zarr'
    >>> entries[0]["parameters"][0]["name"], entries[0]["parameters"][0]["default"]
    ('root', '/data/world')
    """
    out = []
    for name in list(catalog):
        entry = _entry(catalog, name)
        info = entry.describe()
        required = _required(entry)
        parameters = [_describe_parameter(p, required) for p in _parameters(entry)]
        missing = [p["name"] for p in parameters if p["required"] and not p["default"]]
        rendered = None if missing else _render(catalog, entry, {})
        spec = _oceanfields_spec((rendered or info).get("metadata") or {})
        out.append(
            {
                "name": name,
                "description": (info.get("description") or "").strip(),
                "reader": spec.get("reader"),
                "driver": _driver_name(entry),
                "parameters": parameters,
                "options": dict(spec.get("options") or {}),
                "url": None if rendered is None else rendered.get("urlpath"),
            }
        )
    return out


def read_entry(catalog: Catalog, entry: str, **params: Any) -> Any:
    """Read one catalog entry through its oceanfields reader.

    Parameters
    ----------
    catalog : intake.catalog.Catalog
        From :func:`open_catalog`.
    entry : str
        Entry name (see :func:`list_entries`).
    **params
        Entry parameters (e.g. ``url=`` in ``catalogs/ecotaxa.yaml``) and reader options
        (keyword arguments of the reader, e.g. ``variables=``/``time=`` for
        ``copernicus``, ``check_images=`` for ``ecotaxa``, ``storage_options=`` for
        all). Options override the entry's ``metadata.oceanfields.options``; an option
        given as an empty string means "the reader's default".

    Returns
    -------
    ReadResult or xarray.Dataset or dask DataFrame
        A :class:`~pipeline.sources.table.ReadResult` for the tabular readers, the
        normalised environment Dataset for ``copernicus``, and intake's ``to_dask()``
        for entries without an oceanfields reader.

    Raises
    ------
    ConfigError
        Unknown entry (lists the entries), unknown parameter or option (lists both),
        a required parameter left empty, or an unknown reader name in the catalog.
    InputFormatError
        From the reader, or when a URL pattern matches no file.

    See Also
    --------
    pipeline.sources.copernicus.open_environment, pipeline.sources.ecopart.read_par_export,
    pipeline.sources.ecopart.read_par_raw, pipeline.sources.ecotaxa.read_ecotaxa

    Examples
    --------
    >>> cat = open_catalog("ecotaxa")
    >>> read_entry(cat, "export")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: .../ecotaxa.yaml: entry 'export': parameter 'url' is required...
    """
    where = _catalog_label(catalog)
    names = list(catalog)
    if entry not in names:
        raise ConfigError(
            f"{where}: no entry {entry!r}; entries: {', '.join(names)}. "
            "List them with `oceanfields catalog list`."
        )
    spec_entry = _entry(catalog, entry)
    spec = _oceanfields_spec(spec_entry.describe().get("metadata") or {})
    reader_name = spec.get("reader")
    reader = _reader(reader_name, where, entry) if reader_name else None
    parameters = {p.name: p for p in _parameters(spec_entry)}
    accepted = _reader_options(reader) if reader is not None else set()
    user = {k: v for k, v in params.items() if k in parameters}
    options = {k: v for k, v in params.items() if k not in parameters}
    unknown = [] if accepted is None else sorted(k for k in options if k not in accepted)
    if unknown:
        raise ConfigError(
            f"{where}: entry {entry!r}: unknown parameter {', '.join(map(repr, unknown))}; "
            f"parameters: {', '.join(parameters) or '(none)'}; reader options "
            f"({reader_name or 'intake'}): {', '.join(sorted(accepted)) or '(none)'}."
        )
    for key, value in user.items():
        _validate(parameters[key], value, where, entry)
    missing = [
        n
        for n in sorted(_required(spec_entry))
        if user.get(n, getattr(parameters.get(n), "default", None)) in (None, "")
    ]
    if missing:
        raise ConfigError(
            f"{where}: entry {entry!r}: parameter {', '.join(map(repr, missing))} is "
            f"required (no default). Give it: read_entry(catalog, {entry!r}, "
            f"{missing[0]}=...)."
        )
    if reader is None:
        with _quiet_intake():
            plugin, open_args = spec_entry._create_open_args(dict(user))
            result = plugin(**open_args).to_dask()
        if hasattr(result, "data_vars"):  # xarray: keep the source URL, as our readers do
            result.attrs["source"] = open_args.get("urlpath")
        return result
    rendered = _render(catalog, spec_entry, user)
    rendered_spec = _oceanfields_spec(rendered.get("metadata") or {})
    kwargs = {**dict(rendered_spec.get("options") or {}), **options}
    kwargs = {k: v for k, v in kwargs.items() if not (isinstance(v, str) and v == "")}
    storage_options = kwargs.pop("storage_options", None) or rendered.get("storage_options")
    url = rendered.get("urlpath")
    if not url:
        raise ConfigError(f"{where}: entry {entry!r} has no args.urlpath; add the data URL.")
    logger.info("reading %s:%s with %s (%s)", where, entry, reader_name, url)
    if reader_name in _SINGLE_URL_READERS:
        return reader(url, storage_options=storage_options, **kwargs)
    urls = expand_urls(url, storage_options=storage_options)
    for key in _URL_OPTIONS & set(kwargs):
        kwargs[key] = _one_url(kwargs[key], storage_options, where, entry, key)
    return reader(urls, storage_options=storage_options, **kwargs)


class ParquetSource(DataSource):
    """Read parquet file(s) as a dataframe from an intake v1 catalog.

    Use as ``driver: "pipeline.catalog:ParquetSource"``. intake 2 ships no v1 parquet
    driver; this adapter wraps intake's own v2 readers (``DaskParquet``,
    ``PandasParquet``) the way ``intake.source.csv.CSVSource`` wraps the CSV ones, so a
    v1 YAML catalog opened by plain intake reads parquet.

    Parameters
    ----------
    urlpath : str or list of str
        Path, fsspec URL or glob of the parquet file(s) or dataset folder.
    storage_options : dict, optional
        Passed to fsspec.
    metadata : dict, optional
        The entry's metadata.
    **kwargs
        Passed to ``dask.dataframe.read_parquet`` / ``pandas.read_parquet``.
    """

    name = "oceanfields_parquet"
    container = "dataframe"
    version = "0.1.0"
    partition_access = True

    def __init__(
        self,
        urlpath: str | list[str],
        storage_options: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(storage_options=storage_options, metadata=metadata)
        self.data = Parquet(url=urlpath, storage_options=storage_options, metadata=metadata)
        self.kwargs = kwargs

    def to_dask(self) -> Any:
        """Return a lazy dask DataFrame."""
        return DaskParquet(self.data).read(**self.kwargs)

    def read(self) -> Any:
        """Return a pandas DataFrame (reads everything)."""
        return PandasParquet(self.data).read(**self.kwargs)

    def discover(self) -> Any:
        """Return the first rows (intake's schema discovery)."""
        return self.to_dask().head()


# --------------------------------------------------------------------------- catalog files


def is_catalog_name(name_or_path: str | os.PathLike[str]) -> bool:
    """Tell a shipped catalog's name (``"demo"``) from a path or URL of a catalog YAML.

    A name has no path separator and no ``.yaml``/``.yml`` suffix; anything else is a
    path or URL, as :func:`open_catalog` reads it.

    Examples
    --------
    >>> is_catalog_name("demo"), is_catalog_name("my.yaml"), is_catalog_name("s3://b/c.yml")
    (True, False, False)
    """
    text = os.fspath(name_or_path)
    return "/" not in text and "\\" not in text and not text.endswith((".yaml", ".yml"))


def _catalog_url(name_or_path: str | os.PathLike[str]) -> str:
    text = os.fspath(name_or_path)
    if is_catalog_name(text):
        path = CATALOG_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"no catalog named {text!r} in {CATALOG_DIR}; available: "
                f"{', '.join(_shipped_names()) or '(none)'}. Or give a path to a YAML catalog."
            )
        return str(path)
    if "://" not in text and not Path(text).is_file():
        raise ConfigError(
            f"{text}: no catalog file there. Shipped catalogs (by name): "
            f"{', '.join(_shipped_names()) or '(none)'}."
        )
    return text


def _shipped_names() -> list[str]:
    return sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))


def _check_yaml(url: str) -> None:
    """Safe-load the file first so that errors name the file, line and column."""
    try:
        text = read_bytes(url).decode("utf-8")
    except InputFormatError as err:
        raise ConfigError(f"{url}: cannot read the catalog ({err}).") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{url}: a catalog must be UTF-8 text ({err}).") from err
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{url}:{mark.line + 1}:{mark.column + 1}" if mark else url
        problem = getattr(err, "problem", None) or err
        raise ConfigError(f"{where}: invalid YAML ({problem}). Fix the catalog file.") from err
    if not isinstance(spec, dict) or not isinstance(spec.get("sources"), dict):
        raise ConfigError(
            f"{url}: not an intake v1 catalog: expected a mapping with a 'sources' mapping "
            "of entries (see catalogs/demo.yaml)."
        )
    for name, source in spec["sources"].items():
        if not isinstance(source, dict) or "driver" not in source:
            raise ConfigError(f"{url}: sources.{name}: missing 'driver' (e.g. csv or zarr).")
        reader = _oceanfields_spec(source.get("metadata") or {}).get("reader")
        if reader is not None and reader not in READERS:
            raise ConfigError(
                f"{url}: sources.{name}.metadata.oceanfields.reader is {reader!r}; valid: "
                f"{', '.join(sorted(READERS))}."
            )


def _catalog_label(catalog: Catalog) -> str:
    return str(getattr(catalog, "path", None) or getattr(catalog, "name", "catalog"))


# --------------------------------------------------------------------------- entries


def _entry(catalog: Catalog, name: str) -> Any:
    """Return the v1 entry of ``name`` with the catalog parameters merged in.

    intake does the merge in ``Catalog._get_entry``, called by ``catalog[name]``.
    """
    with _quiet_intake():
        source = catalog[name]
    entry = getattr(source, "_entry", None)
    if entry is None:  # pragma: no cover - every v1 entry sets it
        raise ConfigError(f"{_catalog_label(catalog)}: entry {name!r} is not a v1 entry.")
    return entry


def _parameters(entry: Any) -> list[Any]:
    return list(getattr(entry, "_user_parameters", []) or [])


def _required(entry: Any) -> set[str]:
    spec = _oceanfields_spec(entry.describe().get("metadata") or {})
    return {str(name) for name in spec.get("required") or []}


def _describe_parameter(parameter: Any, required: set[str]) -> dict[str, Any]:
    info = {
        "name": parameter.name,
        "description": (parameter.description or "").strip(),
        "type": parameter.type,
        "default": parameter.default,
        "required": parameter.name in required,
    }
    if parameter.allowed is not None:
        info["allowed"] = list(parameter.allowed)
    return info


def _validate(parameter: Any, value: Any, where: str, entry: str | None = None) -> None:
    try:
        parameter.validate(value)
    except (ValueError, TypeError) as err:
        label = f"entry {entry!r}: " if entry else ""
        allowed = (
            f"; allowed: {', '.join(map(str, parameter.allowed))}" if parameter.allowed else ""
        )
        raise ConfigError(
            f"{where}: {label}parameter {parameter.name!r} = {value!r} is invalid "
            f"({err}); expected {parameter.type}{allowed}."
        ) from err


def _render(catalog: Catalog, entry: Any, user: Mapping[str, Any]) -> dict[str, Any]:
    """Render the entry's args and metadata templates (intake's own rules)."""
    with _quiet_intake():
        _, open_args = entry._create_open_args(dict(user))
    return open_args


def _driver_name(entry: Any) -> str:
    driver = getattr(entry, "_driver", None)
    if isinstance(driver, str):
        return driver
    return str(entry.describe().get("driver"))


def _oceanfields_spec(metadata: Mapping[str, Any]) -> dict[str, Any]:
    spec = metadata.get("oceanfields") if isinstance(metadata, Mapping) else None
    return dict(spec) if isinstance(spec, Mapping) else {}


# --------------------------------------------------------------------------- readers


def _reader(name: str, where: str, entry: str) -> Callable[..., Any]:
    if name not in READERS:
        raise ConfigError(
            f"{where}: entry {entry!r}: unknown oceanfields reader {name!r}; valid: "
            f"{', '.join(sorted(READERS))}."
        )
    return intake.import_name(READERS[name])


def _reader_options(reader: Callable[..., Any]) -> set[str] | None:
    """Keyword options of a reader (its first argument is the URL); None: any (``**kw``)."""
    params = list(inspect.signature(reader).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params[1:] if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _one_url(
    url: Any, storage_options: Mapping[str, Any] | None, where: str, entry: str, key: str
) -> Any:
    if not isinstance(url, str) or not any(ch in url for ch in "*?["):
        return url
    matches = expand_urls(url, storage_options=storage_options)
    if len(matches) != 1:
        raise ConfigError(
            f"{where}: entry {entry!r}: {key} pattern {url!r} matches {len(matches)} files "
            f"({', '.join(matches[:3])}{', …' if len(matches) > 3 else ''}); it must match "
            f"one. Give the file itself: read_entry(..., {key}='...')."
        )
    return matches[0]


@contextlib.contextmanager
def _quiet_intake() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Shell command not executed")
        yield
