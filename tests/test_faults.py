"""Surviving faults: flaky object storage, and a client killed in the middle of a run.

One small demo world, one LocalCluster and one clean local run (targets -> fields) are
shared by the module; each fault's outputs must equal the clean run's exactly.

* Flaky storage: a loopback proxy (``tests/flaky_proxy.py``) in front of the moto S3
  server fails a seeded 5 % of the requests, half with 503 SlowDown, half by dropping the
  connection, during a whole run (targets -> fields, every output written to S3). The run
  reaches S3 through the environment only (``AWS_ENDPOINT_URL``, set before the
  cluster starts, so the workers inherit it) and relies on the default retries:
  botocore's ``legacy`` mode (5 attempts; 503 and connection errors retried) under
  s3fs's own (5 tries). botocore's are needed: with ``AWS_MAX_ATTEMPTS=1`` a 503 on a
  HEAD (no body, so no "SlowDown" text) is not retried by s3fs and the run fails.
* Killed workers: one worker process (of the LocalCluster's two, each under a nanny that
  restarts it) is SIGKILLed while a training fit runs (xgboost's task on it) and another
  while the fields are written; the training redoes the broken fit on the restarted
  cluster, dask recomputes the lost fields tasks, and the outputs equal the clean run's.
* Killed client: ``oceanfields run`` as a subprocess with its own LocalCluster is
  SIGKILLed once some, not all, regions of the fields are marked (the upstream steps
  are the clean run's); the same command then writes only the missing regions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from pipeline.demo import generate_demo_world
from pipeline.run.config import load_run_config
from pipeline.run.steps import run_steps
from tests.dask_processes import WorkerKiller, two_worker_processes
from tests.flaky_proxy import FlakyProxy

pytestmark = pytest.mark.slow  # whole chains on demo worlds and clusters

STEPS = ["targets", "matchup", "train", "fields"]
N_REGIONS = 12  # months of the demo environment
MARKERS = "fields.zarr/.oceanfields/regions"


@pytest.fixture(scope="module")
def flaky_proxy(s3_server):
    with FlakyProxy(s3_server, failure_rate=0.05, seed=6) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def client(flaky_proxy):
    # Only the environment says where S3 is; set before the workers start, they inherit it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", flaky_proxy.url)
        with two_worker_processes() as c:
            yield c


@pytest.fixture(scope="module")
def run_doc(tmp_path_factory):
    world = generate_demo_world(
        # the simple world: fault handling, not skill (skill: test_run_skill.py)
        str(tmp_path_factory.mktemp("faults") / "world"),
        resolution=6.0,
        n_profiles=60,
        n_images=0,
        seed=5,
        world="simple",
    )
    return {
        "inputs": {"catalog": "demo", "params": {"root": world.root}},
        "split": {"n_folds": 3, "block_deg": 20, "variants": []},  # block CV only
        "fields": {"write_batch_mb": 0},  # a dask compute per region: kills land between
        "train": {
            "n_estimators": 40,
            "baselines": ["climatology"],
            "early_stopping_rounds": 5,
            "min_rows_per_worker": 1,  # a fit on both workers: killing one breaks it
        },
    }


@pytest.fixture(scope="module")
def clean(run_doc, client, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "run"
    run_steps(load_run_config(run_doc), out=str(out), client=client, steps=STEPS)
    fields = xr.open_zarr(out / "fields.zarr", consolidated=False).load().drop_attrs()
    return out, fields, json.loads((out / "metrics.json").read_text())


# --------------------------------------------------------------------------- flaky storage


def test_a_run_through_flaky_storage_writes_the_clean_outputs_and_nothing_half_done(
    run_doc, client, clean, flaky_proxy, s3, record_property
):
    clean_out, clean_fields, clean_metrics = clean
    _, storage_options = s3  # direct to moto, past the proxy, to check
    fs = fsspec.filesystem("s3", **storage_options)
    run = f"{s3.bucket}/run"
    before = dict(flaky_proxy.counts)
    summary = run_steps(load_run_config(run_doc), out=s3.url("run"), client=client, steps=STEPS)
    counts = {k: v - before[k] for k, v in flaky_proxy.counts.items()}
    record_property("flaky_proxy", counts)
    assert (summary.skipped, summary.done) == ([], STEPS)
    assert counts["slowdown"] > 0, counts
    assert counts["dropped"] > 0, counts
    assert 0.02 < (counts["slowdown"] + counts["dropped"]) / counts["requests"] < 0.09, counts

    states = {Path(p).stem: json.loads(fs.cat_file(p)) for p in fs.glob(f"{run}/_state/*.json")}
    assert sorted(states) == sorted(STEPS)
    assert all(isinstance(s["key"], str) and s["key"] for s in states.values())
    assert states["fields"]["counts"] == {"regions_written": N_REGIONS, "regions_total": N_REGIONS}
    assert summary.metrics == clean_metrics
    for table in ("targets", "matchup", "predictions"):  # the tables, read back equal
        with fs.open(f"{run}/{table}.parquet") as f:
            pd.testing.assert_frame_equal(
                pd.read_parquet(f), pd.read_parquet(clean_out / f"{table}.parquet")
            )

    remote = (
        xr.open_zarr(s3.url("run/fields.zarr"), storage_options=storage_options, consolidated=False)
        .load()
        .drop_attrs()
    )
    xr.testing.assert_identical(remote, clean_fields)
    markers = fs.glob(f"{run}/{MARKERS}/*/zarr.json")
    regions = sorted(int(p.split("/")[-2]) for p in markers)
    assert regions == list(range(N_REGIONS))
    timed = [str(n) for n, v in clean_fields.data_vars.items() if "time" in v.dims]
    keys = set(fs.find(f"{run}/fields.zarr"))
    for i in regions:  # a marked region has every chunk of every variable, read back equal
        for name in timed:
            assert any(k.startswith(f"{run}/fields.zarr/{name}/c/{i}/") for k in keys), (i, name)
            np.testing.assert_array_equal(
                remote[name].isel(time=i).values, clean_fields[name].isel(time=i).values
            )


# --------------------------------------------------------------------------- killed workers


def _running_a_fit(processing: dict) -> str | None:
    """A worker running xgboost.dask's training task (``fn-…``), when one does."""
    return next(
        (a for a, ks in sorted(processing.items()) if any(k.startswith("fn-") for k in ks)), None
    )


