"""images qc: duplicates with two human labels, within-class copies, machine disagreement.

The real uvpec UVP6 sample ships its 100 ``darksphere`` vignettes a second time under
``Copepoda`` (same bytes): the check must list exactly those 100 pairs, and nothing in a
copy of the sample without the ``darksphere`` folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.cli.main import main as cli
from pipeline.errors import ConfigError
from pipeline.images.qc import QCConfig, quality_control
from pipeline.images.qc_report import write_qc_report

TWINS = ("Copepoda__6666", "darksphere__7777")


@pytest.fixture(scope="module")
def uvp6(shared_data):
    return shared_data / "uvpec_uvp6_labelled_images" / "img_sample"


@pytest.fixture(scope="module")
def uvp6_qc(uvp6):
    return quality_control(str(uvp6))


def _tree(root, folders, src):
    """A class-folder tree of links to ``src``'s images (only ``folders``)."""
    for name in folders:
        os.makedirs(root / name)
        for f in sorted(os.listdir(src / name)):
            os.symlink(src / name / f, root / name / f)
    return root


def test_qc_lists_exactly_the_100_copepoda_darksphere_byte_identical_pairs(uvp6_qc):
    c = uvp6_qc.conflicts
    assert len(c) == 100
    assert set(c["kind"]) == {"exact"}
    assert set(zip(c["category_a"], c["category_b"], strict=True)) == {TWINS}
    assert c["object_id_b"].nunique() == 100  # each darksphere vignette once

    def digest(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()

    assert all(digest(a) == digest(b) for a, b in zip(c["image_a"], c["image_b"], strict=True))
    per = uvp6_qc.per_category.set_index("category")
    assert per.loc[list(TWINS), "n_in_conflict"].tolist() == [100, 100]
    assert per.drop(index=list(TWINS))["n_in_conflict"].sum() == 0
    assert per["n_images"].sum() == uvp6_qc.n_images == 1250
    assert uvp6_qc.n_exact_groups == 100
    assert "Copepoda__6666 / darksphere__7777: 100" in uvp6_qc.look_first()[0]


def test_qc_finds_no_conflict_in_the_sample_without_the_darksphere_copies(uvp6, tmp_path):
    folders = [d for d in sorted(os.listdir(uvp6)) if d != "darksphere__7777"]
    res = quality_control(str(_tree(tmp_path / "t", folders, uvp6)))
    assert res.n_images == 1150
    assert len(res.conflicts) == 0
    assert res.n_exact_groups == 0
    assert res.look_first() == ["nothing found: no duplicate carries two categories."]


def test_qc_finds_a_reencoded_copy_under_another_class_and_counts_copies_within_a_class(
    uvp6, tmp_path
):
    src = uvp6 / "Acantharea__1111"
    files = sorted(os.listdir(src))[:6]
    root = tmp_path / "t"
    for name in ("a", "b"):
        os.makedirs(root / name)
    for f in files:
        shutil.copy(src / f, root / "a" / f)
    shutil.copy(src / files[0], root / "a" / "again.png")  # byte copy, same class
    # the same vignette re-encoded as JPEG (not byte-identical) under another class
    Image.open(src / files[1]).convert("L").save(root / "b" / "copy.jpg", quality=92)
    shutil.copy(uvp6 / "fiber__9999" / sorted(os.listdir(uvp6 / "fiber__9999"))[0], root / "b")
    res = quality_control(str(root))
    assert res.conflicts[["kind", "category_a", "category_b"]].values.tolist() == [
        ["near", "a", "b"]
    ]
    assert res.conflicts["object_id_a"].tolist() == [f"a/{files[1]}"]
    assert res.conflicts["object_id_b"].tolist() == ["b/copy.jpg"]
    per = res.per_category.set_index("category")
    assert per.loc["a", "n_exact_copies"] == 1
    assert per.loc["b", "n_exact_copies"] == 0
    strict = quality_control(str(root), config=QCConfig(near_bits=0, near_grey=0.0))
    assert len(strict.conflicts) == 0


def test_qc_report_writes_json_csv_plate_and_page_with_the_machine_disagreement(
    uvp6_qc, uvp6, tmp_path
):
    ids = [f"{d}/{f}" for d in sorted(os.listdir(uvp6)) for f in os.listdir(uvp6 / d)]
    table = pd.DataFrame({"object_id": ids})
    table["label"] = table["object_id"].str.split("/").str[0]
    flipped = table["label"] == "fiber__9999"
    table.loc[flipped, "label"] = "detritus__8888"
    table["prob"] = 0.9
    res = quality_control(str(uvp6), labels=table)
    files = write_qc_report(res, str(tmp_path / "qc"))
    doc = json.loads((tmp_path / "qc" / files["json"]).read_text())
    assert doc["n_conflicts_exact"] == 100
    assert doc["n_conflicts_near"] == 0
    per = {r["category"]: r for r in doc["consistency"]["per_category"]}
    assert per["fiber__9999"]["disagreement"] == 1.0
    assert per["fiber__9999"]["most_confused_with"] == "detritus__8888"
    assert per["bubble__5555"]["disagreement"] == 0.0
    assert "fiber__9999 1.00 (as detritus__8888)" in doc["look_first"][1]
    csv = pd.read_csv(tmp_path / "qc" / "conflicts.csv")
    assert len(csv) == 100
    page = (tmp_path / "qc" / "index.html").read_text()
    assert "Look at first" in page
    assert "conflicts.png" in page
    assert (tmp_path / "qc" / "consistency" / "worst_examples.png").stat().st_size > 1000


def test_qc_without_images_of_the_statuses_names_the_source(uvp6):
    with pytest.raises(ConfigError, match=r"img_sample has no image .* status in \['P'\]"):
        quality_control(str(uvp6), config=QCConfig(statuses=("P",)))


def test_images_qc_cli_prints_the_conflicts_and_writes_the_report(uvp6, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(cli, ["images", "qc", str(uvp6), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "100 exact and 0 near duplicate pair(s)" in res.output
    assert json.loads((out / "qc.json").read_text())["n_conflicts_exact"] == 100


def test_qc_of_a_dask_objects_table_hashes_per_partition_and_finds_the_same_pairs(uvp6, uvp6_qc):
    import dask.dataframe as dd

    from pipeline.images.dataset import read_objects

    objects = read_objects(str(uvp6)).assign(status="V")
    lazy = dd.from_pandas(objects, npartitions=4)
    res = quality_control(lazy)
    key = ["object_id_a", "object_id_b"]
    assert res.conflicts[key].sort_values(key).values.tolist() == (
        uvp6_qc.conflicts[key].sort_values(key).values.tolist()
    )
