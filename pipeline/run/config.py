"""The run configuration: which inputs, and one section per step of the flow.

A run file is YAML (``oceanfields run RUN.yaml``)::

    inputs:
      catalog: demo                 # shipped catalog name or path to a catalog YAML
      params: {root: demo-out/world}
      particles: ecopart_detailed   # catalog entry of the particles table
      environment: environment      # catalog entry of the environment store, or a list of
                                    # sources: {entry, variables, time, depth, surface, month}
      truth: truth_profiles         # optional: noise-free truth (demo) for the noise ceiling
      objects: ecotaxa              # optional: EcoTaxa objects -> concentration per category
      labels: out/labels            # optional: machine labels of the objects (parquet)
    targets:    {...}               # pipeline.targets.particles.TargetConfig
    object_targets: {categories: [fiber, fecal_pellet], labels: machine}  # targets_objects
    predictors: {...}               # pipeline.predictors.matchup.PredictorConfig
    split:      {...}               # pipeline.model.split.SplitConfig
    train:      {...}               # pipeline.model.train.TrainConfig
    fields:     {...}               # pipeline.fields.predict.FieldsConfig
    report:     {month: 1}
    grid:       {resolution: 0.25}  # pipeline.predictors.grid.GridConfig (default: 1st source's)
    product:    {license: CC-BY-4.0, creator_name: ...}  # ACDD attributes of the fields
    out: demo-out/run               # output URL (``--out`` wins)

A run file must say what it reads: ``inputs.catalog`` is required (a file without it is
an error naming the file, not a silent run on the demo catalog). Every other section is
optional (defaults live in the step's dataclass only); unknown keys are errors listing the
valid ones. Layers are given as ``[[0, 100], [100, 500]]`` or ``["0-100m", "100-500m"]``;
``inf`` may close the size edges.

Relative paths in a run file are taken from the run file's folder, wherever the run
starts: ``out``, ``inputs.labels``, ``inputs.catalog`` when it is a path to a catalog
YAML (not a shipped catalog's name), and the catalog parameters that are locations
(``inputs.params`` keys ``root``, ``path``, ``url``, ``dir``, ``folder``, ``file`` or
ending in ``_root``, ``_path``, ``_url``, ``_dir``, ``_folder``, ``_file``). Absolute
paths and URLs with a protocol (``s3://``, ``gs://``, ``zip://...::...``) are kept as
written. A run file may itself be at a URL (``oceanfields run s3://bucket/demo/run.yaml``,
storage options from the environment); its relative paths are then taken from its URL's
folder. A mapping given in Python (``load_run_config({...})``) has no folder: its paths
are used as written, and it may leave ``inputs`` out (the defaults, the demo catalog).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import posixpath
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.catalog import is_catalog_name
from pipeline.config import build_config, config_error, read_yaml
from pipeline.errors import ConfigError
from pipeline.fields.predict import FieldsConfig
from pipeline.io import parent_url
from pipeline.model.split import SplitConfig
from pipeline.model.train import TrainConfig
from pipeline.predictors.features import PredictorConfig
from pipeline.predictors.grid import GridConfig
from pipeline.products.cf import ProductConfig
from pipeline.sources.environment import EnvironmentSource, parse_sources
from pipeline.targets.objects import ObjectTargetConfig
from pipeline.targets.particles import Layer, TargetConfig

__all__ = [
    "InputsConfig",
    "ReportConfig",
    "RunConfig",
    "config_hash",
    "load_run_config",
    "run_config_to_dict",
]

_SECTIONS = (
    "inputs",
    "grid",
    "product",
    "targets",
    "object_targets",
    "predictors",
    "split",
    "train",
    "fields",
    "report",
    "out",
)


@dataclass(frozen=True, kw_only=True)
class InputsConfig:
    """Where the run reads.

    Attributes
    ----------
    catalog : str
        Shipped catalog name (``demo``, ``ecopart``, ...) or path/URL of a catalog YAML;
        required in a run file (the default, ``demo``, serves Python callers and tests).
    params : dict
        Catalog parameters (e.g. ``{"root": "demo-out/world"}``).
    particles : str
        Entry of the particles table (an EcoPart reader).
    environment : str or list
        The environment sources: one catalog entry name (a dated store on its own grid,
        as before), or a list of entry names and mappings ``{entry, name, variables,
        time, month, depth, surface, options}``
        (:class:`~pipeline.sources.environment.EnvironmentSource`); read as a tuple of
        those.
    environment_time : (str, str), optional
        Inclusive range of the output months (default: every month of the dated
        sources; required when every source is a climatology or static).
    objects : str, optional
        Entry of an EcoTaxa objects table: adds one target per category
        (``object_targets``), concentration in the volume the casts imaged.
    truth : str, optional
        Entry of the noise-free truth per profile and layer (demo world only): the
        noise ceiling in ``metrics.json``.
    labels : str, optional
        URL or path of a labels table (:mod:`pipeline.images.labels`: parquet, columns
        ``object_id, label[, prob]``) from ``oceanfields images classify`` or the
        morphological types; used when ``object_targets.labels`` is ``machine`` or
        ``human_first``. In a run file, a relative path is taken from the file's folder
        (as ``params.root``). Its file names, sizes and stamps are part of the targets
        step's key, so a changed table redoes the targets.
    """

    catalog: str = "demo"
    params: dict[str, Any] = field(default_factory=dict)
    particles: str = "ecopart_detailed"
    environment: tuple[EnvironmentSource, ...] | Any = "environment"
    environment_time: tuple[str, str] | None = None
    objects: str | None = None
    truth: str | None = None
    labels: str | None = None

    def __post_init__(self) -> None:
        """Read the environment sources; check the time range."""
        object.__setattr__(self, "environment", parse_sources(self.environment))
        if self.environment_time is not None and len(self.environment_time) != 2:
            raise config_error(
                "inputs.environment_time",
                self.environment_time,
                "expected [start, end], e.g. ['2020-01-01', '2020-12-31']",
            )


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    """Options of the report.

    Attributes
    ----------
    month : int or str, optional
        Month shown on the maps (month number or ISO date; default the first).
    """

    month: int | str | None = None


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole run: inputs, one config per step and the output URL."""

    inputs: InputsConfig = field(default_factory=InputsConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    product: ProductConfig = field(default_factory=ProductConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    object_targets: ObjectTargetConfig = field(default_factory=ObjectTargetConfig)
    predictors: PredictorConfig = field(default_factory=PredictorConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    out: str | None = None

    def __post_init__(self) -> None:
        """Check what spans sections: machine labels need a labels table and objects."""
        use = self.object_targets.labels
        if use != "annotated" and not self.inputs.labels:
            raise config_error(
                "object_targets.labels",
                use,
                "set inputs.labels or object_targets.labels: annotated",
                problem="needs inputs.labels (the labels table, e.g. OUT/labels of "
                "'oceanfields images classify --out OUT')",
            )
        if use != "annotated" and not self.inputs.objects:
            raise config_error(
                "object_targets.labels",
                use,
                "set inputs.objects (e.g. ecotaxa)",
                problem="labels the objects of inputs.objects, which is not set",
            )
        if self.inputs.labels and use == "annotated":
            warnings.warn(
                f"inputs.labels ({self.inputs.labels!r}) is not used while "
                "object_targets.labels is 'annotated'; set it to 'machine' or 'human_first' "
                "to count the labels.",
                stacklevel=2,
            )


_LAYER_NAME = re.compile(r"^\s*([0-9.]+)\s*-\s*([0-9.]+)\s*m?\s*$")


def _layers(value: Any) -> tuple[Layer, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(
            f"{value!r}: expected a non-empty list of layers, e.g. [[0, 100], [100, 500]] "
            "or ['0-100m', '100-500m']."
        )
    out = []
    for item in value:
        if isinstance(item, str):
            match = _LAYER_NAME.match(item)
            if not match:
                raise ConfigError(f"layer {item!r}: expected 'TOP-BOTTOMm', e.g. '0-100m'.")
            top, bottom = float(match.group(1)), float(match.group(2))
        elif isinstance(item, list | tuple) and len(item) == 2:
            top, bottom = float(item[0]), float(item[1])
        else:
            raise ConfigError(f"layer {item!r}: expected [top_m, bottom_m] or 'TOP-BOTTOMm'.")
        if not bottom > top >= 0:
            raise ConfigError(
                f"layer {item!r} is empty or inverted: need 0 <= top < bottom (metres, "
                "positive down)."
            )
        out.append(Layer(top, bottom))
    names = [layer.name for layer in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"layers {names}: a layer is given twice.")
    return tuple(out)


def _edges(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{value!r}: expected a list of ESD edges in µm, e.g. [102, 512, inf].")
    return tuple(math.inf if str(v).strip().lower() in ("inf", ".inf") else float(v) for v in value)


def _flux_range(value: Any) -> tuple[float, float]:
    edges = _edges(value)
    if len(edges) != 2:
        raise ConfigError(f"{value!r}: expected [lo_um, hi_um].")
    return (edges[0], edges[1])


_CONVERTERS = {
    "targets": {"layers": _layers, "size_edges_um": _edges, "flux_range_um": _flux_range},
}


def load_run_config(source: str | os.PathLike[str] | Mapping[str, Any]) -> RunConfig:
    """Read and validate a run file (or mapping).

    Parameters
    ----------
    source : path or mapping
        The run YAML (local path or URL; see the module docstring) or the same as a
        mapping. Relative paths in a file are taken from its folder; a mapping's are used
        as written.

    Returns
    -------
    RunConfig

    Raises
    ------
    ConfigError
        Naming the file and the dotted key: unknown section or key (lists the valid
        ones), wrong type, an empty or inverted layer, each step's own checks, and a
        run file without ``inputs.catalog``.

    Examples
    --------
    >>> cfg = load_run_config({"targets": {"layers": ["0-200m"]}, "split": {"n_folds": 3}})
    >>> [layer.name for layer in cfg.targets.layers], cfg.split.n_folds
    (['0-200m'], 3)
    >>> load_run_config({"targets": {"layers": [[100, 100]]}})
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: <mapping>: targets.layers: layer [100, 100] is empty or ...
    """
    doc, where = read_yaml(source)
    for key in doc:
        if key not in _SECTIONS:
            raise ConfigError(f"{where}: {key}: unknown section; valid: {', '.join(_SECTIONS)}")
    out = doc.get("out")
    if out is not None and not isinstance(out, str):
        raise ConfigError(f"{where}: out: {out!r}; expected a folder or URL string.")
    from_file = not isinstance(source, Mapping)
    if from_file:
        doc = _resolve_paths(doc, _folder_of(os.fspath(source)))
        out = doc.get("out")
    classes = {
        "inputs": InputsConfig,
        "grid": GridConfig,
        "product": ProductConfig,
        "targets": TargetConfig,
        "object_targets": ObjectTargetConfig,
        "predictors": PredictorConfig,
        "split": SplitConfig,
        "train": TrainConfig,
        "fields": FieldsConfig,
        "report": ReportConfig,
    }
    if isinstance(doc.get("object_targets"), Mapping) and "layers" in doc["object_targets"]:
        raise ConfigError(
            f"{where}: object_targets.layers: the object targets use targets.layers; "
            "set the layers there."
        )
    built = {
        name: build_config(
            cls, doc.get(name), where=where, section=name, converters=_CONVERTERS.get(name)
        )
        for name, cls in classes.items()
    }
    built["object_targets"] = dataclasses.replace(
        built["object_targets"], layers=built["targets"].layers
    )
    if from_file:
        _require_inputs(doc, where)
    try:
        return RunConfig(**built, out=out)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}", key=err.key) from err


def _require_inputs(doc: Mapping[str, Any], where: str) -> None:
    """Refuse a run file that does not say which catalog it reads."""
    example = "inputs: {catalog: demo, params: {root: demo-out/world}}"
    if "inputs" not in doc:
        raise ConfigError(
            f"{where}: inputs: missing; a run file names what it reads: add an inputs "
            f"section with the catalog (a shipped name or a catalog YAML's path, relative "
            f"to this file) and its params, e.g. '{example}'.",
            key="inputs",
        )
    if "catalog" not in (doc.get("inputs") or {}):
        raise ConfigError(
            f"{where}: inputs.catalog: missing; add the catalog the run reads (a shipped "
            f"name such as demo, or a catalog YAML's path), e.g. '{example}'.",
            key="inputs.catalog",
        )


#: Catalog parameters that are locations: resolved against the run file's folder.
_LOCATION_PARAM = re.compile(r"(^|_)(root|path|url|dir|folder|file)$")
#: A URL with a protocol (``s3://``, ``zip://``, ``file://``): kept as written.
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _folder_of(source: str) -> str:
    """Folder of a run file: its URL's folder, or its local folder made absolute."""
    if _PROTOCOL.match(source):
        return parent_url(source)
    return os.path.dirname(os.path.abspath(source))


def _resolve_paths(doc: Mapping[str, Any], folder: str) -> dict[str, Any]:
    """Return ``doc`` with its relative local paths joined to the run file's ``folder``.

    ``folder`` is a local path or a URL (a run file read from an object store). Values of
    the wrong type are left alone for the section checks to name.
    """
    protocol = _PROTOCOL.match(folder)

    def resolve(value: Any) -> Any:
        if not isinstance(value, str) or not value or _PROTOCOL.match(value):
            return value
        path = os.path.expanduser(value)
        if os.path.isabs(path):
            return path
        if protocol:
            head = protocol.group(0)
            return head + posixpath.normpath(posixpath.join(folder[len(head) :], path))
        return os.path.normpath(os.path.join(folder, path))

    out = dict(doc)
    if "out" in out:
        out["out"] = resolve(out["out"])
    inputs = out.get("inputs")
    if isinstance(inputs, Mapping):
        inputs = dict(inputs)
        if "labels" in inputs:
            inputs["labels"] = resolve(inputs["labels"])
        catalog = inputs.get("catalog")
        if isinstance(catalog, str) and not is_catalog_name(catalog):
            inputs["catalog"] = resolve(catalog)
        params = inputs.get("params")
        if isinstance(params, Mapping):
            inputs["params"] = {
                k: resolve(v) if isinstance(k, str) and _LOCATION_PARAM.search(k) else v
                for k, v in params.items()
            }
        out["inputs"] = inputs
    return out


def run_config_to_dict(config: RunConfig) -> dict[str, Any]:
    """Plain-YAML view of a run config (layers as names, inf as the string ``inf``).

    The object targets' layers are left out: they are a copy of ``targets.layers``, which
    :func:`load_run_config` refuses to read twice. The view loads back as the same config.

    Examples
    --------
    >>> d = run_config_to_dict(RunConfig())
    >>> d["targets"]["layers"], d["targets"]["size_edges_um"][-1]
    (['0-100m', '100-500m', '500-1000m'], 'inf')
    >>> load_run_config(d) == RunConfig()
    True
    """

    def plain(value: Any) -> Any:
        if isinstance(value, Layer):
            return value.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, float) and math.isinf(value):
            return "inf"
        return value

    out = plain(config)
    if isinstance(config, RunConfig):
        out["object_targets"].pop("layers", None)
    return out


def config_hash(*parts: Any) -> str:
    """Stable short hash of config sections and other plain values.

    Examples
    --------
    >>> config_hash(RunConfig().split) == config_hash(RunConfig().split)
    True
    """
    text = json.dumps(
        [run_config_to_dict(p) if _is_config(p) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)
