"""The one URL opener: local, .gz, zip:// and glob expansion; safe relative joins; the store."""

from __future__ import annotations

import gzip
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import InputFormatError
from pipeline.io import expand_urls, join_under, parent_url, read_bytes, url_exists
from pipeline.store import OutputStore, as_store, file_in_store


@pytest.fixture
def files(tmp_path):
    plain = tmp_path / "a.tsv"
    plain.write_bytes(b"depth\n2.5\n")
    gz = tmp_path / "a.tsv.gz"
    gz.write_bytes(gzip.compress(b"depth\n2.5\n"))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("sub/a.tsv", b"depth\n2.5\n")
    return tmp_path


def test_read_bytes_reads_plain_gzip_and_zip_member_alike(files):
    urls = [
        str(files / "a.tsv"),
        str(files / "a.tsv.gz"),
        f"zip://sub/a.tsv::{files / 'a.zip'}",
    ]
    assert {read_bytes(u) for u in urls} == {b"depth\n2.5\n"}


def test_read_bytes_names_a_missing_file(tmp_path):
    with pytest.raises(InputFormatError, match=r"nothere\.tsv: file not found"):
        read_bytes(str(tmp_path / "nothere.tsv"))


def test_read_bytes_names_a_truncated_gzip(tmp_path):
    bad = tmp_path / "cut.tsv.gz"
    bad.write_bytes(gzip.compress(b"depth\n" * 1000)[:40])
    with pytest.raises(InputFormatError, match=r"cut\.tsv\.gz: cannot read the file"):
        read_bytes(str(bad))


def test_expand_urls_sorts_glob_matches_and_refuses_empty_patterns(files):
    (files / "b.tsv").write_bytes(b"x\n")
    assert [p.rsplit("/", 1)[-1] for p in expand_urls(str(files / "*.tsv"))] == ["a.tsv", "b.tsv"]
    with pytest.raises(InputFormatError, match="matches no file"):
        expand_urls(str(files / "*.nothing"))


def test_url_exists_is_true_only_for_files(files):
    assert url_exists(str(files / "a.tsv"))
    assert not url_exists(str(files))
    assert not url_exists(str(files / "zzz"))


@pytest.mark.parametrize(
    "relative",
    ["../x.png", "a/../../x.png", "/etc/passwd", "C:\\x.png", "s3://other/x.png", "..", ""],
    ids=["parent", "climb", "absolute", "windows-drive", "protocol", "dotdot", "empty"],
)
def test_join_under_refuses_paths_escaping_the_root(relative):
    assert join_under("/data/export", relative) is None


def test_join_under_normalises_backslashes_and_dots():
    assert join_under("/data/export/", "images\\a\\.\\b.png") == "/data/export/images/a/b.png"


def test_parent_url_keeps_chained_archives():
    assert parent_url("zip://sub/x.tsv::s3://b/a.zip") == "zip://sub::s3://b/a.zip"


# --------------------------------------------------------------------------- OutputStore


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """An empty store on a local folder and on the moto S3 endpoint."""
    if request.param == "local":
        return OutputStore(str(tmp_path / "out"))
    s3 = request.getfixturevalue("s3")
    return OutputStore(s3.url("run"), storage_options=s3.storage_options)


def _frame():
    return pd.DataFrame({"profile_id": ["p1", "p2"], "depth_m": [2.5, 7.5], "n_102_203um": [3, 0]})


def test_store_round_trips_json_parquet_text_and_bytes(store):
    store.write_json("_state/targets.json", {"key": "k", "rows": np.int64(3), "x": np.ones(2)})
    store.write_parquet("targets.parquet", _frame())
    store.write_text("report/index.html", "<p>µm</p>")
    store.write_bytes("model/model.ubj", b"\x00\x01")
    assert store.read_json("_state/targets.json") == {"key": "k", "rows": 3, "x": [1.0, 1.0]}
    pd.testing.assert_frame_equal(store.read_parquet("targets.parquet"), _frame())
    assert store.read_text("report/index.html") == "<p>µm</p>"
    assert store.read_bytes("model/model.ubj") == b"\x00\x01"


