"""The EcoTaxa reader on the real ecotaxa_back QA files, its options, and distribution."""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from pipeline.demo import generate_demo_world
from pipeline.errors import ConfigError
from pipeline.sources import ecotaxa
from pipeline.sources.ecotaxa import DEFAULT_FEATURES, objects_meta, read_ecotaxa
from pipeline.sources.ecotaxa_columns import parse_degrees

PNG = b"\x89PNG\r\n\x1a\n"
JPG = b"\xff\xd8\xff"
LON_24_25W = -24.4166666666667  # 24°25' W as written in the m106 files


def _read(urls, **options):
    accepted, quarantine, stats = read_ecotaxa(urls, **options).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return accepted.set_index("object_id", drop=False), quarantine, stats


@pytest.fixture(scope="module")
def data(shared_data: Path) -> Path:
    return shared_data / "ecotaxa_back"


@pytest.fixture(scope="module")
def hierarchy(data):
    return _read(str(data / "export_with_hierarchy" / "*.tsv"))


@pytest.fixture(scope="module")
def comma(data):
    return _read(str(data / "export_comma_decimal" / "*.tsv"))


@pytest.fixture(scope="module")
def zooscan(data):
    return _read(str(data / "zooscan_import" / "*" / "*.tsv"))


@pytest.fixture(scope="module")
def uvp6_zip_url(data) -> str:
    outer = data / "uvp6_import" / "UVP6_example.zip"
    return f"zip://ecotaxa_b_da_19.tsv::zip://b_da_19_Images.zip::{outer}"


@pytest.fixture(scope="module")
def uvp6(uvp6_zip_url):
    return _read(uvp6_zip_url)


# --- export with hierarchy (ref_exports/doi) -------------------------------------------


def test_export_keeps_one_row_per_object_and_its_rank_0_image(hierarchy, data):
    objects, quarantine, stats = hierarchy
    assert stats[["rows_read", "rows_accepted", "rows_quarantined"]].iloc[0].tolist() == [12, 11, 1]
    assert objects["object_id"].is_unique
    folder = data / "export_with_hierarchy"
    assert objects.loc["m106_mn01_n3_sml_1111", "image"] == str(
        folder / "images" / "egg_other" / "13_0.jpg"
    )
    row = quarantine.iloc[0]
    assert (row["line"], row["column"]) == (13, "img_rank")
    assert (
        "extra image (img_rank 1) of object 'm106_mn01_n3_sml_1111' kept from line 12"
        in (row["reason"])
    )
    assert "13_1.jpg" in row["raw"]


def test_export_reads_hierarchy_category_status_and_existing_images(hierarchy):
    objects, _, _ = hierarchy
    onc = objects.loc["m106_mn01_n1_sml_821"]
    assert onc["category"] == "Oncaeidae"
    assert onc["hierarchy"] == (
        "Biota>Animalia>Arthropoda>Crustacea>Multicrustacea>Copepoda>Neocopepoda>Podoplea>"
        "Cyclopoida>Ergasilida>Oncaeidae"
    )
    assert objects.loc["m106_mn01_n1_sml_409", "hierarchy"] == "temporary>t001"
    assert objects.loc["m106_mn01_n1_sml_850", "category"] == "other<Biota"
    assert set(objects["status"]) == {"P"}
    assert all(Path(p).is_file() for p in objects["image"])
    assert objects["image"].str.contains("/images/").all()


def test_export_reads_sample_volume_pixel_size_and_features(hierarchy):
    objects, _, _ = hierarchy
    assert objects.loc["m106_mn01_n1_sml_409", "volume_l"] == pytest.approx(13125.0)
    assert objects.loc["m106_mn01_n2_sml_1", "volume_l"] == pytest.approx(9750.0)
    assert (objects["pixel_size_um"] == 10.6).all()
    first = objects.loc["m106_mn01_n1_sml_409"]
    assert (first["area"], first["mean"], first["major"], first["feret"]) == pytest.approx(
        (516.0, 241.039993286133, 50.0999984741211, 102.599998474121)
    )
    assert np.isnan(first["esd"])
    assert np.isnan(first["stddev"])
    assert objects.dtypes.to_dict() == objects_meta().dtypes.to_dict()


