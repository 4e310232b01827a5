"""The noise ceiling: the skill of the demo world's noise-free truth against its observations.

The demo world draws its EcoPart counts and EcoTaxa objects from a known truth plus
counting noise (:mod:`pipeline.demo.truth`), so the best any model of the observations can
do is known: it is the skill of the truth's own expectation of each observation.
:func:`noise_ceiling` computes it for the train step of a run whose inputs name the truth
entry (``inputs.truth``), and the step writes it in ``metrics.json`` under
``noise_ceiling``; the report shows it beside the model.

:func:`truth_targets` turns the truth's per-class concentrations into the run's targets
with the same class merge and flux as the targets step
(:func:`pipeline.targets.class_groups`, :func:`pipeline.targets.guidi_flux`), and
:func:`expected_log_count` takes the counting noise into account: the expectation of
``log10(N / V + eps)`` with ``N ~ Poisson(c V)``, not ``log10(c + eps)``.

This is the demo's only link into a run: ``pipeline/run/train.py`` calls
:func:`noise_ceiling`; the science stages never import this module.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import fsspec
import numpy as np
import pandas as pd
from scipy.stats import poisson

from pipeline.catalog import open_catalog, read_entry
from pipeline.demo.oracle import oracle_coverage
from pipeline.demo.truth import annotated_concentrations
from pipeline.model.evaluate import score, target_covariance
from pipeline.targets.particles import (
    TargetConfig,
    class_groups,
    guidi_flux,
    target_columns,
    transform,
)

if TYPE_CHECKING:
    from pipeline.run.config import RunConfig

__all__ = ["expected_log_count", "noise_ceiling", "truth_targets"]

logger = logging.getLogger(__name__)

_CONC = re.compile(r"^conc_([0-9p]+)_([0-9p]+|inf)um_per_l$")


def truth_targets(truth: pd.DataFrame, config: TargetConfig) -> pd.DataFrame:
    """Noise-free targets from the demo truth's per-class concentrations.

    The truth holds the expected concentration of every EcoPart detailed class per
    profile and layer (``conc_<lo>_<hi>um_per_l``). They are merged into the target
    classes by lower edge (:func:`pipeline.targets.class_groups`) and summed into the
    Guidi flux (:func:`pipeline.targets.guidi_flux`) as
    :func:`pipeline.targets.build_targets` does with counts, so the truth and the
    observations describe the same quantities.

    Parameters
    ----------
    truth : pandas.DataFrame
        ``profile_id, layer`` + per-class ``conc_<lo>_<hi>um_per_l`` (# L-1).
    config : TargetConfig
        Size classes and flux coefficients of the targets.

    Returns
    -------
    pandas.DataFrame
        ``id, layer`` + the target columns.

    Examples
    --------
    >>> t = pd.DataFrame({"profile_id": ["p"], "layer": ["0-100m"],
    ...                   "conc_102_128um_per_l": [1.0], "conc_128_161um_per_l": [2.0]})
    >>> float(truth_targets(t, TargetConfig())["conc_102_203um_per_l"].iloc[0])
    3.0
    """
    fine = _fine_classes(truth.columns)
    out = pd.DataFrame({"id": truth["profile_id"].astype(str), "layer": truth["layer"]})
    names = target_columns(config)
    sums = {n: np.zeros(len(truth)) for n in names}
    for name, cols in class_groups(fine, config=config).items():
        for col in cols:  # one column after the other, in class order
            sums[name] += truth[col].to_numpy(dtype=float)
    sums["flux_mgc_m2_d"] = guidi_flux(truth, fine, config=config)
    for name in names:
        out[name] = sums[name]
    return out


def _fine_classes(columns: Any) -> list[tuple[str, float, float]]:
    """``(column, lo_um, hi_um)`` of the finest ``conc_<lo>_<hi>um_per_l`` columns.

    Aggregated columns spanning several finer ones are left out.
    """
    classes = []
    for col in columns:
        match = _CONC.match(col)
        if match:
            lo, hi = (float(g.replace("p", ".")) for g in match.groups())
            classes.append((col, lo, hi))
    los = sorted({lo for _, lo, _ in classes})
    return [(c, lo, hi) for c, lo, hi in classes if not any(lo < x < hi for x in los)]


def _transformed(frame: pd.DataFrame, targets: list[str], spec: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            t: transform(
                frame[t].to_numpy(dtype=float),
                name=str(spec["name"]),
                epsilon=float(spec["epsilon"]),
            )
            for t in targets
        },
        index=frame.index,
    )


def noise_ceiling(
    config: RunConfig,
    matchup: pd.DataFrame,
    y: pd.DataFrame,
    *,
    test: np.ndarray,
    targets: list[str],
    transform: Mapping[str, Any],
    coverage: float = 0.9,
    by: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Skill of the noise-free truth against the observations (demo world only).

    The truth's prediction of a transformed observation is its expectation under the
    counting noise, ``E[log10(N / V + eps)]`` with ``N ~ Poisson(c V)`` (``V`` the volume
    imaged, times the EcoTaxa subsample fraction for categories;
    :func:`expected_log_count`), not ``log10(c + eps)``: with a few objects per layer the
    two differ (Jensen), and only the former bounds what a model of the transformed
    observations can reach. Categories use the concentration as the demo annotated them
    (statuses, misclassification; ``world.json``), or, with machine labels (a classifier's
    groups, the morphological types ``type_1`` ...), the true kinds mixed as the labels
    sort the world's objects (``truth/objects.parquet`` holds each object's true kind:
    see :func:`_labelled`).

    In the realistic world (``world.json`` has a ``noise`` section) the expectation is a
    Monte Carlo average over the world's full noise (cast effects, instrument offsets,
    patchiness, gamma-Poisson counts; :mod:`pipeline.demo.noise`), for every target.

    Parameters
    ----------
    config : RunConfig
        The run: ``inputs.truth`` (the truth entry of ``inputs.catalog``), ``targets``,
        ``object_targets.labels``; ``inputs.params["root"]`` locates ``world.json``.
    matchup : pandas.DataFrame
        The rows trained on: ``id, layer, volume_l`` (L).
    y : pandas.DataFrame
        The transformed observations of ``targets``, same rows as ``matchup``.
    test : numpy.ndarray of bool
        The held-out test rows; the others give the targets' covariance for ``mv_mse``.
    targets : list of str
        The target columns.
    transform : mapping
        The training transform recorded by the targets step (``{"name", "epsilon"}``).
    coverage : float
        Nominal coverage of the truth's own intervals (realistic world, with ``by``).
    by : mapping of str to sequence, optional
        Categories of the rows (``{"layer": ..., "basin": ...}``): in the realistic world
        the result then has ``intervals``, the coverage of the truth's own intervals on
        the test and CV rows and its chance spread per category
        (:func:`pipeline.demo.oracle.oracle_coverage`).

    Returns
    -------
    dict or None
        ``{"test": scores, "all": scores, "rows_with_truth": n}`` (scores as
        :func:`pipeline.model.evaluate.score`; ``test`` only when a test row has a truth)
        and ``intervals`` (above). When some targets have no true counterpart (a category
        that is neither a true kind nor a label of the world's objects, such as
        ``unassigned``), the scores cover the others, named in ``targets``, and
        ``without_truth`` lists the rest. None without ``inputs.truth``, when no target
        has a truth, or when no row matches the truth.

    Examples
    --------
    >>> from pipeline.run.config import RunConfig
    >>> y = pd.DataFrame({"flux_mgc_m2_d": [0.0]})
    >>> noise_ceiling(RunConfig(), pd.DataFrame(), y, test=np.array([True]),
    ...               targets=["flux_mgc_m2_d"], transform={"name": "log10", "epsilon": 1e-3})
    """
    if not config.inputs.truth:
        return None
    truth = read_entry(
        open_catalog(config.inputs.catalog, **dict(config.inputs.params)), config.inputs.truth
    )
    truth = truth.compute() if hasattr(truth, "compute") else truth
    truth = truth.reset_index(drop=True)
    expected = truth_targets(truth, config.targets)
    world = _world_json(config)
    info = dict(world.get("ecotaxa", {})) if world else None
    # machine labels (classifier, morphological types): the true kinds seen through them
    if config.object_targets.labels == "annotated":
        categories = _annotated(truth, config, info)
    else:
        categories = _labelled(truth, config, world)
    fraction = {}
    for name in targets:  # per-category targets are truth columns of the same name
        if name not in expected.columns and name in categories.columns:
            expected[name] = categories[name].to_numpy(dtype=float)
            fraction[name] = float((info or {}).get("subsample_fraction", 1.0))
    unknown = [name for name in targets if name not in expected.columns]
    if len(unknown) == len(targets):
        logger.info("noise ceiling not computed: the truth has none of %s", targets)
        return None
    if unknown:  # e.g. 'unassigned' objects: no true kind; the others still have a ceiling
        logger.info(
            "noise ceiling over %d of %d targets: the truth has no %s (a category neither "
            "a true kind nor a label of the world's objects)",
            len(targets) - len(unknown),
            len(targets),
            unknown,
        )
        y = y[[t for t in targets if t not in unknown]]
        targets = list(y.columns)
    keyed = (
        matchup[["id", "layer"]]
        .astype(str)
        .merge(
            expected.reset_index().rename(columns={"index": "_truth_row"}),
            on=["id", "layer"],
            how="left",
        )
    )
    found = keyed[targets].notna().all(axis=1).to_numpy()
    if not found.any():
        logger.warning("truth entry %r matches no matchup row", config.inputs.truth)
        return None
    volume = matchup["volume_l"].to_numpy(dtype=float)
    oracle = None
    if world and "noise" in world:  # the realistic world: Monte Carlo over its noise
        draws = _monte_carlo(
            truth, keyed, found, volume, targets, fraction, transform, world, config.targets
        )
        t = pd.DataFrame(np.nan, index=keyed.index, columns=targets)
        t.loc[found, targets] = draws.mean(axis=0)
        if by is not None:
            oracle = oracle_coverage(
                draws,
                y.to_numpy(dtype=float)[found],
                {"test": test[found], "cv": ~test[found]},
                targets=targets,
                by={k: np.asarray(v)[found] for k, v in by.items()},
                coverage=coverage,
            )
    else:
        t = _transformed(keyed, targets, transform)
        for name in targets:
            if name.startswith("conc_") and str(transform["name"]) == "log10":
                t[name] = expected_log_count(
                    keyed[name].to_numpy(dtype=float),
                    volume * fraction.get(name, 1.0),
                    epsilon=float(transform["epsilon"]),
                )
    cov = target_covariance(y[~test].to_numpy(dtype=float))
    out: dict[str, Any] = {}
    sel = test & found
    if sel.any():
        out["test"] = score(y[sel], t[sel], targets=targets, cov=cov)
    out["all"] = score(y[found], t[found], targets=targets, cov=cov)
    out["rows_with_truth"] = int(found.sum())
    if unknown:
        out["targets"], out["without_truth"] = targets, unknown
    if oracle is not None:
        out["intervals"] = oracle
    return out


def expected_log_count(
    conc: np.ndarray, volume: np.ndarray, *, epsilon: float, exact_below: float = 2000.0
) -> np.ndarray:
    """Compute the expectation of ``log10(N / V + eps)`` with ``N ~ Poisson(conc V)``.

    Exact sums over ``N`` where the expected count is below ``exact_below``; above it
    the counting noise is negligible against ``eps``-free logs and ``log10(conc + eps)``
    is used.

    Parameters
    ----------
    conc : array of float
        Expected concentrations (# L-1).
    volume : array of float
        Volumes (L) the counts come from.
    epsilon : float
        Offset of the transform.
    exact_below : float
        Largest expected count ``conc * volume`` summed exactly.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> float(expected_log_count(np.array([0.0]), np.array([10.0]), epsilon=1e-3)[0])
    -3.0
    >>> e = expected_log_count(np.array([0.1]), np.array([10.0]), epsilon=1e-3)
    >>> bool(e[0] < np.log10(0.1 + 1e-3))   # Jensen: below the log of the mean
    True
    """
    conc = np.asarray(conc, dtype=float)
    volume = np.asarray(volume, dtype=float)
    lam = conc * volume
    out = np.log10(conc + epsilon)
    small = np.isfinite(lam) & (lam < exact_below) & (volume > 0)
    if small.any():
        n_max = int(np.max(lam[small] + 12.0 * np.sqrt(lam[small]) + 20.0))
        n = np.arange(n_max + 1)[None, :]
        pmf = poisson.pmf(n, lam[small][:, None])
        values = np.log10(n / volume[small][:, None] + epsilon)
        out[small] = (pmf * values).sum(axis=1) / pmf.sum(axis=1)
    return out


def _world_json(config: RunConfig) -> dict[str, Any] | None:
    """Read the demo's ``world.json`` at the catalog root, if any."""
    root = config.inputs.params.get("root")
    if not root:
        return None
    try:
        with fsspec.open(f"{str(root).rstrip('/')}/world.json", "rb") as f:
            return dict(json.load(f))
    except (OSError, ValueError):
        return None


def _labelled(truth: pd.DataFrame, config: RunConfig, world: dict[str, Any] | None) -> pd.DataFrame:
    """Per-label truth: the true kinds' concentrations mixed as the labels sort them.

    With machine labels (a classifier's groups or the morphological types ``type_1`` ..
    ``type_n``) each counted category ``c`` mixes the true kinds ``k``: ``M[c, k]`` is the
    share of the world's imaged objects of true kind ``k`` (``truth/objects.parquet``)
    that end up counted in ``c`` once the labels table is applied as the targets step
    applies it (:func:`pipeline.images.labels.apply_labels` with the run's ``use`` and
    ``min_prob``; counted when their status is in ``object_targets.statuses``). The
    expected concentration of ``c`` is then ``sum_k M[c, k] T_k`` with ``T_k`` the true
    concentration of kind ``k``. Without a labels table or the world's objects, the raw
    truth (named categories only).
    """
    from pipeline.demo.truth import GROUPS, STATUS_CODES, TYPES

    root = config.inputs.params.get("root")
    files = (world or {}).get("files", {})
    if not config.inputs.labels or not root or "truth_objects" not in files:
        return truth
    from pipeline.images.labels import apply_labels

    with fsspec.open(f"{str(root).rstrip('/')}/{files['truth_objects']}", "rb") as f:
        objects = pd.read_parquet(f, columns=["object_id", "kind", "category", "status"])
    objects["status"] = objects["status"].map(STATUS_CODES).fillna("")
    objects["object_id"] = objects["object_id"].astype("string")
    use = "human_first" if config.object_targets.labels == "human_first" else "machine"
    try:
        out = apply_labels(
            objects, str(config.inputs.labels), use=use, min_prob=config.object_targets.min_prob
        )
    except (OSError, ValueError) as err:
        logger.info("noise ceiling: labels table not usable (%s); raw truth per category", err)
        return truth
    out = out.compute() if hasattr(out, "compute") else out
    counted = out["status"].isin(config.object_targets.statuses) & (out["category"] != "")
    kinds = [k for k in (*TYPES, *GROUPS) if f"conc_{k}_per_l" in truth.columns]
    per_kind = out.groupby("kind").size()
    mix = (
        out[counted]
        .groupby(["category", "kind"])
        .size()
        .unstack("kind", fill_value=0)
        .reindex(columns=kinds, fill_value=0)
        .div(per_kind.reindex(kinds, fill_value=0).clip(lower=1), axis=1)
    )
    values = truth[[f"conc_{k}_per_l" for k in kinds]].to_numpy(dtype=float)
    labelled = pd.DataFrame(
        values @ mix.to_numpy().T,
        columns=[f"conc_{c}_per_l" for c in mix.index],
        index=truth.index,
    )
    logger.info(
        "noise ceiling: %d label(s) matched to the true kinds over %d objects",
        len(mix),
        len(out),
    )
    return pd.concat([truth, labelled.drop(columns=truth.columns, errors="ignore")], axis=1)


#: Monte Carlo draws of the realistic world's ceiling (half of them set the truth's own
#: intervals, the other half are pseudo-observations: :mod:`pipeline.demo.oracle`).
MC_DRAWS = 400


def _monte_carlo(
    truth: pd.DataFrame,
    keyed: pd.DataFrame,
    found: np.ndarray,
    volume: np.ndarray,
    targets: list[str],
    fraction: Mapping[str, float],
    spec: Mapping[str, Any],
    world: Mapping[str, Any],
    target_config: TargetConfig,
) -> np.ndarray:
    """Draw the transformed observations of each found row under the world's full noise.

    Draws :data:`MC_DRAWS` observations of every row from the chain of
    :mod:`pipeline.demo.noise` (cast effect with the cast's own spread, shared by its
    layers and targets; an instrument drawn from the world's mix of casts, shared by the
    casts of a cruise; layer patchiness, gamma and Poisson counts),
    class by class for the size-class targets and the flux (merged and summed by
    :func:`truth_targets`, as the targets step does with counts) and category by
    category (subsample volume, no calibration offset) for the object targets. Their
    mean is ``E[transform(observation) | truth]``, the best any model of the transformed
    observations can do.

    Returns
    -------
    numpy.ndarray
        Shape ``(MC_DRAWS, found rows, targets)``.
    """
    from pipeline.demo import noise

    rows = np.flatnonzero(found)
    out = np.empty((MC_DRAWS, rows.size, len(targets)))
    src = keyed["_truth_row"].to_numpy()[rows].astype(int)
    rng = np.random.default_rng([int(world.get("parameters", {}).get("seed", 0)), 13])
    n_metres = 5 * truth["n_bins"].to_numpy(dtype=int)[src]
    cast_sd = truth["cast_sd_dex"].to_numpy(dtype=float)[src]
    vol = volume[rows]
    mix = {k: float(v) for k, v in world["noise"].get("instrument_casts", {}).items() if v}
    models = list(mix) or ["UVP5HD"]
    weights = np.array([mix.get(m, 1.0) for m in models])
    # the layers of a cast share its effect, the casts of a cruise its instrument: each
    # row's own distribution is as if drawn alone, and every draw is a world the run
    # could have observed (the pseudo-observations of pipeline.demo.oracle)
    casts = keyed["id"].to_numpy()[rows]
    cruises = truth["cruise"].to_numpy()[src] if "cruise" in truth else casts
    _, cruise_of = np.unique(cruises.astype(str), return_inverse=True)
    picks = rng.choice(
        len(models), size=(MC_DRAWS, cruise_of.max() + 1), p=weights / weights.sum()
    )[:, cruise_of]
    cast = noise.draw_cast_effects(rng, cast_sd, casts, draws=MC_DRAWS)
    classes = _fine_classes(truth.columns)
    fine = [c for c, _, _ in classes]
    class_targets = [t for t in targets if t not in fraction]
    if class_targets:
        edges = np.array([lo for _, lo, _ in classes] + [np.inf]) / 1000.0
        offsets = np.stack([noise.class_offsets(m, edges) for m in models])[picks]
        conc = truth[fine].to_numpy(dtype=float)[src]
        sim = noise.simulate_layer_concentrations(
            conc, vol, n_metres, cast_sd, offsets, draws=MC_DRAWS, rng=rng, cast_effect=cast
        )
        frame = pd.DataFrame(sim.reshape(-1, len(fine)), columns=fine)
        frame["profile_id"] = "p"
        frame["layer"] = "l"
        simulated = truth_targets(frame, target_config)
        for name in class_targets:
            vals = _transformed(simulated, [name], spec)[name].to_numpy()
            out[:, :, targets.index(name)] = vals.reshape(MC_DRAWS, rows.size)
    for name, frac in fraction.items():
        conc = keyed[name].to_numpy(dtype=float)[rows][:, None]
        sim = noise.simulate_layer_concentrations(
            conc,
            vol * frac,
            n_metres,
            cast_sd,
            np.ones((rows.size, 1)),
            draws=MC_DRAWS,
            rng=rng,
            cast_effect=cast,
        )
        frame = pd.DataFrame({name: sim.reshape(-1)})
        vals = _transformed(frame, [name], spec)[name].to_numpy()
        out[:, :, targets.index(name)] = vals.reshape(MC_DRAWS, rows.size)
    return out


def _annotated(truth: pd.DataFrame, config: RunConfig, info: dict[str, Any] | None) -> Any:
    """Per-category truth as the demo's annotation would record it (else the raw truth).

    The demo's EcoTaxa statuses and misclassification (``world.json``) make the observed
    categories differ from the true kinds; the noise ceiling compares the observations
    with their own noise-free expectation.
    """
    if not info or "status_probabilities" not in info:
        logger.info("noise ceiling: no world.json annotation info; raw truth per category")
        return truth
    try:
        return annotated_concentrations(
            truth,
            statuses=config.object_targets.statuses,
            status_probabilities=info["status_probabilities"],
            misclassified_probability=info.get("predicted_misclassified_probability", 0.0),
        )
    except KeyError:
        return truth
