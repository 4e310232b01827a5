"""EcoPart reader on the real sample exports (ecopart_qa and the BATS UVP5 raw export)."""

from __future__ import annotations

import functools
import gzip
import pickle
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from pipeline import sizeclasses
from pipeline.errors import InputFormatError
from pipeline.sources.ecopart import read_ecopart
from pipeline.sources.ecopart_export import _parse_par_export, particles_meta, read_par_export
from pipeline.sources.ecopart_raw import _parse_par_raw, read_par_raw
from pipeline.sources.ecopart_summary import _read_summary, read_metadata_summary

DET = "ecopart_qa/tsv_det_multi"
RED = "ecopart_qa/tsv_reduit_multi"
AGG = "ecopart_qa/tsvagg_det_multi"
RAW = "ecopart_qa/raw_multi"
BATS = "ecotaxatools_bats361_uvp5"
DET_SUMMARY = "export_detailed_20210201_11_31_Export_metadata_summary.tsv"
RAW_SUMMARY = "export_raw_20210201_14_15_Export_metadata_summary.tsv"
BATS_SUMMARY = "export_raw_20220810_16_31_Export_metadata_summary.tsv"
#: The three casts of the sample's README (ctd5, ctd14, ctd26); the folder also holds
#: ctd1 (shallow), ctd4 (to 3,499 m) and ctd18 (header and one row).
BATS_CASTS = (
    "20190714203848_bats361_ctd5",
    "20190716153955_bats361_ctd14",
    "20190719003937_bats361_ctd26",
)


def _bats_par(shared_data) -> list[str]:
    return [str(shared_data / BATS / f"{c}_PAR_raw_20220810_16_31.tsv") for c in BATS_CASTS]


def _check_reconciles(stats: pd.DataFrame) -> None:
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()


@pytest.fixture(scope="module")
def detailed(shared_data):
    return read_par_export(str(shared_data / DET / "*_PAR_*.tsv")).compute()


@pytest.fixture(scope="module")
def aggregated(shared_data):
    return read_par_export(str(shared_data / AGG / "*_PAR_Aggregated.tsv")).compute()


@pytest.fixture(scope="module")
def raw_qa(shared_data):
    return read_par_raw(str(shared_data / RAW / "*_PAR_raw_*.tsv")).compute()


@pytest.fixture(scope="module")
def bats(shared_data):
    return read_par_raw(_bats_par(shared_data)).compute()


# ------------------------------------------------------------------ metadata summaries


def test_export_summary_reads_positions_times_and_calibration(shared_data):
    res = read_metadata_summary(str(shared_data / DET / DET_SUMMARY))
    table = res.accepted.set_index("profile_id")
    assert len(table) == 15
    assert len(res.quarantine) == 0
    assert res.rows_read == 15
    bru = table.loc["brusample01"]
    assert (bru["lat"], bru["lon"]) == (44.0905, 7.576)  # header "Latitude " (trailing space)
    assert bru["time"] == pd.Timestamp("2019-11-21 01:00:00", tz="UTC")
    assert (bru["instrument"], bru["aa"], bru["exp"], bru["pixel_size_mm"]) == (
        "uvp5",
        0.0002,
        1.02,
        0.088,
    )
    assert bru["particle_file"] == "export_detailed_20210201_11_31_PAR_brusample01.tsv"
    assert table.loc["lambdasample01", "instrument"] == "uvp6"
    assert table.loc["lambdasample01", "pixel_size_mm"] == pytest.approx(0.073)  # 73 µm/px
    assert table["volimage_l"].isna().all()  # only raw summaries carry it
    assert str(res.accepted["time"].dtype) == "datetime64[ns, UTC]"


def test_raw_summary_unquotes_ids_and_reads_volume_and_organisation(shared_data):
    res = read_metadata_summary(str(shared_data / RAW / RAW_SUMMARY))
    table = res.accepted.set_index("profile_id")
    assert len(table) == 15
    assert len(res.quarantine) == 0
    assert "brusample01" in table.index  # written "brusample01" with quotes
    assert (table["volimage_l"] == 1.13).all()
    assert table.loc["uvpappsampleT1", "organized_by_depth"] == False  # noqa: E712
    assert table.loc["uvpappsample01", "organized_by_depth"] == True  # noqa: E712
    assert table.loc["lambdasample01", "depth_offset_m"] == 1.0
    assert np.isnan(table.loc["brusample01", "depth_offset_m"])
    assert table.loc["uvpappsample01", "instrument"] == "uvp6"


