from __future__ import annotations

import shutil
from pathlib import Path

import intake
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from pipeline.catalog import (
    CATALOG_DIR,
    READERS,
    ParquetSource,
    list_entries,
    open_catalog,
    read_entry,
)
from pipeline.errors import ConfigError, InputFormatError

SHIPPED = sorted(p.stem for p in CATALOG_DIR.glob("*.yaml"))
DEMO_ENTRIES = [
    "environment",
    "biogeochemistry",
    "ocean_colour",
    "bathymetry",
    "sst_climatology",
    "ecopart_detailed",
    "ecopart_raw",
    "ecotaxa",
    "truth_profiles",
    "truth_objects",
    "truth_fields",
]
STANDARD_DRIVERS = {"csv", "zarr", "netcdf", "pipeline.catalog:ParquetSource"}


def yaml_keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from yaml_keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from yaml_keys(value)


def reader_available(module: str, name: str) -> None:
    """Skip when another helper's reader has not landed yet."""
    mod = pytest.importorskip(module)
    if not hasattr(mod, name):
        pytest.skip(f"{module}.{name} not available yet")


def tiny_environment() -> xr.Dataset:
    """Like the demo world's environment.zarr: (time, depth, latitude, longitude), v3."""
    lat = np.array([-10.0, 0.0, 10.0])
    lon = np.array([-180.0, -90.0, 0.0, 90.0])
    depth = np.array([5.0, 50.0])
    time = pd.date_range("2020-01-15", periods=2, freq="MS") + pd.Timedelta("14D")
    thetao = (
        np.arange(2)[:, None, None, None] * 10
        + depth[None, :, None, None] / 100
        + lat[None, None, :, None]
        + 0 * lon[None, None, None, :]
    ).astype("float32")
    ds = xr.Dataset(
        {
            "thetao": (("time", "depth", "latitude", "longitude"), thetao),
            "deptho": (("latitude", "longitude"), np.full((3, 4), 4000.0, dtype="float32")),
        },
        coords={"time": time, "depth": depth, "latitude": lat, "longitude": lon},
    )
    return ds.chunk({"time": 1, "depth": 2, "latitude": 3, "longitude": 4})


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory, shared_data: Path) -> Path:
    """A fake demo world: a tiny zarr and real sample files placed per the demo layout."""
    root = tmp_path_factory.mktemp("world")
    tiny_environment().to_zarr(root / "environment.zarr", zarr_format=3, consolidated=False)
    det = shared_data / "ecopart_qa" / "tsv_det_multi"
    (root / "ecopart" / "raw").mkdir(parents=True)
    for name in (
        "export_detailed_20210201_11_31_PAR_brusample01.tsv",
        "export_detailed_20210201_11_31_Export_metadata_summary.tsv",
    ):
        shutil.copy(det / name, root / "ecopart" / name)
    raw = shared_data / "ecopart_qa" / "raw_multi"
    for name in (
        "20191121010000_brusample01_PAR_raw_20210201_14_15.tsv",
        "export_raw_20210201_14_15_Export_metadata_summary.tsv",
    ):
        shutil.copy(raw / name, root / "ecopart" / "raw" / name)
    export = shared_data / "ecotaxa_back" / "export_with_hierarchy"
    (root / "ecotaxa").mkdir()
    shutil.copy(
        export / "ecotaxa_export_1_20210530_1122.tsv",
        root / "ecotaxa" / "ecotaxa_export_demo_1.tsv",
    )
    shutil.copytree(export / "images", root / "ecotaxa" / "images")
    (root / "truth").mkdir()
    pd.DataFrame(
        {"profile_id": ["demo_0001", "demo_0002"], "layer": ["0-100m", "0-100m"], "c": [1.0, 2.0]}
    ).to_parquet(root / "truth" / "profiles.parquet")
    pd.DataFrame({"object_id": ["o1"], "kind": ["Copepoda"], "category": ["Copepoda"]}).to_parquet(
        root / "truth" / "objects.parquet"
    )
    xr.Dataset(
        {"c": (("time", "layer", "lat", "lon"), np.ones((1, 1, 3, 4), dtype="float32"))},
        coords={"lat": [-10.0, 0.0, 10.0], "lon": [-180.0, -90.0, 0.0, 90.0]},
    ).to_zarr(root / "truth" / "fields.zarr", zarr_format=3, consolidated=False)
    return root


