"""A run: targets -> matchup -> spatial-block CV and training -> fields -> report.

:func:`run_steps` runs the steps of a :class:`~pipeline.run.config.RunConfig` under one
output URL (a local folder or ``s3://bucket/run``; storage options come from the
environment only) and writes::

    OUT/targets.parquet      one row per (profile, layer) + skipped.parquet (with reasons)
    OUT/quarantine/          the readers' refused rows: particles.parquet (and
                             objects.parquet), one part per input file
    OUT/matchup.parquet      targets + predictors + missing.parquet (with reasons)
    OUT/model/               model.ubj (xgboost) + card.json
    OUT/predictions.parquet  out-of-fold and test predictions of the model and baselines
    OUT/metrics.json         test, block-CV and random-CV skill, baselines, noise ceiling
    OUT/fields.zarr          monthly global fields (zarr v3), interval, extrapolation mask
    OUT/report/              maps, predicted-vs-observed, skill table, index.html
    OUT/_state/<step>.json   what each finished step was computed from

A step whose ``_state`` file records the same inputs (config sections and the upstream
step's key) is skipped, so re-running a finished run does no work; the fields write is
resumable region by region (:func:`pipeline.fields.write.write_fields`). Every output
goes through one :class:`~pipeline.store.OutputStore` (each file written whole or not at
all), handed to the steps in a :class:`~pipeline.run.context.StepContext`.

Developer note: steps exchange small pandas tables (thousands of target rows) through
parquet; the heavy parts (reading files, the environment, xgboost, fields) run on the
Dask cluster of the active ``Client``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from distributed import get_client

from pipeline import __version__
from pipeline.catalog import open_catalog, read_entry
from pipeline.demo.honesty import honesty_line, run_honesty_check
from pipeline.errors import ConfigError
from pipeline.fields.predict import predict_fields
from pipeline.fields.write import write_fields
from pipeline.images.labels import apply_labels, labels_fingerprint
from pipeline.ingest import summarize, write_quarantine
from pipeline.model.card import load_model
from pipeline.predictors.environment import build_features
from pipeline.predictors.features import feature_names
from pipeline.predictors.matchup import match_predictors
from pipeline.products.entries import write_entries
from pipeline.report.write import write_report
from pipeline.run.config import RunConfig, config_hash, run_config_to_dict
from pipeline.run.context import StepContext
from pipeline.run.train import train_and_evaluate
from pipeline.sources.environment import SourceData, open_source
from pipeline.sources.table import ReadResult
from pipeline.store import OutputStore, as_store
from pipeline.targets.objects import build_object_targets
from pipeline.targets.particles import build_targets

if TYPE_CHECKING:
    from distributed import Client
    from intake.catalog.base import Catalog

__all__ = ["STEPS", "RunSummary", "run_steps"]

logger = logging.getLogger(__name__)

#: The steps, in order.
STEPS: tuple[str, ...] = ("targets", "matchup", "train", "fields", "report")


@dataclass
class RunSummary:
    """What :func:`run_steps` did.

    Attributes
    ----------
    out : str
        Output URL.
    done : list of str
        Steps computed in this call.
    skipped : list of str
        Steps already finished with the same inputs (not redone).
    counts : dict
        Rows of targets, skipped layers, matchup, missing; regions written.
    metrics : dict
        Contents of ``metrics.json`` (when the train step ran or was found).
    seconds : dict
        Wall-clock seconds of each step computed in this call (also kept in the step's
        ``_state/STEP.json``).
    """

    out: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_steps(
    config: RunConfig,
    *,
    out: str | OutputStore | None = None,
    steps: Sequence[str] | None = None,
    client: Client | None = None,
    echo: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run (or resume) the steps of a run under its output URL.

    Parameters
    ----------
    config : RunConfig
        The validated run (see :func:`pipeline.run.config.load_run_config`).
    out : str or OutputStore, optional
        Output URL (or store); default ``config.out``.
    steps : sequence of str, optional
        Steps to run (default all, in order). A step needs its upstream outputs.
    client : dask.distributed.Client, optional
        The cluster's client (training runs on its workers); default the current one.
    echo : callable, optional
        Receives one line per event (the CLI prints them); default the logger.
    progress : callable, optional
        ``progress(done, total)`` while the fields are written.

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError
        No output URL, an unknown step, a step whose upstream output is missing, no
        target row matching the environment, or the steps' own configuration errors.
    """
    url = out or config.out
    if not url:
        raise ConfigError("no output: give --out URL or 'out:' in the run file.")
    wanted = list(steps or STEPS)
    unknown = [s for s in wanted if s not in STEPS]
    if unknown:
        raise ConfigError(f"unknown step(s) {unknown}; valid: {', '.join(STEPS)}")
    say = echo or logger.info
    store = as_store(url)
    summary = RunSummary(out=store.url)
    if client is None:
        client = get_client()
    ctx = StepContext(config=config, store=store, client=client, echo=say, progress=progress)
    keys = _step_keys(config)
    store.write_json(
        "run.json",
        {
            "config": run_config_to_dict(config),
            "keys": keys,
            "software": {"oceanfields": __version__},
        },
    )
    for step in STEPS:
        if step not in wanted:
            continue
        state = f"_state/{step}.json"
        if store.exists(state) and store.read_json(state).get("key") == keys[step]:
            summary.skipped.append(step)
            say(f"[{step}] already done with these inputs; skipped.")
            info = store.read_json(state)
        else:
            say(f"[{step}] running")
            started = time.perf_counter()
            info = _RUNNERS[step](ctx)
            seconds = round(time.perf_counter() - started, 2)
            store.write_json(state, {"key": keys[step], "seconds": seconds, **info})
            summary.done.append(step)
            summary.seconds[step] = seconds
            say(f"[{step}] done in {seconds:.1f} s")
        summary.counts.update(info.get("counts", {}))
    if store.exists("metrics.json"):
        summary.metrics = store.read_json("metrics.json")
        if store.exists("honesty.json"):
            summary.metrics["honesty"] = store.read_json("honesty.json")
    return summary


