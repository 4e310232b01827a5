"""NetCDF export: CF NetCDF-4 that compliance-checker accepts under CF-1.11 and ACDD-1.3."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.products.cf import (
    NO_STANDARD_NAME,
    QUALITY_FLAGS,
    STANDARD_NAME_VOCABULARY,
    category_of,
    cf_fields,
    product_attributes,
    taxon_of,
)
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
        n for n, v in ds.data_vars.items() if v.ndim == 4 and "standard_name" not in v.attrs
    )
    # every failure is a high-priority "standard_name missing" on a variable that says
    # CF has no name for it: the particle size classes and the non-living categories
    assert [f for f in failures if f[1] != ["standard_name"]] == []
    assert sorted(name.split('"')[1] for name, _ in failures) == without
    assert all(NO_STANDARD_NAME in ds[n].attrs["comment"] for n in without)
    bases = {n.removesuffix("_lower").removesuffix("_upper") for n in without}
    assert all(b.startswith("conc_") and taxon_of(b) is None for b in bases)
    assert {category_of(b) for b in bases} == {None, "dark_aggregate", "fiber"}
    targets = ds.attrs["targets"].split(", ")  # value, lower, upper of all but the flux
    assert len(without) == 3 * (len(targets) - 1)
    assert all("units" in ds[n].attrs and ds[n].attrs["long_name"] for n in without)
    # the flux, its bounds and the quality flags have their CF names
    flux = "sinking_mass_flux_of_particulate_carbon_in_sea_water"
    for name in ("flux_mgc_m2_d", "flux_mgc_m2_d_lower", "flux_mgc_m2_d_upper"):
        assert ds[name].attrs["standard_name"] == flux
    for name in QUALITY_FLAGS:
        assert ds[name].attrs["standard_name"] == "quality_flag"
        assert name in ds["flux_mgc_m2_d"].attrs["ancillary_variables"].split()
    assert "extrapolation" not in ds["extrapolation"].attrs.get("ancillary_variables", "")


def _tiny_fields(targets):
    """A 2-month, 2-layer, 2x2 fields Dataset with bounds and flags, as the fields step writes."""
    coords = {
        "time": pd.to_datetime(["2020-01-15", "2020-02-15"]),
        "layer": ["0-100m", "100-500m"],
        "layer_top_m": ("layer", [0.0, 100.0], {"long_name": "layer top", "units": "m"}),
        "layer_bottom_m": ("layer", [100.0, 500.0], {"long_name": "layer bottom", "units": "m"}),
        "lat": [-0.5, 0.5],
        "lon": [10.5, 11.5],
    }
    dims = ("time", "layer", "lat", "lon")
    values = np.arange(16, dtype="f4").reshape(2, 2, 2, 2)
    ds = xr.Dataset(coords=coords, attrs={"targets": list(targets)})
    for target, (units, long_name) in targets.items():
        ds[target] = (dims, values, {"units": units, "long_name": long_name})
        for side in ("lower", "upper"):
            ds[f"{target}_{side}"] = (
                dims,
                values,
                {"units": units, "long_name": f"{side} bound of {long_name}"},
            )
    flags = {"flag_values": np.array([-1, 0, 1], "i1"), "flag_meanings": "no inside outside"}
    ds["extrapolation"] = (dims, np.zeros(values.shape, "i1"), {"long_name": "flag", **flags})
    ds["n_features_outside"] = (
        dims,
        np.zeros(values.shape, "i1"),
        {"long_name": "n", "units": "1"},
    )
    return ds


def test_a_taxon_concentration_gets_its_cf_name_and_taxon_coordinates(tmp_path):
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    targets = {
        "conc_Copepoda_per_l": ("L-1", "number concentration of Copepoda"),
        "flux_mgc_m2_d": ("mg m-2 d-1", "particulate organic carbon flux"),
    }
    fields = cf_fields(_tiny_fields(targets))
    fields.attrs.update(product_attributes(fields, {"config_hash": "ab12", "history": "test"}))
    fields.to_zarr(tmp_path / "run" / "fields.zarr", mode="w", consolidated=True)
    nc = export_netcdf(str(tmp_path / "run"), str(tmp_path / "f.nc"), attrs=CONTACTS)

    ds = xr.open_dataset(nc)
    name = "number_concentration_of_biological_taxon_in_sea_water"
    for var in ("conc_Copepoda_per_l", "conc_Copepoda_per_l_lower", "conc_Copepoda_per_l_upper"):
        assert ds[var].attrs["standard_name"] == name
        assert ds[var].encoding["coordinates"].split() == [
            "conc_Copepoda_per_l_taxon_name",
            "conc_Copepoda_per_l_taxon_lsid",
        ]
    assert ds["conc_Copepoda_per_l_taxon_name"].item() == "Copepoda"
    assert ds["conc_Copepoda_per_l_taxon_name"].attrs["standard_name"] == "biological_taxon_name"

    CheckSuite().load_all_available_checkers()
    out = tmp_path / "report.json"
    _, errors = ComplianceChecker.run_checker(
        nc, ["cf:1.11", "acdd:1.3"], 0, "strict", output_filename=str(out), output_format="json"
    )
    report = json.loads(out.read_text())
    assert not errors
    assert _failures(report, "cf:1.11") == []  # 6.1.2 (taxa) included
    assert _failures(report, "acdd:1.3") == []
    assert report["acdd:1.3"]["scored_points"] == report["acdd:1.3"]["possible_points"]


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