def test_bats_summary_places_casts_near_bermuda_in_july_2019(shared_data):
    res = read_metadata_summary(str(shared_data / BATS / BATS_SUMMARY))
    table = res.accepted
    # 26 lines: the header and 25 casts.
    assert len(table) == 25
    assert len(res.quarantine) == 0
    assert table["lat"].between(31.0, 32.4).all()
    assert table["lon"].between(-64.6, -63.2).all()
    assert table["time"].dt.year.eq(2019).all()
    assert table["time"].dt.month.eq(7).all()
    ctd5 = table.set_index("profile_id").loc["bats361_ctd5"]
    assert (ctd5["aa"], ctd5["exp"], ctd5["volimage_l"], ctd5["pixel_size_mm"]) == (
        0.00279,
        1.2236,
        1.1,
        0.092,
    )
    assert ctd5["depth_offset_m"] == 1.2
    assert ctd5["instrument"] == "uvp5"
    assert ctd5["time"] == pd.Timestamp("2019-07-14 20:38:48", tz="UTC")


# ----------------------------------------------------------------- detailed / reduced


def test_detailed_export_counts_are_concentration_times_volume(detailed):
    acc, _quar, stats = detailed
    assert list(acc.columns) == list(particles_meta("detailed").columns)
    assert acc.dtypes.equals(particles_meta("detailed").dtypes)
    bru = acc[acc["profile_id"] == "brusample01"].reset_index(drop=True)
    assert len(bru) == 300
    assert bru["depth_m"].tolist() == [2.5 + 5 * k for k in range(300)]
    assert (bru["volume_l"] == 1.13).all()
    first = bru.iloc[0]
    # 176.991150 # l-1 x 1.13 L = 200 particles, etc.
    assert (first["n_50p8_64um"], first["n_64_80p6um"], first["n_80p6_102um"]) == (200, 10, 20)
    assert (first["n_128_161um"], first["n_161_203um"]) == (33, 57)
    counts = acc.iloc[:, 7:].to_numpy()
    assert np.array_equal(counts, np.round(counts))  # rounded to whole particles
    assert (bru["lat"] == 44.0905).all()
    assert (bru["lon"] == 7.576).all()
    assert (bru["time"] == pd.Timestamp("2019-11-21 01:00", tz="UTC")).all()
    _check_reconciles(stats)


def test_time_organised_sample_is_quarantined_with_its_reason_not_raised(detailed):
    acc, quar, stats = detailed
    assert set(acc["profile_id"]) == {"brusample01", "uvpappsample01"}
    t1 = quar[quar["file"].str.endswith("PAR_uvpappsampleT1.tsv")]
    assert len(t1) == 6
    assert t1["line"].tolist() == [2, 3, 4, 5, 6, 7]
    assert t1["reason"].str.contains("time-organised sample").all()
    assert t1["column"].eq("Depth [m]").all()
    assert t1["raw"].str.startswith("uvpappsampleT1").all()
    _check_reconciles(stats)


def test_aggregated_export_gives_the_per_profile_files_rows(detailed, aggregated):
    acc, quar, stats = aggregated
    assert len(acc) == 9 * 300
    assert len(quar) == 6 * 6
    assert acc["profile_id"].nunique() == 9
    _check_reconciles(stats)
    for pid in ("brusample01", "uvpappsample01"):
        pd.testing.assert_frame_equal(
            acc[acc["profile_id"] == pid].reset_index(drop=True),
            detailed[0][detailed[0]["profile_id"] == pid].reset_index(drop=True),
        )


