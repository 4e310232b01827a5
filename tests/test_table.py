"""The shared tokenizer, number parsing and quarantine machinery of the readers."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InputFormatError
from pipeline.sources.table import (
    QUARANTINE_META,
    FileResult,
    RowChecker,
    read_many,
    to_float,
    tokenize,
)


def _parse_lat(url: str) -> FileResult:
    with open(url, "rb") as f:
        raw = tokenize(f.read(), url)
    lat, bad = to_float(raw.cells["lat"])
    check = RowChecker(raw)
    check.flag(bad, "lat", "not a number")
    check.flag(np.abs(lat) > 90, "lat", "latitude out of [-90, 90]")
    return check.result(pd.DataFrame({"lat": lat}))


META = pd.DataFrame({"lat": pd.Series([], dtype="float64")})


def test_tokenize_keeps_line_numbers_and_strips_crlf():
    raw = tokenize(b"a\tb\r\n\r\n1\t2\r\n3\t4\r\n", "f.tsv")
    assert raw.cells["_line"].tolist() == [3, 4]
    assert raw.cells["b"].tolist() == ["2", "4"]
    assert raw.rows_read == 2


def test_tokenize_quarantines_rows_with_wrong_field_count():
    raw = tokenize(b"a\tb\n1\t2\n1\t2\t3\n1\n", "f.tsv")
    reasons = [q["reason"] for q in raw.quarantine]
    assert [q["line"] for q in raw.quarantine] == [3, 4]
    assert reasons == [
        "expected 2 fields (as in the header), found 3",
        "expected 2 fields (as in the header), found 1",
    ]
    assert raw.quarantine[0]["raw"] == "1\t2\t3"


def test_tokenize_trims_empty_trailing_fields():
    raw = tokenize(b"a\tb\n1\t2\t\t\n", "f.tsv")
    assert raw.quarantine == []
    assert raw.cells["a"].tolist() == ["1"]


def test_tokenize_skips_ecotaxa_type_row_only_when_asked():
    data = b"object_id\tobject_lat\n[t]\t[f]\nx1\t10.5\n"
    assert tokenize(data, "f.tsv", skip_type_row=True).cells["object_id"].tolist() == ["x1"]
    assert tokenize(data, "f.tsv").cells["object_id"].tolist() == ["[t]", "x1"]


def test_tokenize_unquotes_quoted_fields():
    raw = tokenize(b'"object_id"\t"object_lat"\n"m1"\t"18,0"\n', "f.tsv")
    assert raw.header == ["object_id", "object_lat"]
    assert raw.cells.iloc[0].tolist()[:2] == ["m1", "18,0"]


def test_tokenize_auto_decodes_latin1_and_strict_utf8_quarantines_bad_lines():
    data = "lat\tname\n1\tµm\n".encode("latin-1")
    assert tokenize(data, "f.tsv").cells["name"].tolist() == ["µm"]
    strict = tokenize(data, "f.tsv", encoding="utf-8")
    assert strict.cells.empty
    assert strict.quarantine[0]["line"] == 2
    assert "undecodable bytes (utf-8)" in strict.quarantine[0]["reason"]
    assert strict.rows_read == 1


def test_tokenize_refuses_an_empty_file_with_its_name():
    with pytest.raises(InputFormatError, match=r"f\.tsv: the file is empty"):
        tokenize(b"\r\n\r\n", "f.tsv")


@pytest.mark.parametrize(
    ("text", "value", "bad"),
    [
        ("1.5", 1.5, False),
        ("-24,4166666666667", -24.4166666666667, False),
        ("", np.nan, False),
        ("999999", np.nan, False),
        ("9999", np.nan, False),
        ("abc", np.nan, True),
        ("1.2.3", np.nan, True),
    ],
    ids=["dot", "comma-decimal", "empty", "sentinel-999999", "sentinel-9999", "text", "two-dots"],
)
def test_to_float_reads_decimals_sentinels_and_flags_text(text, value, bad):
    numbers, is_bad = to_float(pd.Series([text]))
    np.testing.assert_equal(numbers[0], value)
    assert bool(is_bad[0]) is bad


def test_row_checker_keeps_first_reason_per_row():
    raw = tokenize(b"lat\nabc\n95\n10\n", "f.tsv")
    lat, bad = to_float(raw.cells["lat"])
    check = RowChecker(raw)
    check.flag(bad, "lat", "not a number")
    check.flag(np.isnan(lat) | (np.abs(lat) > 90), "lat", "latitude out of [-90, 90]")
    res = check.result(pd.DataFrame({"lat": lat}))
    assert res.accepted["lat"].tolist() == [10.0]
    assert res.quarantine[["line", "reason"]].values.tolist() == [
        [2, "not a number"],
        [3, "latitude out of [-90, 90]"],
    ]
    assert list(res.quarantine.columns) == list(QUARANTINE_META.columns)


def test_read_many_is_lazy_one_task_per_batch_and_quarantines_unreadable_files(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_bytes(b"lat\n10\n95\n")
    empty = tmp_path / "empty.tsv"
    empty.write_bytes(b"")
    missing = str(tmp_path / "missing.tsv")

    def parse(url):
        if url == missing:
            raise InputFormatError(f"{url}: file not found.")
        return _parse_lat(url)

    assert read_many([str(good), str(empty), missing], parse, META).accepted.npartitions == 1
    res = read_many([str(good), str(empty), missing], parse, META, files_per_task=2)
    assert res.accepted.npartitions == res.quarantine.npartitions == res.stats.npartitions == 2
    accepted, quarantine, stats = res.compute()
    assert accepted["lat"].tolist() == [10.0]
    assert sorted(quarantine["line"].tolist()) == [0, 0, 3]
    file_level = quarantine[quarantine["line"] == 0]
    assert set(file_level["file"]) == {str(empty), missing}
    assert (stats["rows_read"] == stats["rows_accepted"] + stats["rows_quarantined"]).all()
    assert stats["file"].tolist() == [str(good), str(empty), missing]  # one row per file, in order


def test_read_many_parser_survives_a_pickle_round_trip(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(b"lat\n1\n")
    parse = pickle.loads(pickle.dumps(functools.partial(_parse_lat)))
    assert read_many([str(path)], parse, META).accepted.compute()["lat"].tolist() == [1.0]


@given(
    rows=st.lists(
        st.one_of(
            st.floats(-120, 120, allow_nan=False).map(lambda v: f"{v:.3f}"),
            st.sampled_from(["", "abc", "999999", "1\t2", "12,5"]),
        ),
        max_size=40,
    )
)
def test_counts_reconcile_read_equals_accepted_plus_quarantined(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("h") / "f.tsv"
    path.write_bytes(("lat\n" + "".join(r + "\n" for r in rows)).encode())
    res = _parse_lat(str(path))
    n_data = sum(1 for r in rows if r.strip())
    assert res.rows_read == n_data
    assert res.rows_read == len(res.accepted) + len(res.quarantine)