def _uses_labels(config: RunConfig) -> bool:
    return bool(config.inputs.objects) and config.object_targets.labels != "annotated"


def _step_keys(config: RunConfig) -> dict[str, str]:
    keys: dict[str, str] = {}
    parts: list[Any] = [config.inputs, config.targets, config.object_targets]
    if _uses_labels(config) and config.inputs.labels:
        # one listing of the labels table: a rewritten or added part file redoes targets
        parts.append({"labels_fingerprint": labels_fingerprint(config.inputs.labels)})
    keys["targets"] = config_hash(*parts)
    keys["matchup"] = config_hash(keys["targets"], config.predictors, config.grid)
    keys["train"] = config_hash(keys["matchup"], config.split, config.train)
    keys["fields"] = config_hash(keys["train"], config.fields, config.product)
    keys["report"] = config_hash(keys["fields"], config.report)
    return keys


# --------------------------------------------------------------------------- inputs


def _catalog(config: RunConfig) -> Catalog:
    return open_catalog(config.inputs.catalog, **dict(config.inputs.params))


def _sources(config: RunConfig) -> list[SourceData]:
    catalog = _catalog(config)
    return [
        open_source(read_entry(catalog, spec.entry, **dict(spec.options)), spec)
        for spec in config.inputs.environment
    ]


def _features(config: RunConfig) -> xr.Dataset:
    time = config.inputs.environment_time
    return build_features(
        _sources(config),
        config.targets.layers,
        grid=config.grid,
        config=config.predictors,
        time=None if time is None else (str(time[0]), str(time[1])),
    )


def _need(store: OutputStore, name: str, step: str) -> None:
    if not store.exists(name):
        raise ConfigError(
            f"{store.path(name)} is missing: run the '{step}' step first "
            f"(oceanfields run CONFIG --step {step})."
        )


# --------------------------------------------------------------------------- steps


