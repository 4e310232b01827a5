"""Issue 15's figures: can the evaluation tell models apart, and which CV tells the truth?

For each world kind (``realistic``, the default demo world, and ``simple``, the old one),
resolution and seed, generate a demo world, run the chain (targets, matchup, train,
fields) on a two-worker process cluster and collect from ``metrics.json`` and
``honesty.json``:

- plain MSE and mv_mse of the model and every baseline on the test blocks, with the
  block-bootstrap 90 % interval of model - baseline;
- block, random (by cast), leave-one-basin-out CV estimates and the true error of the
  fields far from the casts (the CV honesty check), as ratios estimate / truth;
- the noise ceiling and the linear baseline's excess over it;
- 90 % interval coverage per layer and basin (>= 30 test rows), joint coverage.

Run::

    python benchmarks/bench_honesty.py [--worlds realistic simple] [--seeds 0 1 2]
        [--resolutions 2 3] [--profiles 500] [--out benchmarks/results/honesty.json]

Timings are not the point here; the machine is recorded anyway.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

from pipeline.demo import generate_demo_world
from pipeline.demo.products import DEMO_SOURCES
from pipeline.run.config import load_run_config
from pipeline.run.steps import run_steps

HERE = Path(__file__).resolve().parent


def _config(root: str, seed: int) -> Any:
    return load_run_config(
        {
            "inputs": {
                "catalog": "demo",
                "params": {"root": root},
                "particles": "ecopart_detailed",
                "environment": list(DEMO_SOURCES),
                "truth": "truth_profiles",
            },
            "split": {"block_deg": 15.0, "n_folds": 4, "seed": seed},
            # both workers in every fit, as when results/honesty.json was measured
            "train": {"rf_n_estimators": 150, "min_rows_per_worker": 1},
        }
    )


def _summary(metrics: dict[str, Any], honesty: dict[str, Any] | None) -> dict[str, Any]:
    model = metrics["model"]
    out: dict[str, Any] = {
        "test": {"model": {k: model["test"][k] for k in ("mse", "mv_mse", "r2_mean")}},
        "cv_mse": {
            name: model[key]["mean"]["mse"]
            for name, key in (
                ("block", "cv"),
                ("random", "random_cv"),
                ("random_cruise", "random_cruise_cv"),
                ("basins", "basins_cv"),
            )
            if key in model
        },
        "comparisons_test_mse": {
            name: c.get("test", {}).get("mse") for name, c in metrics.get("comparisons", {}).items()
        },
        "excess_over_ceiling": metrics.get("excess_over_ceiling"),
        "weak_targets": metrics.get("weak_targets", {}).get("flagged"),
    }
    for name, entry in metrics.get("baselines", {}).items():
        out["test"][name] = {k: entry["test"][k] for k in ("mse", "mv_mse", "r2_mean")}
    ceiling = metrics.get("noise_ceiling", {}).get("test")
    if ceiling:
        out["test"]["noise_ceiling"] = {k: ceiling[k] for k in ("mse", "mv_mse", "r2_mean")}
    cover = metrics.get("intervals", {}).get("test", {})
    out["coverage_90"] = {
        "mean": cover.get("mean"),
        "joint": cover.get("joint"),
        **{
            by: {k: v["mean"] for k, v in groups.items() if not v.get("small")}
            for by, groups in cover.get("by", {}).items()
        },
    }
    out["residual_morans_i"] = {
        k: v["morans_i"]["mean"] for k, v in metrics.get("residuals", {}).get("layers", {}).items()
    }
    if honesty:
        out["honesty"] = {
            "true_mse": honesty["true_mse"],
            "ratios": {k: v["ratio"] for k, v in honesty["estimates"].items()},
            "closest": honesty["closest"],
            "by_distance": honesty["by_distance"],
        }
    return out


def main() -> None:
    """Run the worlds and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=["realistic", "simple"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--resolutions", nargs="+", type=float, default=[2.0])
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--out", default=str(HERE / "results" / "honesty.json"))
    args = parser.parse_args()
    takes_world = "world" in inspect.signature(generate_demo_world).parameters
    results = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for kind in args.worlds:
            for resolution in args.resolutions:
                for seed in args.seeds:
                    base = Path(tmp) / f"{kind}-{resolution:g}-{seed}"
                    t0 = time.perf_counter()
                    extra = {"world": kind} if takes_world else {}
                    world = generate_demo_world(
                        str(base / "world"),
                        resolution=resolution,
                        n_profiles=args.profiles,
                        n_images=0,
                        seed=seed,
                        **extra,
                    )
                    t1 = time.perf_counter()
                    run_steps(
                        _config(world.root, seed),
                        out=str(base / "run"),
                        steps=["targets", "matchup", "train", "fields"],
                        client=client,
                    )
                    t2 = time.perf_counter()
                    metrics = json.loads((base / "run" / "metrics.json").read_text())
                    path = base / "run" / "honesty.json"
                    honesty = json.loads(path.read_text()) if path.exists() else None
                    row = {
                        "world": kind if takes_world else "simple (no world kinds yet)",
                        "resolution": resolution,
                        "seed": seed,
                        "profiles": args.profiles,
                        "seconds": {"world": round(t1 - t0, 1), "chain": round(t2 - t1, 1)},
                        **_summary(metrics, honesty),
                    }
                    results.append(row)
                    print(json.dumps({k: row[k] for k in ("world", "seed", "cv_mse")}), flush=True)
                    if honesty:
                        print("  honesty", json.dumps(row["honesty"]["ratios"]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "note": "2-core machine shared with other jobs while this ran",
                },
                "results": results,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
