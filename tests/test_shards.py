"""Image shards: packing, classification from shards on a cluster, resumption, bad members.

One module-scoped set of 240 demo vignettes in class folders, packed into 3 shards, and
one model of the default kind (a compact CNN over 8 test-time views, averaged with a
logistic head on the handcrafted features) serve every test; the classification of the
same images from their files is the reference.
"""

from __future__ import annotations

import pickle
import tarfile

import dask
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from distributed import get_task_stream
from PIL import Image

from pipeline.cli.main import main as cli
from pipeline.demo.ecotaxa_writer import draw_object
from pipeline.errors import InputFormatError, StoreMismatchError
from pipeline.images.classify import ClassifyConfig, classify_images, embed_images
from pipeline.images.dataset import Preprocess, image_table
from pipeline.images.frames import handcrafted_frame
from pipeline.images.handcrafted import FEATURE_NAMES
from pipeline.images.heads import HeadConfig, fit_head
from pipeline.images.labels import read_labels
from pipeline.images.model import ImageModel, build_network, save_model_dir
from pipeline.images.shard_pack import shard_bytes, write_shards
from pipeline.images.shards import iter_shard, open_shards
from tests.dask_processes import WorkerKiller, two_worker_processes

KINDS = ("Copepoda", "fiber", "dark_aggregate")
CONFIG = ClassifyConfig(batch_size=32, threads=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("vignettes")
    rng = np.random.default_rng(0)
    for kind in KINDS:
        (root / kind).mkdir()
        for i in range(80):
            image, _ = draw_object(kind, float(rng.uniform(1.0, 3.0)), 0.092, rng)
            Image.fromarray(image).save(root / kind / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def table(folder):
    return image_table(str(folder))


@pytest.fixture(scope="module")
def model_dir(table, tmp_path_factory):
    torch.manual_seed(0)
    classes = list(KINDS)
    network = build_network("compact", len(classes), params={"width": 4}).eval()
    hand = handcrafted_frame(table["object_id"].to_numpy(), table["image"].tolist())
    head = fit_head(
        hand.drop(columns="object_id"),
        table["category"].tolist(),
        config=HeadConfig(target_precision=None),
    )
    model = ImageModel(
        network=network,
        classes=classes,
        preprocess=Preprocess(size=32, canvas_px=64),
        params={"width": 4},
        meta={"head_mode": "mean", "tta": True},
        head=head,
    )
    out = tmp_path_factory.mktemp("model") / "model"
    save_model_dir(model, str(out))
    return str(out)


@pytest.fixture(scope="module")
def shards(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "set"
    res = write_shards(table, str(out), per_shard=100)
    assert (res.shards, res.images, len(res.quarantine)) == (3, 240, 0)
    return out


@pytest.fixture(scope="module")
def reference(table, model_dir, tmp_path_factory):
    """Labels of the images read from their files, in this process."""
    out = tmp_path_factory.mktemp("ref") / "out"
    classify_images(table, model_dir, str(out), config=CONFIG)
    return _labels(out)


@pytest.fixture(scope="module")
def cluster():
    with two_worker_processes() as client:
        yield client


def _labels(out):
    return read_labels(str(out / "labels")).compute().set_index("object_id").sort_index()


def _assert_same_labels(a, b):
    assert a.index.tolist() == b.index.tolist()
    assert (a["label"] == b["label"]).all()
    assert (a["label_2"] == b["label_2"]).all()
    np.testing.assert_allclose(a["prob"], b["prob"], atol=1e-5)
    np.testing.assert_allclose(a["prob_3"], b["prob_3"], atol=1e-5)


def test_packing_keeps_each_image_byte_for_byte_with_its_id_label_and_order(table, shards):
    index = pd.read_json(shards / "shards.json", typ="series")
    assert [s["images"] for s in index["shards"]] == [100, 100, 40]
    entries = [e for u in open_shards(str(shards)).urls for e in iter_shard(u)]
    assert [e.object_id for e in entries] == table["object_id"].tolist()
    assert all(e.reason == "" for e in entries)
    first, last = entries[0], entries[-1]
    assert first.data == open(table["image"].iloc[0], "rb").read()
    assert last.data == open(table["image"].iloc[-1], "rb").read()
    assert (first.meta["category"], last.meta["category"]) == ("Copepoda", "fiber")
    assert first.meta["pixel_size_um"] is None  # unknown in a class folder: null, not NaN
    assert first.image.startswith("tar://00000000.png::")
    assert first.image.endswith("shard-00000.tar")


def test_packing_again_does_nothing_and_refuses_another_shard_size(table, shards):
    again = write_shards(table, str(shards), per_shard=100)
    assert (again.skipped, again.images, len(again.quarantine)) == (True, 240, 0)
    with pytest.raises(StoreMismatchError, match="per_shard 100 != 50"):
        write_shards(table, str(shards), per_shard=50)


def test_a_shard_set_is_listed_in_order_pickles_and_a_missing_one_is_a_clear_error(
    shards, tmp_path
):
    found = open_shards(str(shards))
    assert [u.rsplit("/", 1)[1] for u in found.urls] == [f"shard-{i:05d}.tar" for i in range(3)]
    assert open_shards(str(shards / "shard-0000[12].tar")).urls == found.urls[1:]
    assert pickle.loads(pickle.dumps(found)).fingerprint == found.fingerprint
    with pytest.raises(InputFormatError, match=r"no shard \(\*\.tar\).*oceanfields images shard"):
        open_shards(str(tmp_path))


def test_classification_from_shards_on_two_workers_losing_one_equals_the_files_one_task_a_shard(
    shards, model_dir, reference, cluster, tmp_path
):
    def classifying(processing):
        busy = (a for a, ks in sorted(processing.items()) if any("_classify_part" in k for k in ks))
        return next(busy, None)

    killer = WorkerKiller(cluster, classifying, timeout=60)
    killer.start()  # SIGKILLs a worker in the middle of a shard; its nanny restarts it
    try:
        with get_task_stream(cluster) as stream:
            res = classify_images(
                open_shards(str(shards)), model_dir, str(tmp_path), config=CONFIG, client=cluster
            )
    finally:
        killer.halt.set()
        killer.join(timeout=10)
    assert len(killer.killed) == 1
    assert (res.partitions, res.written, res.images, res.quarantined) == (3, 3, 240, 0)
    done = {t["key"] for t in stream.data if "_classify_part" in str(t["key"])}
    assert len(done) == 3  # one task per shard (the killed attempt never finished)
    _assert_same_labels(_labels(tmp_path), reference)


def test_a_rerun_classifies_only_the_shards_whose_parts_are_missing(
    shards, model_dir, reference, tmp_path
):
    first = classify_images(open_shards(str(shards)), model_dir, str(tmp_path), config=CONFIG)
    part = tmp_path / "labels" / "part-00001.parquet"
    before = pd.read_parquet(part)
    part.unlink()  # as if the run had been killed before this shard's part was written
    again = classify_images(open_shards(str(shards)), model_dir, str(tmp_path), config=CONFIG)
    assert (first.written, again.skipped, again.written, again.images) == (3, 2, 1, 100)
    pd.testing.assert_frame_equal(pd.read_parquet(part), before)
    _assert_same_labels(_labels(tmp_path), reference)
    with pytest.raises(StoreMismatchError, match="table"):
        classify_images(
            open_shards(str(shards / "shard-00000.tar")), model_dir, str(tmp_path), config=CONFIG
        )


def test_embeddings_of_a_shard_equal_those_of_its_files_features_from_one_decode(
    table, shards, model_dir, tmp_path
):
    with dask.config.set(scheduler="threads"):
        a = embed_images(
            open_shards(str(shards / "shard-00002.tar")), model_dir, str(tmp_path / "a")
        )
        b = embed_images(table.iloc[200:], model_dir, str(tmp_path / "b"))
    assert (a.partitions, a.images, b.images) == (1, 40, 40)
    ea = pd.read_parquet(tmp_path / "a" / "embeddings" / "part-00000.parquet")
    eb = pd.read_parquet(tmp_path / "b" / "embeddings" / "part-00000.parquet")
    assert ea["object_id"].tolist() == eb["object_id"].tolist()
    assert [sum(c.startswith(p) for c in ea) for p in ("e_", "h_")] == [80, len(FEATURE_NAMES)]
    pd.testing.assert_frame_equal(
        ea.drop(columns="object_id"), eb.drop(columns="object_id"), atol=1e-5
    )


def test_a_corrupt_member_and_a_truncated_shard_are_quarantined_and_the_rest_is_labelled(
    table, shards, model_dir, reference, tmp_path
):
    bad = tmp_path / "bad"
    bad.mkdir()
    rows = table.iloc[:6]
    records = [
        (f"k{i}", ".png", open(r.image, "rb").read(), {"object_id": r.object_id})
        for i, r in enumerate(rows.itertuples())
    ]
    records[2] = ("k2", ".png", b"\x89PNG\r\n\x1a\n broken", {"object_id": rows.object_id.iloc[2]})
    (bad / "a.tar").write_bytes(shard_bytes(records))
    whole = (shards / "shard-00001.tar").read_bytes()
    (bad / "b.tar").write_bytes(whole[: len(whole) // 2])  # cut in the middle of a member
    (bad / "c.tar").write_bytes((shards / "shard-00002.tar").read_bytes())
    res = classify_images(open_shards(str(bad)), model_dir, str(tmp_path / "out"), config=CONFIG)
    q = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "out" / "quarantine").glob("*")))
    assert q["object_id"].tolist() == [rows.object_id.iloc[2], ""]
    assert q["reason"].iloc[0].startswith(f"tar://k2.png::{bad}/a.tar: ")  # member and shard
    assert "b.tar: archive unreadable after member" in q["reason"].iloc[1]
    got = _labels(tmp_path / "out")
    n_b = len(got) - 5 - 40
    assert 0 < n_b < 100  # the members of b.tar before the cut are kept
    assert (res.images, res.quarantined) == (len(got), 2)
    _assert_same_labels(got, reference.loc[got.index])


def test_shards_on_s3_are_classified_as_the_local_files(table, model_dir, reference, s3, tmp_path):
    _, storage_options = s3
    url = s3.url("set")
    with dask.config.set(scheduler="threads"):  # the dummy credentials are this process's
        write_shards(table.iloc[::8], url, per_shard=20, storage_options=storage_options)
        found = open_shards(url, storage_options=storage_options)
        res = classify_images(
            found, model_dir, str(tmp_path), config=CONFIG, storage_options=storage_options
        )
    assert [u.split("/")[-1] for u in found.urls] == ["shard-00000.tar", "shard-00001.tar"]
    assert found.urls[0].startswith("s3://")
    assert res.images == 30
    got = _labels(tmp_path)
    _assert_same_labels(got, reference.loc[got.index])


def test_the_cli_packs_a_folder_and_classifies_its_shards_on_a_cluster(
    folder, model_dir, reference, cluster, tmp_path
):
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(
        f"cluster:\n  type: scheduler\n  address: {cluster.scheduler.address}\n"
    )
    runner = CliRunner()
    packed = runner.invoke(
        cli, ["images", "shard", str(folder), "--out", str(tmp_path / "s"), "--per-shard", "120"]
    )
    assert packed.exit_code == 0, packed.output
    assert "240 images in 2 shard(s)" in packed.output
    run = runner.invoke(
        cli,
        [
            *("images", "classify", str(tmp_path / "s"), model_dir),
            *("--out", str(tmp_path / "o"), "--cluster", str(cluster_file), "--batch-size", "32"),
        ],
    )
    assert run.exit_code == 0, run.output
    assert "2 partition(s), 0 already done, 2 classified: 240 images" in run.output
    _assert_same_labels(_labels(tmp_path / "o"), reference)
    with tarfile.open(tmp_path / "s" / "shard-00001.tar") as tar:
        assert len(tar.getnames()) == 2 * 120
