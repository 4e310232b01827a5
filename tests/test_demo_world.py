from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

from pipeline import sizeclasses
from pipeline.demo import DemoWorld, ecopart_writer, generate_demo_world, truth
from pipeline.demo import environment as envmod

# the simple world, bit for bit as before issue 15 (the realistic one: test_demo_realistic.py)
ARGS = {
    "resolution": 5.0,
    "years": (2020,),
    "n_profiles": 24,
    "n_images": 200,
    "seed": 1,
    "world": "simple",
}
EDGES = sizeclasses.edges_mm("detailed")
LO, HI = EDGES[:-1], EDGES[1:]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> DemoWorld:
    return generate_demo_world(str(tmp_path_factory.mktemp("world_a")), **ARGS)


@pytest.fixture(scope="module")
def world_again(tmp_path_factory) -> DemoWorld:
    return generate_demo_world(str(tmp_path_factory.mktemp("world_b")), **ARGS)


@pytest.fixture(scope="module")
def env(world) -> xr.Dataset:
    return xr.open_zarr(world.paths["environment"], consolidated=False).load()


@pytest.fixture(scope="module")
def meta(world) -> pd.DataFrame:
    files = list(Path(world.paths["ecopart_detailed"]).glob("*_Export_metadata_summary.tsv"))
    return pd.read_csv(files[0], sep="\t", encoding="latin-1")


@pytest.fixture(scope="module")
def objects(world) -> pd.DataFrame:
    tsvs = sorted(Path(world.paths["ecotaxa"]).glob("ecotaxa_export_demo_*.tsv"))
    return pd.concat(
        [pd.read_csv(p, sep="\t", dtype={"object_time": str}) for p in tsvs], ignore_index=True
    )


def _read_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", encoding="latin-1")


def _raw_counts(raw: pd.DataFrame, aa: float, exp: float) -> tuple[pd.Series, pd.DataFrame]:
    raw = raw.assign(
        bin=sizeclasses.depth_bin_centre(raw["depth"].to_numpy()),
        cls=sizeclasses.class_for_esd(sizeclasses.esd_mm_from_area(raw["area"], aa, exp), EDGES),
    )
    metres = raw.drop_duplicates("depth")
    volume = (metres["imgcount"] * 1.1).groupby(metres["bin"]).sum()
    counts = raw.pivot_table(index="bin", columns="cls", values="nbr", aggfunc="sum")
    return volume, counts.reindex(columns=range(45), fill_value=0).fillna(0)


def test_world_reports_counts_paths_and_parameters(world):
    info = world.to_dict()
    assert info["n_profiles"] == 24
    assert info["n_images"] == info["n_objects"] == 200
    assert info["years"] == [2020]
    for name in (
        "environment",
        "ecopart_detailed",
        "ecopart_raw",
        "ecotaxa",
        "truth_profiles",
        "truth_fields",
    ):
        assert Path(world.paths[name]).exists(), name
    saved = json.loads(Path(world.root, "world.json").read_text())
    assert saved["parameters"] == {**ARGS, "years": [2020]}
    assert "log10 C100" in saved["truth"]["formulas"]


def test_same_seed_gives_identical_files_and_truth(world, world_again):
    a, b = Path(world.root), Path(world_again.root)
    for rel in (
        "ecopart/export_detailed_20210101_00_00_PAR_demo_0001.tsv",
        "ecopart/export_detailed_20210101_00_00_Export_metadata_summary.tsv",
        "ecotaxa/ecotaxa_export_demo_1.tsv",
        "world.json",
    ):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    raw_a = sorted((a / "ecopart/raw").glob("*_PAR_raw_*.tsv"))
    assert [p.name for p in raw_a] == [
        p.name for p in sorted((b / "ecopart/raw").glob("*")) if "_PAR_raw_" in p.name
    ]
    assert raw_a[3].read_bytes() == (b / "ecopart/raw" / raw_a[3].name).read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_parquet(world.paths["truth_profiles"]),
        pd.read_parquet(world_again.paths["truth_profiles"]),
    )


def test_other_seed_gives_other_world(world, tmp_path):
    other = generate_demo_world(str(tmp_path), **{**ARGS, "n_profiles": 3, "seed": 2})
    mine = pd.read_parquet(world.paths["truth_profiles"])
    theirs = pd.read_parquet(other.paths["truth_profiles"])
    assert not np.allclose(mine["lat"].to_numpy()[:3], theirs["lat"].to_numpy()[:3])


