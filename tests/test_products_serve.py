"""``oceanfields serve``: a real OGC API EDR server on 127.0.0.1 answers position and area
queries with the values xarray reads from the store."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.products_run import demo_run

pytest.importorskip("xpublish_edr", reason="the products extra is not installed")
requests = pytest.importorskip("requests")

pytestmark = pytest.mark.slow  # the shared demo run (about 45 s, once per session)

EDR = "/datasets/fields/edr"


@pytest.fixture(scope="session")
def run_out(tmp_path_factory):
    return demo_run(tmp_path_factory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_out):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", str(run_out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if requests.get(f"{url}/datasets", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.poll() is not None else ""
                pytest.fail(f"oceanfields serve did not answer on {url} within 60 s: {out}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def store(run_out):
    return xr.open_zarr(run_out / "fields.zarr").load()


def test_the_server_lists_the_fields_dataset(server):
    assert requests.get(f"{server}/datasets", timeout=10).json() == ["fields"]


def test_position_query_answers_the_store_values_at_the_nearest_cell(server, store):
    lon, lat = float(store["lon"][5]) + 1.0, float(store["lat"][7]) - 1.0  # off the node
    r = requests.get(
        f"{server}{EDR}/position",
        params={"coords": f"POINT({lon} {lat})", "parameter-name": "flux_mgc_m2_d"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    cov = r.json()
    axes = cov["domain"]["axes"]
    expected = store["flux_mgc_m2_d"].sel(lon=lon, lat=lat, method="nearest")
    assert np.ravel(axes["x"]["values"]).tolist() == [float(expected["lon"])]
    assert np.ravel(axes["y"]["values"]).tolist() == [float(expected["lat"])]
    assert axes["z"]["values"] == store["depth"].values.tolist()
    got = cov["ranges"]["flux_mgc_m2_d"]
    assert got["axisNames"][:2] == ["t", "z"]
    values = np.array([np.nan if v is None else v for v in got["values"]], dtype="f4")
    np.testing.assert_allclose(values, expected.values.ravel(), rtol=1e-6)
    assert cov["parameters"]["flux_mgc_m2_d"]["unit"]["label"]["en"] == "mg m-2 d-1"


def test_area_query_answers_every_cell_inside_the_polygon(server, store):
    lon = store["lon"].values
    lat = store["lat"].values
    x0, x1, y0, y1 = lon[3] - 1, lon[6] + 1, lat[5] - 1, lat[8] + 1
    polygon = f"POLYGON(({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
    r = requests.get(
        f"{server}{EDR}/area",
        params={"coords": polygon, "parameter-name": "conc_fiber_per_l", "f": "csv", "z": "300"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    got = pd.read_csv(io.StringIO(r.text))
    assert float(store["depth"][1]) == 300.0  # z=300: the 100-500 m layer
    inside = store["conc_fiber_per_l"].isel(layer=1)
    inside = inside.sel(lon=slice(x0, x1), lat=slice(y0, y1))
    expected = inside.to_dataframe().reset_index()[["time", "lat", "lon", "conc_fiber_per_l"]]
    assert len(got) == len(expected) == 12 * 4 * 4
    merged = (
        got.rename(columns={"latitude": "lat", "longitude": "lon"})
        .assign(time=lambda d: pd.to_datetime(d["time"]))
        .merge(expected, on=["time", "lat", "lon"], suffixes=("_edr", "_store"))
    )
    assert len(merged) == len(expected)
    np.testing.assert_allclose(
        merged["conc_fiber_per_l_edr"], merged["conc_fiber_per_l_store"], rtol=1e-6
    )
