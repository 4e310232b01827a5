"""The year-1 chain end to end on small demo worlds: five sources, resume, S3, objects, bad configs.

The skill of the chain on realistic worlds is in ``tests/test_run_skill.py``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.demo import generate_demo_world
from pipeline.demo.products import DEMO_SOURCES
from pipeline.errors import ConfigError
from pipeline.model.card import load_model
from pipeline.run.config import load_run_config
from pipeline.run.steps import run_steps
from pipeline.targets import inverse_transform
from tests.chains import chain_config as _config
from tests.dask_processes import two_worker_processes

pytestmark = pytest.mark.slow  # whole chains on demo worlds and clusters


@pytest.fixture(scope="module")
def client():
    with two_worker_processes() as c:
        yield c


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    return generate_demo_world(
        # the simple world: chain mechanics, not skill (skill: test_run_skill.py)
        str(tmp_path_factory.mktemp("small") / "world"),
        resolution=5.0,
        n_profiles=80,
        n_images=0,
        seed=11,
        world="simple",
    )


def _small_config(world, **sections):
    fast = {"n_estimators": 60, "baselines": [], "early_stopping_rounds": 10}
    return _config(
        world.root,
        train={**fast, **sections.pop("train", {})},
        split={"n_folds": 3, "variants": [], **sections.pop("split", {})},  # block CV only
        **sections,
    )


@pytest.fixture(scope="module")
def clean_small_run(small_world, client, tmp_path_factory):
    """One uninterrupted local run of the small config (the reference of two tests)."""
    out = tmp_path_factory.mktemp("clean") / "run"
    steps = ["targets", "matchup", "train", "fields"]
    run_steps(_small_config(small_world), out=str(out), client=client, steps=steps)
    return out


def test_five_sources_on_their_own_grids_give_fields_equal_to_the_matchups_predictions(
    small_world, client, tmp_path
):
    """The demo's five products (4 grids, 3 time kinds) -> one output grid, for both steps.

    The ocean colour is made surface-only: missing below 100 m, it drops no row or cell.
    """
    sources = [
        {**s, "surface": "surface"} if s["entry"] == "ocean_colour" else s for s in DEMO_SOURCES
    ]
    config = _small_config(small_world, inputs={"environment": sources}, grid={"resolution": 5.0})
    run_steps(
        config, out=str(tmp_path), client=client, steps=["targets", "matchup", "train", "fields"]
    )
    matchup = pd.read_parquet(tmp_path / "matchup.parquet")
    kinds = {
        "env_source_physics": {"year"},
        "env_source_biogeochemistry": {"year"},
        "env_source_ocean_colour": {"year"},
        "env_source_bathymetry": {"static"},
        "env_source_sst_climatology": {"climatology"},
    }
    for column, expected in kinds.items():
        assert set(matchup[column]) == expected, column
    assert matchup.loc[matchup["layer"] != "0-100m", "chl_surface"].isna().all()
    assert matchup.loc[matchup["layer"] == "0-100m", "chl_surface"].notna().all()
    fields = xr.open_zarr(tmp_path / "fields.zarr", consolidated=False)
    assert (fields.sizes["lat"], fields.sizes["lon"]) == (34, 72)  # 5 deg, 80S..90N
    deep = fields["flux_mgc_m2_d"].isel(layer=1).values
    assert np.isfinite(deep).mean() > 0.3  # deep-layer fields where chl_surface is missing
    booster, card = load_model(str(tmp_path / "model"))
    assert {"chl_surface", "sst_climatology", "o2", "deptho"} <= set(card["features"])
    rows = matchup[matchup["env_source"] == "year"]
    pred = booster.inplace_predict(rows[card["features"]].to_numpy("float32"), missing=np.nan)
    pred = np.asarray(pred).reshape(len(rows), -1)
    months = pd.DatetimeIndex(fields.time.values).tz_localize("UTC")
    ti = months.get_indexer(pd.DatetimeIndex(rows["env_time"]))
    li = pd.Index(fields.layer.values).get_indexer(rows["layer"])
    yi = pd.Index(fields.lat.values).get_indexer(rows["cell_lat"])
    xi = pd.Index(fields.lon.values).get_indexer(rows["cell_lon"])
    for index in (ti, li, yi, xi):
        assert (index >= 0).all()
    for j, name in enumerate(card["targets"]):
        got = fields[name].values[ti, li, yi, xi]
        back = card["transform"]
        want = inverse_transform(pred[:, j], name=back["name"], epsilon=back.get("epsilon", 0.0))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=name)


def test_an_interrupted_fields_write_completes_only_the_missing_regions(
    small_world, tmp_path, client, clean_small_run
):
    config = _small_config(small_world, fields={"write_batch_mb": 0})  # a compute a region
    out = tmp_path / "run"
    # the upstream steps are the clean run's (their keys do not depend on 'fields:')
    shutil.copytree(
        clean_small_run,
        out,
        ignore=shutil.ignore_patterns("fields.zarr", "fields.json", "honesty.json", "stac"),
    )
    (out / "_state" / "fields.json").unlink(missing_ok=True)
    (out / "_state" / "report.json").unlink(missing_ok=True)
    calls = []

    def interrupt(done, total):
        calls.append(done)
        if done == 5:
            raise KeyboardInterrupt("simulated interruption after 5 regions")

    with pytest.raises(KeyboardInterrupt):
        run_steps(config, out=str(out), client=client, progress=interrupt)
    resumed = run_steps(config, out=str(out), client=client)
    assert resumed.skipped == ["targets", "matchup", "train"]
    assert resumed.counts["regions_written"] == 12 - 5
    a = xr.open_zarr(out / "fields.zarr", consolidated=False).load()
    b = xr.open_zarr(clean_small_run / "fields.zarr", consolidated=False).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def _set_worker_env(values):
    import os

    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_a_run_on_s3_writes_the_same_fields_as_a_local_run(
    small_world, client, s3, monkeypatch, clean_small_run
):
    endpoint_url, storage_options = s3
    config = _small_config(small_world)
    steps = ["targets", "matchup", "train", "fields"]
    # Only the environment says where S3 is, here and on the workers (as on a cluster).
    # The workers started before the endpoint: give them the same (dummy) environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    client.run(_set_worker_env, aws)
    try:
        run_steps(config, out=s3.url("run"), client=client, steps=steps)
        remote = xr.open_zarr(
            s3.url("run/fields.zarr"), storage_options=storage_options, consolidated=False
        ).load()
    finally:
        client.run(_set_worker_env, dict.fromkeys(aws))
    local = xr.open_zarr(clean_small_run / "fields.zarr", consolidated=False).load()
    xr.testing.assert_identical(remote.drop_attrs(), local.drop_attrs())


@pytest.fixture(scope="module")
def objects_world(tmp_path_factory):
    return generate_demo_world(
        # the simple world: chain mechanics, not skill (skill: test_run_skill.py)
        str(tmp_path_factory.mktemp("objects") / "world"),
        resolution=5.0,
        n_profiles=120,
        n_images=3000,
        seed=4,
        world="simple",
    )


def test_object_categories_become_targets_fields_and_a_noise_ceiling(
    objects_world, tmp_path, client
):
    from pipeline.demo.truth import TYPES

    config = _small_config(
        objects_world,
        inputs={"objects": "ecotaxa"},
        object_targets={"categories": list(TYPES)},
    )
    summary = run_steps(
        config, out=str(tmp_path), client=client, steps=["targets", "matchup", "train", "fields"]
    )
    names = [f"conc_{t}_per_l" for t in TYPES]
    targets = pd.read_parquet(tmp_path / "targets.parquet")
    assert set(names) <= set(targets.columns)
    assert (targets[names].fillna(0) >= 0).all().all()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["targets"][-len(names) :] == names
    ceiling = metrics["noise_ceiling"]["all"]["r2"]
    assert all(name in ceiling for name in names)
    assert metrics["model"]["test"]["r2"]["conc_dark_aggregate_per_l"] > 0.0
    fields = xr.open_zarr(tmp_path / "fields.zarr", consolidated=False)
    surface = fields["conc_fiber_per_l"].isel(layer=0).values
    assert np.nanmin(surface) >= 0
    assert np.isfinite(surface).mean() > 0.4
    assert summary.counts["rows_without_every_target"] >= 0


def _with_bad_rows(world_root, dest):
    """The world's EcoPart and EcoTaxa exports, with one unreadable row in each."""
    src = Path(world_root)
    shutil.copytree(src / "ecopart", dest / "ecopart")
    (dest / "ecotaxa").mkdir()
    for tsv in (src / "ecotaxa").glob("*.tsv"):
        shutil.copy(tsv, dest / "ecotaxa" / tsv.name)
    (dest / "ecotaxa" / "images").symlink_to(src / "ecotaxa" / "images")
    par = sorted((dest / "ecopart").glob("export_detailed_*_PAR_*.tsv"))[0]
    lines = par.read_bytes().split(b"\r\n")
    cells = lines[2].split(b"\t")
    cells[3] = b"abc"  # Depth [m]
    lines[2] = b"\t".join(cells)
    par.write_bytes(b"\r\n".join(lines))
    tsv = sorted((dest / "ecotaxa").glob("*.tsv"))[0]
    lines = tsv.read_bytes().split(b"\n")
    cells = lines[1].split(b"\t")
    cells[1] = b"north"  # object_lat
    lines[1] = b"\t".join(cells)
    tsv.write_bytes(b"\n".join(lines))
    return SimpleNamespace(root=str(dest))