def test_environment_has_copernicus_names_units_and_dims(env):
    for name in ("thetao", "so", "o2", "chl", "uo", "vo"):
        assert env[name].dims == ("time", "depth", "latitude", "longitude")
        assert env[name].dtype == np.float32
        assert {"standard_name", "long_name", "units"} <= set(env[name].attrs)
    assert env["mlotst"].dims == ("time", "latitude", "longitude")
    assert env["deptho"].dims == ("latitude", "longitude")
    assert env["thetao"].attrs["units"] == "degrees_C"
    assert env["o2"].attrs["units"] == "mmol m-3"
    assert env.sizes["time"] == 12
    assert float(env["depth"].max()) >= 1000.0
    assert np.issubdtype(env["time"].dtype, np.datetime64)
    assert float(env["latitude"][0]) == -80.0
    assert float(env["longitude"][0]) == -180.0


def test_environment_land_is_nan_and_below_sea_floor_is_nan(env):
    land = np.isnan(env["deptho"].values)
    assert 0.15 < land.mean() < 0.5
    assert np.isnan(env["thetao"].values[:, :, land]).all()
    assert np.isfinite(env["thetao"].values[0, 0, ~land]).all()
    deep = env["depth"].values[:, None, None] > np.nan_to_num(env["deptho"].values)[None]
    assert np.isnan(env["so"].values[0][deep]).all()
    assert (env["mask"].values == ~deep).all()


def test_environment_tropics_warmer_than_poles_and_cooling_with_depth(env):
    sst = env["thetao"].isel(depth=0).mean("time")
    tropics = float(sst.sel(latitude=slice(-15, 15)).mean())
    poles = float(sst.where(np.abs(sst.latitude) > 60).mean())
    assert tropics > poles + 15
    profile = env["thetao"].sel(latitude=slice(-30, 30)).mean(["time", "latitude", "longitude"])
    assert (np.diff(profile.values) <= 1e-4).all()  # isothermal mixed layer, then cooling
    assert profile.values[0] - float(profile.sel(depth=1000, method="nearest")) > 15


def test_environment_seasons_are_opposite_in_the_two_hemispheres(env):
    sst = env["thetao"].isel(depth=0)
    north = sst.sel(latitude=slice(30, 60)).mean(["latitude", "longitude"])
    south = sst.sel(latitude=slice(-60, -30)).mean(["latitude", "longitude"])
    aug_minus_feb = lambda s: float(s.isel(time=7) - s.isel(time=1))  # noqa: E731
    assert aug_minus_feb(north) > 2.0
    assert aug_minus_feb(south) < -2.0


def test_profiles_sit_in_ocean_cells_across_basins_and_months(world, meta, env):
    assert len(meta) == 24
    assert "Latitude " in meta.columns
    lat = meta["Latitude "].to_numpy()
    lon = meta["Longitude"].to_numpy()
    iy = np.abs(env["latitude"].values[None] - lat[:, None]).argmin(axis=1)
    ix = np.abs(env["longitude"].values[None] - lon[:, None]).argmin(axis=1)
    assert np.isfinite(env["deptho"].values[iy, ix]).all()
    assert len(set(envmod.basin_of(lat, lon))) >= 3
    months = pd.to_datetime(meta["yyyy-mm-dd hh:mm"]).dt.month
    assert set(months) == set(range(1, 13))


def test_detailed_export_has_the_real_layout(world):
    path = Path(world.paths["ecopart_detailed"]) / (
        "export_detailed_20210101_00_00_PAR_demo_0001.tsv"
    )
    data = path.read_bytes()
    assert b"\r\n" in data
    assert b"\xb5m" in data
    table = pd.read_csv(path, sep="\t", encoding="latin-1")
    assert table.shape[1] == 132
    assert list(table.columns[:5]) == [
        "Profile",
        "Rawfilename",
        "yyyy-mm-dd hh:mm",
        "Depth [m]",
        "Sampled volume [L]",
    ]
    assert table.columns[25] == "LPM (102-128 µm) [# l-1]"
    assert table["Depth [m]"].iloc[:3].tolist() == [2.5, 7.5, 12.5]
    assert table["Sampled volume [L]"].between(100, 280).all()


