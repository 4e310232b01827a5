"""Benchmark: the targets and matchup steps of a run on a large demo world (wall time, tasks).

For one demo world (``oceanfields demo-data DIR --resolution 2 --profiles N``), the demo's
year-1 run file (:func:`pipeline.cli.demo.demo_run_config`, annotated EcoTaxa categories as
object targets, ``quick``) is run step by step on a ``LocalCluster`` of ``--workers``
single-threaded processes: ``targets`` (every detailed PAR export read through the
readers, layers summed per cast) and ``matchup`` (five environment products regridded and
matched to every target row). Each step's wall seconds, the tasks the cluster ran
(:func:`distributed.get_task_stream`), rows out, the client's peak memory and the load
average go to ``benchmarks/results/steps_<label>.json``. Run::

    python benchmarks/bench_steps.py --world /tmp/w30000 --label 30000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import dask
import distributed
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import PeakRSS

from pipeline.cli.demo import demo_run_config
from pipeline.run.steps import run_steps

STEPS = ("targets", "matchup")


def _files(world: str) -> int:
    return sum(1 for name in os.listdir(Path(world) / "ecopart") if "_PAR_" in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="demo world folder (demo-data)")
    parser.add_argument("--label", default="run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--note", default="", help="machine state (shared, load)")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="bench-steps-")
    config = demo_run_config(os.path.abspath(args.world), labels=None, quick=True, out=out)
    result: dict = {
        "name": f"steps_{args.label}",
        "parameters": {
            "world": args.world,
            "par_files": _files(args.world),
            "workers": args.workers,
            "threads_per_worker": 1,
            "note": args.note,
        },
        "steps": {},
    }
    with (
        distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        for step in STEPS:
            load0 = os.getloadavg()[0]
            start = time.perf_counter()
            with PeakRSS() as peak, distributed.get_task_stream(client) as stream:
                run_steps(config, steps=[step], client=client, echo=print)
            seconds = time.perf_counter() - start
            table = pd.read_parquet(f"{out}/{step}.parquet")
            result["steps"][step] = {
                "seconds": seconds,
                "tasks": len(stream.data),
                "rows": len(table),
                "client_peak_rss_mb": peak.peak,
                "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            }
            print(step, json.dumps(result["steps"][step]))
    result["versions"] = {
        "python": platform.python_version(),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "pandas": pd.__version__,
    }
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    dest = Path(__file__).parent / "results" / f"steps_{args.label}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")
    print("written", dest)


if __name__ == "__main__":
    main()