def test_a_run_writes_the_readers_quarantine_and_its_counts_reconcile(
    objects_world, tmp_path, client
):
    from pipeline.demo.truth import TYPES

    world = _with_bad_rows(objects_world.root, tmp_path / "world")
    config = _small_config(
        world, inputs={"objects": "ecotaxa"}, object_targets={"categories": list(TYPES)}
    )
    out = tmp_path / "run"
    summary = run_steps(config, out=str(out), client=client, steps=["targets"])
    counts = summary.counts
    state = json.loads((out / "_state" / "targets.json").read_text())
    assert state["counts"] == counts
    for table, prefix, column, bad in [
        ("particles", "", "Depth [m]", "'abc'"),
        ("objects", "objects_", "object_lat", "'north'"),
    ]:
        quarantine = pd.read_parquet(out / "quarantine" / f"{table}.parquet")
        assert quarantine[["column"]].to_dict("list") == {"column": [column]}, table
        assert bad in quarantine["reason"].iloc[0]
        assert counts[f"{prefix}rows_quarantined"] == len(quarantine) == 1
        assert counts[f"{prefix}rows_read"] == counts[f"{prefix}rows_accepted"] + 1 > 1
    assert counts["files"] == len(list((tmp_path / "world" / "ecopart").glob("*_PAR_*.tsv")))
    assert counts["target_rows"] > 0