# --- export with decimal commas (ref_exports/tsv_with_ids) ------------------------------


def test_comma_export_reads_decimal_commas_depths_and_times(comma):
    objects, quarantine, stats = comma
    assert len(objects) == 12
    assert len(quarantine) == 0
    assert len(stats) == 3
    assert objects["lat"].tolist() == [18.0] * 12
    assert objects["lon"].to_numpy() == pytest.approx([LON_24_25W] * 12)
    n1 = objects[objects["sample_id"] == "m106_mn01_n1_sml"]
    assert n1[["depth_min_m", "depth_max_m"]].drop_duplicates().values.tolist() == [[600, 1000]]
    assert objects.loc["m106_mn01_n1_sml_409", "time"] == pd.Timestamp("2014-04-20 04:20:00Z")
    assert objects.loc["m106_mn01_n3_sml_1112", "time"] == pd.Timestamp("2014-04-21 04:20:00Z")
    assert objects.loc["m106_mn01_n1_sml_409", "category"] == "t001"
    assert (objects["image"] == "").all()


def test_comma_export_falls_back_to_sample_coordinates(data, tmp_path):
    text = (data / "export_comma_decimal" / "ecotaxa_m106_mn01_n2_sml.tsv").read_text()
    header, *rows = text.splitlines()
    names = [h.strip('"') for h in header.split("\t")]
    lat, lon = names.index("object_lat"), names.index("object_lon")
    blanked = []
    for row in rows:
        cells = row.split("\t")
        cells[lat] = cells[lon] = '""'
        blanked.append("\t".join(cells))
    path = tmp_path / "ecotaxa_blank_object_position.tsv"
    path.write_text("\n".join([header, *blanked]) + "\n")
    objects, quarantine, _ = _read(str(path))
    assert len(objects) == 3
    assert len(quarantine) == 0
    assert objects["lat"].tolist() == [18.0] * 3
    assert objects["lon"].to_numpy() == pytest.approx([LON_24_25W] * 3)


# --- ZooScan imports (import_test, import_test_tot_vol) ---------------------------------


def test_zooscan_import_skips_the_type_row_and_reads_volconc_as_m3(zooscan, data):
    objects, quarantine, stats = zooscan
    assert sorted(stats["rows_read"].tolist()) == [3, 8]
    assert len(objects) == 11
    assert len(quarantine) == 0
    assert not objects["object_id"].str.startswith("[").any()
    sample = objects.groupby("sample_id")["volume_l"].unique().to_dict()
    assert {k: v.tolist() for k, v in sample.items()} == {
        "m106_mn01_n1_sml": [13125.0],
        "m106_mn01_n2_sml": [9750.0],
    }
    edited = objects.loc["m106_mn01_n1_sml_409"]
    assert (edited["lat"], edited["lon"]) == pytest.approx((-44.72543333333333, 145.5351))
    assert objects.loc["m106_mn01_n1_sml_850", "acq_id"] == "generic_m106_mn01_n1_sml2"
    assert all(Path(p).is_file() and Path(p).read_bytes()[:3] == JPG for p in objects["image"])
    assert objects.loc["m106_mn01_n1_sml_852", "image"].endswith("m106_mn01_n1_sml_850.jpg")


def test_zooscan_import_time_420_is_04h20_as_in_ecotaxas_export(zooscan, comma):
    imported, exported = zooscan[0], comma[0]
    common = imported.index.intersection(exported.index)
    assert len(common) == 8
    assert (imported.loc[common, "time"] == exported.loc[common, "time"]).all()
    assert imported.loc["m106_mn01_n2_sml_1", "time"] == pd.Timestamp("2014-04-20 04:20Z")


def test_zooscan_tot_vol_999999_is_a_missing_volume(data):
    objects, quarantine, _stats = _read(
        str(data / "zooscan_import_tot_vol" / "*" / "*.tsv"), check_images=False
    )
    assert len(objects) == 9
    assert len(quarantine) == 0
    assert objects["volume_l"].isna().all()
    assert (objects["pixel_size_um"] == 10.6).all()