def _run_targets(ctx: StepContext) -> dict:
    config, store, say = ctx.config, ctx.store, ctx.echo
    reads = {"particles": _read_table(config, "particles")}
    res = build_targets(reads["particles"].accepted, config=config.targets)
    names = list(res.targets_columns)
    label_counts: dict[str, int] = {}
    shares: dict[str, float] = {}
    ores, sources = None, None
    if config.inputs.objects:
        reads["objects"] = _read_table(config, "objects")
        objects = reads["objects"].accepted
        if _uses_labels(config):
            ocfg = config.object_targets
            use = "human_first" if ocfg.labels == "human_first" else "machine"
            objects = apply_labels(
                objects, str(config.inputs.labels), use=use, min_prob=ocfg.min_prob
            )
            sources = objects["label_source"].value_counts(split_out=1)
        ores = build_object_targets(objects, res.targets, config=config.object_targets)
    # one compute: the files are parsed once for the targets, the counts and the quarantine
    read_parts = [
        (
            write_quarantine(read, store, _quarantine_name(table)),
            read.stats,
            read.quarantine,
        )
        for table, read in reads.items()
    ]
    object_parts = (
        (ores.targets, ores.skipped, sources, ores.unassigned_share) if ores is not None else ()
    )
    targets, skipped, read_parts, object_parts = dask.compute(
        res.targets, res.skipped, read_parts, object_parts
    )
    if ores is not None:
        by_object, object_skipped, sources, unassigned = object_parts
        targets = targets.merge(by_object, on=["id", "layer"], how="left")
        store.write_parquet("skipped_objects.parquet", object_skipped.reset_index(drop=True))
        names += list(ores.targets_columns)
        say(
            f"  object targets: {', '.join(ores.targets_columns)}; "
            f"{len(object_skipped)} (profile, layer) without objects"
        )
        if unassigned is not None and np.isfinite(float(unassigned)):
            shares["objects_unassigned_share"] = round(float(unassigned), 6)
            say(f"  unassigned (machine labels below their class threshold): {unassigned:.1%}")
        if sources is not None:
            label_counts = _label_counts(sources)
            say(
                f"  labels ({config.object_targets.labels}, {config.inputs.labels}): "
                + ", ".join(f"{k.removeprefix('objects_')} {v}" for k, v in label_counts.items())
            )
    targets = targets.reset_index(drop=True)
    skipped = skipped.reset_index(drop=True)
    if targets.empty:
        raise ConfigError(
            f"no target row: every (profile, layer) of {config.inputs.particles!r} was "
            f"skipped ({skipped['reason'].value_counts().to_dict()}); lower "
            "targets.min_volume_l / targets.min_coverage or check the layers."
        )
    store.write_parquet("targets.parquet", targets)
    store.write_parquet("skipped.parquet", skipped)
    counts: dict[str, Any] = {}
    for table, (_, stats, quarantine) in zip(reads, read_parts, strict=True):
        counts.update(_read_counts(table, summarize(table, stats, quarantine), store, say))
    counts.update(
        {"target_rows": len(targets), "skipped_layers": len(skipped), **label_counts, **shares}
    )
    by_layer = targets["layer"].value_counts().to_dict()
    say(
        f"  {len(targets)} target rows ({by_layer}); {len(skipped)} layer(s) skipped"
        + (f" ({skipped['reason'].value_counts().to_dict()})" if len(skipped) else "")
    )
    return {"counts": counts, "targets": names, "transform": res.transform}


_READERS = {
    "particles": "a particles reader (ecopart_par / ecopart_raw); pick an EcoPart entry",
    "objects": "an objects reader (ecotaxa); pick an EcoTaxa entry",
}


def _read_table(config: RunConfig, table: str) -> ReadResult:
    """Read an input table: accepted rows, quarantine and per-file counts (lazy)."""
    entry = getattr(config.inputs, table)
    result = read_entry(_catalog(config), entry)
    if not isinstance(result, ReadResult):
        raise ConfigError(f"inputs.{table}: entry {entry!r} is not read by {_READERS[table]}.")
    return result


def _quarantine_name(table: str) -> str:
    return f"quarantine/{table}.parquet"


def _read_counts(table: str, summary: Any, store: OutputStore, say: Any) -> dict[str, int]:
    """State counts of one input table (read = accepted + quarantined), echoed."""
    say(
        f"  {table}: {summary.files} file(s), {summary.rows_read} rows read = "
        f"{summary.rows_accepted} accepted + {summary.rows_quarantined} quarantined"
        + (f" ({store.path(_quarantine_name(table))})" if summary.rows_quarantined else "")
        + ("" if summary.reconciles else "  (COUNTS DO NOT RECONCILE)")
    )
    if not summary.reconciles:
        logger.warning("%s: the %s counts do not reconcile: %s", store.url, table, summary)
    prefix = "" if table == "particles" else f"{table}_"  # particles: the names of before
    return {
        f"{prefix}files": summary.files,
        f"{prefix}rows_read": summary.rows_read,
        f"{prefix}rows_accepted": summary.rows_accepted,
        f"{prefix}rows_quarantined": summary.rows_quarantined,
    }


def _label_counts(sources: pd.Series) -> dict[str, int]:
    """Objects per label source (:data:`pipeline.images.labels.LABEL_SOURCES`)."""
    names = {
        "human": "objects_kept_human",
        "machine": "objects_relabelled",
        "unlabelled": "objects_unlabelled",
        "below_min_prob": "objects_below_min_prob",
        "unassigned": "objects_unassigned",
    }
    return {name: int(sources.get(src, 0)) for src, name in names.items()}