def test_raw_and_detailed_exports_give_identical_counts(world, meta):
    raw_dir = Path(world.paths["ecopart_raw"])
    for row in meta.head(6).itertuples(index=False):
        pid = row.profile
        det = pd.read_csv(
            Path(world.paths["ecopart_detailed"]) / row._13, sep="\t", encoding="latin-1"
        ).set_index("Depth [m]")
        raw = _read_raw(next(raw_dir.glob(f"*_{pid}_PAR_raw_*.tsv")))
        volume, counts = _raw_counts(raw, row.aa, row.exp)
        np.testing.assert_allclose(det["Sampled volume [L]"], volume.to_numpy(), rtol=1e-9)
        conc = det[[sizeclasses.export_label(a, b) for a, b in zip(LO, HI, strict=True)]]
        from_detailed = np.rint(conc.to_numpy() * det[["Sampled volume [L]"]].to_numpy())
        np.testing.assert_array_equal(from_detailed, counts.to_numpy())


def test_poisson_counts_match_the_truth(world, meta):
    raw_dir = Path(world.paths["ecopart_raw"])
    truth_rows = pd.read_parquet(world.paths["truth_profiles"])
    cols = [truth.conc_column(a, b) for a, b in zip(LO, HI, strict=True)]
    observed, expected = np.zeros(45), np.zeros(45)
    for row in meta.itertuples(index=False):
        raw = _read_raw(next(raw_dir.glob(f"*_{row.profile}_PAR_raw_*.tsv")))
        _, counts = _raw_counts(raw, row.aa, row.exp)
        mine = truth_rows[truth_rows["profile_id"] == row.profile]
        observed += counts.to_numpy().sum(axis=0)
        expected += (mine[cols].to_numpy() * mine[["volume_l"]].to_numpy()).sum(axis=0)
    assert observed[:19].sum() == expected[:19].sum() == 0
    assert observed.sum() / expected.sum() == pytest.approx(1.0, abs=0.01)
    big = expected > 20
    chi2 = ((observed[big] - expected[big]) ** 2 / expected[big]).sum()
    assert chi2 < 3.0 * big.sum() + 10  # honest Poisson noise: chi2 ~ degrees of freedom


def test_truth_profiles_have_layers_and_sensible_values(world):
    t = pd.read_parquet(world.paths["truth_profiles"])
    assert set(t["layer"]) == {"0-100m", "100-500m", "500-1000m"}
    assert str(t["time"].dtype) == "datetime64[ns, UTC]"
    by_layer = t.groupby("layer")["conc_102_203um_per_l"].median()
    assert by_layer["0-100m"] > by_layer["100-500m"] > by_layer["500-1000m"] > 0
    assert {f"conc_{k}_per_l" for k in truth.TYPES + truth.GROUPS} <= set(t.columns)


def test_truth_fields_are_layer_maps_with_land_nan(world, env):
    f = xr.open_zarr(world.paths["truth_fields"], consolidated=False)
    assert f["conc_102_203um_per_l"].dims == ("time", "layer", "lat", "lon")
    assert list(f["layer"].values) == ["0-100m", "100-500m", "500-1000m"]
    surf = f["conc_102_203um_per_l"].isel(time=0, layer=0).values
    land = np.isnan(env["deptho"].values)
    assert np.isnan(surf[land]).all()
    assert (surf[~land] > 0).all()


def test_ecotaxa_objects_have_one_existing_image_each(world, objects):
    folder = Path(world.paths["ecotaxa"])
    assert len(objects) == 200 == len(list(folder.glob("images/*/*.png")))
    assert objects["object_id"].is_unique
    assert all((folder / p).is_file() for p in objects["img_file_name"])
    assert set(objects["object_annotation_status"]) <= {"validated", "predicted", "dubious"}
    assert (objects["object_annotation_status"] == "validated").mean() > 0.6
    assert objects["object_date"].astype(str).str.fullmatch(r"2020\d{4}").all()
    assert objects["object_time"].str.fullmatch(r"\d{6}").all()


def test_ecotaxa_features_differ_between_types(world, tmp_path):
    from pipeline.demo.ecotaxa_writer import draw_object, measure

    rng = np.random.default_rng(0)
    feats = {
        kind: pd.DataFrame([measure(*draw_object(kind, 1.6, 0.092, rng)) for _ in range(15)])
        for kind in truth.TYPES
    }
    assert feats["fiber"]["elongation"].mean() > 3 * feats["dark_aggregate"]["elongation"].mean()
    assert feats["fecal_pellet"]["elongation"].mean() > 2.0
    assert feats["dark_aggregate"]["mean"].mean() > feats["fecal_pellet"]["mean"].mean() + 50
    assert feats["fluffy_aggregate"]["stddev"].mean() > 2 * feats["dark_aggregate"]["stddev"].mean()


