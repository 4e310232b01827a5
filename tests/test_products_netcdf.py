"""NetCDF export: CF NetCDF-4 that compliance-checker accepts under CF-1.11 and ACDD-1.3."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from pipeline.products.cf import STANDARD_NAME_VOCABULARY
from pipeline.products.netcdf import export_netcdf
from tests.products_run import demo_run

pytest.importorskip("compliance_checker", reason="the products extra is not installed")

CONTACTS = {
    "creator_email": "data@example.org",
    "creator_url": "https://example.org/oceanfields",
    "publisher_email": "data@example.org",
    "publisher_url": "https://example.org",
    # what only the publisher knows (ACDD "suggested")
    "metadata_link": "https://example.org/oceanfields/fields",
    "program": "Digital Twins of the Ocean",
    "instrument_vocabulary": "NERC L22 SeaVoX Device Catalogue",
}


@pytest.fixture(scope="session")
def run_out(tmp_path_factory):
    return demo_run(tmp_path_factory)


@pytest.fixture(scope="module")
def nc_file(run_out, tmp_path_factory):
    return export_netcdf(str(run_out), str(tmp_path_factory.mktemp("nc") / "f.nc"), attrs=CONTACTS)


def _failures(report, suite):
    res = report[suite]
    return [
        (item["name"], item["msgs"])
        for priority in ("high_priorities", "medium_priorities", "low_priorities")
        for item in res.get(priority, [])
        if item["value"][0] != item["value"][1]
    ]


@pytest.fixture(scope="module")
def checked(nc_file, tmp_path_factory):
    from compliance_checker.cf.util import StandardNameTable
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    # the packaged table is the one the product names: nothing is downloaded
    assert STANDARD_NAME_VOCABULARY.endswith(f"v{StandardNameTable()._version}")
    CheckSuite().load_all_available_checkers()
    out = tmp_path_factory.mktemp("cc") / "report.json"
    _, errors = ComplianceChecker.run_checker(
        nc_file,
        ["cf:1.11", "acdd:1.3"],
        0,
        "strict",
        output_filename=str(out),
        output_format="json",
    )
    assert not errors  # no check crashed
    return json.loads(out.read_text())


@pytest.mark.slow
def test_netcdf_export_passes_every_cf_1_11_check(checked):
    assert _failures(checked, "cf:1.11") == []
    assert checked["cf:1.11"]["scored_points"] == checked["cf:1.11"]["possible_points"]


@pytest.mark.slow
def test_netcdf_export_fails_acdd_only_where_cf_has_no_standard_name(checked, nc_file):
    failures = _failures(checked, "acdd:1.3")
    ds = xr.open_dataset(nc_file)
    without = sorted(
        n
        for n, v in ds.data_vars.items()
        if "long_name" in v.attrs
        and "standard_name" not in v.attrs
        and v.ndim == 4
        and "flag_values" not in v.attrs
    )
    # every failure is "standard_name missing" on a variable the CF table has no name for
    assert [f for f in failures if f[1] != ["standard_name"]] == []
    assert sorted(name.split('"')[1] for name, _ in failures) == without
    assert "flux_mgc_m2_d" not in without
    targets = ds.attrs["targets"].split(", ")  # value, lower, upper of all but the flux,
    assert len(without) == 3 * (len(targets) - 1) + 2 + 1  # flux bounds, n_features_outside
    assert all("units" in ds[n].attrs and ds[n].attrs["long_name"] for n in without)


@pytest.mark.slow
def test_netcdf_holds_the_store_values_on_depth_with_bounds_and_compression(nc_file, run_out):
    nc = xr.open_dataset(nc_file)
    store = xr.open_zarr(run_out / "fields.zarr")
    assert nc["flux_mgc_m2_d"].dims == ("time", "depth", "lat", "lon")
    np.testing.assert_array_equal(nc["flux_mgc_m2_d"].values, store["flux_mgc_m2_d"].values)
    assert [str(v) for v in nc["layer"].values] == [str(v) for v in store["layer"].values]
    assert nc["depth_bnds"].values.tolist() == [[0, 100], [100, 500], [500, 1000]]
    assert (nc["time_bnds"].values[:, 0] == nc["time"].values).all()
    assert nc["flux_mgc_m2_d"].encoding["zlib"] is True
    assert nc.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    assert nc.attrs["creator_email"] == CONTACTS["creator_email"]
    assert str(run_out) not in json.dumps({k: str(v) for k, v in nc.attrs.items()})


@pytest.mark.slow
def test_export_netcdf_command_writes_beside_the_run_with_the_attributes_given(run_out, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    out = tmp_path / "fields.nc"
    result = CliRunner().invoke(
        main,
        ["export", "netcdf", str(run_out), "--out", str(out), "--attr", "license=CC0-1.0"],
    )
    assert result.exit_code == 0, result.output
    assert f"NetCDF written: {out}" in result.output
    assert xr.open_dataset(out).attrs["license"] == "CC0-1.0"
    bad = CliRunner().invoke(main, ["export", "netcdf", str(run_out), "--attr", "license"])
    assert bad.exit_code != 0
    assert "expected KEY=VALUE" in bad.output
