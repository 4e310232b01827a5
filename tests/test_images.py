"""Images: preprocessing, quarantine, model directories, training and classification.

One small demo world with images (module-scoped) and one classifier trained on its
validated images serve every test; classification runs on a LocalCluster and on a
scheduler with 2 worker processes (``dask scheduler`` / ``dask worker``).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipeline.clusters.client import cluster_client
from pipeline.demo import generate_demo_world
from pipeline.errors import InputFormatError, StoreMismatchError
from pipeline.images.classify import ClassifyConfig, classify_images
from pipeline.images.dataset import Preprocess, decode_image, image_table, prepare_images
from pipeline.images.evaluation import stratified_holdout
from pipeline.images.labels import read_labels
from pipeline.images.model import ImageModel, build_network, load_model_dir, save_model_dir
from pipeline.images.training import train_classifier
from pipeline.images.training_config import ImageTrainConfig
from tests.dask_processes import WorkerKiller

TRAIN = ImageTrainConfig(size=32, canvas_px=96, width=8, epochs=8, patience=8, threads=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_demo_world(
        # the simple world: image-path mechanics, not skill
        str(tmp_path_factory.mktemp("imgworld") / "world"),
        resolution=10.0,
        n_profiles=40,
        n_images=1500,
        seed=5,
        world="simple",
    )


@pytest.fixture(scope="module")
def objects(world):
    from pipeline.catalog import open_catalog, read_entry

    return read_entry(open_catalog("demo", root=world.root), "ecotaxa").accepted


@pytest.fixture(scope="module")
def trained(objects, tmp_path_factory):
    table = image_table(objects, statuses=("V",))
    train_idx, test_idx = stratified_holdout(table["category"].tolist(), test_fraction=0.2)
    out = tmp_path_factory.mktemp("model") / "model"
    res = train_classifier(
        table.iloc[train_idx], config=TRAIN, out=str(out), test=table.iloc[test_idx]
    )
    return res, out, table.iloc[test_idx]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_padding_keeps_the_physical_scale_of_objects_smaller_than_the_canvas():
    pre = Preprocess(size=32, canvas_px=64)
    small = np.zeros((16, 16), np.uint8)
    small[4:12, 4:12] = 255
    large = np.zeros((32, 32), np.uint8)
    large[8:24, 8:24] = 255
    a, _ = prepare_images_of([small, large], pre)
    # the same object twice as large covers 4x the area once both are on the 64 px canvas
    assert (a[1] > 127).sum() == pytest.approx(4 * (a[0] > 127).sum(), rel=0.05)
    assert (a[0] > 127).sum() == pytest.approx((8 / 2) ** 2, rel=0.05)


def prepare_images_of(arrays, pre, sizes=None):
    from pipeline.images.dataset import prepare_array

    out = [
        prepare_array(a, pre, pixel_size_um=s)
        for a, s in zip(arrays, sizes or [None] * len(arrays), strict=True)
    ]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def test_larger_than_canvas_images_are_shrunk_and_their_size_kept_in_the_extras():
    pre = Preprocess(size=32, canvas_px=64)
    img = np.zeros((200, 100), np.uint8)
    img[50:150, 25:75] = 200
    px, ex = prepare_images_of([img], pre, [100.0])
    assert px.shape == (1, 32, 32)
    assert ex[0].tolist() == pytest.approx([np.log1p(200), np.log1p(100), np.log1p(20.0), 1.0])
    _, unknown = prepare_images_of([img], pre, [float("nan")])
    assert unknown[0, 2:].tolist() == [0.0, 0.0]


def test_background_is_padded_with_the_border_grey_and_inversion_flips_it():
    img = np.full((10, 10), 230, np.uint8)
    img[3:7, 3:7] = 20
    px, _ = prepare_images_of([img], Preprocess(size=16, canvas_px=40))
    assert px[0, 0, 0] == 230  # light background padded light, not black
    inv, _ = prepare_images_of([img], Preprocess(size=16, canvas_px=40, invert=True))
    assert inv[0, 0, 0] == 25
    assert inv.max() == 235


def test_corrupt_empty_truncated_and_missing_images_are_quarantined_not_fatal(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png(np.full((20, 20), 9, np.uint8)))
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "garbage.png").write_bytes(b"not an image at all")
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)
    (tmp_path / "cut.png").write_bytes(_png(noise)[:200])
    urls = [
        str(good),
        str(tmp_path / "empty.png"),
        str(tmp_path / "garbage.png"),
        str(tmp_path / "cut.png"),
        str(tmp_path / "missing.png"),
        "",
    ]
    res = prepare_images(urls, Preprocess(size=16))
    assert res.ok.tolist() == [True, False, False, False, False, False]
    assert res.pixels.shape == (1, 16, 16)
    r = res.reasons
    assert r[0] == ""
    assert "empty image file" in r[1]
    assert "not an image" in r[2]
    assert "corrupt or truncated" in r[3]
    assert "missing.png" in r[4]
    assert r[5] == "no image URL"
    assert res.quarantine["position"].tolist() == [1, 2, 3, 4, 5]
    with pytest.raises(InputFormatError, match=r"garbage\.png: not an image"):
        decode_image((tmp_path / "garbage.png").read_bytes(), url=str(tmp_path / "garbage.png"))


def test_images_inside_a_zip_archive_are_read(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "export.zip", "w") as z:
        z.writestr("images/a.png", _png(np.full((12, 8), 77, np.uint8)))
    res = prepare_images([f"zip://images/a.png::{tmp_path / 'export.zip'}"], Preprocess(size=8))
    assert res.ok.tolist() == [True]
    assert res.extras[0, :2].tolist() == pytest.approx([np.log1p(12), np.log1p(8)])


def test_a_class_folder_tree_is_an_image_table(shared_data):
    table = image_table(shared_data / "uvpec_uvp6_labelled_images" / "img_sample")
    assert len(table) == 1250
    assert table["category"].nunique() == 10
    assert set(table["status"]) == {"V"}
    assert table["object_id"].is_unique


def test_a_model_directory_round_trips_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    net = build_network("compact", 3, params={"width": 4}).eval()
    model = ImageModel(
        network=net, classes=["a", "b", "c"], preprocess=Preprocess(size=16), params={"width": 4}
    )
    model_id = save_model_dir(model, str(tmp_path / "m"))
    again = load_model_dir(str(tmp_path / "m"))
    assert again.model_id == model_id
    assert model_id.startswith("compact-")
    assert again.classes == ["a", "b", "c"]
    assert again.preprocess == Preprocess(size=16)
    x, e = torch.rand(5, 1, 16, 16), torch.rand(5, 4)
    with torch.no_grad():
        assert torch.equal(net(x, e), again.network(x, e))
    with pytest.raises(InputFormatError, match="not a model directory"):
        load_model_dir(str(tmp_path))


def test_a_backbone_whose_package_is_missing_is_a_clear_error():
    pytest.importorskip("torch")
    try:
        import timm  # noqa: F401
    except ImportError:
        from pipeline.errors import ConfigError

        with pytest.raises(ConfigError, match="needs the timm package"):
            build_network("timm:resnet18", 3)


def test_the_classifier_beats_the_majority_class_on_held_out_demo_images(trained):
    res, out, test = trained
    m = res.metrics["test"]
    majority = test["category"].value_counts(normalize=True).max()
    assert m["accuracy"] > majority + 0.4
    assert m["accuracy"] > 0.8
    assert m["balanced_accuracy"] > 0.75
    assert len(res.history) >= 1
    assert res.model.classes == sorted(res.model.classes)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == m["accuracy"]
    for name in ("model.json", "weights.pt", "confusion.png", "history.json"):
        assert (out / name).exists(), name


def test_fine_tuning_starts_from_the_parent_and_records_it(trained, objects, tmp_path):
    _, out, _ = trained
    parent = load_model_dir(str(out))
    table = image_table(objects, statuses=("V",))
    table = table[table["category"].isin(["fiber", "Copepoda", "Rhizaria"])]
    cfg = ImageTrainConfig(epochs=1, patience=1, threads=2, size=8)  # size ignored: parent's
    child = train_classifier(table, config=cfg, init=parent, out=str(tmp_path / "child"))
    assert child.model.preprocess == parent.preprocess
    assert child.model.classes == ["Copepoda", "Rhizaria", "fiber"]
    card = json.loads((tmp_path / "child" / "model.json").read_text())
    assert card["trained"]["parent_model"] == parent.model_id
    # the convolution weights start from the parent's: after one epoch they are still close
    a = parent.network.features[0].weight
    b = child.model.network.features[0].weight
    assert torch.linalg.norm(a - b) < 0.5 * torch.linalg.norm(a)


def _classify(objects, model_dir, out, client, **cfg):
    return classify_images(
        objects,
        str(model_dir),
        str(out),
        client=client,
        config=ClassifyConfig(batch_size=64, threads=2, **cfg),
    )


def _classifying(processing: dict) -> str | None:
    """A worker running a partition's classification, when one does."""
    return next(
        (
            a
            for a, ks in sorted(processing.items())
            if any(k.startswith("_classify_part") for k in ks)
        ),
        None,
    )