def test_object_targets_take_their_layers_from_the_targets_section():
    config = load_run_config({"targets": {"layers": ["0-200m"]}})
    assert [layer.name for layer in config.object_targets.layers] == ["0-200m"]
    with pytest.raises(ConfigError, match=r"object_targets\.layers: the object targets use "):
        load_run_config({"object_targets": {"layers": ["0-200m"]}})


# --------------------------------------------------------------------------- bad configs


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"split": {"blok_deg": 5}}, r"split\.blok_deg: unknown key; valid: .*block_deg"),
        ({"targets": {"layers": [[100, 100]]}}, r"targets\.layers: layer \[100, 100\] is empty"),
        ({"targets": {"layers": ["0-100m", "0-100m"]}}, r"given twice"),
        ({"fieldz": {}}, r"fieldz: unknown section; valid: inputs, grid, product, targets"),
        ({"train": {"n_estimators": "many"}}, r"train\.n_estimators: 'many' is not int"),
    ],
    ids=["unknown-key", "empty-layer", "duplicate-layer", "unknown-section", "wrong-type"],
)
def test_bad_run_files_give_one_clear_error(doc, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config(doc)


def test_a_bad_run_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("split:\n  blok_deg: 5\n")
    with pytest.raises(ConfigError, match=rf"{path}: split\.blok_deg"):
        load_run_config(path)


def test_unknown_catalog_entry_is_one_clear_error(small_world, tmp_path, client):
    config = _small_config(small_world, inputs={"particles": "ecopart_detialed"})
    with pytest.raises(ConfigError, match=r"no entry 'ecopart_detialed'; entries: .*ecopart_raw"):
        run_steps(config, out=str(tmp_path), client=client, steps=["targets"])


def test_unknown_environment_variable_is_one_clear_error(small_world, tmp_path, client):
    config = _small_config(small_world, predictors={"variables": ["thetao", "salinity"]})
    run_steps(config, out=str(tmp_path), client=client, steps=["targets"])
    with pytest.raises(ConfigError, match=r"salinity"):
        run_steps(config, out=str(tmp_path), client=client, steps=["matchup"])


def test_targets_outside_the_environment_months_are_one_clear_error(small_world, tmp_path, client):
    config = _small_config(small_world, inputs={"environment_time": ["2020-01-01", "2020-01-31"]})
    run_steps(config, out=str(tmp_path), client=client, steps=["targets"])
    targets = pd.read_parquet(tmp_path / "targets.parquet")
    targets["time"] = pd.Timestamp("2020-07-15", tz="UTC")
    targets.to_parquet(tmp_path / "targets.parquet", index=False)
    with pytest.raises(
        ConfigError,
        match=r"no target row matched the environment: targets span "
        r"2020-07-15 .. 2020-07-15, the environment 2020-01-01",
    ):
        run_steps(config, out=str(tmp_path), client=client, steps=["matchup"])


def test_a_step_without_its_upstream_output_says_which_step_to_run(small_world, tmp_path, client):
    config = _small_config(small_world)
    with pytest.raises(ConfigError, match=r"matchup.parquet is missing: run the 'matchup' step"):
        run_steps(config, out=str(tmp_path), client=client, steps=["train"])