def test_zooscan_tot_vol_without_its_images_quarantines_every_row_when_checked(data):
    objects, quarantine, _ = _read(
        str(data / "zooscan_import_tot_vol" / "*" / "*.tsv"), check_images=True
    )
    assert len(objects) == 0
    assert len(quarantine) == 9
    assert (quarantine["column"] == "img_file_name").all()
    assert quarantine["reason"].str.startswith("referenced image not found: ").all()
    assert quarantine["reason"].str.endswith(".jpg").all()


# --- UVP6 import: zip of zips and .tsv.gz -----------------------------------------------


def test_uvp6_zip_of_zips_reads_15_objects_with_degree_minute_positions(uvp6):
    objects, quarantine, stats = uvp6
    assert stats[["rows_read", "rows_accepted"]].iloc[0].tolist() == [15, 15]
    assert len(quarantine) == 0
    # '43°0 0' and '17°0 0' = 43 + 0/60 + 0/3600 degrees N, 17 + 0/60 + 0/3600 degrees E
    assert set(objects["lat"]) == {43.0}
    assert set(objects["lon"]) == {17.0}
    first = objects.loc["20200205-111823_3"]
    assert first["time"] == pd.Timestamp("2020-02-05 11:18:23Z")
    assert (first["depth_min_m"], first["depth_max_m"]) == (194.63, 194.63)
    assert (first["sample_id"], first["acq_id"], first["status"]) == ("b_da_19", "b_da_19", "")
    assert np.isnan(first["volume_l"])
    assert first["pixel_size_um"] == 73.0
    assert (first["area"], first["perim"], first["circ"], first["pct_area"]) == pytest.approx(
        (207, 71.0122, 0.516, 95.652)
    )


def test_real_uvp6_and_export_files_have_no_subsample_so_fraction_is_one(uvp6, hierarchy):
    # real EcoTaxa files carry no acq_subsample_fraction: every object counted was imaged
    for objects, _, _ in (uvp6, hierarchy):
        assert len(objects) > 0
        assert (objects["subsample_fraction"] == 1.0).all()


def test_demo_exports_carry_the_worlds_subsample_fraction(tmp_path):
    world = generate_demo_world(
        # the simple world: export format, not skill
        str(tmp_path),
        resolution=30.0,
        n_profiles=4,
        n_images=40,
        world="simple",
    )
    expected = json.loads(Path(world.paths["world_json"]).read_text())["ecotaxa"]
    objects, quarantine, _ = _read(str(Path(world.paths["ecotaxa"]) / "ecotaxa_export_*.tsv"))
    assert len(quarantine) == 0
    assert len(objects) == 40
    assert 0 < expected["subsample_fraction"] < 1
    assert (objects["subsample_fraction"] == expected["subsample_fraction"]).all()


def test_uvp6_images_resolve_inside_the_inner_zip_and_open_with_fsspec(uvp6, uvp6_zip_url):
    objects, _, _ = uvp6
    image = objects.loc["20200205-112059_1", "image"]
    assert image == uvp6_zip_url.replace("ecotaxa_b_da_19.tsv", "sub2/20200205-112059_1.png")
    for url in objects["image"]:
        with fsspec.open(url, "rb") as f:
            assert f.read(8) == PNG


def test_uvp6_gz_gives_the_same_objects_without_images(data, uvp6):
    gz = str(data / "uvp6_import" / "ecotaxa_b_da_19.tsv.gz")
    objects, quarantine, _ = _read(gz, check_images=False)
    assert len(quarantine) == 0
    columns = [c for c in objects.columns if c != "image"]
    pd.testing.assert_frame_equal(objects[columns], uvp6[0][columns])
    assert objects.loc["20200205-111823_3", "image"] == str(
        data / "uvp6_import" / "sub1" / "20200205-111823_3.png"
    )


def test_uvp6_gz_with_image_checks_quarantines_every_row(data):
    objects, quarantine, _ = _read(
        str(data / "uvp6_import" / "ecotaxa_b_da_19.tsv.gz"), check_images=True
    )
    assert len(objects) == 0
    assert len(quarantine) == 15
    assert quarantine["reason"].str.startswith("referenced image not found: ").all()


