"""Benchmark: strong and weak scaling of matchup, training, fields and image classification.

A thin script over :mod:`pipeline.scaling` (also ``oceanfields bench``): measures each
part at every worker count on a cluster file (default: a local cluster), writes
``benchmarks/results/scaling.json`` and ``scaling.png`` and prints the efficiencies and
the cost model (wall time and storage of global grids extrapolated from the measured
per-cell cost). Run::

    python benchmarks/scaling.py [--cluster clusters/local.yaml] [--workers 1,2]
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.cli.bench import bench

if __name__ == "__main__":
    results = Path(__file__).parent / "results"
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        args = [str(Path(__file__).parents[1] / "clusters" / "local.yaml"), *args]
    if "--out" not in args:
        args += ["--out", str(results / "scaling.json")]
    bench.main(args=args, prog_name="scaling.py")
