"""Specification of pipeline.model.basins: the built-in ocean basins."""

from __future__ import annotations

import numpy as np
import pytest

import pipeline.model
from pipeline.model.basins import BASINS, basin_of


@pytest.mark.parametrize(
    ("lat", "lon", "basin"),
    [
        (30, -40, "Atlantic"),  # mid North Atlantic
        (0, -160, "Pacific"),
        (-10, 80, "Indian"),
        (-60, 0, "Southern"),
        (80, 0, "Arctic"),
        (38, 18, "Mediterranean"),  # Ionian Sea
        (25, -90, "Atlantic"),  # Gulf of Mexico
        (15, -75, "Atlantic"),  # Caribbean
        (9.6, -79.5, "Atlantic"),  # Caribbean off Panama
        (8.5, -79.5, "Pacific"),  # Gulf of Panama
        (9.5, -85.5, "Pacific"),  # off Costa Rica
        (-35, 15, "Atlantic"),  # Cape Basin
        (-35, 25, "Indian"),  # Agulhas
        (-35, 130, "Indian"),  # Great Australian Bight
        (-40, 160, "Pacific"),  # Tasman Sea
        (20, 38, "Indian"),  # Red Sea
        (10, 95, "Indian"),  # Andaman Sea
        (12, 113, "Pacific"),  # South China Sea
        (45, -5, "Atlantic"),  # Bay of Biscay
        (36.5, -7.5, "Atlantic"),  # Gulf of Cadiz
        (36, -4, "Mediterranean"),  # Alboran Sea
        (43, 34, "Mediterranean"),  # Black Sea
        (44, 14, "Mediterranean"),  # Adriatic
        (-55, -65, "Southern"),  # Drake Passage
        (50, -150, "Pacific"),  # Gulf of Alaska
        (58, 0, "Atlantic"),  # North Sea
    ],
    ids=lambda v: str(v),
)
def test_basin_of_known_points(lat, lon, basin):
    assert basin_of([lat], [lon]).tolist() == [basin]


def test_basin_of_gives_every_point_on_a_global_grid_one_of_the_six_basins_land_included():
    lat, lon = np.meshgrid(np.arange(-90, 90.1, 2.5), np.arange(-180, 180, 2.5), indexing="ij")
    basins = basin_of(lat.ravel(), lon.ravel())
    assert basins.shape == (lat.size,)
    assert set(basins.tolist()) == set(BASINS)
    assert len(BASINS) == 6


def test_basin_of_wraps_longitude_outside_minus_180_to_180():
    assert basin_of([0, 0, 30], [200, -160, 320]).tolist() == ["Pacific", "Pacific", "Atlantic"]


def test_basins_are_exported_by_the_model_stage():
    assert pipeline.model.basin_of is basin_of
    assert pipeline.model.BASINS is BASINS
    assert {"BASINS", "basin_of"} <= set(pipeline.model.__all__)
