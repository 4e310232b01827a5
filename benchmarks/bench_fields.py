"""Benchmark of pipeline.fields.predict: prediction throughput and a 0.25 deg year written to zarr.

(a) throughput (cells/s) of ``predict_fields(...).compute()`` against the raw
    ``booster.inplace_predict`` on the same (valid) cells stacked in one array, same run;
(b) a year of monthly 0.25 deg fields (12 x 3 x 720 x 1440, 12 lazy analytic features,
    chunks (1, 3, 180, 1440)) predicted and written to a local zarr v3 store with a
    ``LocalCluster(n_workers=2, threads_per_worker=1)``; wall time, time per region, and
    peak memory = the maximum over time of the summed RSS of this process and all its
    children (nanny + worker processes), sampled every 0.2 s with psutil.

Run: ``python benchmarks/bench_fields.py [--quick]``; writes ``benchmarks/results/fields.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import psutil
import xarray as xr
import xgboost as xgb
from distributed import wait

from pipeline.fields.predict import DIMS, FieldsConfig, envelope_of, predict_fields
from pipeline.fields.write import write_fields

N_FEATURES = 12
TARGETS = [
    "conc_102_203um_per_l",
    "conc_203_512um_per_l",
    "conc_512_2050um_per_l",
    "conc_2050_infum_per_l",
    "flux_mgc_m2_d",
]
LAYERS = (("0-100m", 0.0, 100.0), ("100-500m", 100.0, 500.0), ("500-1000m", 500.0, 1000.0))
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]


def _analytic(t, layer, lat, lon):
    """Features (float32, F last) and an ocean mask from month, layer index, lat, lon."""
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    base = [
        28 * np.cos(la) - 4 * layer + np.sin(2 * np.pi * t / 12) * np.sin(la),
        np.cos(2 * la) * np.cos(lo) - 0.5 * layer,
        np.sin(3 * lo) * np.cos(la),
        np.cos(la) ** 2 + 0.1 * t,
    ]
    feats = [base[i % 4] * (1 + 0.1 * (i // 4)) + 0.01 * i for i in range(N_FEATURES)]
    x = np.stack(np.broadcast_arrays(*feats), axis=-1).astype("float32")
    depth_m = 3000 + 2500 * np.sin(3 * la) * np.cos(2 * lo)  # sea floor
    land = (np.sin(2 * lo) * np.cos(la) > 0.55) | (lat < -78)
    top = np.array([0.0, 100.0, 500.0])[layer]
    ocean = ~land & (depth_m > top)
    return x, ocean


def _block(block_info=None):
    info = block_info[None]
    (t0, t1), (l0, l1), (y0, y1), (x0, x1) = info["array-location"][:4]
    t = np.arange(t0, t1)[:, None, None, None]
    layer = np.arange(l0, l1)[None, :, None, None]
    lat = (-89.875 + 0.25 * np.arange(y0, y1))[None, None, :, None]
    lon = (-179.875 + 0.25 * np.arange(x0, x1))[None, None, None, :]
    x, ocean = _analytic(t, layer, lat, lon)
    x[~np.broadcast_to(ocean, x.shape[:-1])] = np.nan
    return x


def synthetic_features(nt: int, ny: int, nx: int, lat_chunk: int) -> xr.Dataset:
    """Lazy features Dataset (analytic, no data in the graph) at 180/ny degrees."""
    chunks = ((1,) * nt, (3,), _split(ny, lat_chunk), (nx,), (N_FEATURES,))
    stacked = da.map_blocks(_block, dtype=np.float32, chunks=chunks, name="features-synth")
    step = 180.0 / ny
    coords = {
        "time": pd.date_range("2021-01-01", periods=nt, freq="MS"),
        "layer": ("layer", np.array([n for n, _, _ in LAYERS], dtype=object)),
        "layer_top_m": ("layer", [a for _, a, _ in LAYERS]),
        "layer_bottom_m": ("layer", [b for _, _, b in LAYERS]),
        "lat": -90 + step / 2 + step * np.arange(ny),
        "lon": -180 + step / 2 + step * np.arange(nx),
    }
    data = {name: (DIMS, stacked[..., i]) for i, name in enumerate(FEATURES)}
    return xr.Dataset(data, coords=coords, attrs={"features": FEATURES})


def _split(n, c):
    return (c,) * (n // c) + ((n % c,) if n % c else ())


def train_booster(n_rows: int = 50_000, rounds: int = 100, seed: int = 0):
    """A multi-output booster on cells sampled from the analytic features."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 12, n_rows)
    layer = rng.integers(0, 3, n_rows)
    lat, lon = rng.uniform(-80, 80, n_rows), rng.uniform(-180, 180, n_rows)
    x, ocean = _analytic(t, layer, lat, lon)
    X = pd.DataFrame(x[ocean], columns=FEATURES)
    f = X.to_numpy()
    Y = np.column_stack(
        [0.05 * f[:, 0] + 0.3 * np.sin(f[:, 1 + k]) - 0.2 * k for k in range(len(TARGETS))]
    )
    params = {
        "tree_method": "hist",
        "multi_strategy": "multi_output_tree",
        "max_depth": 6,
        "eta": 0.1,
        "nthread": os.cpu_count(),
    }
    booster = xgb.train(params, xgb.DMatrix(X, label=Y), num_boost_round=rounds)
    return X, booster


