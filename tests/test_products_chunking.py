"""Chunkings of the fields: a time-series-friendly and a map-friendly copy of the store,
chunk-aligned, with consolidated metadata, listed in the run's STAC item."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

from pipeline.products.chunking import chunks_for
from tests.products_run import demo_run

pystac = pytest.importorskip("pystac", reason="the products extra is not installed")

pytestmark = pytest.mark.slow  # the shared demo run (about 45 s, once per session)


@pytest.fixture(scope="session")
def run_out(tmp_path_factory):
    return demo_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run_copy(run_out, tmp_path_factory):
    """A copy of the run's fields and entries (the export rewrites the STAC item)."""
    out = tmp_path_factory.mktemp("chunking") / "run"
    out.mkdir()
    for name in ("fields.zarr", "stac"):
        shutil.copytree(run_out / name, out / name)
    return out


@pytest.mark.parametrize("chunking", ["series", "map"])
def test_export_zarr_writes_an_equal_store_in_whole_chunks_that_opens_without_warning(
    run_copy, chunking
):
    from click.testing import CliRunner

    from pipeline.cli import main

    result = CliRunner().invoke(main, ["export", "zarr", str(run_copy), "--chunking", chunking])
    assert result.exit_code == 0, result.output
    path = run_copy / f"fields-{chunking}.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        copy = xr.open_zarr(path)
    store = xr.open_zarr(run_copy / "fields.zarr")
    expected = chunks_for(dict(store.sizes), chunking)
    array = zarr.open_group(str(path), mode="r")["flux_mgc_m2_d"]
    assert array.chunks == tuple(expected[d] for d in ("time", "layer", "lat", "lon"))
    np.testing.assert_array_equal(copy["flux_mgc_m2_d"].values, store["flux_mgc_m2_d"].values)
    assert copy.attrs["id"] == store.attrs["id"]
    item = json.loads((run_copy / "stac" / "fields" / "fields.json").read_text())
    assert item["assets"][f"fields-{chunking}"]["href"] == f"../../fields-{chunking}.zarr"


def test_series_chunks_hold_every_month_and_layer_of_a_block_of_cells():
    sizes = {"time": 120, "layer": 3, "lat": 720, "lon": 1440}
    chunks = chunks_for(sizes, "series")
    assert (chunks["time"], chunks["layer"]) == (120, 3)
    assert 4e6 <= 4 * 120 * 3 * chunks["lat"] * chunks["lon"] <= 8e6
    with pytest.raises(ValueError, match=r"chunking='daily'; valid: series, map"):
        chunks_for(sizes, "daily")
