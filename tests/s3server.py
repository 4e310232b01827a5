"""A real S3 endpoint for tests: moto's server on 127.0.0.1, reached through s3fs.

The server runs in its own process (``python -m moto.server``), as an object store is
its own service: in the test's process, its request threads would share one interpreter
lock with the test, the CLI and a LocalCluster's scheduler, and every object write would
wait on them (the S3 demo of ``tests/test_demo_cli.py`` took 98 s to set up that way).

Follows the s3fs test suite (``fsspec/s3fs: s3fs/tests/test_s3fs.py``): one server per
test module, its state reset before each test, dummy credentials only in the process
environment (set and restored by :class:`pytest.MonkeyPatch`), and the endpoint passed
to fsspec as ``client_kwargs={"endpoint_url": …}``. Nothing is mocked inside fsspec:
every read and write goes over HTTP to the server.

Usage
-----
``tests/conftest.py`` registers this module as a plugin, so every test can ask for them::

    def test_reader_reads_from_s3(s3):
        endpoint_url, storage_options = s3
        url = s3.url("exports/a.tsv")            # "s3://oceanfields-test/exports/a.tsv"
        with fsspec.open(url, "wb", **storage_options) as f:
            f.write(b"...")
        read_bytes(url, storage_options=storage_options)

``s3`` is an :class:`S3Endpoint`: it unpacks as ``(endpoint_url, storage_options)`` and
has ``.bucket`` (an empty bucket created for this test) and ``.url(key)``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

__all__ = ["BUCKET", "S3Endpoint", "s3", "s3_server"]

#: The bucket created (empty) before each test.
BUCKET = "oceanfields-test"

_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_UNSET_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CONFIG_FILE")


class S3Endpoint(NamedTuple):
    """The moto endpoint of one test: unpacks as ``(endpoint_url, storage_options)``."""

    endpoint_url: str
    storage_options: dict[str, Any]

    @property
    def bucket(self) -> str:
        """Name of the empty bucket created for the test."""
        return BUCKET

    def url(self, key: str = "") -> str:
        """Return the ``s3://`` URL of ``key`` inside the test bucket."""
        return f"s3://{BUCKET}/{key.lstrip('/')}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(
    endpoint_url: str, *, process: subprocess.Popen[bytes], timeout_s: float = 60.0
) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto server exited with code {process.returncode} before it was up"
            )
        try:
            requests.get(f"{endpoint_url}/moto-api/", timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 (free port, own process); yield its URL."""
    pytest.importorskip("moto.server", reason="moto[server] is needed for S3 tests")

    with pytest.MonkeyPatch.context() as mp:
        for name, value in _DUMMY_ENV.items():
            mp.setenv(name, value)
        for name in _UNSET_ENV:
            mp.delenv(name, raising=False)
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(endpoint_url, process=server)
            yield endpoint_url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def s3(s3_server: str) -> Iterator[S3Endpoint]:
    """Reset the server, create an empty bucket, yield ``(endpoint_url, storage_options)``."""
    import boto3
    import requests
    import s3fs

    requests.post(f"{s3_server}/moto-api/reset", timeout=10)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    s3fs.S3FileSystem.clear_instance_cache()
    storage_options: dict[str, Any] = {"anon": False, "client_kwargs": {"endpoint_url": s3_server}}
    yield S3Endpoint(s3_server, storage_options)
    s3fs.S3FileSystem.clear_instance_cache()
