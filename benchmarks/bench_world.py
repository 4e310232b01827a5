"""Benchmark: is the demo world worth predicting? Realistic vs simple world, same recipe.

Usage::

    python benchmarks/bench_world.py [--resolution 2.0] [--profiles 500] [--seeds 0,1,2] \
        [--worlds realistic,simple] [--out benchmarks/results/world.json]

For each world and seed: generate the demo world (years 2019-2020), run the project's
``targets`` and ``matchup`` steps (:func:`pipeline.run.steps.run_steps`, the
configuration of ``tests/test_run.py``: the five demo products, 15-degree blocks, 4
folds) on a one-worker in-process cluster, then fit directly with scikit-learn and
xgboost (not the train step), on the transformed targets (log10(c + eps)):

- the block split of the project (:func:`pipeline.model.split.assign_folds`): test MSE
  of OLS and of xgboost (one model per target, 150 trees, depth 6, 64 bins) on the test blocks;
- block-CV and random-CV MSE of xgboost (:func:`~pipeline.model.split_variants.random_folds`)
  over the training rows, and their ratio; the block-CV MSE of OLS;
- residual Moran's I of the out-of-fold block-CV residuals (weights 1 for pairs of
  rows of different casts closer than 1,000 km, first target, per layer, averaged);
- the noise ceiling of the world (:func:`pipeline.demo.noise_ceiling`) on the test rows.

MSE is the plain mean over targets of the per-target MSE (transformed space). The
machine's load average is recorded with the figures.

Generation time (``--timing``): how long ``generate_demo_world`` takes at test size
(default 2 degrees, 500 casts, 2019-2020, no images; the skill tests' worlds), stage by
stage, for a baseline git ref (default ``main``, exported with ``git archive``) and the
working tree, side by side in one run: each repetition generates the same world with
one tree then the other, each in a fresh process (``PYTHONPATH`` = the tree). Per stage
(the functions :mod:`pipeline.demo.world` calls, wrapped by name) the wall time and the
CPU time of its thread (``time.thread_time``), and in total the process CPU time
(``time.process_time``, all threads: meaningful when other work shares the cores) are
recorded, with the load average before and after each generation, and whether the two
trees wrote the same bytes. The figures go to the ``world_generation`` key of
``--out`` (the other keys are kept)::

    python benchmarks/bench_world.py --timing [--baseline-ref main] [--repeats 2] \
        [--resolution 2.0] [--profiles 500] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def _mse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.mean((y - p) ** 2, axis=0)))


def _xgb(x_tr, y_tr, x_te):
    import xgboost as xgb

    out = np.empty((len(x_te), y_tr.shape[1]))
    for j in range(y_tr.shape[1]):
        m = xgb.XGBRegressor(
            n_estimators=150, max_depth=6, learning_rate=0.1, subsample=0.8, n_jobs=1, max_bin=64
        )
        m.fit(x_tr, y_tr[:, j])
        out[:, j] = m.predict(x_te)
    return out


def _ols(x_tr, y_tr, x_te):
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(x_tr, y_tr).predict(x_te)


def _cv(x, y, folds, fit) -> tuple[float, np.ndarray]:
    oof = np.full(y.shape, np.nan)
    for k in np.unique(folds[folds >= 0]):
        tr, te = (folds >= 0) & (folds != k), folds == k
        oof[te] = fit(x[tr], y[tr], x[te])
    rows = folds >= 0
    return _mse(y[rows], oof[rows]), oof


def _morans_i(lat, lon, ids, res, max_km=1000.0) -> float:
    from sklearn.metrics.pairwise import haversine_distances

    rad = np.deg2rad(np.c_[lat, lon])
    d = haversine_distances(rad) * 6371.0
    w = ((d < max_km) & (ids[:, None] != ids[None, :])).astype(float)
    z = res - res.mean()
    if w.sum() == 0:
        return float("nan")
    return float(len(z) / w.sum() * (z @ w @ z) / (z @ z))


def _say(msg: str, t0: float) -> None:
    print(f"  [{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)


def run_one(kind: str, seed: int, resolution: float, profiles: int, client) -> dict:
    from bench_honesty import _config  # the same run file (targets and matchup only here)

    from pipeline.demo import generate_demo_world, noise_ceiling
    from pipeline.model.split import assign_folds
    from pipeline.model.split_variants import random_folds
    from pipeline.run.steps import run_steps
    from pipeline.targets import transform as apply_transform

    tmp = Path(tempfile.mkdtemp(prefix=f"bench_world_{kind}_{seed}_"))
    t0 = time.perf_counter()
    world = generate_demo_world(
        str(tmp / "world"),
        resolution=resolution,
        years=(2019, 2020),
        n_profiles=profiles,
        n_images=0,
        seed=seed,
        world=kind,
    )
    t_world = time.perf_counter() - t0
    _say(f"{kind} world seed {seed}", t0)
    config = _config(world.root, seed)
    run_steps(config, out=str(tmp / "run"), steps=["targets", "matchup"], client=client)
    matchup = pd.read_parquet(tmp / "run" / "matchup.parquet")
    state = json.loads((tmp / "run" / "_state" / "matchup.json").read_text())
    tstate = json.loads((tmp / "run" / "_state" / "targets.json").read_text())
    features, targets, tr = list(state["features"]), list(tstate["targets"]), tstate["transform"]
    matchup = matchup[matchup[targets].notna().all(axis=1)].reset_index(drop=True)
    x = matchup[features].astype(float).fillna(-999.0).to_numpy()
    y = np.column_stack(
        [
            apply_transform(matchup[t].to_numpy(float), name=tr["name"], epsilon=tr["epsilon"])
            for t in targets
        ]
    )
    lat, lon = matchup["lat"].to_numpy(), matchup["lon"].to_numpy()
    folds = assign_folds(lat, lon, y, config=config.split)
    test = folds == -1
    rf = np.full(len(y), -1)  # random CV over the same training rows
    rf[~test] = random_folds(int((~test).sum()), config=replace(config.split, test_fraction=0.0))
    _say(f"targets + matchup: {len(y)} rows", t0)
    x_tr, y_tr = x[~test], y[~test]
    ols_test = _mse(y[test], _ols(x_tr, y_tr, x[test]))
    xgb_test = _mse(y[test], _xgb(x_tr, y_tr, x[test]))
    _say("test fits", t0)
    block_cv, oof = _cv(x, y, folds, _xgb)
    random_cv, _ = _cv(x, y, rf, _xgb)
    ols_block_cv, _ = _cv(x, y, folds, _ols)
    _say("cv fits", t0)
    ids = matchup["id"].astype(str).to_numpy()
    layer = matchup["layer"].astype(str).to_numpy()
    morans = []
    for name in np.unique(layer):
        sel = (layer == name) & ~test
        morans.append(_morans_i(lat[sel], lon[sel], ids[sel], (y - oof)[sel, 0]))
    _say("moran", t0)
    ydf = pd.DataFrame(y, columns=targets)
    ceiling = noise_ceiling(config, matchup, ydf, test=test, targets=targets, transform=tr)
    ceiling_mse = (
        float(np.mean(list(ceiling["test"]["mse_by_target"].values()))) if ceiling else None
    )
    return {
        "world": kind,
        "seed": seed,
        "rows": len(y),
        "test_rows": int(test.sum()),
        "targets": targets,
        "world_seconds": round(t_world, 1),
        "test_mse": {"ols": ols_test, "xgboost": xgb_test, "ceiling": ceiling_mse},
        "xgboost_cv_mse": {
            "block": block_cv,
            "random": random_cv,
            "block_over_random": block_cv / random_cv,
        },
        "ols_block_cv_mse": ols_block_cv,
        "ols_over_xgboost_test": ols_test / xgb_test,
        "ols_over_xgboost_block_cv": ols_block_cv / block_cv,
        "xgboost_over_ceiling_test": xgb_test / ceiling_mse if ceiling_mse else None,
        "residual_morans_i_by_layer": dict(zip(np.unique(layer).tolist(), morans, strict=True)),
    }


# --------------------------------------------------------------------- generation time

#: Stages of generate_demo_world: name -> the functions pipeline.demo.world calls
#: (``module.function`` or a name of world.py), wrapped in the child process.
STAGES: dict[str, tuple[str, ...]] = {
    "land_and_bathymetry": ("real_bathymetry",),
    "environment": ("envmod.write_environment",),
    "products": ("write_products",),
    "cast_plan": ("plan_realistic_casts", "_choose_profiles"),
    "cast_noise": ("_cast_noise",),
    "simulate_casts": ("ew.simulate_profile",),
    "ecopart_detailed_export": ("ew.write_detailed_export",),
    "ecopart_raw_export": ("ew.write_raw_export",),
    "truth_rows": ("_truth_rows",),
    "metadata_summaries": ("ew.write_metadata_summaries",),
    "truth_fields": ("truth.write_truth_fields",),
    "ecotaxa_export": ("etw.write_ecotaxa_export",),
}


def _timing_child(args: dict) -> dict:
    """In a fresh process: generate one world with stages wrapped; print their times."""
    import pipeline.demo.world as world_module

    wall: dict[str, float] = dict.fromkeys(STAGES, 0.0)
    cpu: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    def wrap(stage, fn):
        def timed(*a, **k):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                wall[stage] += time.perf_counter() - t0
                cpu[stage] += time.thread_time() - c0

        return timed

    for stage, names in STAGES.items():
        for name in names:
            mod, _, attr = name.rpartition(".")
            owner = getattr(world_module, mod) if mod else world_module
            if hasattr(owner, attr):
                setattr(owner, attr, wrap(stage, getattr(owner, attr)))
    load = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    world_module.generate_demo_world(
        args["out"],
        resolution=args["resolution"],
        years=(2019, 2020),
        n_profiles=args["profiles"],
        n_images=0,
        seed=args["seed"],
    )
    wall["total"] = time.perf_counter() - t0
    cpu["total"] = time.process_time() - c0
    wall["other"] = wall["total"] - sum(wall[s] for s in STAGES)
    cpu["other"] = cpu["total"] - sum(cpu[s] for s in STAGES)  # incl. zarr's I/O thread
    return {
        "wall_s": {k: round(v, 3) for k, v in wall.items()},
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }


def _export_tree(ref: str, dest: Path) -> str:
    """Export ``ref`` of this repository into ``dest`` (``git archive``); its commit."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "rev-parse", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return commit