def test_uvp6_latin1_file_read_as_utf8_quarantines_the_degree_lines(uvp6_zip_url):
    objects, quarantine, stats = _read(uvp6_zip_url, encoding="utf-8")
    assert len(objects) == 0
    assert stats["rows_quarantined"].iloc[0] == 15
    assert quarantine["reason"].str.startswith("undecodable bytes (utf-8): b'\\xb0").all()
    assert "43°0 0" in quarantine["raw"].iloc[0]


# --- VPR (sparse) and LOKI (other feature set) ------------------------------------------


def test_vpr_sparse_import_reads_fractional_seconds_and_no_features(data):
    objects, quarantine, _ = _read(str(data / "vpr_import_sparse" / "*.tsv"))
    assert len(objects) == 6
    assert len(quarantine) == 0
    first = objects.loc["roi.0729931500"]
    assert (first["lat"], first["lon"], first["depth_min_m"]) == (77.0709, 161.8121, 120.4473)
    assert first["time"] == pd.Timestamp("2016-07-19 02:01:39.315Z")
    assert first[list(DEFAULT_FEATURES)].isna().all()
    assert (first["sample_id"], first["category"], first["status"]) == ("", "", "")
    assert Path(first["image"]).read_bytes()[:8] == PNG


def test_loki_import_is_accepted_with_its_few_zooprocess_features(data):
    objects, quarantine, _ = _read(str(data / "loki_import" / "*.txt"), check_images=False)
    assert len(objects) == 4
    assert len(quarantine) == 0
    first = objects.loc["20200108 080729  764  000001 0702 1167"]
    assert (first["lat"], first["lon"]) == (87.00346, 115.40836)
    assert first["depth_min_m"] == first["depth_max_m"] == 1019.735259
    assert first["time"] == pd.Timestamp("2020-01-08 08:07:29Z")
    assert (first["area"], first["width"]) == (25.0, 0.0)
    assert np.isnan(first["mean"])
    assert np.isnan(first["pixel_size_um"])
    assert first["acq_id"] == "loki10001.02"


def test_loki_import_without_its_images_names_each_missing_image(data):
    _, quarantine, _ = _read(str(data / "loki_import" / "*.txt"), check_images=True)
    assert len(quarantine) == 4
    assert quarantine["reason"].iloc[0].endswith("20200108 080729  764  000001 0702 1167.png")


# --- cross-check with EcoTaxa's own summary export ---------------------------------------


def test_export_counts_and_positions_agree_with_ecotaxas_summary(hierarchy, data):
    objects, _, _ = hierarchy
    summary = pd.read_csv(data / "summary_exports" / "summary_per_sample.tsv", sep="\t")
    expected = summary.groupby("sample_id")["nbr"].sum().to_dict()
    assert objects.groupby("sample_id").size().to_dict() == expected
    for sample_id, rows in summary.groupby("sample_id"):
        mine = objects[objects["sample_id"] == sample_id]
        assert set(mine["lat"]) == set(rows["latitude"])
        assert mine["lon"].to_numpy() == pytest.approx(rows["longitude"].iloc[0])
        assert set(mine["time"].dt.strftime("%Y-%m-%d")) == set(rows["date"])


# --- API: features, options, parse_degrees, laziness, pickling --------------------------


def test_default_features_are_normalised_zooprocess_names():
    assert len(DEFAULT_FEATURES) == len(set(DEFAULT_FEATURES)) == 73
    assert {"area", "perim", "circ", "pct_area", "esd", "skeleton_area"} <= set(DEFAULT_FEATURES)
    assert not any("." in f or "%" in f or f.startswith("object_") for f in DEFAULT_FEATURES)
    meta = objects_meta()
    assert list(meta.columns[:16]) == [
        "object_id",
        "sample_id",
        "acq_id",
        "lat",
        "lon",
        "time",
        "depth_min_m",
        "depth_max_m",
        "category",
        "hierarchy",
        "status",
        "volume_l",
        "area_mm2",
        "esd_um",
        "pixel_size_um",
        "subsample_fraction",
    ]
    assert meta.columns[-1] == "image"
    assert str(meta["time"].dtype) == "datetime64[ns, UTC]"


