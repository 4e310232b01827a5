"""Targets per particle type or taxon: object concentrations per profile and depth layer.

Where the objects table (EcoTaxa, :func:`pipeline.sources.ecotaxa.read_ecotaxa`) gives
each imaged object a category (a particle type or a taxon), :func:`build_object_targets`
counts the objects of each category of interest per (profile, layer) and divides by the
water they stand for:

    conc_<category>_per_l = sum over objects of 1 / subsample_fraction  /  volume_l

i.e. ``count / (volume_l * subsample_fraction)`` when one fraction applies to the whole
cast (# L-1). ``volume_l`` is the volume the UVP imaged in the layer, taken from the
particle targets of :func:`pipeline.targets.particles.build_targets` (its ``id, layer, volume_l``),
so object targets share rows, layers and coverage rules with the particle targets:
a (profile, layer) the particle targets left out has no object target either.

Choices made and why (automatic choices are logged at INFO):

- **Which objects count**: annotation status in ``statuses`` (default validated ``V``
  and predicted ``P``; dubious ``D`` and unclassified objects are left out), category in
  ``categories`` (default: every non-empty category seen among those statuses, sorted),
  depth ``depth_min_m`` in the layer, top inclusive, bottom exclusive. UVP objects have
  ``depth_min_m == depth_max_m``; net samples (a depth range per object) are not
  meant for these targets: :func:`pipeline.targets.nets.build_net_targets` gives them
  one row per sample.
- **Profile**: the objects' ``sample_id`` is the profile id of the particle targets
  (``id``, EcoPart's profile id): EcoTaxa UVP projects name each sample after its
  EcoPart profile (the demo writes ``sample_id == sample_profileid == profile_id``).
- **Zero is an observation**: a category absent from a (profile, layer) of a profile
  that has objects gives 0. A profile with *no* object at all in the objects table was
  not classified (not in the EcoTaxa project): its rows are skipped with a reason, not
  set to 0.
- **Subsample**: each object stands for ``1 / subsample_fraction`` objects (the demo's
  exports image a uniform random subsample; real UVP exports have fraction 1). A table
  without the column is read as fraction 1 (logged).
- **Dubious objects are not redistributed**: leaving ``D`` out lowers every
  concentration by the share of dubious objects (about 5 % in the demo world); pass
  ``statuses=("V", "P", "D")`` to count them under their (uncertain) category.
- **Layers** should lie on the particle table's depth bins (multiples of 5 m): the
  volume of a layer sums the bins whose centre is in the layer, objects are placed by
  their own depth.

Developer note: the objects table is read once, by one ``map_partitions`` that counts
per (profile, layer, category) within each partition, followed by a groupby-sum across
partitions (a profile split across files is summed correctly) and one small task that
joins the counts to ``sampled``. The graph grows with the objects' partitions, not rows.
With dask inputs the results are dask DataFrames (nothing is computed, except the list
of categories when ``categories`` is None: one pass over the category column, logged);
with pandas inputs they are pandas DataFrames.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pipeline.config import (
    check_choice,
    check_count,
    check_range,
    check_strings,
    config_error,
)
from pipeline.errors import ConfigError
from pipeline.images.abstention import UNASSIGNED
from pipeline.targets.particles import DEFAULT_LAYERS, Layer

__all__ = [
    "ObjectTargetConfig",
    "ObjectTargetsResult",
    "build_object_targets",
    "category_column",
]

logger = logging.getLogger(__name__)

_STATUSES = ("V", "P", "D", "")
_LABEL_USES = ("annotated", "machine", "human_first")
_REQUIRED = ("sample_id", "category", "status", "depth_min_m")
_SAMPLED = ("id", "layer", "volume_l")
_NO_OBJECTS = "profile has no object in the objects table (not classified in EcoTaxa?)"


@dataclass(frozen=True, kw_only=True)
class ObjectTargetConfig:
    """Options of :func:`build_object_targets` (defaults live here only).

    Attributes
    ----------
    categories : tuple of str, optional
        Categories (``object_annotation_category`` names) to make targets of; ``None``
        (default) takes every non-empty category seen among the counted statuses,
        sorted. Other categories are ignored.
    statuses : tuple of str
        Annotation statuses that count: ``"V"`` validated, ``"P"`` predicted, ``"D"``
        dubious, ``""`` unclassified. Default ``("V", "P")``.
    layers : tuple of Layer
        Depth layers; the same as the particle targets' (``TargetConfig.layers``).
    min_objects : int
        Minimum number of counted objects (all selected categories together) in a
        (profile, layer) for a row; fewer are skipped with a reason. Default 0 keeps
        zero-count rows: a zero is an observation.
    labels : {"annotated", "machine", "human_first"}
        Which category each object counts under, read by the run's targets step:
        ``"annotated"`` (default) the EcoTaxa category; ``"machine"`` the label of the
        run's labels table (``inputs.labels``) for every object; ``"human_first"`` the
        validated category where there is one, else the label. The labels are applied
        by :func:`pipeline.images.labels.apply_labels` before
        :func:`build_object_targets`, which itself counts the ``category`` column as
        given. They live here, not in a section of their own, because they only decide
        which objects these targets count.
    min_prob : float
        With machine labels, labels whose top-1 probability is below this are not used
        (the object is left out). 0 to 1; default 0 uses every label.
    count_unassigned : bool
        Count the objects of category ``unassigned`` (machine labels below their
        class's probability threshold, :mod:`pipeline.images.abstention`) as a category
        of their own, also when ``categories`` lists others and ``labels`` is
        ``"machine"`` or ``"human_first"`` (default True; with ``categories`` None it
        is counted whenever the data hold it): their
        concentration ``conc_unassigned_per_l`` and share (``share_unassigned`` of the
        counts, :attr:`ObjectTargetsResult.unassigned_share`) show how much the other
        concentrations may miss.
    """

    categories: tuple[str, ...] | None = None
    statuses: tuple[str, ...] = ("V", "P")
    layers: tuple[Layer, ...] = DEFAULT_LAYERS
    min_objects: int = 0
    labels: Literal["annotated", "machine", "human_first"] = "annotated"
    min_prob: float = 0.0
    count_unassigned: bool = True

    def __post_init__(self) -> None:
        """Check the options; raise ConfigError naming the key."""
        cats = check_strings(
            "object_targets.categories",
            self.categories,
            min_items=1,
            distinct=True,
            allow_none=True,
        )
        if cats is not None:
            if "" in cats:
                raise config_error(
                    "object_targets.categories",
                    list(cats),
                    "expected non-empty names, or None for every category seen",
                    problem="holds ''",
                )
            object.__setattr__(self, "categories", cats)
            _columns(cats)  # raises on two categories with one column name
        statuses = check_strings(
            "object_targets.statuses",
            self.statuses,
            valid=_STATUSES,
            min_items=1,
            fix="'V' validated, 'P' predicted, 'D' dubious, '' unclassified",
        )
        object.__setattr__(self, "statuses", statuses)
        layers = tuple(self.layers)
        for layer in layers:
            if not layer.bottom_m > layer.top_m >= 0:
                raise config_error(
                    "object_targets.layers", layer, "expected 0 <= top_m < bottom_m (m)"
                )
        if len({layer.name for layer in layers}) != len(layers) or not layers:
            raise config_error(
                "object_targets.layers",
                [la.name for la in layers],
                "expected distinct layers, at least one",
            )
        object.__setattr__(self, "layers", layers)
        check_count("object_targets.min_objects", self.min_objects, 0)
        check_choice("object_targets.labels", self.labels, _LABEL_USES)
        check_range("object_targets.min_prob", self.min_prob, low=0, high=1)


@dataclass
class ObjectTargetsResult:
    """Object targets, their counts and the rows skipped.

    pandas DataFrames for pandas inputs, lazy dask DataFrames (one partition) when the
    objects table or ``sampled`` is a dask DataFrame.

    Attributes
    ----------
    targets : pandas.DataFrame or dask.dataframe.DataFrame
        ``id, layer`` and one ``conc_<category>_per_l`` column (# L-1) per category,
        one row per (profile, layer) of ``sampled`` kept, sorted by id then layer.
    counts : pandas.DataFrame or dask.dataframe.DataFrame
        ``id, layer, volume_l`` and one ``count_<category>`` column (raw number of
        objects, before the subsample fraction), same rows as ``targets``.
    targets_columns : list of str
        The concentration columns, in category order.
    categories : tuple of str
        The categories, in the order of ``targets_columns``.
    skipped : pandas.DataFrame or dask.dataframe.DataFrame
        ``id, layer, reason`` of the rows of ``sampled`` left out.
    unassigned_share : float or dask Scalar, optional
        Share of the counted objects (rows kept, all categories) whose category is
        ``unassigned`` (a lazy scalar for dask inputs); None when ``unassigned`` is not
        a category. The counts then carry it per row as ``share_unassigned``.
    """

    targets: pd.DataFrame | dd.DataFrame
    counts: pd.DataFrame | dd.DataFrame
    targets_columns: list[str] = field(default_factory=list)
    categories: tuple[str, ...] = ()
    skipped: pd.DataFrame | dd.DataFrame | None = None
    unassigned_share: Any = None


def category_column(category: str) -> str:
    """ASCII, snake-safe name of a category, as used in ``conc_<name>_per_l``.

    Letters, digits and ``_`` are kept with their case (``Copepoda`` as in the demo
    truth); accents are dropped; any other run of characters (``<``, ``>``, spaces,
    ``-``, ``.``) becomes one ``_``.

    Parameters
    ----------
    category : str
        An ``object_annotation_category`` name.

    Returns
    -------
    str
        The name used in the column.

    Raises
    ------
    ConfigError
        When nothing usable is left (e.g. ``"<>"``).

    Examples
    --------
    >>> category_column("Copepoda"), category_column("egg<other")
    ('Copepoda', 'egg_other')
    >>> category_column("dark_aggregate"), category_column("Pleurobrachia pileus (té)")
    ('dark_aggregate', 'Pleurobrachia_pileus_te')
    """
    ascii_ = unicodedata.normalize("NFKD", category).encode("ascii", "ignore").decode()
    name = re.sub(r"[^A-Za-z0-9_]+", "_", ascii_).strip("_")
    if not name:
        raise ConfigError(
            f"object_targets.categories: {category!r} has no letter or digit to name a "
            "column; rename the category or leave it out of categories."
        )
    return name


def _columns(categories: Sequence[str]) -> list[str]:
    names = [category_column(c) for c in categories]
    seen: dict[str, str] = {}
    for cat, name in zip(categories, names, strict=True):
        if name in seen:
            raise ConfigError(
                f"object_targets.categories: {seen[name]!r} and {cat!r} both give the column "
                f"conc_{name}_per_l; list only one of them in categories."
            )
        seen[name] = cat
    return names


def _seen_categories(
    objects: pd.DataFrame | dd.DataFrame, statuses: Sequence[str], step: str
) -> tuple[str, ...]:
    """Every non-empty category among the objects of ``statuses``, sorted (one pass, logged).

    Raises ConfigError naming ``step`` when there is none.
    """
    counted = objects["category"][objects["status"].isin(statuses)]
    if isinstance(counted, dd.Series):  # a tree reduction into one partition: no shuffle
        seen = counted.drop_duplicates(split_out=1).compute()
    else:
        seen = counted.drop_duplicates()
    categories = tuple(sorted(c for c in seen.astype(str) if c))
    logger.info(
        "%s: categories from the data (statuses %s): %d, %s",
        step,
        "/".join(statuses),
        len(categories),
        ", ".join(categories[:10]) + (" …" if len(categories) > 10 else ""),
    )
    if not categories:
        raise ConfigError(
            f"{step}: the objects table has no categorised object with status in "
            f"{list(statuses)!r}; check the statuses option, the EcoTaxa export, or label "
            "the objects first (pipeline.images.labels.apply_labels)."
        )
    return categories


def _count_part(
    part: pd.DataFrame,
    categories: tuple[str, ...],
    statuses: tuple[str, ...],
    layers: tuple[Layer, ...],
) -> pd.DataFrame:
    """Count objects and sum 1/fraction per (id, layer) and category in one partition."""
    names = _columns(categories)
    sel = part[part["status"].isin(statuses) & part["category"].isin(categories)]
    depth = sel["depth_min_m"].to_numpy(dtype="float64")
    if "subsample_fraction" in sel.columns:
        weight = 1.0 / sel["subsample_fraction"].to_numpy(dtype="float64")
    else:
        weight = np.ones(len(sel))
    code = pd.Categorical(sel["category"], categories=list(categories)).codes.astype("int64")
    ids_all = sel["sample_id"].astype(str).to_numpy()
    k = len(categories)
    frames = []
    for layer in layers:
        inside = (depth >= layer.top_m) & (depth < layer.bottom_m)
        if not inside.any():
            continue
        id_code, ids = pd.factorize(ids_all[inside], sort=True)
        key = id_code * k + code[inside]
        size = len(ids) * k
        count = np.bincount(key, minlength=size).reshape(len(ids), k).astype("float64")
        summed = np.bincount(key, weights=weight[inside], minlength=size).reshape(len(ids), k)
        frame = pd.DataFrame(
            np.hstack([count, summed]),
            columns=[f"count_{n}" for n in names] + [f"w_{n}" for n in names],
        )
        frame.insert(0, "layer", layer.name)
        frame.insert(0, "id", np.asarray(ids, dtype=object))
        frames.append(frame)
    if not frames:
        return _count_meta(names)
    out = pd.concat(frames, ignore_index=True)
    return out.reindex(columns=_count_meta(names).columns).astype(_count_meta(names).dtypes)


def _count_meta(names: Sequence[str]) -> pd.DataFrame:
    cols = {"id": pd.Series([], dtype=str), "layer": pd.Series([], dtype=str)}
    cols.update({f"count_{n}": pd.Series([], dtype="float64") for n in names})
    cols.update({f"w_{n}": pd.Series([], dtype="float64") for n in names})
    return pd.DataFrame(cols)


def _combined_meta(names: Sequence[str]) -> pd.DataFrame:
    cols = {
        "id": pd.Series([], dtype=str),
        "layer": pd.Series([], dtype=str),
        "volume_l": pd.Series([], dtype="float64"),
    }
    cols.update({f"count_{n}": pd.Series([], dtype="int64") for n in names})
    cols.update({f"conc_{n}_per_l": pd.Series([], dtype="float64") for n in names})
    cols["reason"] = pd.Series([], dtype=str)
    return pd.DataFrame(cols)


def _combine(
    counts: pd.DataFrame,
    present: pd.Series | np.ndarray,
    sampled: pd.DataFrame,
    names: list[str],
    config: ObjectTargetConfig,
) -> pd.DataFrame:
    """Join the summed counts to the sampled volumes; concentrations and skip reasons."""
    order = {layer.name: k for k, layer in enumerate(config.layers)}
    rows = pd.DataFrame(
        {
            "id": sampled["id"].astype(str).to_numpy(),
            "layer": sampled["layer"].astype(str).to_numpy(),
            "volume_l": sampled["volume_l"].to_numpy(dtype="float64"),
        }
    )
    unknown = sorted(set(rows["layer"]) - set(order))
    if unknown:
        raise ConfigError(
            f"build_object_targets: sampled has layer(s) {unknown!r} that are not in "
            f"config.layers {list(order)!r}; give ObjectTargetConfig the layers of the "
            "TargetConfig that built the particle targets."
        )
    if rows.duplicated(["id", "layer"]).any():
        dup = rows[rows.duplicated(["id", "layer"])].iloc[0]
        raise ConfigError(
            f"build_object_targets: sampled repeats (id, layer) ({dup['id']!r}, "
            f"{dup['layer']!r}); pass the targets of build_targets, one row per pair."
        )
    summed = counts.groupby(["id", "layer"], sort=False, as_index=False).sum()
    frame = rows.merge(summed, on=["id", "layer"], how="left", validate="one_to_one")
    out = frame[["id", "layer", "volume_l"]].copy()
    total = np.zeros(len(frame))
    for n in names:
        count = frame[f"count_{n}"].fillna(0.0).to_numpy()
        total += count
        out[f"count_{n}"] = np.rint(count).astype("int64")
    for n in names:
        weight = frame[f"w_{n}"].fillna(0.0).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"conc_{n}_per_l"] = weight / out["volume_l"].to_numpy()
    has_objects = out["id"].isin(set(np.asarray(present, dtype=object))).to_numpy()
    reason = np.where(
        ~has_objects,
        _NO_OBJECTS,
        np.where(
            total < config.min_objects,
            f"fewer than min_objects={config.min_objects} objects counted",
            np.where(out["volume_l"].to_numpy() > 0, "", "sampled volume_l is not positive"),
        ),
    )
    out["reason"] = pd.Series(reason, index=out.index, dtype=str)
    out["_order"] = out["layer"].map(order)
    out = out.sort_values(["id", "_order"], kind="stable").drop(columns="_order")
    return out.reset_index(drop=True).astype(_combined_meta(names).dtypes)


def _check_inputs(
    objects: pd.DataFrame | dd.DataFrame, sampled: pd.DataFrame | dd.DataFrame
) -> None:
    missing = [c for c in _REQUIRED if c not in objects.columns]
    if missing:
        raise ConfigError(
            f"build_object_targets: the objects table lacks {missing}; build it with "
            "pipeline.sources.ecotaxa.read_ecotaxa (columns sample_id, category, status, "
            "depth_min_m, subsample_fraction)."
        )
    missing = [c for c in _SAMPLED if c not in sampled.columns]
    if missing:
        raise ConfigError(
            f"build_object_targets: sampled lacks {missing}; pass the particle targets, "
            "build_targets(particles).targets (columns id, layer, volume_l)."
        )


def build_object_targets(
    objects: dd.DataFrame | pd.DataFrame,
    sampled: dd.DataFrame | pd.DataFrame,
    *,
    config: ObjectTargetConfig | None = None,
) -> ObjectTargetsResult:
    """Concentrations (# L-1) per profile, layer and category from the objects table.

    Parameters
    ----------
    objects : dask.dataframe.DataFrame or pandas.DataFrame
        Canonical objects table (:func:`pipeline.sources.ecotaxa.read_ecotaxa`):
        ``sample_id`` (the profile id), ``category``, ``status`` (V/P/D),
        ``depth_min_m`` (m) and ``subsample_fraction`` (fraction of the counted objects
        that were imaged, 1 when absent).
    sampled : dask.dataframe.DataFrame or pandas.DataFrame
        Volume imaged per (profile, layer): the particle targets of
        :func:`pipeline.targets.particles.build_targets` (``id, layer, volume_l`` in L; other
        columns ignored). One output row per row of ``sampled``.
    config : ObjectTargetConfig, optional
        Categories, statuses, layers (those of the particle targets) and
        ``min_objects``.

    Returns
    -------
    ObjectTargetsResult
        ``targets`` (``id, layer, conc_<category>_per_l``), ``counts`` (``id, layer,
        volume_l, count_<category>``), ``targets_columns``, ``categories`` and
        ``skipped`` (``id, layer, reason``); pandas for pandas inputs, lazy dask
        otherwise.

    Raises
    ------
    ConfigError
        When a required column is missing, ``sampled`` has a layer that is not in
        ``config.layers`` or repeats an (id, layer), or no category is found.

    See Also
    --------
    pipeline.targets.build_targets : particle-size targets, the rows and volumes used here.

    Examples
    --------
    >>> objects = pd.DataFrame({"sample_id": ["p1", "p1", "p1", "p1"],
    ...     "category": ["fiber", "fiber", "Copepoda", "fiber"],
    ...     "status": ["V", "P", "V", "D"], "depth_min_m": [10.0, 99.9, 100.0, 20.0],
    ...     "subsample_fraction": 0.5})
    >>> sampled = pd.DataFrame({"id": ["p1", "p1"], "layer": ["0-100m", "100-500m"],
    ...                         "volume_l": [200.0, 800.0]})
    >>> res = build_object_targets(objects, sampled)
    >>> res.targets_columns
    ['conc_Copepoda_per_l', 'conc_fiber_per_l']
    >>> res.targets.to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'id': 'p1', 'layer': '0-100m', 'conc_Copepoda_per_l': 0.0, 'conc_fiber_per_l': 0.02},
     {'id': 'p1', 'layer': '100-500m', 'conc_Copepoda_per_l': 0.0025,
      'conc_fiber_per_l': 0.0}]
    """
    config = config or ObjectTargetConfig()
    _check_inputs(objects, sampled)
    lazy = isinstance(objects, dd.DataFrame) or isinstance(sampled, dd.DataFrame)
    if "subsample_fraction" not in objects.columns:
        logger.info("object targets: no subsample_fraction column, every object counts once")
    categories = config.categories
    if categories is None:
        categories = _seen_categories(objects, config.statuses, "object targets")
    if (
        config.count_unassigned
        and config.labels != "annotated"
        and config.categories is not None
        and UNASSIGNED not in categories
    ):
        categories = (*categories, UNASSIGNED)
        logger.info("object targets: %r counted as a category of its own", UNASSIGNED)
    names = _columns(categories)
    args = (tuple(categories), tuple(config.statuses), tuple(config.layers))
    if lazy:
        objs = objects if isinstance(objects, dd.DataFrame) else dd.from_pandas(objects, 1)
        counts = objs.map_partitions(_count_part, *args, meta=_count_meta(names))
        # tree reductions into one partition (small results): no shuffle
        counts = counts.groupby(["id", "layer"]).sum(split_out=1).reset_index()
        present = objs["sample_id"].drop_duplicates(split_out=1)
        sampled_frame = sampled if isinstance(sampled, dd.DataFrame) else dd.from_pandas(sampled, 1)
        combined = dd.from_delayed(
            [
                dask.delayed(_combine)(
                    counts,
                    present,
                    sampled_frame[list(_SAMPLED)],
                    names,
                    config,
                )
            ],
            meta=_combined_meta(names),
            verify_meta=False,
        )
    else:
        counts = _count_part(objects, *args)
        combined = _combine(counts, objects["sample_id"].unique(), sampled, names, config)
    columns = [f"conc_{n}_per_l" for n in names]
    kept = combined[combined["reason"] == ""]
    count_cols = [f"count_{n}" for n in names]
    counted = kept[["id", "layer", "volume_l", *count_cols]]
    share = None
    if UNASSIGNED in categories:
        unassigned = kept[f"count_{category_column(UNASSIGNED)}"]
        total = kept[count_cols].sum(axis=1)
        counted = counted.assign(share_unassigned=(unassigned / total.where(total > 0)))
        share = unassigned.sum() / total.sum()
    result = ObjectTargetsResult(
        targets=kept[["id", "layer", *columns]],
        counts=counted,
        targets_columns=columns,
        categories=tuple(categories),
        skipped=combined[combined["reason"] != ""][["id", "layer", "reason"]],
        unassigned_share=share,
    )
    if share is not None and not lazy:
        result.unassigned_share = float(share) if np.isfinite(share) else float("nan")
        logger.info(
            "object targets: %.1f %% of the counted objects are %r (below their class's "
            "probability threshold)",
            100 * result.unassigned_share,
            UNASSIGNED,
        )
    if not lazy:
        for name in ("targets", "counts", "skipped"):
            setattr(result, name, getattr(result, name).reset_index(drop=True))
    logger.info(
        "object targets: %d categor%s, statuses %s, %d layer(s)%s",
        len(categories),
        "y" if len(categories) == 1 else "ies",
        "/".join(config.statuses),
        len(config.layers),
        "" if lazy else f", {len(result.targets)} row(s), {len(result.skipped)} skipped",
    )
    return result
