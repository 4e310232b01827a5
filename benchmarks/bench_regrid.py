"""Benchmark: the environment of several sources on one output grid.

Two measurements, written to ``benchmarks/results/regrid.json``:

1. ``regrid``: a synthetic GLORYS-like source (1/12 deg, 2041 x 4320, 50 levels, 12
   months; lazily generated, never held whole) averaged per layer (0-100, 100-500,
   500-1000 m) and regridded conservatively to 1/4 deg, streamed to a zarr store on a
   2-worker LocalCluster: wall time, peak cluster memory (distributed's MemorySampler),
   task count. ``--fraction`` shrinks the latitudes for a quick run.
2. ``one_vs_five``: on a demo world, the matchup and the feature fields that the fields
   step predicts from, with the physics store alone vs the five demo products
   (:data:`pipeline.demo.products.DEMO_SOURCES`), side by side in one run.

Run: ``python benchmarks/bench_regrid.py [--fraction 1.0] [--world-profiles 300]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client, LocalCluster
from distributed.diagnostics import MemorySampler

from pipeline.predictors import GridConfig, PredictorConfig, build_features, match_predictors
from pipeline.sources import EnvironmentSource, open_source
from pipeline.targets import DEFAULT_LAYERS

RESULTS = Path(__file__).parent / "results" / "regrid.json"


def _glorys_like(fraction: float) -> xr.Dataset:
    ny = max(64, int(2041 * fraction))
    lat = np.linspace(-80, 90, 2041)[:ny]
    lon = -180 + (np.arange(4320) + 0.5) / 12
    depth = np.geomspace(0.5, 5700, 50)
    t = pd.date_range("2020-01-01", periods=12, freq="MS")

    def block(block_info=None):
        loc = block_info[None]["array-location"]
        shape = block_info[None]["chunk-shape"]
        la = lat[loc[2][0] : loc[2][1]][None, None, :, None]
        lo = lon[loc[3][0] : loc[3][1]][None, None, None, :]
        z = depth[loc[1][0] : loc[1][1]][None, :, None, None]
        values = 20 * np.cos(np.deg2rad(la)) * np.exp(-z / 800) + np.sin(np.deg2rad(lo))
        values = np.broadcast_to(values, shape).astype("float32")
        return np.where(np.abs(la + lo / 10) < 3, np.nan, values).astype("float32")  # "land"

    data = da.map_blocks(
        block, dtype="float32", chunks=((1,) * 12, (50,), _split(ny, 128), (4320,))
    )
    return xr.Dataset(
        {"thetao": (("time", "depth", "lat", "lon"), data)},
        coords={"time": t, "depth": depth, "lat": lat, "lon": lon},
        attrs={"source": "synthetic GLORYS-like"},
    )


def _split(n: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, n - i) for i in range(0, n, size))


def bench_regrid(fraction: float) -> dict:
    src = open_source(_glorys_like(fraction), EnvironmentSource(entry="glorys"))
    top = -80 + np.floor((float(src.data.lat[-1]) + 80) / 0.25) * 0.25
    grid = GridConfig(resolution=0.25, bounds=(-180.0, 180.0, -80.0, float(top)))
    features = build_features(
        [src], DEFAULT_LAYERS, grid=grid, config=PredictorConfig(derived=()), time=None
    )
    out = features[["thetao"]]
    n_tasks = len(dask.base.collections_to_expr([out.thetao.data]).__dask_graph__())
    store = tempfile.mkdtemp(suffix=".zarr")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="11GiB") as cluster,
        Client(cluster),
    ):
        sampler = MemorySampler()
        start = time.perf_counter()
        with sampler.sample("regrid", interval=0.5):
            out.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        wall = time.perf_counter() - start
        peak = float(sampler.to_pandas()["regrid"].max())
    check = xr.open_zarr(store, consolidated=False).thetao
    return {
        "source_cells": int(src.data.thetao.size),
        "source_shape": dict(src.data.thetao.sizes),
        "output_shape": dict(check.sizes),
        "tasks": n_tasks,
        "wall_s": round(wall, 1),
        "peak_cluster_memory_gib": round(peak / 2**30, 2),
        "finite_fraction": float(np.isfinite(check.isel(time=0, layer=0)).mean()),
    }


def bench_one_vs_five(profiles: int) -> dict:
    from pipeline.cli.demo import demo_run_config
    from pipeline.demo.world import generate_demo_world
    from pipeline.run.steps import _features  # the run's own path to the features
    from pipeline.targets import build_targets

    root = tempfile.mkdtemp()
    generate_demo_world(root, resolution=1.0, n_profiles=profiles, n_images=10)
    config = demo_run_config(root, labels=None, quick=True)
    from pipeline.catalog import open_catalog, read_entry

    particles = read_entry(open_catalog("demo", root=root), "ecopart_detailed")
    targets = build_targets(particles.accepted, config=config.targets).targets.compute()
    out = {"profiles": profiles, "target_rows": len(targets)}
    for label, env in (("one_source", "environment"), ("five_sources", None)):
        inputs = (
            config.inputs if env is None else dataclasses.replace(config.inputs, environment=env)
        )
        cfg = dataclasses.replace(config, inputs=inputs)
        start = time.perf_counter()
        features = _features(cfg)
        match = match_predictors(targets, features, config=cfg.predictors)
        t_match = time.perf_counter() - start
        start = time.perf_counter()
        features[features.attrs["features"]].isel(time=slice(0, 12)).compute()
        t_fields = time.perf_counter() - start
        out[label] = {
            "sources": len(cfg.inputs.environment),
            "features": len(features.attrs["features"]),
            "matched_rows": len(match.matchup),
            "matchup_s": round(t_match, 2),
            "fields_features_12_months_s": round(t_fields, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--world-profiles", type=int, default=300)
    parser.add_argument("--skip-regrid", action="store_true")
    args = parser.parse_args()
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, 2 cores",
        "date": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "one_vs_five": bench_one_vs_five(args.world_profiles),
    }
    if not args.skip_regrid:
        result["regrid"] = {"fraction": args.fraction, **bench_regrid(args.fraction)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