def test_classification_on_two_worker_processes_losing_one_equals_a_single_process_run(
    trained, objects, scheduler_file, tmp_path
):
    _, model_dir, _ = trained
    table = objects.compute()
    with cluster_client(scheduler_file) as client:
        killer = WorkerKiller(client, _classifying, timeout=120)
        killer.start()  # SIGKILLs a worker in the middle of a partition; its nanny restarts it
        try:
            remote = _classify(table, model_dir, tmp_path / "remote", client, partition_size=400)
        finally:
            killer.halt.set()
            killer.join(timeout=10)
    local = _classify(table, model_dir, tmp_path / "local", None, partition_size=5000)
    assert len(killer.killed) == 1, killer.killed
    assert remote.partitions == remote.written == 4
    parts = sorted(p.name for p in (tmp_path / "remote" / "labels").glob("part-*"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(4)]
    assert local.partitions == 1
    a = (
        read_labels(str(tmp_path / "remote" / "labels"))
        .compute()
        .set_index("object_id")
        .sort_index()
    )
    b = (
        read_labels(str(tmp_path / "local" / "labels"))
        .compute()
        .set_index("object_id")
        .sort_index()
    )
    assert len(a) == len(b) == len(table)
    assert (a["label"] == b["label"]).all()
    assert (a["label_3"] == b["label_3"]).all()
    np.testing.assert_allclose(a["prob"], b["prob"], atol=1e-5)
    assert a["prob"].between(0, 1).all()
    assert (a["prob"] >= a["prob_2"]).all()
    assert a["model_id"].nunique() == 1


def test_classification_resumes_skipping_finished_partitions_and_refuses_another_model(
    trained, objects, tmp_path
):
    _, model_dir, _ = trained
    table = objects.compute()
    first = _classify(table, model_dir, tmp_path / "out", None, partition_size=400)
    assert first.written == first.partitions == int(np.ceil(len(table) / 400))
    part = tmp_path / "out" / "labels" / "part-00001.parquet"
    before = pd.read_parquet(part)
    part.unlink()  # as if the run had stopped before this partition
    again = _classify(table, model_dir, tmp_path / "out", None, partition_size=400)
    assert (again.skipped, again.written) == (first.partitions - 1, 1)
    pd.testing.assert_frame_equal(pd.read_parquet(part), before)
    done = _classify(table, model_dir, tmp_path / "out", None, partition_size=400)
    assert done.written == 0
    assert done.images == 0
    with pytest.raises(StoreMismatchError, match="partitions"):
        _classify(table, model_dir, tmp_path / "out", None, partition_size=300)


def test_unreadable_images_are_quarantined_and_counted_and_the_run_completes(
    trained, objects, tmp_path
):
    _, model_dir, _ = trained
    table = objects.compute().head(50).copy()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    table.loc[table.index[3], "image"] = str(broken)
    table.loc[table.index[7], "image"] = str(tmp_path / "gone.png")
    res = _classify(table, model_dir, tmp_path / "out", None)
    assert (res.images, res.quarantined) == (48, 2)
    q = pd.read_parquet(tmp_path / "out" / "quarantine" / "part-00000.parquet")
    assert q["object_id"].tolist() == table["object_id"].iloc[[3, 7]].tolist()
    assert "broken.png" in q["reason"].iloc[0]
    assert "gone.png" in q["reason"].iloc[1]
    assert len(read_labels(str(tmp_path / "out" / "labels")).compute()) == 48


def test_an_interrupted_training_resumes_after_its_last_epoch_and_equals_a_clean_one(
    objects, tmp_path
):
    table = image_table(objects, statuses=("V",))
    table = table[table["category"].isin(["Copepoda", "Rhizaria", "fiber"])].head(150)
    cfg = ImageTrainConfig(
        size=16, canvas_px=96, width=4, epochs=3, patience=3, threads=2, val_fraction=0.2
    )
    clean = train_classifier(table, config=cfg, out=str(tmp_path / "clean"))

    def stop_after_two(entry):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(table, config=cfg, out=str(tmp_path / "cut"), progress=stop_after_two)
    seen = []
    resumed = train_classifier(
        table, config=cfg, out=str(tmp_path / "cut"), progress=lambda e: seen.append(e["epoch"])
    )
    assert seen == [3]  # only the missing epoch ran
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in clean.history]
    assert resumed.model.model_id == clean.model.model_id  # identical weights
    again = train_classifier(
        table, config=cfg, out=str(tmp_path / "cut"), progress=lambda e: seen.append(e["epoch"])
    )
    assert seen == [3]  # a finished training is not redone
    assert again.model.model_id == clean.model.model_id
