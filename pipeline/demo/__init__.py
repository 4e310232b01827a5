"""The demo world: real EcoPart/EcoTaxa/Copernicus layouts drawn from a known truth.

:func:`generate_demo_world` writes a Copernicus-Marine-like monthly environment
(:mod:`~pipeline.demo.environment`), UVP5 casts as EcoPart detailed and raw exports
(:mod:`~pipeline.demo.ecopart_writer`), EcoTaxa export TSVs with vignettes
(:mod:`~pipeline.demo.ecotaxa_writer`) and the noise-free truth they were drawn from
(:mod:`~pipeline.demo.truth`), so later steps can be scored against it:
:func:`noise_ceiling` (:mod:`~pipeline.demo.ceiling`) is the skill of that truth against
the observations, the bound a run's model is compared with in ``metrics.json``.

The default world is ``"realistic"``: real coastlines (:mod:`~pipeline.demo.land`),
hidden drivers and a finer environment behind the truth (:mod:`~pipeline.demo.drivers`),
cruises and time series (:mod:`~pipeline.demo.sampling`) and the full UVP noise
(:mod:`~pipeline.demo.noise`); ``world="simple"`` writes the first world bit for bit.
"""

from __future__ import annotations

from pipeline.demo.ceiling import expected_log_count, noise_ceiling, truth_targets
from pipeline.demo.world import DemoWorld, generate_demo_world

__all__ = [
    "DemoWorld",
    "expected_log_count",
    "generate_demo_world",
    "noise_ceiling",
    "truth_targets",
]