class RssSampler:
    """Peak of the summed RSS of this process and all its descendants."""

    def __init__(self, every_s: float = 0.2):
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _best(run, repeat=3):
    """Best wall time of ``repeat`` runs (the machine may be shared)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_throughput(client, X, booster, nt=12, ny=180, nx=360):
    """(a) cells/s of predict_fields vs raw inplace_predict on the same valid cells."""
    feats = synthetic_features(nt, ny, nx, lat_chunk=45).compute(scheduler="sync")
    feats = feats.chunk({"time": 1, "lat": 45})
    on_cluster = client.persist(feats)
    env = envelope_of(X)
    stacked = np.stack([feats[n].values for n in FEATURES], axis=-1).reshape(-1, N_FEATURES)
    valid = ~np.isnan(stacked).any(axis=1)
    rows = np.ascontiguousarray(stacked[valid])
    out = {"cells": int(stacked.shape[0]), "valid_cells": int(valid.sum())}
    for nthread in (1, 2):
        booster.set_param({"nthread": nthread})
        booster.inplace_predict(rows[:1000])
        out[f"raw_inplace_predict_nthread{nthread}_s"] = _best(
            lambda: booster.inplace_predict(rows)
        )
    options = {
        "targets": TARGETS,
        "transform": {"name": "log10", "epsilon": 1e-3},
        "residual_quantiles": {t: (-0.3, 0.3) for t in TARGETS},
        "envelope": env,
    }
    fields = predict_fields(feats, booster, **options)
    fields.compute(scheduler="sync")  # warm (per-process booster cache)
    out["predict_fields_sync_s"] = _best(lambda: fields.compute(scheduler="sync"))
    # On the cluster, results stay on the workers (persist + wait): no gather to the client.
    runs = iter(range(1000))

    def on_workers():
        # fresh keys each run (a 1e-9 change of a quantile) so no result is reused
        k = next(runs)
        quantiles = {t: (-0.3 - 1e-9 * k, 0.3) for t in TARGETS}
        lazy = predict_fields(on_cluster, booster, **{**options, "residual_quantiles": quantiles})
        persisted = client.persist(lazy)
        wait(persisted)
        del persisted

    on_workers()  # warm the workers' booster cache
    out["predict_fields_cluster_s"] = _best(on_workers)
    cells = out["valid_cells"]
    out["raw_nthread1_valid_cells_per_s"] = cells / out["raw_inplace_predict_nthread1_s"]
    out["raw_nthread2_valid_cells_per_s"] = cells / out["raw_inplace_predict_nthread2_s"]
    out["fields_sync_valid_cells_per_s"] = cells / out["predict_fields_sync_s"]
    out["fields_cluster_valid_cells_per_s"] = cells / out["predict_fields_cluster_s"]
    out["ratio_fields_sync_vs_raw_nthread1"] = (
        out["fields_sync_valid_cells_per_s"] / out["raw_nthread1_valid_cells_per_s"]
    )
    out["ratio_fields_cluster_vs_raw_nthread2"] = (
        out["fields_cluster_valid_cells_per_s"] / out["raw_nthread2_valid_cells_per_s"]
    )
    return out


def bench_year(X, booster, nt=12, ny=720, nx=1440, lat_chunk=180, root=None):
    """(b) predict and write a 0.25 deg year with a 2-worker LocalCluster."""
    feats = synthetic_features(nt, ny, nx, lat_chunk=lat_chunk)
    fields = predict_fields(
        feats,
        booster,
        targets=TARGETS,
        transform={"name": "log10", "epsilon": 1e-3},
        residual_quantiles={t: (-0.3, 0.3) for t in TARGETS},
        envelope=envelope_of(X),
        config=FieldsConfig(lat_chunk=lat_chunk),
    )
    url = os.path.join(root, "fields.zarr")
    times = []
    last = [time.perf_counter()]

    def progress(done, total):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        print(f"  region {done}/{total} {times[-1]:.1f} s", flush=True)

    t0 = time.perf_counter()
    with RssSampler() as rss:
        report = write_fields(fields, url, attrs={"model_id": "bench"}, progress=progress)
    wall = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(url).rglob("*") if f.is_file())
    t0 = time.perf_counter()
    again = write_fields(fields, url, attrs={"model_id": "bench"})
    rerun = time.perf_counter() - t0
    return {
        "shape": [nt, 3, ny, nx],
        "cells": nt * 3 * ny * nx,
        "lat_chunk": lat_chunk,
        "variables": len(fields.data_vars),
        "regions_written": report.regions_written,
        "wall_s": wall,
        "region_s": times[1:],
        "cells_per_s": nt * 3 * ny * nx / wall,
        "peak_rss_sum_gib": rss.peak / 2**30,
        "store_size_gib": size / 2**30,
        "rerun_s": rerun,
        "rerun_regions_written": again.regions_written,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 1 deg year instead of 0.25")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    X, booster = train_booster()
    train_s = time.perf_counter() - t0
    raw = booster.save_raw("ubj")
    root = tempfile.mkdtemp(prefix="bench-fields-")
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            throughput = bench_throughput(client, X, booster)
            print(json.dumps(throughput, indent=1), flush=True)
            ny, nx = (180, 360) if args.quick else (720, 1440)
            year = bench_year(
                X, booster, ny=ny, nx=nx, lat_chunk=45 if args.quick else 180, root=root
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "name": "fields",
        "parameters": {
            "features": N_FEATURES,
            "targets": len(TARGETS),
            "model": {
                "rounds": 100,
                "max_depth": 6,
                "multi_strategy": "multi_output_tree",
                "bytes": len(raw),
            },
            "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)",
            "timing": "throughput: best of 3 runs; year: one run",
            "memory": "peak over time of summed RSS of this process and its children "
            "(psutil, every 0.2 s)",
        },
        "train_s": train_s,
        "throughput": throughput,
        "year": year,
        "versions": {
            "xgboost": xgb.__version__,
            "dask": dask.__version__,
            "xarray": xr.__version__,
            "numpy": np.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "memory_gib": psutil.virtual_memory().total / 2**30,
        },
    }
    out = Path(__file__).parent / "results" / "fields.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
