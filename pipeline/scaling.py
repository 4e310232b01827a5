"""Scaling benchmark: strong and weak scaling of matchup, training, fields and images.

Each part is measured on a cluster file (:func:`pipeline.clusters.client.cluster_client`) at
several worker counts ``k``:

- **strong** scaling: a fixed amount of work (``max(workers)`` units) at every ``k``;
  efficiency ``E(k) = T(k0) k0 / (k T(k))`` (``k0`` the smallest count, usually 1, so
  ``E(k) = T(1) / (k T(k))``);
- **weak** scaling: ``k`` units of work at ``k`` workers; ``E(k) = T(k0) / T(k)``.

A unit of work is ``points`` matchup points, ``rows`` training rows (``rounds`` fixed
rounds), ``months`` months of fields predicted and written (all layers, the demo's
targets) and ``images`` images classified. Everything runs on a small demo world
(:func:`pipeline.demo.generate_demo_world`): its environment gives the features of the
matchup and fields parts, its EcoTaxa vignettes (drawn by
:func:`pipeline.demo.ecotaxa_writer.draw_object`) the images, classified with a
random-initialised compact network saved by :func:`pipeline.images.model.save_model_dir`.

For a local cluster file each worker count gets its own ``LocalCluster(n_workers=k)``;
for remote clusters the cluster is scaled (``client.cluster.scale(k)``) when it can be,
otherwise every measurement runs at the size given, and the result says so. The demo
world must then be on storage the workers can read (``root``).

:func:`cost_model` extrapolates wall time and storage of global grids from the measured
per-cell cost of the fields part and per-point cost of the matchup.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import distributed
import numpy as np
import pandas as pd
import xarray as xr
import xgboost

from pipeline.catalog import open_catalog, read_entry
from pipeline.clusters.client import cluster_client
from pipeline.clusters.config import LocalConfig, load_cluster_config
from pipeline.config import check_count, check_positive, check_strings, config_error
from pipeline.demo import generate_demo_world
from pipeline.fields.predict import envelope_of, predict_fields
from pipeline.fields.write import write_fields
from pipeline.images.classify import ClassifyConfig, classify_images
from pipeline.images.dataset import Preprocess
from pipeline.model.train import TrainConfig, fit_model
from pipeline.predictors.features import feature_names, layer_features
from pipeline.predictors.matchup import match_predictors
from pipeline.sources.copernicus import open_environment
from pipeline.targets.particles import DEFAULT_LAYERS

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "GRIDS",
    "PARTS",
    "ScalingConfig",
    "cost_model",
    "efficiencies",
    "run_scaling",
]

logger = logging.getLogger(__name__)

PARTS = ("matchup", "train", "fields", "images")
#: Global grids of the cost model: (lat rows, lon columns, time steps per year).
GRIDS: dict[str, tuple[int, int, int]] = {
    "1deg_monthly": (180, 360, 12),
    "0.25deg_monthly": (720, 1440, 12),
    "1/12deg_monthly": (2160, 4320, 12),
    "4km_daily": (5004, 10019, 365),  # 20 004 km x 40 075 km at 4 km, 365 days
}
_COST_WORKERS = (1, 2, 16, 64, 256)
_LAYERS = 3


@dataclass(frozen=True, kw_only=True)
class ScalingConfig:
    """Sizes of the scaling benchmark (one unit of work per part).

    Attributes
    ----------
    workers : tuple of int
        Worker counts to measure, e.g. ``(1, 2)``.
    parts : tuple of str
        Parts to measure, among ``matchup, train, fields, images``.
    points : int
        Matchup points per unit.
    rows : int
        Training rows per unit.
    rounds : int
        Boosting rounds (fixed, no early stopping).
    months : int
        Months of fields (all layers) per unit.
    images : int
        Images per unit.
    resolution : float
        Demo world resolution (degrees).
    repeats : int
        Best of this many runs per measurement.
    seed : int
        Random seed of the demo world and the synthetic data.
    """

    workers: tuple[int, ...] = (1, 2)
    parts: tuple[str, ...] = PARTS
    points: int = 20_000
    rows: int = 20_000
    rounds: int = 50
    months: int = 6
    images: int = 300
    resolution: float = 1.0
    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:  # noqa: D105
        check_strings("scaling.parts", self.parts, valid=PARTS, min_items=1)
        if not self.workers:
            raise config_error(
                "scaling.workers", self.workers, "expected worker counts, e.g. (1, 2)"
            )
        for count in self.workers:
            check_count("scaling.workers", count, 1)
        for key in ("points", "rows", "rounds", "months", "images", "repeats"):
            check_count(f"scaling.{key}", getattr(self, key), 1)
        check_positive("scaling.resolution", self.resolution, unit="degrees")


# --------------------------------------------------------------------------- setup


@dataclass(kw_only=True)
class _Setup:
    """What every measurement shares: demo world, features, data, models."""

    root: Path
    features: xr.Dataset
    targets: list[str]
    points: pd.DataFrame
    X: pd.DataFrame
    Y: pd.DataFrame
    booster: xgboost.Booster
    envelope: dict[str, tuple[float, float]]
    images: pd.DataFrame
    model_dir: str


def _points(features: xr.Dataset, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` random (lat, lon, month, layer) points inside the features' grid."""
    times = pd.DatetimeIndex(features["time"].values)
    lat = features["lat"].values.astype(float)
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(n)],
            "lat": rng.uniform(lat.min(), lat.max(), n),
            "lon": rng.uniform(-180.0, 180.0, n),
            "time": times[rng.integers(0, times.size, n)].tz_localize("UTC"),
            "layer": rng.choice(features["layer"].values.astype(str), n),
        }
    )


