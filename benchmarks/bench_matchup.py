"""Benchmark: match_predictors vs xarray's vectorized nearest .sel on the same features.

Usage::

    python benchmarks/bench_matchup.py [--resolution 1.0] [--points 20000] \
        [--out benchmarks/results/matchup.json]

Writes a demo world (environment only matters) at the given resolution, builds the
layer features lazily, draws N random ocean points (valid cells of the ocean mask,
jittered inside the cell, random month of the store, random layer) and times, in the
same run, on the default (threaded) scheduler:

- ``match_predictors(targets, features)`` (mask + one task per block touched);
- the baseline: ``features.sel(time=..., lat=..., lon=..., method="nearest")`` with
  vectorized indexers (``layer`` by name) followed by ``.compute()``.

Both start from the same lazy features (nothing persisted), so both read and reduce
the store. The JSON holds the parameters, both timings, their ratio, versions and the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.demo import generate_demo_world
from pipeline.predictors.features import feature_names, layer_features, ocean_mask
from pipeline.predictors.matchup import match_predictors
from pipeline.sources.copernicus import open_environment
from pipeline.targets.particles import DEFAULT_LAYERS


def _targets(features: xr.Dataset, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    valid = ocean_mask(features).values
    layer, y, x = np.nonzero(valid)
    k = rng.integers(0, layer.size, n)
    lat = features["lat"].values.astype(float)
    lon = features["lon"].values.astype(float)
    step = float(np.median(np.diff(lat)))
    times = pd.DatetimeIndex(features["time"].values)
    t = rng.integers(0, times.size, n)
    return pd.DataFrame(
        {
            "id": [f"b{i}" for i in range(n)],
            "lat": np.clip(lat[y[k]] + rng.uniform(-0.4, 0.4, n) * step, -90.0, 90.0),
            "lon": lon[x[k]] + rng.uniform(-0.4, 0.4, n) * step,
            "time": (times[t] + pd.to_timedelta(rng.integers(0, 27, n), unit="D")).tz_localize(
                "UTC"
            ),
            "layer": features["layer"].values[layer[k]].astype(str),
        }
    )


def _baseline(targets: pd.DataFrame, features: xr.Dataset) -> np.ndarray:
    names = feature_names(features)
    idx = {
        "time": xr.DataArray(
            targets["time"].dt.tz_localize(None).dt.to_period("M").dt.start_time.values,
            dims="row",
        ),
        "lat": xr.DataArray(targets["lat"].to_numpy(), dims="row"),
        "lon": xr.DataArray(targets["lon"].to_numpy(), dims="row"),
    }
    picked = features[names].sel(idx, method="nearest")
    picked = picked.sel(layer=xr.DataArray(targets["layer"].to_numpy(), dims="row"))
    return picked.to_array().transpose("row", "variable").compute().values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "matchup.json"))
    parser.add_argument("--root", default=None, help="demo world folder (default: a tmpdir)")
    args = parser.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="bench_matchup_")
    t0 = time.perf_counter()
    world = generate_demo_world(root, resolution=args.resolution, n_profiles=5, n_images=1)
    world_s = time.perf_counter() - t0
    env = open_environment(world.paths["environment"])
    features = layer_features(env, DEFAULT_LAYERS)
    targets = _targets(features, args.points, args.seed)

    ours, base = [], []
    result = None
    expected = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = match_predictors(targets, features)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        expected = _baseline(targets, features)
        base.append(time.perf_counter() - t0)
    assert result is not None
    assert expected is not None
    names = feature_names(features)
    same = result.matchup["distance_km"].eq(0).to_numpy()
    got = result.matchup[names].to_numpy()[same]
    ref = expected[result.matchup.index.to_numpy()[same]]
    agree = bool(np.allclose(got, ref, rtol=1e-6, equal_nan=True))
    record = {
        "name": "matchup",
        "parameters": {
            "resolution_deg": args.resolution,
            "points": args.points,
            "seed": args.seed,
            "repeat": args.repeat,
            "layers": [layer.name for layer in DEFAULT_LAYERS],
            "features": names,
            "grid": {k: int(v) for k, v in features.sizes.items()},
            "chunks_per_variable": int(np.prod([len(c) for c in features[names[0]].chunks])),
            "scheduler": str(dask.config.get("scheduler", "threads")),
        },
        "seconds": {
            "match_predictors": min(ours),
            "xarray_sel_nearest": min(base),
            "all_match_predictors": ours,
            "all_xarray_sel_nearest": base,
            "demo_world": world_s,
        },
        "ratio_baseline_over_ours": min(base) / min(ours),
        "checks": {
            "matched": len(result.matchup),
            "missing": len(result.missing),
            "values_agree_on_own_cell_rows": agree,
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "xarray": xr.__version__,
            "dask": dask.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("seconds", "ratio_baseline_over_ours", "checks")}))


if __name__ == "__main__":
    main()