def _run_matchup(ctx: StepContext) -> dict:
    config, store, say = ctx.config, ctx.store, ctx.echo
    _need(store, "targets.parquet", "targets")
    targets = store.read_parquet("targets.parquet")
    features = _features(config)
    result = match_predictors(targets, features, config=config.predictors)
    matchup, missing = result.matchup.reset_index(drop=True), result.missing
    if matchup.empty:
        times = pd.to_datetime(targets["time"])
        env_t = features["time"].values
        raise ConfigError(
            f"no target row matched the environment: targets span {times.min():%Y-%m-%d} .. "
            f"{times.max():%Y-%m-%d}, the environment {pd.Timestamp(env_t.min()):%Y-%m-%d} .. "
            f"{pd.Timestamp(env_t.max()):%Y-%m-%d} "
            f"(reasons: {missing['reason'].value_counts().to_dict()}). Use an environment "
            "covering the targets' months, or check inputs.environment_time."
        )
    store.write_parquet("matchup.parquet", matchup)
    store.write_parquet("missing.parquet", missing.reset_index(drop=True))
    names = feature_names(features)
    n_clim = int((matchup["env_source"] == "climatology").sum())
    say(
        f"  {len(matchup)} rows matched ({n_clim} by climatology), {len(missing)} missing"
        + (f" ({missing['reason'].value_counts().to_dict()})" if len(missing) else "")
        + f"; {len(names)} predictors"
    )
    counts = {
        "matchup_rows": len(matchup),
        "missing_rows": len(missing),
        "climatology_rows": n_clim,
    }
    return {"counts": counts, "features": names}


def _run_train(ctx: StepContext) -> dict:
    _need(ctx.store, "matchup.parquet", "matchup")
    return train_and_evaluate(ctx)


def _run_fields(ctx: StepContext) -> dict:
    config, store, say = ctx.config, ctx.store, ctx.echo
    _need(store, "model/card.json", "train")
    booster, card = load_model(store.path("model"), storage_options=store.storage_options)
    extra = card.get("extra", {})
    features = _features(config)
    fields = predict_fields(
        features,
        booster,
        targets=card["targets"],
        transform=card["transform"],
        residual_quantiles={k: tuple(v) for k, v in extra["residual_quantiles"].items()},
        quantiles_by_layer={
            g: {k: tuple(v) for k, v in q.items()}
            for g, q in extra.get("residual_quantiles_by_layer", {}).items()
        },
        envelope={k: tuple(v) for k, v in extra["envelope"].items()},
        config=config.fields,
        train_positions=(
            (
                np.asarray(extra["train_positions"]["lat"]),
                np.asarray(extra["train_positions"]["lon"]),
            )
            if "train_positions" in extra
            else None
        ),
    )
    attrs = {
        "title": "oceanfields: particle concentrations and flux per depth layer",
        "source_catalog": f"{config.inputs.catalog}:"
        + ",".join(s.entry for s in config.inputs.environment),
        "environment": str(features.attrs.get("source")),
        "model_id": card.get("model_id", ""),
        "config_hash": card.get("config_hash", ""),
        "software_version": f"oceanfields {__version__}",
        **config.product.attributes(),
    }
    report = write_fields(
        fields,
        store.path("fields.zarr"),
        storage_options=store.storage_options,
        attrs=attrs,
        progress=ctx.progress,
        batch_mb=config.fields.write_batch_mb,
    )
    say(
        f"  fields: {report.regions_written} region(s) written, "
        f"{report.regions_skipped} already there, of {report.regions_total}"
    )
    entries = write_entries(store)  # STAC + intake entries beside the store
    say(f"  catalogue entries: {', '.join(entries.values())}")
    remote = {"storage_options": store.storage_options} if store.storage_options else {}
    written = xr.open_zarr(store.path("fields.zarr"), consolidated=False, **remote)
    honesty = run_honesty_check(config, store, written)
    if honesty is not None:
        say("  " + honesty_line(honesty))
    return {
        "counts": {"regions_written": report.regions_written, "regions_total": report.regions_total}
    }


def _run_report(ctx: StepContext) -> dict:
    config, store, say = ctx.config, ctx.store, ctx.echo
    _need(store, "metrics.json", "train")
    card = store.read_json("model/card.json")
    fields = None
    if store.exists("fields.zarr"):
        remote = {"storage_options": store.storage_options} if store.storage_options else {}
        fields = xr.open_zarr(store.path("fields.zarr"), consolidated=False, **remote)
    counts: dict[str, Any] = {}
    for step in ("targets", "matchup", "fields"):
        if store.exists(f"_state/{step}.json"):
            counts.update(store.read_json(f"_state/{step}.json").get("counts", {}))
    files = write_report(
        store.sub("report"),
        metrics={
            **store.read_json("metrics.json"),
            **(
                {"honesty": store.read_json("honesty.json")} if store.exists("honesty.json") else {}
            ),
        },
        predictions=store.read_parquet("predictions.parquet"),
        fields=fields,
        targets=card["targets"],
        month=config.report.month,
        counts=counts,
    )
    say(f"  report: {store.path('report')}/index.html ({len(files)} files)")
    return {"files": files}


_RUNNERS: dict[str, Callable[[StepContext], dict]] = {
    "targets": _run_targets,
    "matchup": _run_matchup,
    "train": _run_train,
    "fields": _run_fields,
    "report": _run_report,
}