def _prepare(config: ScalingConfig, root: str | os.PathLike[str]) -> _Setup:
    """Demo world, features, synthetic training data, a booster, images and a model."""
    import torch  # deferred: the images extra

    from pipeline.images.model import (  # deferred: needs torch (images extra)
        ImageModel,
        build_network,
        save_model_dir,
    )

    root = Path(root)
    world = generate_demo_world(
        str(root / "world"),
        resolution=config.resolution,
        n_profiles=5,
        n_images=min(config.images, 2000),
        seed=config.seed,
    )
    features = layer_features(open_environment(world.paths["environment"]), DEFAULT_LAYERS)
    with xr.open_zarr(world.paths["truth_fields"], consolidated=False) as truth:
        targets = sorted(str(v) for v in truth.data_vars)
    rng = np.random.default_rng(config.seed)
    points = _points(features, config.points * max(config.workers), rng)
    # training rows: the features at random points, targets a smooth function of them
    names = feature_names(features)
    month = features[names].isel(time=0).compute()  # the first month's cells
    cells = np.stack([month[n].values.ravel() for n in names], axis=1)
    cells = cells[~np.isnan(cells).any(axis=1)]
    picks = rng.integers(0, len(cells), config.rows * max(config.workers))
    X = pd.DataFrame(cells[picks], columns=names)
    z = (X - X.mean()) / X.std().replace(0.0, 1.0)
    mix = rng.normal(size=(len(names), len(targets))) / np.sqrt(len(names))
    signal = np.tanh(z.fillna(0.0).to_numpy()) @ mix
    Y = pd.DataFrame(signal + rng.normal(scale=0.1, size=signal.shape), columns=targets)
    booster = xgboost.train(
        {"tree_method": "hist", "multi_strategy": "multi_output_tree", "max_depth": 4},
        xgboost.DMatrix(X.iloc[:5000], label=Y.iloc[:5000]),
        num_boost_round=30,
    )
    objects = read_entry(open_catalog("demo", root=str(root / "world")), "ecotaxa")
    images = objects.accepted.compute()[["object_id", "image", "pixel_size_um"]]
    torch.manual_seed(config.seed)
    classes = sorted(set(objects.accepted["category"].compute().astype(str)))
    network = build_network("compact", len(classes), params={"width": 16}).eval()
    model = ImageModel(
        network=network,
        classes=classes,
        preprocess=Preprocess(size=64, canvas_px=96),
        params={"width": 16},
    )
    model_dir = str(root / "image-model")
    save_model_dir(model, model_dir)
    return _Setup(
        root=root,
        features=features,
        targets=targets,
        points=points,
        X=X,
        Y=Y,
        booster=booster,
        envelope=envelope_of(X),
        images=images.reset_index(drop=True),
        model_dir=model_dir,
    )