def _writing_fields(out: Path) -> Callable[[dict], str | None]:
    """A busy worker once 2 regions (not all) of the fields are marked."""

    def when(processing: dict) -> str | None:
        if not 2 <= len(_markers(out)) < N_REGIONS - 1:
            return None
        return next((a for a, ks in sorted(processing.items()) if ks), None)

    return when


# The broken fit's xgboost tracker (a thread of the scheduler, here in this process)
# raises "Broken pipe" when its peer dies, and again when freed; a real scheduler logs it.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_run_losing_workers_in_training_and_in_the_fields_write_equals_the_clean_run(
    run_doc, client, clean, tmp_path, caplog
):
    clean_out, clean_fields, clean_metrics = clean
    out = tmp_path / "run"
    trained = ("folds.parquet", "metrics.json", "model", "predictions.parquet", "train.json")
    shutil.copytree(
        clean_out, out, ignore=shutil.ignore_patterns("fields.zarr", "fields.json", *trained)
    )
    client.wait_for_workers(2, timeout=60)
    killer = WorkerKiller(client, _running_a_fit, _writing_fields(out))
    killer.start()
    try:
        with caplog.at_level("WARNING", logger="pipeline.model.train"):
            summary = run_steps(load_run_config(run_doc), out=str(out), client=client, steps=STEPS)
    finally:
        killer.halt.set()
        killer.join(timeout=10)
    assert len(killer.killed) == 2, killer.killed
    (_, in_fit), (_, in_write) = killer.killed
    assert any(k.startswith("fn-") for k in in_fit), killer.killed
    assert in_write, killer.killed
    assert (summary.skipped, summary.done) == (STEPS[:2], STEPS[2:])
    refits = [r.getMessage() for r in caplog.records if "lost during the fit" in r.message]
    assert len(refits) == 1, refits  # the broken fit was redone, once

    assert summary.metrics == clean_metrics
    state = {s: json.loads((out / "_state" / f"{s}.json").read_text()) for s in STEPS[2:]}
    model = (out / "model" / "model.ubj").read_bytes()
    assert model == (clean_out / "model" / "model.ubj").read_bytes()  # the same booster
    assert state["fields"]["counts"] == {"regions_written": N_REGIONS, "regions_total": N_REGIONS}
    fields = xr.open_zarr(out / "fields.zarr", consolidated=False).load().drop_attrs()
    xr.testing.assert_identical(fields, clean_fields)


