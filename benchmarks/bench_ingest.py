"""Benchmark: ingest of EcoPart/EcoTaxa exports vs the plain pandas loop on the same files.

For one demo world (``oceanfields demo-data DIR --resolution 2 --profiles N``), side by side
in one run on the same (warm) files:

- ``pandas_loop``: ``pd.read_csv(f, sep="\\t", encoding="latin-1")`` per file, one process,
  then ``pd.concat`` (no check, no quarantine, no binning of raw files: the reference);
- ``ingest_1_worker`` / ``ingest_2_workers``: :func:`pipeline.sources.ecopart.read_ecopart`
  on the folder as exported + :func:`pipeline.ingest.write_ingest` on a LocalCluster of 1
  or 2 single-threaded worker processes (listing, parsing, checking, writing parquet);
- ``before`` (``--before /path/to/old/checkout``): the ``oceanfields ingest`` command of
  another checkout on the same files, in a subprocess (``/usr/bin/time`` for its peak);
- ``targets`` (``--targets``): :func:`pipeline.targets.particles.build_targets` on the
  ingested ``particles.parquet`` (one partition per batch), computed on the 2 workers;
- ``ecotaxa`` (``--ecotaxa DIR``): ingest of an EcoTaxa export (``demo-data --objects N
  --no-images``) vs the pandas loop, rows/s and the workers' peak memory.

Figures: wall seconds, rows/s, MB/s, client peak RSS (sampled every 20 ms), tasks; for
``--ecotaxa`` also the workers' peak RSS and CPU seconds and the loop's CPU seconds. Writes
``benchmarks/results/ingest_<label>.json``. Run (the ``__main__`` guard is needed by the
process cluster):
``python benchmarks/bench_ingest.py --world /tmp/w3000 --label 3000 [--kind raw]``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cloudpickle
import dask
import distributed
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
#: The old code is given this long, at most (its time then reads "> 600 s").
BEFORE_TIMEOUT_S = 600


class PeakRSS(threading.Thread):
    """Sample a process's resident memory every 20 ms; ``peak`` in MB."""

    def __init__(self, pid: int | None = None) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid or os.getpid())
        self.peak = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join()


def _files(world: str, kind: str) -> tuple[str, list[str]]:
    folder = f"{world}/ecopart" if kind == "detailed" else f"{world}/ecopart/raw"
    pattern = "export_detailed_*_PAR_*.tsv" if kind == "detailed" else "*_PAR_raw_*.tsv"
    return folder, sorted(glob.glob(f"{folder}/{pattern}"))


def _warm(files: list[str]) -> dict:
    t0 = time.perf_counter()
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            n += len(fh.read())
    return {"bytes": n, "seconds": time.perf_counter() - t0}


