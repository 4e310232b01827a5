"""Darwin Core Archive of the sample-level targets (OBIS-ENV-DATA), read back with
python-dwca-reader: structure, required terms, and every measurement round-trips."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from pipeline.products.dwca import export_dwca
from tests.products_run import demo_run

pytest.importorskip("dwca", reason="the products extra is not installed")
from dwca.read import DwCAReader

pytestmark = pytest.mark.slow  # the shared demo run (about 45 s, once per session)

DWC = "http://rs.tdwg.org/dwc/terms/"
EMOF = "http://rs.iobis.org/obis/terms/ExtendedMeasurementOrFact"
REQUIRED_EVENT = ["eventID", "eventDate", "decimalLatitude", "decimalLongitude"]
REQUIRED_OCC = ["occurrenceID", "scientificName", "occurrenceStatus", "basisOfRecord"]
REQUIRED_EMOF = ["measurementType", "measurementValue", "measurementUnit", "measurementMethod"]


@pytest.fixture(scope="session")
def run_out(tmp_path_factory):
    return demo_run(tmp_path_factory)


@pytest.fixture(scope="module")
def taxon_run(run_out, tmp_path_factory):
    """The run's targets with one category named as a taxon (EcoTaxa capitalises taxa)."""
    out = tmp_path_factory.mktemp("taxon") / "run"
    out.mkdir()
    targets = pd.read_parquet(run_out / "targets.parquet")
    targets = targets.rename(columns={"conc_fiber_per_l": "conc_Copepoda_per_l"})
    targets.to_parquet(out / "targets.parquet")
    shutil.copytree(run_out / "fields.zarr", out / "fields.zarr")
    return out, targets


@pytest.fixture(scope="module")
def archive(taxon_run):
    out, targets = taxon_run
    path = export_dwca(str(out))
    with DwCAReader(path) as reader:
        # the reader names the core's id column "id" and the extensions' link "coreid"
        core = reader.pd_read(reader.core_file_location, dtype=str, keep_default_na=False)
        core = core.rename(columns={"id": "eventID"})
        ext = {
            e.type: reader.pd_read(e.file_location, dtype=str, keep_default_na=False).rename(
                columns={"coreid": "eventID"}
            )
            for e in reader.descriptor.extensions
        }
        eml = reader.metadata
        rows = len(reader.rows)
    return targets, core, ext, eml, rows


def test_archive_has_an_event_core_with_occurrence_and_emof_extensions(archive):
    _, core, ext, eml, rows = archive
    assert set(ext) == {DWC + "Occurrence", EMOF}
    assert rows == len(core)
    assert eml is not None
    assert eml.find("dataset/title").text


def test_events_are_casts_and_their_layers_with_the_required_terms(archive):
    targets, core, _, _, _ = archive
    assert all(term in core.columns for term in REQUIRED_EVENT)
    assert (core[REQUIRED_EVENT] != "").all().all()
    assert core["eventID"].is_unique
    casts = core[core["parentEventID"] == ""]
    layers = core[core["parentEventID"] != ""]
    assert len(casts) == targets["id"].nunique()
    assert len(layers) == len(targets)
    assert set(layers["parentEventID"]) <= set(casts["eventID"])
    dates = pd.to_datetime(core["eventDate"], format="%Y-%m-%dT%H:%M:%SZ", utc=True)
    assert dates.notna().all()
    assert core["decimalLatitude"].astype(float).between(-90, 90).all()
    depth = layers[["minimumDepthInMeters", "maximumDepthInMeters"]].astype(float)
    assert (depth["minimumDepthInMeters"] < depth["maximumDepthInMeters"]).all()
    assert (layers["sampleSizeUnit"] == "litre").all()


def test_every_measurement_round_trips_with_its_unit_and_method(archive):
    targets, _, ext, _, _ = archive
    emof = ext[EMOF]
    assert all(term in emof.columns for term in REQUIRED_EMOF)
    assert (emof[REQUIRED_EMOF] != "").all().all()
    columns = [c for c in targets.columns if c.startswith(("conc_", "flux_"))] + ["volume_l"]
    assert len(emof) == int(targets[columns].notna().sum().sum())
    emof = emof.set_index("measurementID")
    for column in columns:
        for _, row in targets[targets[column].notna()].iterrows():
            key = f"{row['id']}_{row['layer']}:{column}"
            np.testing.assert_allclose(
                float(emof.loc[key, "measurementValue"]), row[column], rtol=1e-9
            )
    units = emof["measurementUnit"].unique()
    assert set(units) == {"individuals per litre", "mg C m-2 d-1", "litre"}


def test_counted_taxa_become_present_or_absent_occurrences_linked_to_their_abundance(archive):
    targets, _, ext, _, _ = archive
    occ = ext[DWC + "Occurrence"]
    assert all(term in occ.columns for term in REQUIRED_OCC)
    assert set(occ["scientificName"]) == {"Copepoda"}  # lower-case categories are no taxa
    assert len(occ) == targets["conc_Copepoda_per_l"].notna().sum()
    present = (targets["conc_Copepoda_per_l"] > 0).sum()
    assert (occ["occurrenceStatus"] == "present").sum() == present
    assert set(occ["basisOfRecord"]) == {"MachineObservation"}
    linked = ext[EMOF][ext[EMOF]["occurrenceID"] != ""]
    assert set(linked["occurrenceID"]) == set(occ["occurrenceID"])
    assert linked["measurementID"].str.endswith(":conc_Copepoda_per_l").all()


def test_export_dwca_command_writes_the_archive_beside_the_run(taxon_run, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    out, _ = taxon_run
    zip_path = tmp_path / "a.zip"
    args = ["export", "dwca", str(out), "--out", str(zip_path), "--taxon", "Copepoda=Calanus"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with DwCAReader(str(zip_path)) as reader:
        occ = reader.pd_read(
            reader.descriptor.extensions[0].file_location, dtype=str, keep_default_na=False
        )
    assert set(occ["scientificName"]) == {"Calanus"}
