"""Geodesy shared by the stages: the one Earth radius of oceanfields."""

from __future__ import annotations

__all__ = ["EARTH_RADIUS_KM"]

#: Earth radius (km) of every great-circle distance and gradient in oceanfields: the
#: matchup's nearest ocean cell, the CV buffer and the vorticity of the predictors.
EARTH_RADIUS_KM = 6371.0