def test_reduced_export_is_detected_and_its_classes_sum_the_detailed_ones(shared_data, detailed):
    acc, quar, _stats = read_par_export(str(shared_data / RED / "*_PAR_*.tsv")).compute()
    assert list(acc.columns) == list(particles_meta("reduced").columns)
    assert len(acc) == 300
    assert len(quar) == 0
    det = detailed[0][detailed[0]["profile_id"] == "uvpappsample01"].reset_index(drop=True)
    # reduced 64-128 µm = detailed 64-80.6 + 80.6-102 + 102-128 µm
    assert np.array_equal(
        acc["n_64_128um"].to_numpy(),
        (det["n_64_80p6um"] + det["n_80p6_102um"] + det["n_102_128um"]).to_numpy(),
    )
    assert acc.iloc[:, 7:].sum().sum() == det.iloc[:, 7:].sum().sum()


# --------------------------------------------------------------------------- raw


@pytest.mark.parametrize("profile", ["brusample01", "uvpappsample01"], ids=["uvp5", "uvp6"])
def test_raw_export_gives_the_same_table_as_the_detailed_export(raw_qa, detailed, profile):
    raw = raw_qa[0][raw_qa[0]["profile_id"] == profile].reset_index(drop=True)
    det = detailed[0][detailed[0]["profile_id"] == profile].reset_index(drop=True)
    # Same bins (raw depth 2 m -> bin 2.5 m: the depth offset is not added twice),
    # same volumes, same counts per class; aa used as exported (UVP6 included).
    pd.testing.assert_frame_equal(raw, det, check_exact=False, rtol=1e-12)
    assert raw["depth_m"].iloc[0] == 2.5
    _check_reconciles(raw_qa[2])


def test_raw_export_binned_into_reduced_classes_matches_the_reduced_export(shared_data):
    raw = read_par_raw(
        str(shared_data / RAW / "20191121010000_uvpappsample01_PAR_raw_20210201_14_15.tsv"),
        size_classes="reduced",
    ).accepted.compute()
    red = read_par_export(str(shared_data / RED / "*_PAR_*.tsv")).accepted.compute()
    pd.testing.assert_frame_equal(raw, red, check_exact=False, rtol=1e-12)


def test_raw_stats_count_lines_while_rows_are_bins(raw_qa):
    acc, _quar, stats = raw_qa
    assert stats["rows_read"].tolist() == [1421, 1421]
    assert stats["rows_accepted"].tolist() == [1421, 1421]
    assert len(acc) == 600


def test_bats_raw_casts_have_plausible_volumes_positions_and_concentrations(bats):
    acc, quar, stats = bats
    assert len(quar) == 0
    assert stats["rows_read"].tolist() == [15830, 14993, 16820]
    _check_reconciles(stats)
    assert set(acc["profile_id"]) == {"bats361_ctd5", "bats361_ctd14", "bats361_ctd26"}
    assert acc.groupby("profile_id").size().to_dict() == {
        "bats361_ctd14": 93,
        "bats361_ctd26": 102,
        "bats361_ctd5": 104,
    }
    assert acc["lat"].between(31.6, 32.2).all()
    assert acc["lon"].between(-64.6, -64.1).all()
    assert (acc["time"].dt.strftime("%Y-%m") == "2019-07").all()
    # 5 m bins of ~20-50 images of 1.1 L: median 134-139 L per cast, 90 % of bins in
    # 95-290 L; the slow bottom turn of ctd5 reaches 564 L.
    vol = acc.groupby("profile_id")["volume_l"]
    assert vol.median().between(130, 145).all()
    assert vol.quantile(0.05).min() > 95
    assert vol.quantile(0.95).max() < 290
    assert acc["volume_l"].between(40, 600).all()
    assert np.allclose(acc["volume_l"] / 1.1, np.round(acc["volume_l"] / 1.1))
    assert acc["depth_m"].min() == 2.5
    assert acc["depth_m"].max() == 517.5
    counts = acc.iloc[:, 7:]
    assert counts.loc[:, :"n_64_80p6um"].sum().sum() == 0  # smallest area 2 px = 91 µm
    mip = acc[["n_102_128um", "n_128_161um", "n_161_203um"]].sum(axis=1) / acc["volume_l"]
    assert 15 < mip.median() < 30  # particles 0.1-0.2 mm per litre
    assert counts.sum().sum() == 3832294


# ------------------------------------------------------------------- distribution


