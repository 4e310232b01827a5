"""Catalogue entries written by a run: a STAC Collection/Item and an intake catalog that open
the fields, locally and on S3 (moto)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from pipeline.products.entries import stac_io, write_entries
from tests.products_run import demo_run

pystac = pytest.importorskip("pystac", reason="the products extra is not installed")
pytest.importorskip("xpystac", reason="the products extra is not installed")

pytestmark = pytest.mark.slow  # the shared demo run (about 45 s, once per session)


@pytest.fixture(scope="session")
def run_out(tmp_path_factory):
    return demo_run(tmp_path_factory)


def _open_item_asset(collection_url, **open_kwargs):
    collection = pystac.Collection.from_file(collection_url, stac_io=stac_io())
    item = next(iter(collection.get_items()))
    item.make_asset_hrefs_absolute()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no consolidated-metadata warning, no other
        return collection, item, xr.open_dataset(item.assets["fields"], **open_kwargs)


def test_the_run_files_product_section_becomes_the_stores_acdd_attributes(run_out):
    attrs = xr.open_zarr(run_out / "fields.zarr").attrs
    assert attrs["license"] == "CC-BY-4.0"
    assert attrs["creator_name"] == "oceanfields test suite"
    assert attrs["Conventions"] == "CF-1.12, ACDD-1.3"


def test_a_run_writes_a_stac_collection_and_item_with_relative_links(run_out):
    col = json.loads((run_out / "stac" / "collection.json").read_text())
    item = json.loads((run_out / "stac" / "fields" / "fields.json").read_text())
    assert col["type"] == "Collection"
    assert item["assets"]["fields"]["href"] == "../../fields.zarr"
    assert item["assets"]["fields"]["type"] == "application/vnd+zarr"
    hrefs = [link["href"] for doc in (col, item) for link in doc["links"]]
    assert all(h.startswith(".") for h in hrefs)
    assert str(run_out) not in json.dumps([col, item])  # nothing of this machine's paths
    assert col["extent"]["temporal"]["interval"][0][0].startswith("2020-01-01T00:00:00")
    assert item["properties"]["end_datetime"] == "2021-01-01T00:00:00Z"


def test_stac_item_describes_the_store_as_a_datacube(run_out):
    _, item, _ = _open_item_asset(str(run_out / "stac" / "collection.json"))
    store = xr.open_zarr(run_out / "fields.zarr")
    cube = item.properties["cube:dimensions"]
    assert list(cube) == ["time", "layer", "lat", "lon"]
    assert cube["layer"]["values"] == [str(v) for v in store["layer"].values]
    lat_b = store["lat_bnds"].values
    assert cube["lat"]["extent"] == [float(lat_b.min()), float(lat_b.max())]
    assert cube["lat"]["reference_system"] == 4326
    variables = item.properties["cube:variables"]
    assert variables["flux_mgc_m2_d"]["unit"] == "mg m-2 d-1"
    assert set(variables) == {n for n, v in store.data_vars.items() if v.ndim == 4}
    assert any("datacube" in e for e in item.stac_extensions)


def test_stac_asset_opens_the_fields_with_xarray_through_xpystac(run_out):
    _, _, ds = _open_item_asset(str(run_out / "stac" / "collection.json"))
    store = xr.open_zarr(run_out / "fields.zarr")
    np.testing.assert_array_equal(ds["flux_mgc_m2_d"].values, store["flux_mgc_m2_d"].values)


def test_intake_catalog_of_the_run_opens_the_fields(run_out):
    import intake

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ds = intake.open_catalog(str(run_out / "catalog.yaml")).fields.to_dask()
    store = xr.open_zarr(run_out / "fields.zarr")
    np.testing.assert_array_equal(ds["conc_fiber_per_l"].values, store["conc_fiber_per_l"].values)


def test_entries_written_on_s3_open_the_fields_there(run_out, s3, monkeypatch):
    import fsspec
    import intake

    endpoint_url, storage_options = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)  # readers find S3 by the environment
    fs = fsspec.filesystem("s3", **storage_options)
    fs.put(
        str(run_out / "fields.zarr"),
        s3.url("run/fields.zarr").removeprefix("s3://"),
        recursive=True,
    )
    written = write_entries(s3.url("run"), storage_options=storage_options)
    assert fs.exists(s3.url("run/" + written["item"]))
    _, _, ds = _open_item_asset(s3.url("run/stac/collection.json"))
    store = xr.open_zarr(run_out / "fields.zarr")
    np.testing.assert_array_equal(ds["flux_mgc_m2_d"].values, store["flux_mgc_m2_d"].values)
    cat = intake.open_catalog(s3.url("run/catalog.yaml"))
    back = cat.fields.to_dask()
    np.testing.assert_array_equal(back["flux_mgc_m2_d"].values, store["flux_mgc_m2_d"].values)
