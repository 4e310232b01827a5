"""Ingest at archive scale: a graph that grows with batches not files, resumable writes."""

from __future__ import annotations

import functools
import os
import pickle
import re

import dask
import pandas as pd
import pytest

from pipeline.errors import InputFormatError
from pipeline.ingest import write_ingest
from pipeline.sources.archive import ArchiveFile
from pipeline.sources.ecopart import read_ecopart
from pipeline.sources.table import plan_batches
from tests.dask_processes import two_worker_processes

BATS = "ecotaxatools_bats361_uvp5"
STAMP = "20220810_16_31"
N_FILES = 400


@pytest.fixture(scope="module")
def many_casts(shared_data, tmp_path_factory):
    """A raw export of 1,000 one-line casts: the BATS cast ctd18 under 1,000 names."""
    folder = tmp_path_factory.mktemp("many")
    src = shared_data / BATS
    par = (src / f"20190717153343_bats361_ctd18_PAR_raw_{STAMP}.tsv").read_bytes()
    summary = (src / f"export_raw_{STAMP}_Export_metadata_summary.tsv").read_bytes()
    header, *rows = summary.split(b"\n")
    ctd18 = next(r for r in rows if b'"bats361_ctd18"' in r)
    lines = [header]
    for i in range(N_FILES):
        pid = f"cast{i:04d}".encode()
        lines.append(ctd18.replace(b"bats361_ctd18", pid))
        (folder / f"20190717153343_cast{i:04d}_PAR_raw_{STAMP}.tsv").write_bytes(par)
    (folder / f"export_raw_{STAMP}_Export_metadata_summary.tsv").write_bytes(
        b"\n".join(lines) + b"\n"
    )
    (folder / "README.txt").write_text("not an EcoPart file")
    return folder


def _counting(seen):
    def compute(*collections):
        keys = set()
        for c in collections:
            keys.update(dict(c.__dask_graph__()))
        seen.append(len(keys))
        return dask.compute(*collections, scheduler="threads")

    return compute


def test_plan_batches_cuts_by_bytes_and_keeps_fifty_files_per_task_when_small():
    small = [ArchiveFile(f"f{i}", 1000) for i in range(3000)]
    assert len(plan_batches(small)) == 32  # a few tasks per worker, >= 50 files each
    assert len(plan_batches(small[:120])) == 3
    big = [ArchiveFile(f"g{i}", 300 * 2**20) for i in range(4)]
    assert [len(b) for b in plan_batches(big, batch_bytes=256 * 2**20)] == [1, 1, 1, 1]
    mixed = [ArchiveFile("a", 90), ArchiveFile("b", 5), ArchiveFile("c", 5), ArchiveFile("d", 90)]
    assert [[f.url for f in b] for b in plan_batches(mixed, batch_bytes=100)] == [
        ["a", "b"],
        ["c", "d"],
    ]
    with pytest.raises(InputFormatError, match=r"batch_bytes: 0; expected an integer >= 1"):
        plan_batches(small, batch_bytes=0)


def test_ingest_graph_has_at_most_files_over_50_tasks_and_one_row_per_cast(many_casts, tmp_path):
    seen: list[int] = []
    res = read_ecopart(str(many_casts))
    summary = write_ingest(res, tmp_path / "out", table="particles", compute=_counting(seen))
    # one task per batch (read, check and write together) and the metadata summary once
    assert seen == [summary.batches + 1]
    assert 2 <= summary.batches <= N_FILES / 50 + 1
    assert summary.files == N_FILES
    assert summary.rows_accepted == summary.rows_read == N_FILES
    assert summary.not_read == {
        "unknown (unknown: not read)": 1,
        "metadata summary (metadata summary: used)": 1,
    }
    particles = pd.read_parquet(tmp_path / "out" / "particles.parquet")
    assert particles["profile_id"].nunique() == N_FILES
    files = dask.dataframe.read_parquet(tmp_path / "out" / "files.parquet")
    assert files.npartitions == summary.batches  # the file summary: a dask table, by batch
    assert int(files["rows_read"].sum().compute()) == N_FILES