def test_features_option_accepts_tsv_names_and_keeps_the_order(uvp6_zip_url):
    objects, _, _ = _read(uvp6_zip_url, features=["object_perim.", "%area", "area", "nosuch"])
    assert list(objects.columns[16:]) == ["perim", "pct_area", "area", "nosuch", "image"]
    assert objects["nosuch"].isna().all()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"features": ["lat"]}, r"features \['lat'\] clash with canonical columns"),
        ({"features": "area"}, r"must be a list of names.*features=\['area'\]"),
        ({"encoding": "klingon"}, r"encoding 'klingon' is unknown; use None"),
    ],
    ids=["feature-clash", "feature-string", "unknown-encoding"],
)
def test_bad_options_raise_config_errors_naming_the_fix(options, match, tmp_path):
    with pytest.raises(ConfigError, match=match):
        read_ecotaxa(str(tmp_path / "x.tsv"), **options)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("43°0 0", 43.0),
        ("43°30 30", 43 + 30.5 / 60),
        ("-43°30 0", -43.5),
        ("43°30.5'", 43 + 30.5 / 60),
        ("43°30'15\"N", 43 + 30.25 / 60),
        ("24°25'W", -(24 + 25 / 60)),
        ("-24,25", -24.25),
        ("7.5E", 7.5),
    ],
    ids=["uvp6", "dms-space", "negative", "decimal-minutes", "dms-marks", "west", "comma", "east"],
)
def test_parse_degrees_reads_decimal_and_degree_minute_forms(text, expected):
    assert parse_degrees(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    ["north", "43°75 0", "43.5°30", "-10°S", ""],
    ids=["word", "minutes-75", "fraction-then-minutes", "minus-and-south", "empty"],
)
def test_parse_degrees_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match=r"coordinate|below 60|ambiguous|both"):
        parse_degrees(text)


def test_read_is_lazy_with_one_partition_per_batch_of_files(data, tmp_path):
    missing = str(tmp_path / "gone.tsv")
    result = read_ecotaxa([str(data / "loki_import" / "ecotaxa.PS122.txt"), missing])
    assert result.accepted.npartitions == 1
    _, quarantine, stats = result.compute()
    gone = quarantine[quarantine["file"] == missing].iloc[0]
    assert gone["line"] == 0
    assert "file not found" in gone["reason"]
    assert stats.set_index("file").loc[missing, "rows_read"] == 0


def test_parse_function_survives_a_pickle_round_trip(data):
    url = str(
        data / "vpr_import_sparse" / "ecotaxa_20160719B-163000ish-HealyVPR08-2016_d200_h18_roi.tsv"
    )
    parse = functools.partial(
        ecotaxa._parse_file,
        storage_options=None,
        encoding=None,
        check_images=True,
        features=DEFAULT_FEATURES,
    )
    clone = pickle.loads(pickle.dumps(parse))
    pd.testing.assert_frame_equal(clone(url).accepted, parse(url).accepted)


def test_reader_runs_on_a_process_cluster(data):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True) as cluster,
        distributed.Client(cluster),
    ):
        objects, quarantine, stats = read_ecotaxa(
            str(data / "zooscan_import" / "*" / "*.tsv")
        ).compute()
    assert len(objects) == 11
    assert len(quarantine) == 0
    assert stats["rows_read"].sum() == 11


def test_reader_reads_an_export_and_its_images_from_s3(s3, data):
    _endpoint_url, storage_options = s3
    folder = data / "export_with_hierarchy"
    fs = fsspec.filesystem("s3", **storage_options)
    for path in folder.rglob("*"):
        if path.is_file() and path.name != "7_0.jpg":  # one image left behind
            fs.put_file(str(path), s3.url(f"export/{path.relative_to(folder)}"))
    objects, quarantine, _ = _read(s3.url("export/*.tsv"), storage_options=storage_options)
    assert len(objects) == 10
    assert objects.loc["m106_mn01_n1_sml_409", "image"] == s3.url("export/images/t001/1_0.jpg")
    lost = quarantine[quarantine["column"] == "img_file_name"]
    assert lost["reason"].tolist() == [
        f"referenced image not found: {s3.url('export/images/detritus/7_0.jpg')}"
    ]