def _file_digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_timing(args: argparse.Namespace) -> dict:
    """Time generate_demo_world stage by stage for the baseline ref and this tree."""
    import subprocess
    import sys

    here = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.mkdtemp(prefix="bench_world_timing_"))
    (tmp / "baseline").mkdir()
    baseline_commit = _export_tree(args.baseline_ref, tmp / "baseline")
    trees = {"before": tmp / "baseline", "after": here}
    runs = []
    same_bytes = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for rep in range(args.repeats):
            outs = {}
            for label, tree in trees.items():
                out = tmp / f"world_{label}_{seed}_{rep}"
                child = {
                    "out": str(out),
                    "resolution": args.resolution,
                    "profiles": args.profiles,
                    "seed": seed,
                }
                env = {**os.environ, "PYTHONPATH": str(tree)}
                proc = subprocess.run(
                    [sys.executable, __file__, "--timing-child", json.dumps(child)],
                    env=env,
                    cwd=str(tmp),
                    check=True,
                    capture_output=True,
                    text=True,
                )
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.append({"tree": label, "seed": seed, "repeat": rep, **result})
                t = result["wall_s"]["total"], result["cpu_s"]["total"]
                print(f"  {label:6s} seed {seed} rep {rep}: {t[0]:.1f} s wall, {t[1]:.1f} s CPU")
                outs[label] = out
            a, b = (_file_digests(outs[k]) for k in ("before", "after"))
            differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            same_bytes[f"seed {seed} repeat {rep}"] = {
                "files": len(a),
                "differing": differ,
            }
            for out in outs.values():
                shutil.rmtree(out, ignore_errors=True)
    summary = {}
    for label in trees:
        mine = [r for r in runs if r["tree"] == label]
        summary[label] = {
            key: {
                stage: round(float(np.median([r[key][stage] for r in mine])), 2)
                for stage in mine[0][key]
            }
            for key in ("wall_s", "cpu_s")
        }
    return {
        "parameters": {
            "resolution": args.resolution,
            "profiles": args.profiles,
            "years": [2019, 2020],
            "n_images": 0,
            "seeds": args.seeds,
            "repeats": args.repeats,
            "world": "realistic",
        },
        "baseline": {"ref": args.baseline_ref, "commit": baseline_commit},
        "after": {"tree": "working tree of this benchmark", "commit": _head(here)},
        "stages": {k: list(v) for k, v in STAGES.items()},
        "median": summary,
        "same_bytes": same_bytes,
        "runs": runs,
        "note": (
            "per stage: wall time and the CPU time of the thread running it "
            "(time.thread_time); total CPU: time.process_time (every thread, zarr's I/O "
            "thread included); other = total - stages. Imports are excluded (timing "
            "starts at the call). In the after tree the truth fields run in a second "
            "thread beside the casts, so stage walls overlap and do not add up to the "
            "total. Its land grids come from the disk cache once a first run wrote them."
        ),
    }