def test_ingest_graph_holds_the_metadata_summary_once_not_once_per_batch(many_casts, tmp_path):
    import cloudpickle

    graphs = []

    def compute(*collections):
        graph = {}
        for c in collections:
            graph.update(dict(c.__dask_graph__()))
        graphs.append(graph)
        return dask.compute(*collections, scheduler="sync")

    res = read_ecopart(str(many_casts))
    summary = write_ingest(res, tmp_path / "out", table="particles", compute=compute)
    assert summary.rows_accepted == N_FILES
    (graph,) = graphs
    # distributed ships each task on its own: count the bytes of each key apart
    size = {k: len(cloudpickle.dumps(v)) for k, v in graph.items()}
    shared = [k for k in graph if "-shared-" in str(k)]
    assert len(shared) == 1
    assert len(graph) == summary.batches + 1 <= N_FILES / 50 + 2
    table = size[shared[0]]
    assert table > 20_000  # the metadata summary of 400 casts
    by_name = {b.name: b for b in res.batches}
    for key, n in size.items():
        if key in shared:
            continue
        batch = by_name[str(key).removeprefix("ingest-batch-")]
        # a batch task: its file names, the empty table and a few options, no summary
        assert n < sum(map(len, batch.urls)) + 8_000 < table
    assert sum(size.values()) < table + summary.batches * (table / 4)


class _Interrupt(RuntimeError):
    pass


def _parse_or_die(url, *, parse, doomed, **shared):
    if doomed in url:
        raise _Interrupt(f"killed while reading {url}")
    return parse(url, **shared)


def test_a_killed_ingest_rerun_writes_only_the_missing_batches(many_casts, tmp_path):
    out = tmp_path / "out"
    clean = write_ingest(read_ecopart(str(many_casts)), tmp_path / "clean", table="particles")
    res = read_ecopart(str(many_casts))
    # the run dies in one batch (its worker killed); the others finish and are written
    doomed = res.batches[3]
    dying = type(doomed)(
        name=doomed.name,
        urls=doomed.urls,
        parse_one=functools.partial(_parse_or_die, parse=doomed.parse_one, doomed=doomed.urls[0]),
        meta=doomed.meta,
        shared=doomed.shared,
    )
    broken = [dying if b is doomed else b for b in res.batches]
    res_broken = type(res)(res.accepted, res.quarantine, res.stats, res.inventory, broken)
    with pytest.raises(_Interrupt):
        write_ingest(
            res_broken,
            out,
            table="particles",
            compute=lambda *c: dask.compute(*c, scheduler="sync"),
        )
    written = sorted(os.listdir(out / "_state" / "ingest"))
    assert f"{doomed.name}.json" not in written
    assert 0 < len(written) < len(res.batches)
    before = {
        n: os.stat(out / "particles.parquet" / f"part-{n[:-5]}.parquet").st_mtime_ns
        for n in written
    }
    again = write_ingest(read_ecopart(str(many_casts)), out, table="particles")
    assert again.batches_written == len(res.batches) - len(written)
    for n, mtime in before.items():  # the batches already written were not written again
        assert os.stat(out / "particles.parquet" / f"part-{n[:-5]}.parquet").st_mtime_ns == mtime
    assert again.to_dict() | {"outputs": {}, "batches_written": 0} == clean.to_dict() | {
        "outputs": {},
        "batches_written": 0,
    }
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "particles.parquet"),
        pd.read_parquet(tmp_path / "clean" / "particles.parquet"),
    )
    # a finished ingest re-run writes nothing
    assert write_ingest(read_ecopart(str(many_casts)), out, table="particles").batches_written == 0


def test_ingest_of_other_inputs_into_the_same_folder_removes_the_old_parts(many_casts, tmp_path):
    out = tmp_path / "out"
    write_ingest(read_ecopart(str(many_casts)), out, table="particles")
    few = sorted(str(p) for p in many_casts.glob("*_PAR_raw_*.tsv"))[:7]
    summary = write_ingest(read_ecopart(few), out, table="particles")
    assert summary.batches == 1
    assert len(pd.read_parquet(out / "particles.parquet")) == 7
    assert os.listdir(out / "particles.parquet") == [
        f"part-{read_ecopart(few).batches[0].name}.parquet"
    ]


def test_ingest_on_worker_processes_writes_from_the_workers(many_casts, tmp_path):
    res = read_ecopart(str(many_casts))
    assert pickle.loads(pickle.dumps(res.batches[0])).read()[0].equals(res.batches[0].read()[0])
    with two_worker_processes() as client:

        def compute(*collections):
            return tuple(client.gather(client.compute(list(collections))))

        summary = write_ingest(res, tmp_path / "out", table="particles", compute=compute)
    assert summary.rows_accepted == N_FILES
    assert summary.batches_written == summary.batches == len(res.batches)
    names = os.listdir(tmp_path / "out" / "particles.parquet")
    assert all(re.fullmatch(r"part-\d{5}-[0-9a-f]{16}\.parquet", n) for n in names)