# --------------------------------------------------------------------------- killed client


def _markers(out: Path) -> dict[int, float]:
    """Marked regions of the fields store and their markers' mtimes."""
    found = {}
    for path in (out / MARKERS).glob("*/zarr.json"):
        try:
            found[int(path.parent.name)] = path.stat().st_mtime_ns
        except (OSError, ValueError):
            continue
    return found


def _region_files(out: Path, regions) -> dict[str, int]:
    """mtimes of the chunk files of the given regions (``<var>/c/<region>/…``)."""
    store = out / "fields.zarr"
    return {
        str(p.relative_to(store)): p.stat().st_mtime_ns
        for i in regions
        for p in store.glob(f"*/c/{i}/**/*")
        if p.is_file()
    }


def _stop(proc: subprocess.Popen) -> None:
    """SIGKILL the process group started for ``proc`` (the CLI and its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def test_a_killed_run_resumes_writing_only_the_missing_regions(run_doc, clean, tmp_path):
    clean_out, clean_fields, _ = clean
    out = tmp_path / "run"
    # The upstream steps, as a first run left them (the fields step is what is killed).
    shutil.copytree(clean_out, out, ignore=shutil.ignore_patterns("fields.zarr", "fields.json"))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_doc))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        "cluster:\n  type: local\n  n_workers: 1\n  threads_per_worker: 2\n"
        "  processes: false\n  dashboard_address: '127.0.0.1:0'\n"
    )
    cli = shutil.which("oceanfields", path=str(Path(sys.executable).parent))
    command = [
        cli or "oceanfields",
        "run",
        str(config),
        "--out",
        str(out),
        "--cluster",
        str(cluster),
        *(f"--step={s}" for s in STEPS),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = tmp_path / "first.log"
    with log.open("wb") as sink:
        first = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 180
            while len(_markers(out)) < 3:
                assert first.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "no region written in 180 s"
                time.sleep(0.02)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            _stop(first)
    done = _markers(out)
    assert first.returncode == -signal.SIGKILL
    assert 3 <= len(done) < N_REGIONS, sorted(done)
    assert not (out / "_state" / "fields.json").exists()
    kept = _region_files(out, done)

    second = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, start_new_session=True
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for step in ("targets", "matchup", "train"):
        assert f"[{step}] already done with these inputs; skipped." in second.stdout
    m = re.search(
        r"fields: (\d+) region\(s\) written, (\d+) already there, of (\d+)", second.stdout
    )
    assert m, second.stdout
    written, there, total = map(int, m.groups())
    assert (written, there, total) == (N_REGIONS - len(done), len(done), N_REGIONS)
    after = _markers(out)
    assert sorted(after) == list(range(N_REGIONS))
    assert {i: after[i] for i in done} == done  # the finished regions were not rewritten
    assert _region_files(out, done) == kept
    resumed = xr.open_zarr(out / "fields.zarr", consolidated=False).load().drop_attrs()
    xr.testing.assert_identical(resumed, clean_fields)
