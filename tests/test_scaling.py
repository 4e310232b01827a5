"""Scaling benchmark: a tiny run on one in-process worker; structure and efficiencies."""

from __future__ import annotations

import json

import pytest

from pipeline.cli.bench import plot_scaling
from pipeline.errors import ConfigError
from pipeline.scaling import ScalingConfig, cost_model, efficiencies, run_scaling

TINY = ScalingConfig(
    workers=(1,),
    parts=("train", "fields", "images"),
    rows=300,
    rounds=3,
    months=1,
    images=8,
    resolution=6.0,
)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    return run_scaling({"cluster": {"type": "local", "processes": False}}, root, config=TINY)


def test_scaling_record_has_one_row_per_part_mode_and_worker_count(record):
    rows = record["measurements"]
    assert sorted((r["part"], r["mode"]) for r in rows) == sorted(
        (p, m) for p in TINY.parts for m in ("strong", "weak")
    )
    assert all(r["workers"] == 1 and r["seconds"] > 0 for r in rows)
    by_part = {r["part"]: r for r in rows}
    assert by_part["train"]["rows"] == 300
    assert by_part["images"]["images"] == 8
    assert by_part["fields"]["cells"] == 3 * record["parameters"]["grid"]["lat"] * 60
    assert by_part["fields"]["bytes"] > 0
    assert json.loads(json.dumps(record)) == record  # JSON-ready


def test_scaling_efficiency_at_one_worker_is_one(record):
    assert set(record["efficiencies"]) == set(TINY.parts)
    for modes in record["efficiencies"].values():
        assert modes == {"strong": {"1": 1.0}, "weak": {"1": 1.0}}


def test_efficiencies_are_computed_from_the_timings(record):
    rows = [dict(r) for r in record["measurements"] if r["part"] == "fields"]
    t1 = rows[0]["seconds"]
    rows += [
        {**rows[0], "mode": m, "workers": 2, "seconds": t1 * f}
        for m, f in (("strong", 0.625), ("weak", 1.25))
    ]
    eff = efficiencies(rows)["fields"]
    assert eff["strong"]["2"] == pytest.approx(0.8)
    assert eff["weak"]["2"] == pytest.approx(0.8)


def test_cost_model_scales_with_cells_and_workers(record, tmp_path):
    model = cost_model(record)
    grids = model["grids"]
    one, quarter = grids["1deg_monthly"], grids["0.25deg_monthly"]
    assert quarter["cells"] == 16 * one["cells"] == 16 * 180 * 360 * 12 * 3
    assert quarter["storage_gib"] == pytest.approx(16 * one["storage_gib"])
    # efficiency beyond the measured counts is the largest measured one (here 1)
    assert one["wall_hours"]["1"] == pytest.approx(256 * one["wall_hours"]["256"])
    assert "matchup" not in model
    assert plot_scaling(record, tmp_path / "s.png") == str(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_scaling_config_names_unknown_parts():
    match = r"scaling\.parts: \['fieldz'\] holds unknown \['fieldz'\]; valid: 'matchup', 'train'"
    with pytest.raises(ConfigError, match=match):
        ScalingConfig(parts=("fieldz",))
