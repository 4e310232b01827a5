"""Fixture ``scheduler_file``: ``dask scheduler`` + 2 ``dask worker`` processes on 127.0.0.1.

Also :func:`two_worker_processes` (a LocalCluster of 2 single-threaded worker
processes and its client, the cluster most test modules share) and :class:`WorkerKiller`,
which SIGKILLs worker processes when the tasks they run match a condition (worker-loss
tests).

Module-scoped: each test module that asks for it gets its own scheduler and two
single-threaded worker processes, reached through a cluster file of type ``scheduler``
(as ``clusters/scheduler.yaml``). The processes are terminated (then killed) at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from distributed import Client, LocalCluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dask_command() -> list[str]:
    exe = shutil.which("dask", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "dask"]


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    base = tmp_path_factory.mktemp("sched")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [
                *_dask_command(),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        *_dask_command(),
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--memory-limit",
                        "4GiB",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        path = base / "cluster.yaml"
        path.write_text(f"cluster:\n  type: scheduler\n  address: {address}\n")
        yield path
    finally:
        for proc in reversed(procs):
            proc.terminate()
        deadline = time.monotonic() + 30
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def two_worker_processes() -> Iterator[Client]:
    """A client of a LocalCluster of 2 single-threaded worker processes (nannies)."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=120)  # under load, registration can lag
        yield client


class WorkerKiller(threading.Thread):
    """SIGKILLs one worker process each time ``when(processing)`` is first true.

    ``processing`` maps worker address -> keys of the tasks it runs (the scheduler's
    view, polled every 10 ms); ``when`` returns the address to kill, or None. Each
    condition fires once, in order; the thread ends after the last or ``timeout`` s.
    """

    def __init__(
        self, client: Client, *conditions: Callable[[dict], str | None], timeout: float = 240.0
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.conditions, self.timeout = client, list(conditions), timeout
        self.killed: list[tuple[str, list[str]]] = []  # (address, its tasks when killed)
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.conditions and not self.halt.is_set() and time.monotonic() < deadline:
            processing = {a: [str(k) for k in ks] for a, ks in self.client.processing().items()}
            victim = self.conditions[0](processing)
            if victim is not None:
                pid = self.client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)
                self.killed.append((victim, processing[victim]))
                self.conditions.pop(0)
            time.sleep(0.01)