def pandas_loop(files: list[str], *, concat: bool = True, encoding: str = "latin-1") -> dict:
    """The loop, in a process of its own (its memory must not count as the client's)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_pandas_loop, (files, concat, encoding))


def _pandas_loop(files: list[str], concat: bool, encoding: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    with PeakRSS() as mem:
        if concat:
            frames = [pd.read_csv(f, sep="\t", encoding=encoding, low_memory=False) for f in files]
            rows = len(pd.concat(frames, ignore_index=True))
        else:  # a table of millions of objects does not fit one process: count the rows
            rows = sum(
                len(pd.read_csv(f, sep="\t", encoding=encoding, low_memory=False)) for f in files
            )
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "rows": rows,
        "peak_rss_mb": mem.peak,
    }


def ingest(folder: str, kind: str, workers: int, out: str, *, restrict: list[str]) -> dict:
    from pipeline.ingest import write_ingest
    from pipeline.sources.ecopart import read_ecopart

    shutil.rmtree(out, ignore_errors=True)
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(lambda: None)
        t0 = time.perf_counter()
        with PeakRSS() as mem:
            # the folder as exported when it holds only this kind; else the kind's files
            res = read_ecopart(restrict or folder)
            t_list = time.perf_counter() - t0

            graph: dict = {}

            def compute(*collections):
                for c in collections:
                    graph.update(dict(c.__dask_graph__()))
                return tuple(client.gather(client.compute(list(collections))))

            summary = write_ingest(res, out, table="particles", compute=compute)
        seconds = time.perf_counter() - t0
        # distributed ships each task apart: the sum of the keys' pickles
        graph_mb = sum(len(cloudpickle.dumps(v)) for v in graph.values()) / 1e6
        workers_peak = client.run(lambda: psutil.Process().memory_info().rss / 2**20)
    return {
        "seconds": seconds,
        "seconds_listing_and_graph": t_list,
        "rows_read": summary.rows_read,
        "rows_accepted": summary.rows_accepted,
        "particles_rows": summary.rows_accepted
        if kind == "detailed"
        else int(pd.read_parquet(f"{out}/particles.parquet", columns=["depth_m"]).shape[0]),
        "files": summary.files,
        "tasks": summary.batches,
        "graph_keys": len(graph),
        "graph_mb": graph_mb,
        "client_peak_rss_mb": mem.peak,
        "worker_rss_mb_at_end": sorted(workers_peak.values()),
    }


def before(checkout: str, folder: str, files: list[str], out: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    pattern = (
        files[0].rsplit("/", 1)[0]
        + "/"
        + ("export_detailed_*_PAR_*.tsv" if "_PAR_raw_" not in files[0] else "*_PAR_raw_*.tsv")
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "pipeline", "ingest", "ecopart"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [*cmd, pattern, "--out", out],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=BEFORE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"checkout": checkout, "timed_out_after_s": BEFORE_TIMEOUT_S}
    seconds = time.perf_counter() - t0
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    rows = re.search(r"(\d+) rows read", proc.stdout)
    return {
        "checkout": checkout,
        "exit_code": proc.returncode,
        "seconds": seconds,
        "rows_read": int(rows.group(1)) if rows else None,
        "client_peak_rss_mb": int(peak.group(1)) / 1024 if peak else None,
    }


def targets(out: str, workers: int) -> dict:
    import dask.dataframe as dd

    from pipeline.targets.particles import build_targets

    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster),
    ):
        t0 = time.perf_counter()
        particles = dd.read_parquet(f"{out}")
        res = build_targets(particles)
        graph = len(dict(res.targets.__dask_graph__()))
        tgt, skipped = dask.compute(res.targets, res.skipped)
        return {
            "seconds": time.perf_counter() - t0,
            "partitions": particles.npartitions,
            "tasks_in_graph": graph,
            "target_rows": len(tgt),
            "skipped_rows": len(skipped),
        }


def ecotaxa(folder: str, workers: int, out: str) -> dict:
    from pipeline.ingest import write_ingest
    from pipeline.sources.ecotaxa import read_ecotaxa

    files = sorted(glob.glob(f"{folder}/*.tsv"))
    warm = _warm(files)
    loop = pandas_loop(files, concat=False, encoding="utf-8")
    rows = loop["rows"]
    shutil.rmtree(out, ignore_errors=True)
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        peaks = {}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for addr, rss in client.run(
                    lambda: psutil.Process().memory_info().rss / 2**20
                ).items():
                    peaks[addr] = max(peaks.get(addr, 0.0), rss)
                time.sleep(0.5)

        def cpu() -> dict:  # user + system CPU seconds of each worker process so far
            return client.run(lambda: sum(psutil.Process().cpu_times()[:2]))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu0 = cpu()
        t0 = time.perf_counter()
        with PeakRSS() as cmem:
            with dask.config.set(scheduler=client):
                res = read_ecotaxa(folder, check_images=False)

            def compute(*collections):
                return tuple(client.gather(client.compute(list(collections))))

            summary = write_ingest(res, out, table="objects", compute=compute)
        seconds = time.perf_counter() - t0
        cpu1 = cpu()
        stop.set()
        sampler.join()
    mb = warm["bytes"] / 1e6
    return {
        "files": len(files),
        "bytes": warm["bytes"],
        "pandas_loop": loop
        | {"rows_per_s": rows / loop["seconds"], "mb_per_s": mb / loop["seconds"]},
        "ingest": {
            "seconds": seconds,
            "rows_read": summary.rows_read,
            "rows_accepted": summary.rows_accepted,
            "tasks": summary.batches,
            "rows_per_s": summary.rows_read / seconds,
            "mb_per_s": mb / seconds,
            "client_peak_rss_mb": cmem.peak,
            "worker_peak_rss_mb": sorted(peaks.values()),
            # the memory sampler's client.run calls count too (a few ms every 0.5 s)
            "worker_cpu_s": sum(cpu1[a] - cpu0[a] for a in cpu1),
        },
        "ratio_ingest_over_loop_throughput": loop["seconds"] / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", help="demo world folder (oceanfields demo-data)")
    parser.add_argument("--kind", choices=["detailed", "raw"], default="detailed")
    parser.add_argument("--label", default="run")
    parser.add_argument("--before", default=None, help="checkout of the code to compare with")
    parser.add_argument("--targets", action="store_true")
    parser.add_argument("--one-worker", action="store_true", help="also time 1 worker")
    parser.add_argument("--ecotaxa", default=None, help="folder of a scale EcoTaxa export")
    parser.add_argument("--note", default="", help="machine state (shared, load)")
    parser.add_argument(
        "--loop-count-only",
        action="store_true",
        help="the pandas loop counts each file's rows instead of concatenating them (30,000 "
        "files concatenated held 17.5 GB in one process; counting is faster, so the ratio "
        "to the loop is then conservative)",
    )
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="bench_ingest_")
    doc: dict = {
        "name": f"ingest_{args.label}",
        "parameters": vars(args),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average_at_start": os.getloadavg(),
            "note": args.note,
        },
        "versions": {
            "dask": dask.__version__,
            "distributed": distributed.__version__,
            "pandas": pd.__version__,
        },
    }
    if args.world:
        folder, files = _files(args.world, args.kind)
        warm = _warm(files)
        mb = warm["bytes"] / 1e6
        doc["input"] = {"kind": args.kind, "files": len(files), "mb": mb, "warm_read": warm}
        print(
            f"{len(files)} {args.kind} PAR files, {mb:.0f} MB (warm read {warm['seconds']:.1f} s)"
        )
        loop = pandas_loop(files, concat=not args.loop_count_only)
        loop |= {"rows_per_s": loop["rows"] / loop["seconds"], "mb_per_s": mb / loop["seconds"]}
        doc["pandas_loop"] = loop
        print(f"pandas loop: {loop['seconds']:.1f} s, {loop['rows']} rows")
        restrict = files if args.kind == "detailed" else []
        runs = [2] + ([1] if args.one_worker else [])
        for w in runs:
            out = f"{scratch}/ingest_{w}"
            r = ingest(folder, args.kind, w, out, restrict=restrict)
            r |= {
                "rows_per_s": r["rows_read"] / r["seconds"],
                "mb_per_s": mb / r["seconds"],
                "throughput_vs_pandas_loop": loop["seconds"] / r["seconds"],
            }
            doc[f"ingest_{w}_worker{'s' if w > 1 else ''}"] = r
            print(
                f"ingest, {w} worker(s): {r['seconds']:.1f} s, {r['tasks']} tasks, client peak "
                f"{r['client_peak_rss_mb']:.0f} MB, x{r['throughput_vs_pandas_loop']:.2f} the loop"
            )
        if args.targets:
            doc["targets"] = targets(f"{scratch}/ingest_2/particles.parquet", 2)
            print(f"targets: {doc['targets']}")
        if args.before:
            doc["before"] = before(args.before, folder, files, f"{scratch}/before")
            if "seconds" in doc["before"]:
                doc["before"]["throughput_vs_pandas_loop"] = (
                    loop["seconds"] / doc["before"]["seconds"]
                )
            print(f"before: {doc['before']}")
    if args.ecotaxa:
        doc["ecotaxa"] = ecotaxa(args.ecotaxa, 2, f"{scratch}/ecotaxa")
        print(f"ecotaxa: {json.dumps(doc['ecotaxa'], default=float)}")
    doc["machine"]["load_average_at_end"] = os.getloadavg()
    out = ROOT / "benchmarks" / "results" / f"ingest_{args.label}.json"
    out.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"written {out}")


if __name__ == "__main__":
    main()