# ------------------------------------------------------------- EcoTaxa in byte ranges


def _tara_copies(shared_data, copies):
    """The header and ``copies`` copies of the real TARA export's rows, under new ids."""
    src = shared_data / "ecotaxar_tara_zooscan"
    head, *rows = (src / "export.tsv").read_bytes().rstrip(b"\n").split(b"\n")
    body = [r.split(b"\t") for r in rows if r.strip()]
    lines = [head]
    for k in range(copies):
        lines += [b"\t".join([f[0].rstrip(b'"') + f'_{k}"'.encode(), *f[1:]]) for f in body]
    return lines, len(body)


def test_a_big_ecotaxa_tsv_is_read_in_byte_range_blocks_with_the_files_line_numbers(
    shared_data, tmp_path
):
    from pipeline.sources.ecotaxa import read_ecotaxa

    # 40 copies of the real export's rows under new object ids, one bad line near the end
    lines, n_body = _tara_copies(shared_data, 40)
    lines.insert(len(lines) - 5, b"short\tline")
    big = tmp_path / "big_export.tsv"
    big.write_bytes(b"\n".join(lines) + b"\n")
    whole = read_ecotaxa(str(big), check_images=False, batch_bytes=10 * 2**20)
    blocks = read_ecotaxa(str(big), check_images=False, batch_bytes=big.stat().st_size // 7)
    assert len(whole.batches) == 1
    assert len(blocks.batches) >= 7
    a1, q1, s1 = whole.compute()
    a2, q2, s2 = blocks.compute()
    assert len(a1) == 40 * n_body > 0
    pd.testing.assert_frame_equal(a1.reset_index(drop=True), a2.reset_index(drop=True))
    pd.testing.assert_frame_equal(q1.reset_index(drop=True), q2.reset_index(drop=True))
    assert q2["line"].tolist() == [len(lines) - 5]  # the line number in the whole file
    assert s2["rows_read"].sum() == s1["rows_read"].sum() == len(lines) - 1


def test_a_refused_row_of_a_clean_tsv_keeps_its_line_text_in_every_block(shared_data, tmp_path):
    from pipeline.sources.ecotaxa import read_ecotaxa

    lines, _ = _tara_copies(shared_data, 20)
    # well formed (the fast path), with a latitude of 95 on two lines, one in a late block
    bad = [7, len(lines) - 3]
    for i in bad:
        fields = lines[i].split(b"\t")
        fields[1] = b"95.0"
        lines[i] = b"\t".join(fields)
    big = tmp_path / "clean_export.tsv"
    big.write_bytes(b"\r\n".join(lines) + b"\r\n")  # CRLF: not part of the text
    for batch_bytes in (10 * 2**20, big.stat().st_size // 5):
        res = read_ecotaxa(str(big), check_images=False, batch_bytes=batch_bytes)
        _, quarantine, _ = res.compute()
        assert quarantine["line"].tolist() == [i + 1 for i in bad]
        assert quarantine["raw"].tolist() == [lines[i].decode()[:2000] for i in bad]  # cut
        assert quarantine["reason"].str.contains("95").all()


# -------------------------------------------------------------------- the scale world


def test_demo_data_writes_an_ecotaxa_export_of_n_objects_without_images(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli.main import main
    from pipeline.sources.ecotaxa import read_ecotaxa

    out = tmp_path / "world"
    args = ["demo-data", str(out), "--resolution", "10", "--profiles", "3", "--images", "5"]
    refused = CliRunner().invoke(main, [*args, "--objects", "1200"])
    assert refused.exit_code != 0
    assert "add --no-images" in refused.output
    res = CliRunner().invoke(main, [*args, "--objects", "1200", "--no-images"])
    assert res.exit_code == 0, res.output
    assert "1200 objects without images in 1 TSV(s)" in res.output
    objects, quarantine, _stats = read_ecotaxa(str(out / "ecotaxa_scale")).compute()
    assert len(objects) == 1200
    assert len(quarantine) == 0
    assert objects["object_id"].is_unique
    assert set(objects["sample_id"]) <= {f"demo_{i:04d}" for i in range(1, 4)}
    assert objects["image"].eq("").all()