def test_parsers_survive_a_pickle_round_trip(shared_data):
    summary, bad = _read_summary(str(shared_data / DET / DET_SUMMARY))
    parse = functools.partial(
        _parse_par_export,
        summary=summary.accepted.set_index("profile_id", drop=False),
        bad_profiles=bad,
        summary_url="s.tsv",
        size_classes="detailed",
    )
    again = pickle.loads(pickle.dumps(parse))
    res = again(str(shared_data / DET / "export_detailed_20210201_11_31_PAR_brusample01.tsv"))
    assert len(res.accepted) == 300
    raw_summary, _ = _read_summary(str(shared_data / RAW / RAW_SUMMARY))
    parse_raw = pickle.loads(
        pickle.dumps(
            functools.partial(
                _parse_par_raw,
                summary=raw_summary.accepted.set_index("profile_id", drop=False),
                bad_profiles={},
                summary_url="s.tsv",
                size_classes="detailed",
            )
        )
    )
    res = parse_raw(
        str(shared_data / RAW / "20191121010000_brusample01_PAR_raw_20210201_14_15.tsv")
    )
    assert len(res.accepted) == 300
    assert res.stats["rows_accepted"].item() == 1421


def test_readers_are_lazy_one_partition_per_batch_of_files(shared_data):
    res = read_par_export(str(shared_data / DET / "*_PAR_*.tsv"))
    assert res.accepted.npartitions == res.stats.npartitions == 1  # 3 files, one batch
    assert len(res.stats.compute()) == 3


# ----------------------------------------------------------------------- dispatch


def test_read_ecopart_dispatches_detailed_and_raw_files_by_name(shared_data):
    acc, quar, stats = read_ecopart(
        [
            str(shared_data / DET / "export_detailed_20210201_11_31_PAR_brusample01.tsv"),
            str(shared_data / RAW / "20191121010000_brusample01_PAR_raw_20210201_14_15.tsv"),
        ]
    ).compute()
    assert len(acc) == 600
    assert len(stats) == 2
    assert len(quar) == 0
    a, b = acc.iloc[:300].reset_index(drop=True), acc.iloc[300:].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)


@pytest.mark.parametrize(
    ("folder", "name", "what"),
    [
        (DET, "export_detailed_20210201_11_31_ZOO_brusample01.tsv", "ZOO"),
        (RAW, "20191121020000_brusample02_CTD_raw_20210201_14_15.tsv", "CTD"),
        (DET, DET_SUMMARY, "metadata summary"),
        ("ecopart_qa/odv_det_multi", "export_detailed_20210201_11_23_PAR_odv.txt", "ODV"),
        (RAW, "lambdasample01_rawfiles.zip", "not an EcoPart PAR export"),
    ],
    ids=["zoo", "ctd", "summary", "odv", "zip-of-lpm"],
)
def test_read_ecopart_refuses_other_kinds_naming_file_and_supported(
    shared_data, folder, name, what
):
    url = str(shared_data / folder / name)
    with pytest.raises(InputFormatError, match=rf"{name}: .*{what}.*_PAR_raw_\*\.tsv"):
        read_ecopart(url)


def test_read_ecopart_refuses_unknown_options(shared_data):
    with pytest.raises(InputFormatError, match=r"unknown option\(s\) \['bins'\]; valid"):
        read_ecopart(str(shared_data / DET / "*_PAR_*.tsv"), bins=5)


# ------------------------------------------------------------ archives and discovery


def test_reads_inside_a_zip_archive_and_finds_the_summary_there(shared_data, tmp_path):
    archive = tmp_path / "export.zip"
    par = "export_detailed_20210201_11_31_PAR_brusample01.tsv"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(shared_data / DET / par, par)
        z.write(shared_data / DET / DET_SUMMARY, DET_SUMMARY)
    acc, _quar, _stats = read_ecopart(f"zip://{par}::{archive}").compute()
    assert len(acc) == 300
    assert acc["lat"].eq(44.0905).all()


