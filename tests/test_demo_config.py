"""The demo's run files: written and read back (local and S3) as the demo's run configs."""

from __future__ import annotations

from pipeline.io import read_bytes


def test_demo_run_files_load_back_as_the_demo_run_config(tmp_path):
    from pipeline.cli.demo import demo_run_config, write_demo_run_config, write_demo_year2_config
    from pipeline.demo.truth import GROUPS
    from pipeline.run.config import load_run_config

    world, types, labels = (str(tmp_path / name) for name in ("world", "types", "labels"))
    year1 = load_run_config(write_demo_run_config(str(tmp_path), world, types=types, quick=True))
    run = str((tmp_path / "run").resolve())
    assert year1 == demo_run_config(world, labels=types, quick=True, out=run)
    assert (year1.inputs.truth, year1.object_targets.labels) == ("truth_profiles", "machine")
    assert (year1.split.n_folds, year1.train.n_estimators) == (3, 200)
    path = write_demo_year2_config(str(tmp_path), world, labels=labels)
    assert "  layers:\n  - - 0\n    - 200\n" in (tmp_path / "run-year2.yaml").read_text()
    year2 = load_run_config(path)
    assert year2.inputs.truth is None
    assert year2.inputs.labels == str((tmp_path / "labels").resolve())
    assert [layer.name for layer in year2.targets.layers] == ["0-200m"]
    assert year2.object_targets.categories == GROUPS
    assert year2.split == demo_run_config(world, labels=labels).split  # not quick: defaults


def test_demo_run_files_on_s3_load_back_as_the_demo_run_config(tmp_path, s3, monkeypatch):
    from pipeline.cli.demo import demo_run_config, write_demo_run_config, write_demo_year2_config
    from pipeline.run.config import load_run_config

    endpoint_url, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    world = str(tmp_path / "world")
    out, types = s3.url("demo"), s3.url("demo/images/types/labels")
    path = write_demo_run_config(out, world, types=types, quick=True)
    assert path == s3.url("demo/run.yaml")
    year1 = load_run_config(path)  # read back over S3
    assert year1 == demo_run_config(world, labels=types, quick=True, out=s3.url("demo/run"))
    assert year1.inputs.params["root"] == str(tmp_path / "world")  # a local world stays absolute
    year2 = load_run_config(write_demo_year2_config(out, world, labels=types))
    assert (year2.out, year2.inputs.labels) == (s3.url("demo/run-year2"), types)
    # a run file on S3 takes its relative paths from its URL's folder
    fs = _s3fs_of(s3)
    fs.pipe_file(f"{s3.bucket}/demo/rel.yaml", b"inputs: {catalog: demo}\nout: runs/../run\n")
    assert load_run_config(s3.url("demo/rel.yaml")).out == s3.url("demo/run")
    local = write_demo_year2_config(str(tmp_path), world, labels=types)
    remote = read_bytes(s3.url("demo/run-year2.yaml"))
    assert remote == read_bytes(local).replace(
        str(tmp_path / "run-year2").encode(), s3.url("demo/run-year2").encode()
    )


def _s3fs_of(s3):
    import s3fs

    return s3fs.S3FileSystem(**s3.storage_options)