@pytest.fixture(scope="module")
def demo(demo_root):
    return open_catalog("demo", root=str(demo_root))


# --------------------------------------------------------------------------- plain intake

# intake 2 warns for every string parameter default it expands (getshell=False)
pytestmark = pytest.mark.filterwarnings("ignore:Shell command not executed:UserWarning")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_catalog_opens_with_plain_intake_and_documents_its_entries(name):
    cat = intake.open_catalog(str(CATALOG_DIR / f"{name}.yaml"))
    entries = list(cat)
    assert entries
    for entry in entries:
        info = cat._entries[entry].describe()
        lines = info["description"].strip().splitlines()
        assert len(lines) >= 2, entry
        assert lines[0].endswith("."), f"{entry}: a one-line summary comes first"
        assert len(lines[0]) <= 90, f"{entry}: a one-line summary comes first"
        params = [p["name"] for p in info["user_parameters"]] + list(cat.user_parameters)
        for param in params:
            assert param in info["description"], f"{name}.{entry} does not document {param}"
        assert info["args"]["urlpath"]
        reader = (info["metadata"].get("oceanfields") or {}).get("reader")
        assert reader is None or reader in READERS


def test_shipped_catalogs_are_the_five_documented_ones():
    assert SHIPPED == ["climatologies", "copernicus", "demo", "ecopart", "ecotaxa"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_catalog_uses_standard_intake_drivers(name):
    text = (CATALOG_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    assert spec["metadata"]["version"] == 1
    drivers = {source["driver"] for source in spec["sources"].values()}
    assert drivers <= STANDARD_DRIVERS
    credentials = {"key", "secret", "token", "password", "profile", "username", "anon"}
    credentials |= {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}
    assert not [k for k in yaml_keys(spec) if k.lower() in credentials]


def test_plain_intake_reads_the_demo_tables_and_stores(demo_root):
    cat = intake.open_catalog(str(CATALOG_DIR / "demo.yaml"))(root=str(demo_root))
    par = cat.ecopart_detailed.to_dask().compute()  # a glob: intake's dask reader
    assert par.shape == (300, 132)
    assert par["Depth [m]"].iloc[0] == "2.5"
    assert "LPM (102-128 µm) [# l-1]" in par.columns  # latin-1 decoded
    raw = cat.ecopart_raw.to_dask()
    assert raw.columns[:4].tolist() == ["depth", "imgcount", "area", "nbr"]
    assert len(cat.ecotaxa.to_dask()) == 12
    env = cat.environment.to_dask()
    assert env.thetao.dims == ("time", "depth", "latitude", "longitude")
    profiles = cat.truth_profiles.read()
    assert profiles["profile_id"].tolist() == ["demo_0001", "demo_0002"]
    assert cat.truth_fields.to_dask().c.dims == ("time", "layer", "lat", "lon")


def test_parquet_source_gives_dask_and_pandas(demo_root):
    source = ParquetSource(str(demo_root / "truth" / "profiles.parquet"))
    assert source.to_dask().npartitions == 1
    assert source.read()["c"].sum() == 3.0
    assert source.container == "dataframe"


# --------------------------------------------------------------------------- pipeline.catalog


@pytest.mark.parametrize("name", SHIPPED)
def test_open_catalog_finds_shipped_catalogs_by_name_and_by_path(name):
    by_name = open_catalog(name)
    by_path = open_catalog(CATALOG_DIR / f"{name}.yaml")
    assert list(by_name) == list(by_path)


def test_list_entries_describes_demo_entries_readers_parameters_and_urls(demo, demo_root):
    entries = {e["name"]: e for e in list_entries(demo)}
    assert list(entries) == DEMO_ENTRIES
    assert {n: e["reader"] for n, e in entries.items()} == {
        "environment": "copernicus",
        "biogeochemistry": "copernicus",
        "ocean_colour": "copernicus",
        "bathymetry": "copernicus",
        "sst_climatology": "netcdf",
        "ecopart_detailed": "ecopart_par",
        "ecopart_raw": "ecopart_raw",
        "ecotaxa": "ecotaxa",
        "truth_profiles": None,
        "truth_objects": None,
        "truth_fields": None,
    }
    root = entries["environment"]["parameters"][0]
    assert root["name"] == "root"
    assert root["default"] == str(demo_root)
    assert root["required"] is False
    assert entries["environment"]["url"] == f"{demo_root}/environment.zarr"
    assert entries["ecopart_raw"]["options"] == {
        "metadata_url": f"{demo_root}/ecopart/raw/export_raw_*_Export_metadata_summary.tsv",
        "size_classes": "detailed",
    }
    assert entries["ecotaxa"]["driver"] == "csv"
    assert entries["environment"]["description"].startswith(
        "Copernicus-like monthly environment store (zarr v3)."
    )


def test_demo_catalog_defaults_to_the_demo_command_output_folder():
    (entry,) = [e for e in list_entries(open_catalog("demo")) if e["name"] == "environment"]
    assert entry["url"] == "demo-out/world/environment.zarr"


def test_list_entries_marks_required_parameters_and_leaves_their_url_open():
    entries = {e["name"]: e for e in list_entries(open_catalog("ecotaxa"))}
    url = entries["export"]["parameters"][0]
    assert (url["name"], url["required"], url["default"]) == ("url", True, "")
    assert entries["export"]["url"] is None


def test_copernicus_entries_build_the_arco_url_from_dataset_version_and_layout():
    cat = open_catalog("copernicus")
    entries = {e["name"]: e for e in list_entries(cat)}
    assert sorted(entries) == [
        "glo_bgc_anfc",
        "glo_bgc_my_monthly",
        "glo_oc_l4_my_monthly",
        "glo_phy_anfc",
        "glo_phy_my_monthly",
        "glo_phy_my_static",
    ]
    assert all(e["reader"] == "copernicus" for e in entries.values())
    assert entries["glo_phy_my_monthly"]["url"] == (
        "https://s3.waw3-1.cloudferro.com/mdl-arco-time-025/arco/GLOBAL_MULTIYEAR_PHY_001_030/"
        "cmems_mod_glo_phy_my_0.083deg_P1M-m_202311/timeChunked.zarr"
    )
    names = [p["name"] for p in entries["glo_bgc_anfc"]["parameters"]]
    assert names == ["dataset_id", "version", "layout", "bucket"]
    layout = entries["glo_bgc_anfc"]["parameters"][2]
    assert layout["allowed"] == ["timeChunked", "geoChunked"]
    # the bucket number of the BGC reanalysis is unknown here: required, URL left open
    assert entries["glo_bgc_my_monthly"]["url"] is None
    assert entries["glo_oc_l4_my_monthly"]["url"] is None
    assert entries["glo_phy_my_static"]["url"] is None


def test_copernicus_geo_layout_switches_bucket_and_store(monkeypatch):
    seen = {}

    def fake_open_environment(url, *, variables=None, storage_options=None, zarr_format=None):
        seen.update(
            url=url, variables=variables, storage_options=storage_options, zarr_format=zarr_format
        )
        return "opened"

    monkeypatch.setattr(
        "pipeline.sources.copernicus.open_environment", fake_open_environment, raising=True
    )
    cat = open_catalog("copernicus")
    result = read_entry(
        cat, "glo_bgc_my_monthly", bucket="028", layout="geoChunked", variables=["chl"]
    )
    assert result == "opened"
    assert seen["url"] == (
        "https://s3.waw3-1.cloudferro.com/mdl-arco-geo-028/arco/GLOBAL_MULTIYEAR_BGC_001_029/"
        "cmems_mod_glo_bgc_my_0.25deg_P1M-m_202406/geoChunked.zarr"
    )
    assert seen["variables"] == ["chl"]
    assert seen["zarr_format"] == 2
    assert seen["storage_options"] is None


def test_read_entry_opens_the_demo_environment_normalised(demo, demo_root):
    ds = read_entry(demo, "environment")
    assert ds.thetao.dims == ("time", "depth", "lat", "lon")
    assert ds.attrs["source"] == f"{demo_root}/environment.zarr"
    assert float(ds.thetao.sel(lat=10.0, lon=90.0).isel(time=1, depth=1)) == pytest.approx(20.5)
    assert ds.thetao.data.npartitions == 2


def test_read_entry_passes_reader_options_to_open_environment(demo):
    ds = read_entry(demo, "environment", variables=["deptho"])
    assert list(ds.data_vars) == ["deptho"]
    ds = read_entry(demo, "environment", variables=["thetao"], time=("2020-02-01", "2020-02-28"))
    assert ds.sizes["time"] == 1


def test_read_entry_reads_the_demo_detailed_par_export_with_its_metadata(demo):
    reader_available("pipeline.sources.ecopart", "read_par_export")
    result = read_entry(demo, "ecopart_detailed")
    particles = result.accepted.compute()
    assert len(particles) == 300
    assert len(result.quarantine.compute()) == 0
    first = particles.iloc[0]
    assert first["profile_id"] == "brusample01"
    assert (first["lat"], first["lon"], first["depth_m"]) == (44.0905, 7.576, 2.5)
    assert first["volume_l"] == pytest.approx(1.13)


def test_read_entry_reads_the_demo_raw_par_export(demo):
    reader_available("pipeline.sources.ecopart", "read_par_raw")
    particles = read_entry(demo, "ecopart_raw").accepted.compute()
    assert len(particles) == 300
    assert set(particles["profile_id"]) == {"brusample01"}
    assert particles["lat"].iloc[0] == 44.0905


def test_read_entry_reads_the_demo_ecotaxa_export_and_finds_its_images(demo, demo_root):
    reader_available("pipeline.sources.ecotaxa", "read_ecotaxa")
    result = read_entry(demo, "ecotaxa")
    objects = result.accepted.compute()
    assert len(objects) == 11
    assert len(result.quarantine.compute()) == 1
    assert objects["image"].iloc[0] == f"{demo_root}/ecotaxa/images/t001/1_0.jpg"


def test_read_entry_lets_an_option_override_the_catalog_default(demo):
    reader_available("pipeline.sources.ecotaxa", "read_ecotaxa")
    result = read_entry(demo, "ecotaxa", check_images=False)
    assert len(result.accepted.compute()) == 11


def test_read_entry_reads_entries_without_a_reader_through_intake(demo):
    profiles = read_entry(demo, "truth_profiles")
    assert profiles.compute()["c"].tolist() == [1.0, 2.0]
    assert read_entry(demo, "truth_objects").compute()["kind"].tolist() == ["Copepoda"]
    fields = read_entry(demo, "truth_fields")
    assert fields.attrs["source"].endswith("/truth/fields.zarr")
    assert fields.c.dims == ("time", "layer", "lat", "lon")
    assert fields.c.chunks is not None


def test_read_entry_reads_a_real_export_from_a_url_parameter(shared_data):
    reader_available("pipeline.sources.ecopart", "read_par_export")
    folder = shared_data / "ecopart_qa" / "tsv_det_multi"
    result = read_entry(
        open_catalog("ecopart"),
        "par_detailed",
        url=str(folder / "export_detailed_20210201_11_31_PAR_brusample01.tsv"),
    )
    assert len(result.accepted.compute()) == 300


def test_read_entry_reads_the_demo_environment_from_s3(s3):
    _, storage_options = s3
    tiny_environment().to_zarr(
        s3.url("world/environment.zarr"),
        zarr_format=3,
        consolidated=False,
        storage_options=storage_options,
    )
    cat = open_catalog("demo", root=s3.url("world"))
    ds = read_entry(cat, "environment", storage_options=storage_options)
    assert ds.attrs["source"] == "s3://oceanfields-test/world/environment.zarr"
    assert float(ds.thetao.sel(lat=-10.0, lon=0.0).isel(time=0, depth=0)) == pytest.approx(-9.95)


# --------------------------------------------------------------------------- errors


def test_open_catalog_lists_the_shipped_catalogs_for_an_unknown_name():
    with pytest.raises(
        ConfigError,
        match=r"no catalog named 'dmeo' .*available: climatologies, copernicus, demo, "
        r"ecopart, ecotaxa",
    ):
        open_catalog("dmeo")


def test_open_catalog_names_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: no catalog file there"):
        open_catalog(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sources:\n  a: [1, 2\n", r"bad\.yaml:3:1: invalid YAML"),
        ("- just\n- a list\n", r"bad\.yaml: not an intake v1 catalog"),
        ("sources:\n  a:\n    args: {urlpath: x}\n", r"bad\.yaml: sources\.a: missing 'driver'"),
        (
            "sources:\n  a:\n    driver: csv\n    args: {urlpath: x}\n"
            "    metadata: {oceanfields: {reader: ecotaxo}}\n",
            r"bad\.yaml: sources\.a\.metadata\.oceanfields\.reader is 'ecotaxo'; valid: "
            r"copernicus, ecopart_par, ecopart_raw, ecotaxa",
        ),
    ],
    ids=["yaml-syntax", "not-a-mapping", "no-driver", "unknown-reader"],
)
def test_open_catalog_rejects_broken_catalog_files(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        open_catalog(path)


def test_open_catalog_lists_valid_parameters_for_an_unknown_one():
    with pytest.raises(
        ConfigError, match=r"demo\.yaml: unknown catalog parameter 'rot'; valid: root"
    ):
        open_catalog("demo", rot="x")


def test_read_entry_lists_entries_for_an_unknown_entry(demo):
    with pytest.raises(
        ConfigError,
        match=r"demo\.yaml: no entry 'enviroment'; entries: environment, biogeochemistry",
    ):
        read_entry(demo, "enviroment")


def test_read_entry_lists_parameters_and_reader_options_for_an_unknown_name(demo):
    with pytest.raises(
        ConfigError,
        match=r"entry 'environment': unknown parameter 'variabels'; parameters: root; "
        r"reader options \(copernicus\): chunks, storage_options, time, variables, zarr_format",
    ):
        read_entry(demo, "environment", variabels=["thetao"])


def test_read_entry_refuses_options_for_entries_without_a_reader(demo):
    with pytest.raises(ConfigError, match=r"reader options \(intake\): \(none\)"):
        read_entry(demo, "truth_profiles", columns=["c"])


@pytest.mark.parametrize(
    ("name", "entry", "params", "match"),
    [
        ("ecotaxa", "export", {}, r"entry 'export': parameter 'url' is required"),
        ("ecopart", "par_raw", {"url": ""}, r"entry 'par_raw': parameter 'url' is required"),
        (
            "copernicus",
            "glo_bgc_my_monthly",
            {},
            r"entry 'glo_bgc_my_monthly': parameter 'bucket' is required",
        ),
        (
            "copernicus",
            "glo_phy_anfc",
            {"layout": "fooChunked"},
            r"parameter 'layout' = 'fooChunked' is invalid .*allowed: timeChunked, geoChunked",
        ),
    ],
    ids=["ecotaxa-url", "ecopart-empty-url", "copernicus-bucket", "copernicus-layout"],
)
def test_read_entry_checks_required_and_allowed_parameter_values(name, entry, params, match):
    with pytest.raises(ConfigError, match=match):
        read_entry(open_catalog(name), entry, **params)


def test_read_entry_reports_a_url_pattern_that_matches_nothing(tmp_path):
    with pytest.raises(InputFormatError, match=r"the pattern matches no file"):
        read_entry(open_catalog("ecotaxa"), "export", url=str(tmp_path / "*.tsv"))


def test_read_entry_demands_a_metadata_pattern_that_matches_one_file(tmp_path):
    reader_available("pipeline.sources.ecopart", "read_par_export")
    for name in ("a_Export_metadata_summary.tsv", "b_Export_metadata_summary.tsv", "x_PAR_1.tsv"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"metadata_url pattern .* matches 2 files"):
        read_entry(
            open_catalog("ecopart"),
            "par_detailed",
            url=str(tmp_path / "*_PAR_*.tsv"),
            metadata_url=str(tmp_path / "*_Export_metadata_summary.tsv"),
        )


def test_catalog_parameters_survive_intakes_reload_after_its_ttl(tmp_path):
    cat = open_catalog("demo", root=str(tmp_path))
    cat.updated -= 3600  # as if the demo had been running for an hour
    urls = {e["name"]: e["url"] for e in list_entries(cat)}
    assert urls["ecotaxa"].startswith(str(tmp_path))