def _head(root: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--worlds", default="realistic,simple")
    parser.add_argument("--out", default="benchmarks/results/world.json")
    parser.add_argument("--timing", action="store_true", help="time world generation")
    parser.add_argument("--baseline-ref", default="main")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timing-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.timing_child:
        print(json.dumps(_timing_child(json.loads(args.timing_child))))
        return
    if args.timing:
        if args.seeds == parser.get_default("seeds"):
            args.seeds = "0"
        out = Path(args.out)
        doc = json.loads(out.read_text()) if out.exists() else {"name": "world"}
        load = os.getloadavg()
        timing = run_timing(args)
        timing["machine"] = {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": load,
            "load_average_end": os.getloadavg(),
        }
        doc["world_generation"] = timing
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(timing["median"], indent=1))
        return
    from distributed import Client, LocalCluster

    results = []
    load = os.getloadavg()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster:
        with Client(cluster) as client:
            for seed in (int(s) for s in args.seeds.split(",")):
                for kind in args.worlds.split(","):
                    r = run_one(kind, seed, args.resolution, args.profiles, client)
                    print(json.dumps(r, indent=1), flush=True)
                    results.append(r)
    import sklearn
    import xgboost

    doc = {
        "name": "world",
        "parameters": vars(args),
        "results": results,
        "versions": {"xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_start": load,
            "load_average_end": os.getloadavg(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
