"""ZooScan end to end on the real files: EcoTaxa exports, ZooProcess headers, net targets.

Real data: ``shared/data/ecotaxar_tara_zooscan`` (Tara Polar Circle 2013 export, Tara Med
2014 import) and ``shared/data/zooprocesslib_apero2023_zooscan`` (APERO 2023 imports,
ZooProcess header tables, metadata, a .pid, measurement tables). No vignette ships with
them: the image-free path (reader -> objects -> morphology types -> targets) is tested.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError, InputFormatError
from pipeline.images.evaluation import stratified_holdout
from pipeline.images.gbt import GBTConfig, fit_gbt
from pipeline.images.morphology import (
    DEFAULT_FEATURES,
    MorphologyConfig,
    assign_types,
    fit_types,
)
from pipeline.sources.ecotaxa import read_ecotaxa
from pipeline.sources.zooprocess import (
    SAMPLE_COLUMNS,
    degrees_minutes,
    pid_objects,
    read_measurements,
    read_pid,
    read_zooscan_samples,
    read_zooscan_scans,
)
from pipeline.targets.nets import build_net_targets
from pipeline.targets.objects import ObjectTargetConfig

PID = "apero2023_tha_bioness_006_st20_n_n7_d2_2_sur_4_1_dat1.pid"
FIRST = "tara_oceans_polar_circle_2013_200_d_wp2_200_d1_1_239"
APERO_SAMPLE = "apero2023_tha_bioness_013_st46_d_n4"


def _read(urls, **options):
    accepted, quarantine, stats = read_ecotaxa(urls, **options).compute()
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    return accepted.set_index("object_id", drop=False), quarantine, stats


@pytest.fixture(scope="module")
def tara_dir(shared_data: Path) -> Path:
    return shared_data / "ecotaxar_tara_zooscan"


@pytest.fixture(scope="module")
def apero_dir(shared_data: Path) -> Path:
    return shared_data / "zooprocesslib_apero2023_zooscan"


@pytest.fixture(scope="module")
def tara(tara_dir):
    return _read(str(tara_dir / "export.tsv"))


@pytest.fixture(scope="module")
def tara_raw(tara_dir) -> pd.DataFrame:
    """The export as pandas reads it on its own: the independent reference."""
    return pd.read_csv(tara_dir / "export.tsv", sep="\t").set_index("object_id")


@pytest.fixture(scope="module")
def apero(apero_dir):
    return _read(str(apero_dir / "ecotaxa_*.tsv"))


@pytest.fixture(scope="module")
def pid(apero_dir):
    return read_pid(str(apero_dir / PID))


# --- the Tara Polar Circle export (quoted cells, object__area, dateline) -----------------


def test_tara_export_reads_99_validated_objects_of_20_samples_and_25_acquisitions(tara):
    objects, quarantine, stats = tara
    assert stats["rows_read"].tolist() == [99]
    assert len(objects) == 99
    assert len(quarantine) == 0
    assert objects["sample_id"].nunique() == 20
    assert objects["acq_id"].nunique() == 25
    assert objects["category"].value_counts().to_dict() == {
        "Calanidae": 43,
        "detritus": 31,
        "badfocus": 23,
        "fiber": 2,
    }
    assert (objects["status"] == "V").all()


def test_tara_quoted_text_cells_lose_their_quotes(tara):
    objects = tara[0]
    text = objects[["object_id", "sample_id", "acq_id", "category", "hierarchy"]]
    assert not text.apply(lambda c: c.str.contains('"')).any().any()
    assert objects.loc[FIRST, "hierarchy"].startswith("living>Eukaryota>")
    assert objects.loc[FIRST, "acq_id"] == "d1_tara_oceans_polar_circle_2013_200_d_wp2_200"
    fiber = objects[objects["category"] == "fiber"]["hierarchy"].unique().tolist()
    assert fiber == ["not-living>detritus>fiber"]


def test_tara_longitudes_across_the_dateline_keep_their_sign(tara, tara_raw):
    objects = tara[0]
    assert objects["lon"].min() == pytest.approx(-168.2828666666667)
    assert objects["lon"].max() == pytest.approx(174.8785)
    assert objects["lon"].between(-180, 180).all()
    assert objects["lat"].between(61.5, 79.1).all()
    np.testing.assert_allclose(objects["lon"], tara_raw.loc[objects.index, "object_lon"])
    np.testing.assert_allclose(objects["lat"], tara_raw.loc[objects.index, "object_lat"])
    by_sample = objects.groupby("sample_id")["lon"].unique()
    assert by_sample["tara_oceans_polar_circle_2013_193_d_wp2_200"].tolist() == [174.8785]
    assert by_sample["tara_oceans_polar_circle_2013_194_d_wp2_200_b"][0] == pytest.approx(
        -168.2828667
    )


def test_tara_hhmmss_times_keep_their_leading_zero(tara):
    objects = tara[0]
    assert objects.loc[FIRST, "time"] == pd.Timestamp("2013-09-27 22:17Z")
    early = objects[objects["sample_id"] == "tara_oceans_polar_circle_2013_183_d_wp2_200"]
    assert early["time"].unique().tolist() == [pd.Timestamp("2013-08-05 02:19Z")]
    assert objects["time"].min() == pd.Timestamp("2013-06-02 08:53Z")


def test_tara_volume_is_tot_vol_m3_over_sub_part_in_litres(tara, tara_raw):
    objects = tara[0]
    raw = tara_raw.loc[objects.index]
    np.testing.assert_allclose(
        objects["volume_l"], raw["sample_tot_vol"] * 1000.0 / raw["acq_sub_part"]
    )
    assert objects.loc[FIRST, "volume_l"] == 1312.5  # 21 m3 / 16
    assert objects["volume_l"].min() == pytest.approx(82.03125)  # 21 m3 / 256
    assert (objects["subsample_fraction"] == 1.0).all()


def test_tara_sizes_in_mm_come_from_the_area_not_the_zooprocess_7_esd(tara, tara_raw):
    objects = tara[0]
    raw = tara_raw.loc[objects.index]
    assert (objects["pixel_size_um"] == 10.6).all()  # process_particle_pixel_size_mm 0.0106
    first = objects.loc[FIRST]
    assert first["area"] == 55089.0
    assert first["area_mm2"] == pytest.approx(55089 * 0.0106**2)
    assert first["esd_um"] == pytest.approx(2 * np.sqrt(55089 / np.pi) * 10.6)
    assert first["esd_um"] == pytest.approx(2807.33, abs=0.01)
    # ZooProcess kept objects of at least process_particle_min_size_mm = 0.3 mm
    assert (raw["process_particle_min_size_mm"] == 0.3).all()
    assert objects["esd_um"].min() == pytest.approx(300.93, abs=0.01)
    assert objects.groupby("category")["esd_um"].median()["Calanidae"] > 2000  # Calanus, mm
    # the exported object_esd is 2 floor(area / pi) (no square root) on every row, kept as is
    np.testing.assert_array_equal(objects["esd"], 2 * np.floor(raw["object_area"] / np.pi))
    assert first["esd"] == 35070.0


def test_tara_object__area_is_the_pct_area_feature(tara, tara_raw):
    objects = tara[0]
    np.testing.assert_allclose(objects["pct_area"], tara_raw.loc[objects.index, "object__area"])
    assert objects.loc[FIRST, "pct_area"] == 0.08
    assert objects.loc[FIRST, "perim"] == 2205.92  # object_perim.


# --- images: the export ships without its vignettes -------------------------------------


def test_an_export_without_any_image_is_read_with_empty_images_by_default(tara):
    assert (tara[0]["image"] == "").all()


def test_check_images_true_refuses_every_row_of_an_export_without_images(tara_dir):
    objects, quarantine, _ = _read(str(tara_dir / "export.tsv"), check_images=True)
    assert len(objects) == 0
    assert len(quarantine) == 99
    assert quarantine["reason"].str.startswith("referenced image not found: ").all()
    assert (quarantine["column"] == "img_file_name").all()


def test_check_images_false_keeps_the_unchecked_image_urls(tara_dir):
    objects, quarantine, _ = _read(str(tara_dir / "export.tsv"), check_images=False)
    assert len(objects) == 99
    assert len(quarantine) == 0
    assert objects.loc[FIRST, "image"] == str(tara_dir / f"{FIRST}.jpg")


def test_check_images_auto_still_refuses_the_missing_image_of_an_export_with_images(
    shared_data, tmp_path
):
    export = tmp_path / "export"
    shutil.copytree(shared_data / "ecotaxa_back" / "export_with_hierarchy", export)
    (export / "images" / "detritus" / "6_0.jpg").unlink()
    objects, quarantine, _ = _read(str(export / "*.tsv"))
    assert len(objects) == 10  # 11 objects, one of them without its image
    missing = quarantine[quarantine["column"] == "img_file_name"]
    assert missing["reason"].tolist() == [
        f"referenced image not found: {export / 'images' / 'detritus' / '6_0.jpg'}"
    ]
    assert (objects["image"] != "").all()


@pytest.mark.parametrize("value", ["yes", 1, None], ids=["text", "int", "none"])
def test_check_images_refuses_an_unknown_value_naming_the_choices(tara_dir, value):
    with pytest.raises(ConfigError, match=r"check_images=.*expected True .* False .* 'auto'"):
        read_ecotaxa(str(tara_dir / "export.tsv"), check_images=value)


# --- the Tara Med import (type row, literal nan, extra images) ---------------------------


def test_tara_med_import_skips_the_type_row_and_reads_nan_text_as_empty(tara_dir):
    objects, quarantine, stats = _read(str(tara_dir / "import.tsv"))
    assert stats["rows_read"].tolist() == [98]
    assert len(objects) == 49
    assert (quarantine["column"] == "img_rank").all()
    assert len(quarantine) == 49
    assert objects["volume_l"].unique().tolist() == [749519.2]  # 749.5192 m3, sub_part 1
    assert objects["lat"].unique().tolist() == [43.6536]
    assert objects["lon"].unique().tolist() == pytest.approx([7.7716])
    assert objects["time"].unique().tolist() == [pd.Timestamp("2014-06-07 23:25Z")]
    assert objects["depth_max_m"].unique().tolist() == [0.16]
    assert (objects["status"] == "").all()
    assert (objects["category"] == "").all()


# --- the APERO imports (HH:MM:SS.mmm, ESD in pixels) -------------------------------------


def test_apero_import_reads_hh_mm_ss_mmm_times_volume_and_position(apero):
    objects, quarantine, _ = apero
    assert len(objects) == 2
    assert len(quarantine) == 0
    one = objects.loc[f"{APERO_SAMPLE}_d2_2_sur_2_1_1"]
    assert one["time"] == pd.Timestamp("2023-06-26 08:28:00Z")
    assert (one["lat"], one["lon"]) == (47.846, -15.437)
    assert (one["depth_min_m"], one["depth_max_m"]) == (312.0, 419.0)
    assert one["volume_l"] == 50875.0  # 203.5 m3 / acq_sub_part 4
    assert one["acq_id"] == f"d2_2_sur_2_{APERO_SAMPLE}"


def test_apero_esd_in_pixels_converts_to_um_with_the_pixel_size(apero):
    one = apero[0].loc[f"{APERO_SAMPLE}_d2_2_sur_2_1_1"]
    assert one["esd"] == pytest.approx(2 * np.sqrt(1333 / np.pi))  # 41.197 px
    assert one["pixel_size_um"] == 10.6
    assert one["esd_um"] == pytest.approx(41.197430904511165 * 10.6)
    assert one["area_mm2"] == pytest.approx(1333 * 0.0106**2)
    assert one["pct_area"] == 15.68


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("08:28:00.000", "2023-06-26 08:28:00"),
        ("8:28:00.500", "2023-06-26 08:28:00.5"),
        ("08:28", "2023-06-26 08:28:00"),
        ("082800", "2023-06-26 08:28:00"),
        ("828", "2023-06-26 08:28:00"),
    ],
    ids=["hh:mm:ss.mmm", "h:mm:ss.f", "hh:mm", "hhmmss", "hmm"],
)
def test_object_time_forms_of_zooscan_files(apero_dir, tmp_path, cell, expected):
    text = (apero_dir / "ecotaxa_2855_223.tsv").read_text()
    path = tmp_path / "ecotaxa_x.tsv"
    path.write_text(text.replace("\t08:28:00.000\t", f"\t{cell}\t", 1))
    objects, quarantine, _ = _read(str(path))
    assert len(quarantine) == 0
    assert objects["time"].iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_an_impossible_colon_time_is_quarantined_naming_both_forms(apero_dir, tmp_path):
    text = (apero_dir / "ecotaxa_2855_223.tsv").read_text()
    path = tmp_path / "ecotaxa_x.tsv"
    path.write_text(text.replace("\t08:28:00.000\t", "\t25:61:00\t", 1))
    objects, quarantine, _ = _read(str(path))
    assert len(objects) == 0
    assert quarantine[["line", "column"]].values.tolist() == [[3, "object_time"]]
    assert "expected HHMMSS or HH:MM:SS(.mmm)" in quarantine["reason"].iloc[0]


def test_literal_nan_is_a_missing_volume_and_an_empty_text(apero_dir, tmp_path):
    lines = (apero_dir / "ecotaxa_2855_223.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    cells = lines[2].split("\t")
    cells[header.index("sample_tot_vol")] = "nan"
    cells[header.index("acq_id")] = "nan"
    path = tmp_path / "ecotaxa_x.tsv"
    path.write_text("\n".join([lines[0], lines[1], "\t".join(cells)]) + "\n")
    objects, quarantine, _ = _read(str(path))
    assert len(quarantine) == 0
    assert np.isnan(objects["volume_l"].iloc[0])
    assert objects["acq_id"].iloc[0] == ""


# --- ZooProcess headers: degrees.minutes, west-positive longitudes -----------------------


def test_degrees_minutes_reads_dd_mm_and_refuses_60_minutes():
    np.testing.assert_allclose(
        degrees_minutes([47.5076, 15.2622, 51.4322, -0.3]), [47.846, 15.437, 51.72033333, -0.5]
    )
    with pytest.raises(ValueError, match=r"47\.65 has 65 minutes"):
        degrees_minutes([47.65])


def test_sample_header_table_gives_decimal_degrees_east(apero_dir):
    samples = read_zooscan_samples(str(apero_dir / "zooscan_sample_header_table.csv"))
    assert len(samples) == 54
    assert list(samples.columns[: len(SAMPLE_COLUMNS)]) == list(SAMPLE_COLUMNS)
    first = samples.iloc[0]
    assert first["sample_id"] == "apero2023_tha_bioness_sup2000_013_st46_d_n1"
    assert (first["lat"], first["lon"]) == pytest.approx((47.846, -15.437))
    assert (first["lat_end"], first["lon_end"]) == pytest.approx((47.819, -15.4918333))
    assert first["time"] == pd.Timestamp("2023-06-26 08:28Z")
    assert (first["depth_min_m"], first["depth_max_m"], first["volume_m3"]) == (793, 1024, 476)
    assert samples["bottom_depth_m"].isna().all()  # 99999
    assert samples["lon"].between(-19.42, -15.43).all()  # all west of Greenwich
    assert samples["cable_length"].unique().tolist() == ["9999"]  # other fields as text


def test_sample_header_agrees_with_the_ecotaxa_import_of_the_same_sample(apero_dir, apero):
    samples = read_zooscan_samples(str(apero_dir / "zooscan_sample_header_table.csv"))
    header = samples.set_index("sample_id").loc["apero2023_tha_bioness_sup2000_013_st46_d_n4"]
    obj = apero[0].loc[f"{APERO_SAMPLE}_d2_2_sur_2_1_1"]
    assert header["lat"] == pytest.approx(obj["lat"])
    assert header["lon"] == pytest.approx(obj["lon"])
    assert header["time"] == obj["time"]
    assert (header["depth_min_m"], header["depth_max_m"]) == (
        obj["depth_min_m"],
        obj["depth_max_m"],
    )
    assert header["volume_m3"] * 1000 / 4 == obj["volume_l"]


def test_sample_header_east_positive_option_keeps_the_sign(apero_dir):
    samples = read_zooscan_samples(
        str(apero_dir / "zooscan_sample_header_table.csv"), west_positive=False
    )
    assert samples["lon"].iloc[0] == pytest.approx(15.437)


@pytest.mark.parametrize(
    ("name", "sample_id", "lat", "lon", "time"),
    [
        (
            "metadata.txt",
            "apero2023_tha_bioness_sup2000_017_st66_d_n1",
            51.7203333,
            -18.518,
            "2023-07-04 05:03",
        ),
        (
            "apero2023_tha_bioness_017_st66_d_n1_d3_1_meta.txt",
            "apero2023_tha_bioness_017_st66_d_n1",
            51.8821667,
            -19.3598333,
            "2023-07-05 05:03",
        ),
        (PID, "apero2023_tha_bioness_006_st20_n_n7", 48.4306667, -22.4943333, "2023-06-14 22:51"),
    ],
    ids=["metadata", "meta_txt", "pid_sample_section"],
)
def test_key_value_headers_give_one_sample(apero_dir, name, sample_id, lat, lon, time):
    samples = read_zooscan_samples(str(apero_dir / name))
    assert len(samples) == 1
    row = samples.iloc[0]
    assert row["sample_id"] == sample_id
    assert (row["lat"], row["lon"]) == pytest.approx((lat, lon))
    assert row["time"] == pd.Timestamp(time, tz="UTC")


def test_scan_header_table_reads_fractions_and_motoda_parts(apero_dir):
    scans = read_zooscan_scans(str(apero_dir / "zooscan_scan_header_table.csv"))
    assert len(scans) == 10
    assert scans["sub_part"].tolist() == [2, 2, 1, 1, 1, 8, 4, 4, 4, 1]
    assert scans["frac_max_um"].isna().all()  # 999999: no upper sieve
    assert scans["frac_min_um"].tolist()[2:4] == [10000.0, 2000.0]


def test_a_header_line_with_a_missing_field_names_the_file_and_line(apero_dir, tmp_path):
    lines = (apero_dir / "zooscan_sample_header_table.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(";", 1)[0]
    path = tmp_path / "zooscan_sample_header_table.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(InputFormatError, match=rf"{path}:4: 30 fields, the header has 31"):
        read_zooscan_samples(str(path))


def test_a_position_that_is_not_degrees_minutes_is_refused(apero_dir, tmp_path):
    text = (apero_dir / "metadata.txt").read_text().replace("51.4322000", "51.7322000")
    path = tmp_path / "metadata.txt"
    path.write_text(text)
    with pytest.raises(
        InputFormatError, match=r"metadata.txt:7: column 'latitude': 51.7322 has 73.22 minutes"
    ):
        read_zooscan_samples(str(path))


# --- .pid and measurement tables -------------------------------------------------------


def test_pid_file_sections_and_439_measured_objects(pid):
    assert pid.value("Particules_Process", "Analysed_Objects") == "439"
    assert len(pid.data) == 439
    assert pid.data["item"].tolist() == list(range(1, 440))
    assert pid.data.loc[0, ["area", "perim", "pct_area"]].tolist() == [1031.0, 384.22, 0.1]
    assert pid.value("Subsample", "SubPart") == "2"
    assert len(pid.sections) == 18


def test_pid_objects_form_the_canonical_objects_table(pid, apero):
    objects = pid_objects(pid)
    assert list(objects.columns) == list(apero[0].columns)
    assert objects.dtypes.to_dict() == apero[0].dtypes.to_dict()
    assert objects["object_id"].iloc[0] == "apero2023_tha_bioness_006_st20_n_n7_d2_2_sur_4_1_1"
    assert objects["acq_id"].iloc[0] == "d2_2_sur_4_apero2023_tha_bioness_006_st20_n_n7"
    assert objects["lat"].iloc[0] == pytest.approx(48.4306667)
    assert objects["lon"].iloc[0] == pytest.approx(-22.4943333)
    assert objects["volume_l"].unique().tolist() == [62250.0]  # 124.5 m3 / SubPart 2
    assert (objects["pixel_size_um"] == 10.6).all()
    # ZooProcess kept objects of at least MinSize = 0.3 mm (Min_Area 631 px)
    assert objects["esd_um"].min() == pytest.approx(2 * np.sqrt(631 / np.pi) * 10.6)
    assert objects["esd_um"].min() >= 300.0
    assert (objects["image"] == "").all()
    assert (objects["category"] == "").all()


def test_measurements_agree_with_the_ecotaxa_import_of_the_same_objects(apero_dir, apero):
    for bx, by, item in ((2855, 223, 1), (13892, 13563, 230)):
        meas = read_measurements(str(apero_dir / f"meas_{bx}_{by}.csv")).iloc[0]
        obj = apero[0].loc[f"{APERO_SAMPLE}_d2_2_sur_2_1_{item}"]
        assert meas["item"] == item
        for name in ("area", "area_exc", "bx", "by", "width", "height", "intden"):
            assert meas[name] == obj[name], name
        for name in ("mean", "perim", "major", "minor", "pct_area", "symetrieh"):
            assert meas[name] == pytest.approx(obj[name], abs=0.05), name  # rounded
        assert (meas["bx"], meas["by"]) == (bx, by)


# --- targets: concentrations per net sample --------------------------------------------


def test_net_targets_per_sample_follow_ecotaxas_formula(tara, tara_raw):
    res = build_net_targets(tara[0])
    targets = res.targets.set_index("id")
    assert len(targets) == 20
    assert len(res.skipped) == 0
    assert res.targets_columns == [
        "conc_Calanidae_per_m3",
        "conc_badfocus_per_m3",
        "conc_detritus_per_m3",
        "conc_fiber_per_m3",
    ]
    assert res.counts[[f"count_{c}" for c in res.categories]].sum().tolist() == [43, 23, 31, 2]
    # EcoTaxa: sum over objects of acq_sub_part / sample_tot_vol (individuals per m3)
    raw = tara_raw[["sample_id", "object_annotation_category"]].assign(
        w=tara_raw["acq_sub_part"] / tara_raw["sample_tot_vol"]
    )
    expected = raw.pivot_table(
        index="sample_id", columns="object_annotation_category", values="w", aggfunc="sum"
    ).fillna(0.0)
    for category in res.categories:
        np.testing.assert_allclose(
            targets[f"conc_{category}_per_m3"], expected.loc[targets.index, category]
        )
    s200 = targets.loc["tara_oceans_polar_circle_2013_200_d_wp2_200"]
    assert s200["conc_Calanidae_per_m3"] == pytest.approx(4 * 16 / 21)
    assert s200["layer"] == "0-114m"
    assert s200["time"] == pd.Timestamp("2013-09-27 22:17Z")


def test_net_targets_place_samples_on_both_sides_of_the_dateline(tara):
    targets = build_net_targets(tara[0]).targets.set_index("id")
    assert targets.loc["tara_oceans_polar_circle_2013_193_d_wp2_200", "lon"] == pytest.approx(
        174.8785
    )
    assert targets.loc["tara_oceans_polar_circle_2013_194_d_wp2_200_b", "lon"] == pytest.approx(
        -168.2828667
    )
    assert targets["lon"].between(-180, 180).all()


def test_a_sample_straddling_the_dateline_is_placed_near_180_not_0(tara):
    objects = tara[0].reset_index(drop=True)
    one = objects[objects["sample_id"] == "tara_oceans_polar_circle_2013_193_d_wp2_200"].copy()
    one["lon"] = [179.95, -179.95, 179.95, -179.95]
    lon = build_net_targets(one).targets["lon"].iloc[0]
    assert abs(lon) == pytest.approx(180.0)


def test_layer_share_puts_tows_in_the_run_layers_they_cover(tara):
    res = build_net_targets(tara[0], layer_share=0.8)
    targets = res.targets.set_index("id")
    assert targets["layer"].value_counts().to_dict() == {"0-100m": 19, "0-33m": 1}
    tow = targets.loc["tara_oceans_polar_circle_2013_200_d_wp2_200"]
    assert (tow["layer"], tow["layer_top_m"], tow["layer_bottom_m"]) == ("0-100m", 0.0, 100.0)
    assert (tow["depth_min_m"], tow["depth_max_m"]) == (0.0, 114.0)  # what the net sampled
    short = targets.loc["tara_oceans_polar_circle_2013_193_d_wp2_200"]
    assert (short["layer"], short["layer_bottom_m"]) == ("0-33m", 33.0)
    default = build_net_targets(tara[0]).targets.set_index("id")
    assert default.loc["tara_oceans_polar_circle_2013_200_d_wp2_200", "layer"] == "0-114m"
    np.testing.assert_allclose(
        targets[res.targets_columns], default.loc[targets.index, res.targets_columns]
    )


@pytest.mark.parametrize("share", [0.0, 1.5], ids=["zero", "above_one"])
def test_layer_share_outside_0_1_is_refused_naming_the_fix(tara, share):
    with pytest.raises(ConfigError, match=r"layer_share=.*expected a share in \(0, 1\]"):
        build_net_targets(tara[0], layer_share=share)


def test_net_targets_are_the_same_lazily(tara_dir, tara):
    lazy = build_net_targets(read_ecotaxa(str(tara_dir / "export.tsv")).accepted)
    eager = build_net_targets(tara[0].reset_index(drop=True))
    pd.testing.assert_frame_equal(
        lazy.targets.compute().reset_index(drop=True), eager.targets, check_dtype=False
    )


def test_net_targets_skip_samples_whose_volume_is_a_missing_code(shared_data):
    folder = shared_data / "ecotaxa_back" / "zooscan_import_tot_vol"
    objects, _, _ = _read(str(folder / "*" / "*.tsv"), check_images=False)
    res = build_net_targets(objects, config=ObjectTargetConfig(statuses=("V", "P")))
    assert len(res.targets) == 0
    assert res.skipped["reason"].unique().tolist() == [
        "no volume for counted objects (sample_tot_vol missing or not positive)"
    ]
    assert sorted(res.skipped["id"]) == ["m106_mn01_n1_sml", "m106_mn01_n2_sml"]


def test_pid_measurements_give_morphological_types_and_their_concentrations(pid):
    objects = pid_objects(pid)
    config = MorphologyConfig(n_types=3, hierarchy_prefix=None, statuses=None)
    model = fit_types(objects, config=config)
    assert "area" not in model.features
    assert "mean" in model.features
    assert sum(model.counts) == 439
    labels = assign_types(objects, model)
    typed = objects.assign(category=labels["label"].to_numpy(), status="P")
    res = build_net_targets(typed)
    row = res.targets.iloc[0]
    assert row["layer"] == "55-106m"
    counts = res.counts[[f"count_{c}" for c in res.categories]].iloc[0]
    assert counts.sum() == 439
    assert counts.tolist() == list(model.counts)
    # each object stands for SubPart / Vol = 2 / 124.5 individuals per m3
    np.testing.assert_allclose(
        row[res.targets_columns].to_numpy(dtype=float), counts.to_numpy() * 2 / 124.5
    )


def test_the_gbt_baseline_learns_taxa_from_the_exported_features_without_images(tara):
    objects = tara[0].reset_index(drop=True)
    objects = objects[objects["category"] != "fiber"].reset_index(drop=True)  # 2 rows only
    features = [f for f in DEFAULT_FEATURES if objects[f].notna().all()] + ["esd_um"]
    assert len(features) == 18
    train, test = stratified_holdout(objects["category"].tolist(), test_fraction=0.3, seed=0)
    clf = fit_gbt(
        objects.loc[train, features],
        objects.loc[train, "category"].tolist(),
        config=GBTConfig(n_jobs=1),
    )
    labels, _ = clf.predict(objects.loc[test, features])
    accuracy = float(np.mean(labels == objects.loc[test, "category"].to_numpy()))
    majority = objects.loc[test, "category"].value_counts(normalize=True).max()
    assert len(test) == 30
    assert majority == pytest.approx(13 / 30)
    assert accuracy >= majority + 0.2  # measured: 23/30 = 0.77 against 0.43 (xgboost 3.2)
