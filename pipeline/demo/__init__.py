"""The demo world: real EcoPart/EcoTaxa/Copernicus layouts drawn from a known truth.

:func:`generate_demo_world` writes a Copernicus-Marine-like monthly environment
(:mod:`~pipeline.demo.environment`), UVP5 casts as EcoPart detailed and raw exports
(:mod:`~pipeline.demo.ecopart_writer`), EcoTaxa export TSVs with vignettes
(:mod:`~pipeline.demo.ecotaxa_writer`) and the noise-free truth they were drawn from
(:mod:`~pipeline.demo.truth`), so later steps can be scored against it.
"""

from __future__ import annotations

from pipeline.demo.world import DemoWorld, generate_demo_world

__all__ = ["DemoWorld", "generate_demo_world"]