def test_store_writes_json_in_the_run_format_unless_told_otherwise(store):
    store.write_json("a.json", {"b": 1})
    store.write_json("c.json", {"b": 1}, indent=None, newline=False)
    assert store.read_bytes("a.json") == b'{\n  "b": 1\n}\n'
    assert store.read_bytes("c.json") == b'{"b": 1}'


def test_store_exists_path_listdir_and_remove(store):
    assert not store.exists("labels/part-00000.parquet")
    assert store.listdir("labels") == []
    store.write_parquet("labels/part-00000.parquet", _frame())
    store.write_parquet("labels/part-00001.parquet", _frame())
    assert store.exists("labels/part-00000.parquet")
    assert store.exists("labels")
    assert store.listdir("labels") == ["part-00000.parquet", "part-00001.parquet"]
    assert store.path("labels/part-00000.parquet") == f"{store.url}/labels/part-00000.parquet"
    assert store.sub("labels").path("x") == store.path("labels/x")
    store.remove("labels")
    assert not store.exists("labels/part-00000.parquet")
    with pytest.raises(ValueError, match="remove\\(\\) needs a name inside the store"):
        store.remove("")


def _interrupted_write(store, name):
    with store.open_atomic(name) as f:
        f.write(b"half of the ")
        raise RuntimeError("interrupted")


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary_one(store):
    store.write_bytes("metrics.json", b"old")
    for name in ("metrics.json", "new.json"):
        with pytest.raises(RuntimeError, match="interrupted"):
            _interrupted_write(store, name)
    assert store.read_bytes("metrics.json") == b"old"  # the previous version, whole
    assert not store.exists("new.json")
    assert store.listdir() == ["metrics.json"]  # no temporary file left


def test_a_parquet_write_that_fails_half_way_keeps_the_previous_file(store):
    store.write_parquet("t.parquet", _frame())
    bad = _frame().assign(depth_m=[2.5, object()])  # pyarrow cannot write an object
    with pytest.raises(Exception, match="object"):
        store.write_parquet("t.parquet", bad)
    pd.testing.assert_frame_equal(store.read_parquet("t.parquet"), _frame())
    assert store.listdir() == ["t.parquet"]


def test_reading_a_missing_file_names_its_url(store):
    with pytest.raises(InputFormatError, match=r"/run/|/out/"):
        store.read_bytes("nothere.json")
    with pytest.raises(
        InputFormatError, match=r"nothere\.json: file not found in the output store"
    ):
        store.read_json("nothere.json")


def test_a_store_pickles_as_its_url_and_storage_options(store):
    store.write_bytes("a.bin", b"x")
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.url, copy.storage_options) == (store.url, store.storage_options)
    assert copy.read_bytes("a.bin") == b"x"


def test_the_store_repr_never_shows_the_storage_options(s3):
    store = OutputStore(s3.url("run/"), storage_options={"secret": "hunter2"})
    assert repr(store) == f"OutputStore('{s3.url('run')}')"


def test_as_store_keeps_a_store_and_refuses_other_types(tmp_path):
    store = OutputStore(tmp_path)
    assert as_store(store) is store
    assert as_store(tmp_path / "x").url == str(tmp_path / "x")
    with pytest.raises(TypeError, match=r"output folder URL \(str\) or an OutputStore, got int"):
        as_store(3)


def test_file_in_store_splits_a_file_url(tmp_path):
    store, name = file_in_store(str(tmp_path / "types" / "model.json"))
    assert (store.url, name) == (str(tmp_path / "types"), "model.json")
    store.write_json(name, {"a": 1})
    assert (tmp_path / "types" / "model.json").is_file()
