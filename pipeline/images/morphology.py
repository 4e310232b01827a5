"""Morphological particle types: log, standardise, PCA, k-means, at millions of objects.

The year-1 targets count particles per *type*, found from the exported ZooProcess
features rather than from a human's category:

1. **Select** the particles (:class:`MorphologyConfig`: hierarchy prefix ``"not-living"``
   by default, and/or categories, and statuses).
2. **Transform**: ``log1p`` of each feature never negative among the fitted objects (grey
   levels, lengths, ratios: positive, right-skewed), others unchanged (skewness,
   kurtosis); standardise. A row missing a value (NaN or infinite) gets no type.
3. **PCA**: the fewest components explaining ``explained_variance`` (or ``n_components``).
4. **k-means** on the PCA scores: k-means++ on a uniform sample (or k-means||), then
   Lloyd iterations over every object (``dask_ml.cluster.KMeans``). Types are numbered by
   the mean log area of their objects (``type_1`` the smallest), so re-fits agree on names.

Streamed by partition, nothing gathered: one pass merges per-partition counts, minima,
means and co-moments (Chan's pairwise formula), the PCA is the eigen-decomposition of the
small correlation matrix, a second pass persists the PCA scores (``n_components`` floats per
object) that k-means iterates on. ``dask_ml.decomposition.PCA`` was tried and not kept: it
computes the mean in the SVD's graph and hands the whole array to a ``delayed`` call
(peak 1.35 GB for 2 M x 30 random floats, against 0.33 GB streamed).

:func:`assign_types` applies a :class:`MorphologyModel`, one task per partition; its
``object_id, label`` columns are those of the classifier's labels, for the same targets
code. :func:`save_model` / :func:`load_model` keep a model as JSON.

See Also
--------
pipeline.images.morphology_describe : what each type is (``describe_types``, a plate of
    example vignettes ``plot_type_plate``).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed
from sklearn.cluster import KMeans as SKMeans
from threadpoolctl import threadpool_limits

from pipeline.config import check_choice, check_count, check_range, check_strings, config_error
from pipeline.errors import ConfigError, InputFormatError
from pipeline.io import read_bytes
from pipeline.store import file_in_store

__all__ = [
    "DEFAULT_FEATURES",
    "MorphologyConfig",
    "MorphologyModel",
    "assign_types",
    "fit_types",
    "load_model",
    "save_model",
]

logger = logging.getLogger(__name__)

#: ZooProcess features used when ``MorphologyConfig.features`` is None (those present and
#: not NaN in every selected object): grey levels and shape, none that scales with size.
#: Size is the axis of the size-class targets; with area, perimeter, axes, Feret and
#: integrated density added, k-means splits the demo's particles partly by size (ARI with
#: the true types 0.80-0.87 instead of 0.99). Pass ``features=`` to include them.
DEFAULT_FEATURES: tuple[str, ...] = (
    "mean",
    "stddev",
    "mode",
    "min",
    "max",
    "median",
    "range",
    "meanpos",
    "cv",
    "sr",
    "skew",
    "kurt",
    "circ",
    "elongation",
    "perimferet",
    "perimmajor",
    "fractal",
)

_FORMAT = "oceanfields.morphology/1"
_ROWS_PER_PARTITION = 100_000  # pandas inputs are split into partitions of this size
_INIT_SAMPLE = 100_000  # objects sampled for the k-means++ initialisation
_SEL_COLUMNS = ("status", "category", "hierarchy")  # what a selection may read


@dataclass(frozen=True, kw_only=True)
class MorphologyConfig:
    """Options of :func:`fit_types` (defaults live here only).

    Attributes
    ----------
    features : tuple of str, optional
        Feature columns of the objects table. ``None`` (default): those of
        :data:`DEFAULT_FEATURES` present and not NaN in every selected object (logged).
    n_types : int
        Number of types (k-means clusters), >= 2. Default 4.
    n_components : int, optional
        PCA components kept; ``None`` (default): the fewest explaining at least
        ``explained_variance`` of the variance (logged).
    explained_variance : float
        Share of the variance, in (0, 1], when ``n_components`` is None. Default 0.9.
    categories : tuple of str, optional
        Only objects of these categories are particles. Default None: any category.
    hierarchy_prefix : str, optional
        Only objects whose annotation ``hierarchy`` starts with this are particles.
        Default ``"not-living"`` (EcoTaxa's non-living tree, the demo's particle types);
        None for any. Both conditions apply when both are set.
    statuses : tuple of str, optional
        Annotation statuses fitted and assigned. Default ``("V", "P")``; None for all.
    random_state : int
        Seed of the k-means initialisation. Default 0.
    label_prefix : str
        Types are named ``<label_prefix><n>``, n from 1. Default ``"type_"``.
    init : {"sample", "k-means||"}
        k-means initialisation. ``"sample"`` (default): k-means++ (scikit-learn) on a
        uniform sample of at most 100 000 objects, then Lloyd iterations over all of them
        (dask-ml). ``"k-means||"``: dask-ml's scalable initialisation; it keeps its
        candidates unweighted and, on the demo's particles, ended in a worse partition
        in most runs (ARI 0.63-0.86 against 0.99), and more candidates per round cost a
        (rows x candidates) distance matrix per partition.
    n_init : int
        Initialisations, the lowest inertia kept: k-means++ restarts on the sample, or
        full k-means|| runs (seeds ``random_state``, ``random_state + 1``...). Default 10.
    """

    features: tuple[str, ...] | None = None
    n_types: int = 4
    n_components: int | None = None
    explained_variance: float = 0.9
    categories: tuple[str, ...] | None = None
    hierarchy_prefix: str | None = "not-living"
    statuses: tuple[str, ...] | None = ("V", "P")
    random_state: int = 0
    label_prefix: str = "type_"
    init: Literal["sample", "k-means||"] = "sample"
    n_init: int = 10

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        for key in ("features", "categories", "statuses"):
            names = check_strings(
                f"morphology.{key}",
                getattr(self, key),
                min_items=1,
                distinct=True,
                allow_none=True,
            )
            object.__setattr__(self, key, names)
        check_count("morphology.n_types", self.n_types, 2)
        check_count("morphology.n_components", self.n_components, 1, allow_none=True)
        check_count("morphology.n_init", self.n_init, 1)
        check_range(
            "morphology.explained_variance", self.explained_variance, low=0, high=1, low_open=True
        )
        check_choice("morphology.init", self.init, ("sample", "k-means||"))
        if not isinstance(self.label_prefix, str) or not self.label_prefix:
            raise config_error(
                "morphology.label_prefix", self.label_prefix, "expected a non-empty string"
            )


@dataclass
class MorphologyModel:
    """A fitted set of morphological types (small: parameters only, JSON-serialisable).

    Attributes
    ----------
    features : tuple of str
        Feature columns, in order.
    log : tuple of bool
        Whether each feature is ``log1p``-transformed.
    mean, std : numpy.ndarray
        Mean and standard deviation of each (transformed) feature over the fitted objects.
    pca_mean : numpy.ndarray
        Mean subtracted before projection (standardised units; zero for a fresh fit).
    components : numpy.ndarray
        PCA axes kept, shape (n_components, n_features).
    explained_variance_ratio : numpy.ndarray
        Share of the variance of each kept component.
    centres : numpy.ndarray
        Type centres in PCA space, shape (n_types, n_components), in type order.
    labels : tuple of str
        Type names, in order (``type_1`` the smallest mean log area).
    counts : tuple of int
        Fitted objects per type.
    n_fit : int
        Objects fitted.
    n_missing : int
        Selected objects left out of the fit for a missing or infinite feature value.
    selection : dict
        ``categories``, ``hierarchy_prefix``, ``statuses`` of the config: which objects
        are particles (:func:`assign_types` applies it).
    """

    features: tuple[str, ...]
    log: tuple[bool, ...]
    mean: np.ndarray
    std: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray
    centres: np.ndarray
    labels: tuple[str, ...]
    counts: tuple[int, ...]
    n_fit: int
    n_missing: int
    selection: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (arrays as lists); :meth:`from_dict` inverts it."""
        out: dict[str, Any] = {"format": _FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return json.loads(json.dumps(out))  # tuples to lists: what JSON gives back

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MorphologyModel:
        """Rebuild a model written by :meth:`to_dict`; InputFormatError when incomplete."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if data.get("format") != _FORMAT or missing:
            raise InputFormatError(
                f"morphology model: format {data.get('format')!r}, missing {missing}; "
                f"expected {_FORMAT!r} with {names}. Write it with save_model()."
            )
        arrays = ("mean", "std", "pca_mean", "components", "explained_variance_ratio", "centres")
        kw = {n: np.asarray(data[n], dtype="float64") if n in arrays else data[n] for n in names}
        for n in ("features", "log", "labels", "counts"):
            kw[n] = tuple(kw[n])
        return cls(**kw)


def save_model(
    model: MorphologyModel, url: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Write a model as JSON to a local path or fsspec URL, whole (see :func:`load_model`)."""
    store, name = file_in_store(url, storage_options=storage_options)
    store.write_json(name, model.to_dict(), indent=1, newline=False)


def load_model(url: str, *, storage_options: Mapping[str, Any] | None = None) -> MorphologyModel:
    """Read a model written by :func:`save_model`.

    Raises
    ------
    InputFormatError
        When the file is missing, not JSON or not a morphology model; names the URL.
    """
    raw = read_bytes(url, storage_options=storage_options)
    try:
        return MorphologyModel.from_dict(json.loads(raw))
    except (json.JSONDecodeError, InputFormatError) as err:
        raise InputFormatError(f"{url}: {err}") from err


# --- one implementation of selection and projection, used by fit and assign ---------------


def _selected(part: pd.DataFrame, selection: Mapping[str, Any]) -> np.ndarray:
    """Boolean mask of the particles in one partition."""
    keep = np.ones(len(part), dtype=bool)
    if selection.get("statuses") is not None:
        keep &= part["status"].isin(list(selection["statuses"])).to_numpy(dtype=bool)
    if selection.get("categories") is not None:
        keep &= part["category"].isin(list(selection["categories"])).to_numpy(dtype=bool)
    if selection.get("hierarchy_prefix") is not None:
        hier = part["hierarchy"].astype("str").fillna("")
        keep &= hier.str.startswith(selection["hierarchy_prefix"]).to_numpy(dtype=bool)
    return keep


def _particles(
    part: pd.DataFrame, selection: Mapping[str, Any], columns: list[str]
) -> pd.DataFrame:
    """Keep the selected rows (particles) of one partition, ``columns`` only."""
    return part.loc[_selected(part, selection), columns]


def _values(part: pd.DataFrame, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(feature matrix, mask of the rows finite in every feature) of one partition."""
    values = part[list(features)].to_numpy(dtype="float64", na_value=np.nan)
    return values, np.isfinite(values).all(axis=1)


def _scores(values: np.ndarray, model: MorphologyModel) -> np.ndarray:
    """PCA scores of complete rows: log1p (negatives clipped to 0), standardise, project."""
    x = np.where(model.log, np.log1p(np.clip(values, 0.0, None)), values)
    return ((x - model.mean) / model.std - model.pca_mean) @ model.components.T


def _nearest(scores: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the Euclidean distance to it."""
    d2 = ((scores[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    idx = d2.argmin(axis=1) if len(d2) else np.zeros(0, dtype=int)
    return idx, np.sqrt(d2[np.arange(len(d2)), idx])


# --- fit ------------------------------------------------------------------------------------


def _as_dask(objects: pd.DataFrame | dd.DataFrame) -> dd.DataFrame:
    if isinstance(objects, dd.DataFrame):
        return objects
    if isinstance(objects, pd.DataFrame):
        n = max(1, math.ceil(len(objects) / _ROWS_PER_PARTITION))
        return dd.from_pandas(objects, npartitions=n, sort=False)
    raise ConfigError(
        f"morphology: objects is a {type(objects).__name__}; pass the objects table as a "
        "pandas or dask DataFrame (pipeline.sources.ecotaxa.read_ecotaxa(...).accepted)."
    )


def _check_columns(columns: Sequence[str], selection: Mapping[str, Any], where: str) -> None:
    need = {"statuses": "status", "categories": "category", "hierarchy_prefix": "hierarchy"}
    for key, column in need.items():
        if selection.get(key) is not None and column not in columns:
            raise ConfigError(
                f"morphology.{key}: the objects table has no {column!r} column ({where}); "
                f"set {key}=None or pass a table read by read_ecotaxa."
            )


def _moments(part: pd.DataFrame, features: Sequence[str]) -> dict[str, Any]:
    """Count, minimum, mean and co-moment of [x, log1p(max(x, 0))] over complete rows."""
    values, complete = _values(part, features)
    v = values[complete]
    aug = np.hstack([v, np.log1p(np.clip(v, 0.0, None))])
    mean = aug.mean(axis=0) if len(aug) else np.zeros(aug.shape[1])
    dev = aug - mean
    vmin = v.min(axis=0) if len(v) else np.full(v.shape[1], np.inf)
    return {"rows": len(values), "n": len(v), "mean": mean, "m2": dev.T @ dev, "min": vmin}


def _merge_moments(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Chan et al.'s pairwise update of two partial moments."""
    n = a["n"] + b["n"]
    delta = b["mean"] - a["mean"]
    w = b["n"] / n if n else 0.0
    return {
        "rows": a["rows"] + b["rows"],
        "n": n,
        "mean": a["mean"] + delta * w,
        "m2": a["m2"] + b["m2"] + np.outer(delta, delta) * a["n"] * w,
        "min": np.minimum(a["min"], b["min"]),
    }


def _tree(items: list[Delayed], merge: Callable[[Any, Any], Any]) -> Delayed:
    """Pairwise tree reduction of delayed values (graph depth log2 of their number)."""
    while len(items) > 1:
        pairs = [dask.delayed(merge)(a, b) for a, b in zip(items[::2], items[1::2], strict=False)]
        items = pairs + ([items[-1]] if len(items) % 2 else [])
    return items[0]


def _auto_features(frame: dd.DataFrame, selection: Mapping[str, Any]) -> tuple[str, ...]:
    present = [f for f in DEFAULT_FEATURES if f in frame.columns]
    total = frame.map_partitions(_particles, selection, present).count().compute()
    chosen = tuple(f for f in present if total[f] > 0)
    logger.info(
        "morphology: features %s (of the defaults; absent or NaN everywhere: %s)",
        ", ".join(chosen),
        ", ".join(f for f in DEFAULT_FEATURES if f not in chosen) or "none",
    )
    if len(chosen) < 2:
        raise ConfigError(
            "morphology.features: fewer than 2 default features have values in the selected "
            f"objects (found {list(chosen)}); pass features=[...] naming the table's columns."
        )
    return chosen


def _pca(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a correlation matrix: (variances desc, axes as rows)."""
    w, v = np.linalg.eigh(corr)
    order = np.argsort(w)[::-1]
    w, axes = np.clip(w[order], 0.0, None), v[:, order].T
    sign = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    return w, axes * sign[:, None]  # largest loading positive: a deterministic sign


def fit_types(
    objects: pd.DataFrame | dd.DataFrame, *, config: MorphologyConfig | None = None
) -> MorphologyModel:
    """Fit morphological types on the particles of an objects table.

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table (:func:`pipeline.sources.ecotaxa.read_ecotaxa`): the feature columns
        and ``status``, ``category``, ``hierarchy`` as the selection needs. A dask frame
        is streamed by partition; a pandas one is split into partitions of 100 000 rows.
    config : MorphologyConfig, optional
        Selection, features, number of types and components, seed.

    Returns
    -------
    MorphologyModel
        The fitted parameters (what :func:`assign_types` needs).

    Raises
    ------
    ConfigError
        When a chosen feature or a selection column is missing, or fewer objects than
        types (or than two) have every feature.

    See Also
    --------
    assign_types : name the type of each object.
    pipeline.images.morphology_describe.describe_types : counts and feature means per type.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> small = rng.lognormal(1.0, 0.1, size=(60, 2)); big = rng.lognormal(4.0, 0.1, (60, 2))
    >>> objects = pd.DataFrame(np.vstack([small, big]), columns=["area", "feret"])
    >>> cfg = MorphologyConfig(features=("area", "feret"), n_types=2, hierarchy_prefix=None,
    ...                        statuses=None)
    >>> model = fit_types(objects, config=cfg)
    >>> model.features, model.log, model.labels, model.counts
    (('area', 'feret'), (True, True), ('type_1', 'type_2'), (60, 60))
    """
    config = config or MorphologyConfig()
    selection = {k: getattr(config, k) for k in ("categories", "hierarchy_prefix", "statuses")}
    frame = _as_dask(objects)
    _check_columns(list(frame.columns), selection, "fit_types")
    if config.features is None:
        features = _auto_features(frame, selection)
    else:
        features = config.features
        unknown = [f for f in features if f not in frame.columns]
        if unknown:
            raise ConfigError(
                f"morphology.features: {unknown} not in the objects table; valid numeric "
                f"columns include {[c for c in DEFAULT_FEATURES if c in frame.columns]}."
            )
    kept = [*features, *(["area"] if "area" in frame.columns and "area" not in features else [])]
    needed = [*kept, *(c for c in _SEL_COLUMNS if c in frame.columns and c not in kept)]
    parts = frame[needed].map_partitions(_particles, selection, kept)
    partial = [dask.delayed(_moments)(b, features) for b in parts.to_delayed()]
    total, sizes = dask.compute(_tree(partial, _merge_moments), [p["n"] for p in partial])
    n_fit, n_missing, nf = int(total["n"]), int(total["rows"] - total["n"]), len(features)
    logger.info(
        "morphology: %d selected objects, %d fitted, %d without a type (missing or "
        "infinite value in a feature)",
        total["rows"],
        n_fit,
        n_missing,
    )
    if n_fit < max(config.n_types, 2):
        raise ConfigError(
            f"morphology: only {n_fit} selected objects have every feature, fewer than "
            f"n_types={config.n_types}; check the selection (hierarchy_prefix, categories, "
            f"statuses: {selection}) and the features {list(features)}."
        )
    log = total["min"] >= 0.0
    logger.info(
        "morphology: log1p of %s (never negative); unchanged: %s",
        ", ".join(f for f, lg in zip(features, log, strict=True) if lg) or "none",
        ", ".join(f for f, lg in zip(features, log, strict=True) if not lg) or "none",
    )
    pick = np.where(log, np.arange(nf) + nf, np.arange(nf))
    mean = total["mean"][pick]
    cov = total["m2"][np.ix_(pick, pick)] / max(n_fit - 1, 1)
    std = np.sqrt(np.diag(cov))
    if (std == 0).any():
        logger.info("morphology: constant features %s", np.asarray(features)[std == 0])
        std = np.where(std == 0, 1.0, std)
    variances, axes = _pca(cov / np.outer(std, std))
    ratio = variances / variances.sum() if variances.sum() > 0 else np.full(nf, 1.0 / nf)
    k = config.n_components
    if k is None:
        k = int(min(np.searchsorted(np.cumsum(ratio), config.explained_variance - 1e-12) + 1, nf))
        logger.info(
            "morphology: %d PCA components explain %.3f >= %.2f of the variance",
            k,
            ratio[:k].sum(),
            config.explained_variance,
        )
    elif k > nf:
        raise ConfigError(f"morphology.n_components: {k} > the {nf} features {list(features)}.")
    model = MorphologyModel(
        features=tuple(features),
        log=tuple(bool(x) for x in log),
        mean=mean,
        std=std,
        pca_mean=np.zeros(nf),
        components=axes[:k],
        explained_variance_ratio=ratio[:k],
        centres=np.zeros((0, k)),
        labels=(),
        counts=(),
        n_fit=n_fit,
        n_missing=n_missing,
        selection=selection,
    )
    return _fit_kmeans(model, parts, sizes, config)


def _block_scores(part: pd.DataFrame, model: MorphologyModel, key: str | None) -> pd.DataFrame:
    """PCA scores of the complete rows and the key types are ordered by (log1p area)."""
    values, complete = _values(part, model.features)
    scores = _scores(values[complete], model)
    out = pd.DataFrame(scores, columns=[f"pc{i + 1}" for i in range(scores.shape[1])])
    out["key"] = np.log1p(part[key].to_numpy(dtype="float64")[complete]) if key else scores[:, 0]
    return out


def _type_sums(part: pd.DataFrame, centres: np.ndarray) -> pd.DataFrame:
    """Per type (row): objects, and the sum and count of the finite keys."""
    idx = _nearest(part.drop(columns="key").to_numpy(dtype="float64"), centres)[0]
    key = part["key"].to_numpy(dtype="float64")
    ok = np.isfinite(key)
    k = len(centres)
    return pd.DataFrame(
        {
            "n": np.bincount(idx, minlength=k),
            "key_sum": np.bincount(idx[ok], key[ok], minlength=k),
            "key_n": np.bincount(idx[ok], minlength=k),
        }
    )


def _fit_kmeans(
    model: MorphologyModel, parts: dd.DataFrame, sizes: list[int], config: MorphologyConfig
) -> MorphologyModel:
    from dask_ml.cluster import KMeans  # imported late: numba compiles on import

    key = "area" if "area" in parts.columns else None
    # The scores are persisted as a frame, then viewed as an array: k-means reads them many
    # times, and (dask 2026.7) an array made straight from a frame built by dd.from_delayed
    # over nout>1 tasks (our readers) loses a dependency when computed.
    meta = _block_scores(parts._meta, model, key)
    frame = parts.map_partitions(_block_scores, model, key, meta=meta).persist()
    # The array persisted too: k-means graphs then name its chunks, not the frame's
    # aliases (which dask may resubmit with another run_spec: a scheduler warning).
    scores = frame.drop(columns="key").to_dask_array(lengths=sizes).persist()
    init: np.ndarray | str = "k-means||"
    if config.init == "sample":  # k-means++ restarts on a uniform sample, in memory
        frac = min(1.0, _INIT_SAMPLE / model.n_fit)
        sample = frame.drop(columns="key").sample(frac=frac, random_state=config.random_state)
        sample = sample.compute().to_numpy()
        with threadpool_limits(1, user_api="openmp"):  # busy cores: 5 s instead of 0.03 s
            pp = SKMeans(config.n_types, n_init=config.n_init, random_state=config.random_state)
            init = pp.fit(sample).cluster_centers_
        logger.info(
            "morphology: k-means++ (%d inits) on %d sampled objects", config.n_init, len(sample)
        )
    runs = []
    for i in range(1 if config.init == "sample" else config.n_init):
        km = KMeans(
            n_clusters=config.n_types,
            init=init,
            random_state=config.random_state + i,
            n_init=10,  # k-means||: k-means++ restarts on its candidates (few, in memory)
        )
        with threadpool_limits(1, user_api="openmp"), warnings.catch_warnings():
            # k-means|| divides 0/0 once every object is a candidate (tiny tables)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            km.fit(scores)
        runs.append((km.inertia_, i, np.asarray(km.cluster_centers_, dtype="float64")))
    _, best, centres = min(runs, key=lambda r: (r[0], r[1]))
    logger.info(
        "morphology: k-means (%s) inertia %s; kept run %d",
        config.init,
        ", ".join(f"{r[0]:.6g}" for r in runs),
        best,
    )
    sums = frame.map_partitions(_type_sums, centres, meta=_type_sums(meta, centres[:0]))
    sums = sums.compute().groupby(level=0).sum().reindex(range(len(centres)), fill_value=0)
    mean_key = (sums["key_sum"] / sums["key_n"].replace(0, np.nan)).fillna(np.inf)
    order = np.argsort(mean_key.to_numpy(), kind="stable")  # type_1: smallest mean log area
    labels = tuple(f"{config.label_prefix}{i + 1}" for i in range(len(centres)))
    model.centres = centres[order]
    model.labels = labels
    model.counts = tuple(int(c) for c in sums["n"].to_numpy()[order])
    logger.info(
        "morphology: %d types, by mean %s: %s",
        len(labels),
        "log1p(area)" if key else "first PCA score",
        ", ".join(f"{n} {c}" for n, c in zip(labels, model.counts, strict=True)),
    )
    return model


# --- assign ---------------------------------------------------------------------------------


def _assign_part(part: pd.DataFrame, model: MorphologyModel, select: bool) -> pd.DataFrame:
    if select:
        part = part.loc[_selected(part, model.selection)]
    values, complete = _values(part, model.features)
    idx, dist = _nearest(_scores(values[complete], model), model.centres)
    label = np.full(len(part), None, dtype=object)
    label[complete] = np.asarray(model.labels, dtype=object)[idx]
    distance = np.full(len(part), np.nan)
    distance[complete] = dist
    return pd.DataFrame(
        {
            "object_id": part["object_id"].to_numpy(),
            "label": pd.array(label, dtype="str"),
            "distance": distance,
        }
    )


def assign_types(
    objects: pd.DataFrame | dd.DataFrame, model: MorphologyModel, *, select: bool = True
) -> pd.DataFrame | dd.DataFrame:
    """Name the morphological type of each particle (lazily, one task per partition).

    Parameters
    ----------
    objects : pandas.DataFrame or dask.dataframe.DataFrame
        Objects table with ``object_id`` and the model's features.
    model : MorphologyModel
        From :func:`fit_types` or :func:`load_model`.
    select : bool
        Keep only the objects the model's selection calls particles (default True);
        False types every row.

    Returns
    -------
    pandas.DataFrame or dask.dataframe.DataFrame
        ``object_id``, ``label`` (type name; missing when a feature value is missing or
        infinite) and ``distance`` (to the type's centre, in PCA units); pandas for a
        pandas input, lazy dask (same partitions) otherwise.

    Examples
    --------
    >>> objects = pd.DataFrame({"object_id": ["a", "b", "c", "d"],
    ...                         "area": [3.0, 4.0, 300.0, np.nan], "feret": [2.0, 2.5, 40.0, 9.0]})
    >>> cfg = MorphologyConfig(features=("area", "feret"), n_types=2, hierarchy_prefix=None,
    ...                        statuses=None)
    >>> model = fit_types(objects, config=cfg)
    >>> assign_types(objects, model)["label"].tolist()
    ['type_1', 'type_1', 'type_2', nan]
    """
    cols = ["object_id", *model.features]
    cols += [c for c in _SEL_COLUMNS if select and c in objects.columns and c not in cols]
    if "object_id" not in objects.columns or any(f not in objects.columns for f in cols):
        missing = [c for c in cols if c not in objects.columns]
        raise ConfigError(
            f"assign_types: the objects table lacks {missing}; it needs object_id and the "
            "model's features (model.features)."
        )
    if select:
        _check_columns(list(objects.columns), model.selection, "assign_types")
    if isinstance(objects, dd.DataFrame):
        meta = _assign_part(objects[cols]._meta, model, select)
        return objects[cols].map_partitions(_assign_part, model, select, meta=meta)
    return _assign_part(objects[cols], model, select)