def test_ecotaxa_export_features_separate_validated_types(objects):
    v = objects[objects["object_annotation_status"] == "validated"]
    means = v.groupby("object_annotation_category")["object_mean"].mean()
    assert means.get("dark_aggregate", 255) > means.get("fecal_pellet", 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"resolution": 0.7}, "dividing 180"),
        ({"years": ()}, "years"),
        ({"n_profiles": 0}, "at least 1"),
        ({"world": "easy"}, "realistic, simple"),
    ],
    ids=["bad-resolution", "no-years", "no-profiles", "bad-world"],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_demo_world(str(tmp_path), **kwargs)


def test_quarter_degree_environment_month_is_written(tmp_path):
    info = envmod.write_environment(
        str(tmp_path / "env.zarr"), resolution=0.25, years=(2020,), months=(1,)
    )
    ds = xr.open_zarr(tmp_path / "env.zarr", consolidated=False)
    assert info["shape"] == {"time": 1, "depth": 18, "latitude": 681, "longitude": 1440}
    assert ds["thetao"].sizes == {"time": 1, "depth": 18, "latitude": 681, "longitude": 1440}
    assert float(ds["thetao"].isel(time=0, depth=0).sel(latitude=0, longitude=-140)) > 20


def test_ecopart_headers_are_byte_identical_to_real_exports(world, shared_data):
    qa = shared_data / "ecopart_qa"
    det, raw = Path(world.paths["ecopart_detailed"]), Path(world.paths["ecopart_raw"])
    pairs = [
        (
            qa / "tsv_det_multi/export_detailed_20210201_11_31_PAR_brusample01.tsv",
            det / "export_detailed_20210101_00_00_PAR_demo_0001.tsv",
        ),
        (
            qa / "tsv_det_multi/export_detailed_20210201_11_31_Export_metadata_summary.tsv",
            det / "export_detailed_20210101_00_00_Export_metadata_summary.tsv",
        ),
        (
            qa / "raw_multi/export_raw_20210201_14_15_Export_metadata_summary.tsv",
            raw / "export_raw_20210101_00_00_Export_metadata_summary.tsv",
        ),
        (
            qa / "raw_multi/20191121010000_brusample01_PAR_raw_20210201_14_15.tsv",
            next(raw.glob("*_demo_0001_PAR_raw_*.tsv")),
        ),
    ]
    for real, mine in pairs:
        with real.open("rb") as a, mine.open("rb") as b:
            assert a.readline() == b.readline(), mine.name


# ------------------------------------------------------------------ fast paths, same output


@given(
    st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0.0, max_value=1e20, allow_nan=False, allow_infinity=False),
            st.integers(min_value=0, max_value=10**6).map(float),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_export_floats_are_written_as_python_repr_and_zeros_as_0_0(values):
    text = ecopart_writer._fmt_floats(np.array(values)).to_pylist()
    assert text == ["0.0" if v == 0 else repr(v) for v in values]


def test_patchiness_is_the_ar1_recursion_bit_for_bit():
    from pipeline.demo.noise import PATCH_METRES, PATCH_SD, patchiness

    eps = np.random.default_rng(4).standard_normal((3, 50))
    phi = np.exp(-1.0 / PATCH_METRES)
    g = np.empty_like(eps)
    g[:, 0] = eps[:, 0] * PATCH_SD
    for m in range(1, 50):  # the recursion as first written
        g[:, m] = phi * g[:, m - 1] + np.sqrt(1.0 - phi * phi) * PATCH_SD * eps[:, m]
    expected = np.exp(g - PATCH_SD**2 / 2.0)
    assert np.array_equal(patchiness(np.random.default_rng(4), 50, (3,)), expected)


def test_land_grid_from_the_disk_cache_equals_the_sampled_one(tmp_path, monkeypatch):
    from pipeline.demo import land

    monkeypatch.setenv("OCEANFIELDS_CACHE", str(tmp_path))
    land.land_grid.cache_clear()
    first = land.land_grid(10.0)  # sampled, then written to the cache
    assert len(list(tmp_path.glob("land_grid_10.0deg_*.npy"))) == 1
    land.land_grid.cache_clear()
    again = land.land_grid(10.0)  # read back
    assert np.array_equal(first, again)
    assert not again.flags.writeable
    monkeypatch.setenv("OCEANFIELDS_CACHE", "none")
    land.land_grid.cache_clear()
    assert np.array_equal(land.land_grid(10.0), first)
    land.land_grid.cache_clear()