def test_reads_gzipped_files_with_the_summary_beside_them(shared_data, tmp_path):
    par = "20191121010000_brusample01_PAR_raw_20210201_14_15.tsv"
    with open(shared_data / RAW / par, "rb") as src, gzip.open(tmp_path / f"{par}.gz", "wb") as d:
        shutil.copyfileobj(src, d)
    shutil.copy(shared_data / RAW / RAW_SUMMARY, tmp_path / RAW_SUMMARY)
    acc, _quar, _stats = read_ecopart(str(tmp_path / f"{par}.gz")).compute()
    assert len(acc) == 300
    assert acc["n_50p8_64um"].iloc[0] == 200


def test_missing_summary_is_a_clear_error_with_the_fix(shared_data, tmp_path):
    par = "export_detailed_20210201_11_31_PAR_brusample01.tsv"
    shutil.copy(shared_data / DET / par, tmp_path / par)
    with pytest.raises(
        InputFormatError, match=r"no '\*_Export_metadata_summary.tsv' in its folder.*metadata_url="
    ):
        read_par_export(str(tmp_path / par))


def test_explicit_metadata_url_is_used(shared_data, tmp_path):
    par = "export_detailed_20210201_11_31_PAR_brusample01.tsv"
    shutil.copy(shared_data / DET / par, tmp_path / par)
    res = read_par_export(str(tmp_path / par), metadata_url=str(shared_data / DET / DET_SUMMARY))
    assert len(res.accepted.compute()) == 300


def test_a_reduced_file_among_detailed_ones_is_quarantined_whole(shared_data):
    acc, quar, _stats = read_par_export(
        [
            str(shared_data / DET / "export_detailed_20210201_11_31_PAR_brusample01.tsv"),
            str(shared_data / RED / "export_reduced_20210201_09_41_PAR_uvpappsample01.tsv"),
        ]
    ).compute()
    assert len(acc) == 300
    (reason,) = quar["reason"].tolist()
    assert "reduced size classes" in reason
    assert "size_classes='reduced'" in reason
    assert quar["line"].tolist() == [0]


def test_particles_carry_the_cruise_of_the_real_bats_export(shared_data):
    acc = read_ecopart(str(shared_data / BATS)).accepted.compute()
    assert acc["profile_id"].nunique() == 6
    assert set(acc["cruise"]) == {"sn209_bats_361"}  # the raw summary's cruise column


@pytest.mark.parametrize("folder", [DET, AGG, RAW], ids=["detailed", "aggregated", "raw"])
def test_particles_without_a_cruise_in_the_summary_take_the_ecopart_project(shared_data, folder):
    # the QA summaries leave Cruise / cruise empty: the project (Project / ptitle) stands for it
    acc = read_ecopart(str(shared_data / folder)).accepted.compute()
    by_profile = acc.groupby("profile_id")["cruise"].unique().map(list).to_dict()
    assert by_profile["brusample01"] == ["EcoPart TU Project UVP 5 pour load BRU"]
    assert by_profile["uvpappsample01"] == ["EcoPart TU Project UVP 6 from UVP APP"]
    assert all(len(v) == 1 and v[0] for v in by_profile.values())


def test_detailed_and_raw_readers_give_the_same_cruise_to_a_profile(detailed, raw_qa):
    det = detailed[0].groupby("profile_id")["cruise"].first()
    raw = raw_qa[0].groupby("profile_id")["cruise"].first()
    common = det.index.intersection(raw.index)
    assert len(common) >= 2
    assert (det[common] == raw[common]).all()


def test_class_edges_of_the_header_map_to_the_canonical_columns():
    header = [
        sizeclasses.export_label(lo, hi) for lo, hi in zip(*_edge_pairs("detailed"), strict=True)
    ]
    assert len(header) == 45
    assert header[20] == "LPM (102-128 µm) [# l-1]"
    assert particles_meta("detailed").columns[7 + 20] == "n_102_128um"


def _edge_pairs(kind):
    edges = sizeclasses.edges_mm(kind)
    return edges[:-1], edges[1:]


def test_raw_reader_runs_on_a_process_cluster(shared_data):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        res = read_par_raw(_bats_par(shared_data))
        acc, quar, stats = client.compute([res.accepted, res.quarantine, res.stats], sync=True)
    assert len(acc) == 299
    assert len(quar) == 0
    assert stats["rows_read"].sum() == 15830 + 14993 + 16820