def _months(features: xr.Dataset, n: int) -> xr.Dataset:
    """``n`` monthly steps: the features' months, repeated in later years as needed."""
    steps = features.sizes["time"]
    years = -(-n // steps)
    parts = []
    for year in range(years):
        shifted = pd.DatetimeIndex(features["time"].values) + pd.DateOffset(years=year)
        parts.append(features.assign_coords(time=shifted))
    return xr.concat(parts, dim="time").isel(time=slice(0, n))


def _rows(table: pd.DataFrame, n: int) -> pd.DataFrame:
    """``n`` rows of ``table``, cycled, with unique object ids."""
    out = table.iloc[np.arange(n) % len(table)].reset_index(drop=True)
    return out.assign(object_id=[f"o{i}" for i in range(n)])


# --------------------------------------------------------------------------- parts


def _run_part(part: str, setup: _Setup, config: ScalingConfig, units: float, client: Client):
    """Run ``units`` units of ``part`` once; return (seconds, facts)."""
    out = setup.root / "out" / f"{part}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    if part == "matchup":
        n = max(1, round(config.points * units))
        result = match_predictors(setup.points.iloc[:n], setup.features)
        facts = {"points": n, "matched": len(result.matchup)}
    elif part == "train":
        n = max(10, round(config.rows * units))
        cfg = TrainConfig(n_estimators=config.rounds, device="cpu")  # no valid: fixed rounds
        fit_model(client, setup.X.iloc[:n], setup.Y.iloc[:n], train=np.arange(n), config=cfg)
        facts = {"rows": n, "rounds": config.rounds}
    elif part == "fields":
        n = max(1, round(config.months * units))
        fields = predict_fields(
            _months(setup.features, n),
            setup.booster,
            targets=setup.targets,
            transform={"name": "log10", "epsilon": 1e-3},
            envelope=setup.envelope,
        )
        report = write_fields(fields, str(out))
        sizes = setup.features.sizes
        facts = {
            "months": n,
            "cells": n * sizes["layer"] * sizes["lat"] * sizes["lon"],
            "regions": report.regions_written,
        }
    else:
        n = max(1, round(config.images * units))
        part_size = max(1, config.images // 2)
        result = classify_images(
            _rows(setup.images, n),
            setup.model_dir,
            str(out),
            config=ClassifyConfig(partition_size=part_size, device="cpu"),
            client=client,
        )
        facts = {"images": result.images, "partitions": result.partitions}
    seconds = time.perf_counter() - start
    if part == "fields":
        facts["bytes"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return seconds, facts


def _measure(setup: _Setup, config: ScalingConfig, client: Client, k: int) -> list[dict]:
    """All parts, strong and weak, at ``k`` workers (one measurement when they coincide)."""
    rows = []
    k_max = max(config.workers)
    for part in config.parts:
        _run_part(part, setup, config, 0.05, client)  # warm: imports, caches, collectives
        runs = {"weak": k, "strong": k_max}
        for units in sorted(set(runs.values())):
            best, facts, every = np.inf, {}, []
            for _ in range(config.repeats):
                seconds, facts = _run_part(part, setup, config, units, client)
                every.append(seconds)
                best = min(best, seconds)
            modes = [mode for mode, u in runs.items() if u == units]
            logger.info("%s x%d units at %d worker(s): %.2f s", part, units, k, best)
            for mode in modes:
                rows.append(
                    {
                        "part": part,
                        "mode": mode,
                        "workers": k,
                        "units": units,
                        "seconds": best,
                        "all_seconds": every,
                        **facts,
                    }
                )
    return rows


def _local_mapping(config: LocalConfig, k: int) -> dict[str, Any]:
    return {"cluster": {**dataclasses.asdict(config), "n_workers": k}}


def run_scaling(
    cluster: str | os.PathLike[str] | Mapping[str, Any] | None,
    root: str | os.PathLike[str],
    *,
    config: ScalingConfig | None = None,
) -> dict[str, Any]:
    """Measure strong and weak scaling of the parts on a cluster file.

    Parameters
    ----------
    cluster : path or mapping or None
        Cluster file (see :func:`pipeline.clusters.config.load_cluster_config`); None: local.
    root : path
        Folder for the demo world and the outputs (on shared storage for remote
        clusters).
    config : ScalingConfig, optional
        Sizes and worker counts.

    Returns
    -------
    dict
        JSON-ready record: ``parameters``, ``measurements`` (one row per part, mode and
        worker count), ``efficiencies`` (see :func:`efficiencies`), ``cost_model`` (see
        :func:`cost_model`), ``versions``, ``machine``.

    Raises
    ------
    ConfigError
        For an invalid cluster file.

    See Also
    --------
    pipeline.cli.bench.plot_scaling : the figure of the record.
    """
    config = config or ScalingConfig()
    cluster_config = load_cluster_config(cluster)
    start = time.perf_counter()
    setup = _prepare(config, root)
    setup_s = time.perf_counter() - start
    rows: list[dict] = []
    notes = []
    if isinstance(cluster_config, LocalConfig):
        for k in sorted(config.workers):
            logger.info("LocalCluster with %d worker(s)", k)
            with cluster_client(_local_mapping(cluster_config, k)) as client:
                rows += _measure(setup, config, client, k)
    else:
        with cluster_client(cluster) as client:
            for k in sorted(config.workers):
                k_real = _scale(client, k)
                if k_real != k:
                    notes.append(f"asked {k} workers, measured with {k_real}")
                rows += [{**r, "workers_requested": k} for r in _measure(setup, config, client, k)]
    record = {
        "name": "scaling: strong and weak, matchup/train/fields/images",
        "parameters": {
            **_plain(config),
            "cluster": _plain(cluster_config),
            "targets": len(setup.targets),
            "grid": {k: int(v) for k, v in setup.features.sizes.items()},
            "figure": f"wall seconds, best of {config.repeats}, cluster started before",
            "setup_s": setup_s,
        },
        "notes": [
            "timings are approximate: wall seconds on a machine whose CPUs may be shared "
            "with other processes",
            *notes,
        ],
        "measurements": rows,
        "efficiencies": efficiencies(rows),
    }
    record["cost_model"] = cost_model(record)
    record["versions"] = _versions()
    record["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    return record


def _plain(config: Any) -> dict[str, Any]:
    """Return a config dataclass as JSON-ready values (tuples as lists)."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def _scale(client: Client, k: int) -> int:
    """Scale a remote cluster to ``k`` workers when it can; return the count measured."""
    cluster = getattr(client, "cluster", None)
    if cluster is None or not hasattr(cluster, "scale"):
        n = len(client.scheduler_info()["workers"])
        logger.info("cluster cannot be scaled from here: measuring with %d worker(s)", n)
        return n
    cluster.scale(k)
    client.wait_for_workers(k, timeout=600)
    deadline = time.monotonic() + 120
    while len(client.scheduler_info()["workers"]) > k and time.monotonic() < deadline:
        time.sleep(1)
    return len(client.scheduler_info()["workers"])


def _versions() -> dict[str, str]:
    import torch  # deferred: the images extra

    return {
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "xgboost": xgboost.__version__,
        "torch": torch.__version__,
        "xarray": xr.__version__,
        "numpy": np.__version__,
    }


# --------------------------------------------------------------------------- analysis


def efficiencies(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Strong and weak efficiencies per part from measurement rows.

    Parameters
    ----------
    rows : sequence of mappings
        Each with ``part``, ``mode`` (``strong``/``weak``), ``workers`` and ``seconds``.

    Returns
    -------
    dict
        ``{part: {mode: {str(k): E(k)}}}``, relative to the smallest worker count ``k0``:
        strong ``T(k0) k0 / (k T(k))``, weak ``T(k0) / T(k)``.

    Examples
    --------
    >>> rows = [{"part": "p", "mode": "strong", "workers": 1, "seconds": 4.0},
    ...         {"part": "p", "mode": "strong", "workers": 2, "seconds": 2.5},
    ...         {"part": "p", "mode": "weak", "workers": 1, "seconds": 2.0},
    ...         {"part": "p", "mode": "weak", "workers": 2, "seconds": 2.5}]
    >>> efficiencies(rows)
    {'p': {'strong': {'1': 1.0, '2': 0.8}, 'weak': {'1': 1.0, '2': 0.8}}}
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        out.setdefault(row["part"], {}).setdefault(row["mode"], {})
    for part, modes in out.items():
        for mode in modes:
            times = {
                int(r["workers"]): float(r["seconds"])
                for r in rows
                if r["part"] == part and r["mode"] == mode
            }
            k0 = min(times)
            for k in sorted(times):
                ratio = times[k0] / times[k]
                modes[mode][str(k)] = ratio * k0 / k if mode == "strong" else ratio
    return out


def _efficiency_at(measured: Mapping[str, float], k: int) -> float:
    """Measured efficiency at ``k``, else that of the largest count measured (capped at 1)."""
    if str(k) in measured:
        return measured[str(k)]
    largest = max(measured, key=int)
    return min(1.0, measured[largest]) if k > int(largest) else 1.0


def cost_model(
    record: Mapping[str, Any], *, workers: Sequence[int] = _COST_WORKERS
) -> dict[str, Any]:
    """Extrapolate wall time and storage of global grids from a scaling record.

    The fields part gives seconds and bytes per grid cell (per month, per layer, all the
    demo's targets) at the smallest worker count measured; the matchup part seconds per
    point. Wall time at ``k`` workers is ``cells x s_per_cell / (k E(k))`` with ``E`` the
    measured strong efficiency at ``k``, or at the largest count measured (an
    assumption: real clusters add network and storage limits not seen here).

    Parameters
    ----------
    record : mapping
        The result of :func:`run_scaling` (``measurements`` and ``efficiencies``).
    workers : sequence of int
        Worker counts of the table.

    Returns
    -------
    dict
        ``per_cell`` figures, ``grids`` (one row per grid: cells, storage GiB, wall hours
        per worker count) and ``matchup`` (hours per million points per worker count).
        Empty parts when the fields or matchup part was not measured.
    """
    rows = record["measurements"]
    eff = record["efficiencies"]
    out: dict[str, Any] = {"layers": _LAYERS, "workers": list(workers), "grids": {}}
    weak_fields = [r for r in rows if r["part"] == "fields" and r["mode"] == "weak"]
    if weak_fields:
        base = min(weak_fields, key=lambda r: r["workers"])
        k0 = base["workers"]
        s_cell = base["seconds"] * k0 / base["cells"]
        b_cell = base["bytes"] / base["cells"]
        out["per_cell"] = {"seconds_per_cell_worker": s_cell, "bytes_per_cell": b_cell}
        for name, (ny, nx, steps) in GRIDS.items():
            cells = ny * nx * steps * _LAYERS
            hours = {
                str(k): cells * s_cell / (k * _efficiency_at(eff["fields"]["strong"], k)) / 3600
                for k in workers
            }
            out["grids"][name] = {
                "cells": cells,
                "storage_gib": cells * b_cell / 2**30,
                "wall_hours": hours,
            }
    weak_match = [r for r in rows if r["part"] == "matchup" and r["mode"] == "weak"]
    if weak_match:
        base = min(weak_match, key=lambda r: r["workers"])
        s_point = base["seconds"] * base["workers"] / base["points"]
        out["matchup"] = {
            "seconds_per_point_worker": s_point,
            "hours_per_million_points": {
                str(k): 1e6 * s_point / (k * _efficiency_at(eff["matchup"]["strong"], k)) / 3600
                for k in workers
            },
        }
    return out
