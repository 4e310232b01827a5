"""The report: every file it names exists, figures are real PNGs, the page says the numbers."""

from __future__ import annotations

import base64
import copy
import html
import re
from io import BytesIO

import fsspec
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

from pipeline.report import LAND_GREY, format_number, write_report
from pipeline.report.figures import _test_rows
from tests.browser import chromium, page_problems, serve_folder

TARGETS = ["conc_102_203um_per_l", "conc<1um_per_l"]
LAYERS = ["0-100m", "100-500m"]
GREY = tuple(int(LAND_GREY[i : i + 2], 16) for i in (1, 3, 5))


def _fields(*, land: bool = True, zeros: bool = False) -> xr.Dataset:
    time = pd.to_datetime(["2021-01-01", "2021-02-01", "2021-03-01"])
    lat = np.arange(-60.0, 62.0, 4.0)
    lon = np.arange(-180.0, 180.0, 6.0)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    rng = np.random.default_rng(0)
    shape = (time.size, len(LAYERS), lat.size, lon.size)
    base = 10 ** (1 + np.cos(np.radians(lat2)) + 0.3 * rng.standard_normal(shape))
    if land:  # a continent: a quarter of the map
        base = np.where((lon2 > 0) & (lon2 < 90) & (lat2 > -30) & (lat2 < 30), np.nan, base)
    if zeros:
        base = np.where(lat2 > 40, 0.0, base)
    dims = ("time", "layer", "lat", "lon")
    data = {
        TARGETS[0]: (dims, base, {"units": "L-1", "long_name": "particles 102-203 um"}),
        TARGETS[1]: (dims, base / 7, {"units": "L-1"}),
        f"{TARGETS[0]}_lower": (dims, base * 0.5),
        f"{TARGETS[0]}_upper": (dims, base * (1.5 + (lat2 > 0))),
        "extrapolation": (("lat", "lon"), (np.abs(lat2) > 50).astype("int8")),
    }
    coords = {"time": time, "layer": np.array(LAYERS, dtype=object), "lat": lat, "lon": lon}
    return xr.Dataset(data, coords=coords, attrs={"model_id": "xgb-<3>", "config_hash": "ab12"})


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frames = []
    for model, split, noise in (
        ("model", "test", 0.2),
        ("model", "cv", 0.2),
        ("climatology", "test", 1.0),
    ):
        n = 60
        frame = pd.DataFrame(
            {
                "id": [f"p{i}" for i in range(n)],
                "layer": np.repeat(LAYERS, n // 2),
                "split": split,
                "model": model,
            }
        )
        for t in TARGETS:
            obs = rng.normal(1.0, 1.0, n)
            frame[f"{t}_obs"] = obs
            frame[f"{t}_pred"] = obs + rng.normal(0, noise, n)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _scores(mv_mse: float, r2_mean: float) -> dict:
    return {
        "mse": mv_mse * 1.1,
        "mv_mse": mv_mse,
        "r2": {TARGETS[0]: r2_mean + 0.01, TARGETS[1]: r2_mean - 0.01},
        "r2_mean": r2_mean,
        "bias": {TARGETS[0]: 0.0123, TARGETS[1]: -0.0456},
    }


def _cv(values: list[float]) -> dict:
    folds = [_scores(v, 0.8) for v in values]
    arr = np.array(values)
    return {
        "folds": folds,
        "mean": {"mse": arr.mean() * 1.1, "mv_mse": arr.mean(), "r2_mean": 0.8},
        "std": {"mse": arr.std() * 1.1, "mv_mse": arr.std(), "r2_mean": 0.01},
    }


METRICS = {
    "model": {
        "test": _scores(0.04321987, 0.8765),
        "cv": _cv([0.051, 0.062, 0.047]),
        "random_cv": _cv([0.021, 0.019, 0.023]),
    },
    "baselines": {
        "climatology": {"test": _scores(0.9876543, 0.1234), "cv": _cv([0.9, 1.0])},
        "random_forest": {"test": _scores(0.07777777, 0.55)},
    },
    "noise_ceiling": {"test": _scores(0.0311111, 0.93)},
}
COUNTS = {"targets": {"rows": 12345, "skipped": 17}, "matchup_missing": 3}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    written = write_report(
        str(out),
        metrics=METRICS,
        predictions=_predictions(),
        fields=_fields(),
        targets=TARGETS,
        counts=COUNTS,
        title="Demo <run> & co",
    )
    page = (out / "index.html").read_text(encoding="utf-8")
    return out, written, page


def _png(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    image.load()
    return image


def _grey_pixels(data: bytes) -> int:
    rgb = np.asarray(_png(data).convert("RGB"))
    return int((rgb == np.array(GREY)).all(axis=-1).sum())


def test_report_returns_every_file_it_wrote_with_maps_per_target_and_one_interval(report):
    out, written, _ = report
    assert written == {
        "months_conc_102_203um_per_l": "months_conc_102_203um_per_l.html",
        "months_conc<1um_per_l": "months_conc_1um_per_l.html",
        "maps_conc_102_203um_per_l": "maps_conc_102_203um_per_l.png",
        "interval_conc_102_203um_per_l": "interval_conc_102_203um_per_l.png",
        "maps_conc<1um_per_l": "maps_conc_1um_per_l.png",
        "predicted_vs_observed": "predicted_vs_observed.png",
        "skill": "skill.png",
        "skill_table": "skill_table.html",
        "index": "index.html",
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(written.values())


def test_report_figures_are_png_files_of_sensible_size(report):
    out, written, _ = report
    for rel in (r for r in written.values() if r.endswith(".png")):
        data = (out / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", rel
        image = _png(data)
        assert image.format == "PNG"
        assert 400 <= image.width <= 2500, (rel, image.size)
        assert 250 <= image.height <= 2000, (rel, image.size)
    # one panel per layer, side by side: the map is wider than tall
    maps = _png((out / "maps_conc_102_203um_per_l.png").read_bytes())
    assert maps.width > 1.5 * maps.height


def test_maps_paint_land_grey_and_zero_concentrations_not(tmp_path):
    kwargs = {"metrics": METRICS, "predictions": _predictions(), "targets": TARGETS[:1]}
    land = write_report(str(tmp_path / "land"), fields=_fields(), **kwargs)
    sea = write_report(str(tmp_path / "sea"), fields=_fields(land=False, zeros=True), **kwargs)
    grey_land = _grey_pixels((tmp_path / "land" / land[f"maps_{TARGETS[0]}"]).read_bytes())
    grey_sea = _grey_pixels((tmp_path / "sea" / sea[f"maps_{TARGETS[0]}"]).read_bytes())
    # the continent covers ~1/8 of each of two ~300x200 px panels; only the legend's
    # "land" swatch is grey without it (zeros get the lowest colour, not the land's)
    assert grey_land > 8000
    assert grey_sea < 600


def test_extrapolated_cells_are_hatched(tmp_path):
    kwargs = {"metrics": METRICS, "predictions": _predictions(), "targets": TARGETS[:1]}
    with_flag = write_report(str(tmp_path / "a"), fields=_fields(), **kwargs)
    without = write_report(
        str(tmp_path / "b"), fields=_fields().drop_vars("extrapolation"), **kwargs
    )
    a = np.asarray(_png((tmp_path / "a" / with_flag[f"maps_{TARGETS[0]}"]).read_bytes()))
    b = np.asarray(_png((tmp_path / "b" / without[f"maps_{TARGETS[0]}"]).read_bytes()))
    assert a.shape == b.shape
    assert (a != b).any(axis=-1).sum() > 2000  # hatch lines over the polar bands


def test_index_names_every_model_and_prints_test_mv_mse_as_formatted(report):
    _, _, page = report
    for name in ("model", "climatology", "random_forest", "noise ceiling"):
        assert f"<td>{name}</td>" in page
    for value, printed in (
        (0.04321987, "0.04322"),
        (0.9876543, "0.9877"),
        (0.07777777, "0.07778"),
        (0.0311111, "0.03111"),
    ):
        assert format_number(value) == printed
        assert f"<td>{printed}</td>" in page


def test_index_shows_block_cv_beside_random_cv_with_spread(report):
    _, _, page = report
    block = np.array([0.051, 0.062, 0.047])
    rand = np.array([0.021, 0.019, 0.023])
    assert "block-CV MSE (mean ± std)" in page
    assert "random-CV MSE (by cast)" in page
    row = page.split("<td>model</td>", 1)[1].split("</tr>", 1)[0]
    block, rand = block * 1.1, rand * 1.1  # the fixture's plain MSE, the headline
    assert f"<td>{format_number(block.mean())} ± {format_number(block.std())}</td>" in row
    assert f"<td>{format_number(rand.mean())} ± {format_number(rand.std())}</td>" in row
    assert row.index(format_number(block.mean())) < row.index(format_number(rand.mean()))
    assert "% lower)" in page  # random CV called optimistic in words


def test_index_prints_per_target_r2_bias_counts_and_provenance(report):
    _, _, page = report
    r2_row = page.split(f"<td>{TARGETS[0]}</td>", 1)[1].split("</tr>", 1)[0]
    # model, climatology, random_forest, noise ceiling, then the model's bias
    assert r2_row.count("<td>") == 5
    assert "<td>0.8865</td>" in r2_row
    assert r2_row.startswith("<td>0.8865</td><td>0.1334</td><td>0.56</td><td>0.94</td>")
    assert "<td>0.0123</td>" in r2_row
    assert "<td>targets / rows</td><td>12,345</td>" in page
    assert "<td>targets / skipped</td><td>17</td>" in page
    assert "<td>matchup_missing</td><td>3</td>" in page
    assert "<td>config_hash</td><td>ab12</td>" in page


def test_index_links_and_shows_every_figure(report):
    _, written, page = report
    for rel in (r for r in written.values() if r.endswith(".png")):
        assert f'<a href="{rel}">' in page
        assert f'<img src="{rel}"' in page
    assert "predicted field, 2021-01" in page  # default: the first time step


def test_index_escapes_target_names_title_and_attributes(report):
    _, _, page = report
    assert "conc&lt;1um_per_l" in page
    assert "conc<1um" not in page
    assert "<title>Demo &lt;run&gt; &amp; co</title>" in page
    assert "xgb-&lt;3&gt;" in page
    assert page.count("<td>") == page.count("</td>")


def test_skill_table_fragment_is_the_skill_section_of_the_index(report):
    out, _, page = report
    fragment = (out / "skill_table.html").read_text(encoding="utf-8")
    assert fragment.startswith("<h2>Skill</h2>")
    assert "<html" not in fragment
    assert fragment in page


@pytest.mark.parametrize(
    ("month", "label"),
    [(3, "2021-03"), ("2021-02", "2021-02"), ("2021-02-15", "2021-02")],
    ids=["month-number", "iso-month", "iso-day"],
)
def test_month_selects_the_mapped_time_step(tmp_path, month, label):
    write_report(
        str(tmp_path),
        metrics=METRICS,
        predictions=_predictions(),
        fields=_fields(),
        targets=TARGETS[:1],
        month=month,
    )
    assert f"predicted field, {label}" in (tmp_path / "index.html").read_text()


@pytest.mark.parametrize(
    ("month", "match"),
    [
        (7, r"month=7 matches no time step.*months present: \[1, 2, 3\]"),
        ("2020-01", r"'2020-01' matches no time step.*2021-01, 2021-02, 2021-03"),
        ("spring", r"neither a month number nor an ISO date"),
    ],
    ids=["absent-month", "absent-date", "not-a-date"],
)
def test_month_that_matches_nothing_names_the_available_ones(tmp_path, month, match):
    with pytest.raises(ValueError, match=match):
        write_report(
            str(tmp_path),
            metrics=METRICS,
            predictions=_predictions(),
            fields=_fields(),
            targets=TARGETS,
            month=month,
        )


def test_report_without_optional_sections_still_writes_page(tmp_path):
    metrics = {"model": {"test": {"mv_mse": 0.5}}}  # no cv, baselines, ceiling, r2
    preds = _predictions().drop(columns=["split"])
    written = write_report(str(tmp_path), metrics=metrics, predictions=preds, targets=TARGETS)
    assert set(written) == {"predicted_vs_observed", "skill", "skill_table", "index"}
    page = (tmp_path / "index.html").read_text()
    row = page.split("<td>model</td>", 1)[1].split("</tr>", 1)[0]
    assert row == "<td>n/a</td><td>0.5</td>" + "<td>n/a</td>" * 5
    assert "climatology" not in page
    assert "noise ceiling" not in page
    assert "Counts" not in page
    assert "% lower" not in page
    for rel in ("skill.png", "predicted_vs_observed.png"):
        assert _png((tmp_path / rel).read_bytes()).width > 400


def test_cv_mean_and_std_are_computed_from_folds_when_not_given(tmp_path):
    metrics = copy.deepcopy(METRICS)
    del metrics["model"]["cv"]["mean"], metrics["model"]["cv"]["std"]
    write_report(str(tmp_path), metrics=metrics, predictions=_predictions(), targets=TARGETS)
    block = np.array([0.051, 0.062, 0.047])
    expected = f"{format_number(block.mean())} ± {format_number(block.std(ddof=1))}"
    assert f"<td>{expected}</td>" in (tmp_path / "index.html").read_text()


def test_target_missing_from_fields_warns_and_skips_its_map(tmp_path):
    with pytest.warns(UserWarning, match=r"no variable 'silica'.*map is left out"):
        written = write_report(
            str(tmp_path),
            metrics=METRICS,
            predictions=_predictions(),
            fields=_fields(),
            targets=[TARGETS[0], "silica"],
        )
    assert "maps_silica" not in written
    assert f"maps_{TARGETS[0]}" in written


def test_metrics_without_a_model_entry_is_refused_with_the_keys_found(tmp_path):
    with pytest.raises(ValueError, match=r"no 'model' entry \(keys: \['baselines'\]\)"):
        write_report(
            str(tmp_path), metrics={"baselines": {}}, predictions=_predictions(), targets=TARGETS
        )


def test_scatter_plots_only_the_model_test_rows():
    rows = _test_rows(_predictions())
    assert len(rows) == 60
    assert set(rows["model"]) == {"model"}
    assert set(rows["split"]) == {"test"}


def test_report_creates_a_fresh_nested_folder(tmp_path):
    out = tmp_path / "run" / "deep" / "report"
    written = write_report(str(out), metrics=METRICS, predictions=_predictions(), targets=TARGETS)
    assert all((out / rel).is_file() for rel in written.values())


def test_report_writes_to_s3(s3):
    _, storage_options = s3
    url = s3.url("run/report")
    written = write_report(
        url,
        metrics=METRICS,
        predictions=_predictions(),
        fields=_fields(),
        targets=TARGETS,
        storage_options=storage_options,
    )
    fs = fsspec.filesystem("s3", **storage_options)
    listed = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{s3.bucket}/run/report"))
    assert listed == sorted(written.values())
    assert _png(fs.cat(f"{s3.bucket}/run/report/skill.png")).format == "PNG"
    page = fs.cat(f"{s3.bucket}/run/report/index.html").decode()
    assert html.escape(TARGETS[1]) in page


def test_lazy_fields_without_a_layer_dimension_map_in_one_panel(tmp_path):
    fields = _fields().isel(layer=0, drop=True).chunk({"time": 1})
    written = write_report(
        str(tmp_path),
        metrics=METRICS,
        predictions=_predictions(),
        fields=fields,
        targets=TARGETS[:1],
        month=2,
    )
    image = _png((tmp_path / written[f"maps_{TARGETS[0]}"]).read_bytes())
    assert image.width < 1.6 * image.height  # one panel, not two side by side
    assert "predicted field, 2021-02" in (tmp_path / "index.html").read_text()


def test_every_month_of_every_layer_is_one_click_from_the_index(report):
    out, written, page = report
    for target in TARGETS:
        name = written[f"months_{target}"]
        assert f'href="{name}"' in page
        months = (out / name).read_text(encoding="utf-8")
        tiles = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', months)
        alts = [html.unescape(alt) for _, alt in tiles]
        expected = [
            f"{target}, {layer}, {m}" for m in ("2021-01", "2021-02", "2021-03") for layer in LAYERS
        ]
        assert alts[0] == f"colour scale of {target}"
        assert alts[1:] == expected
        assert 'href="index.html"' in months


def test_month_tiles_paint_land_grey_north_up_and_follow_the_values(report):
    out, written, _ = report
    months = (out / written[f"months_{TARGETS[0]}"]).read_text(encoding="utf-8")
    alt = html.escape(f"{TARGETS[0]}, {LAYERS[0]}, 2021-01")
    first = re.search(rf'<img src="data:image/png;base64,([^"]+)" alt="{alt}"', months).group(1)
    rgb = np.asarray(_png(base64.b64decode(first)).convert("RGB"))
    fields = _fields()
    land = np.isnan(fields[TARGETS[0]].isel(time=0, layer=0).values)[::-1]  # north up
    scale = rgb.shape[1] // land.shape[1]
    cells = rgb[::scale, ::scale][: land.shape[0], : land.shape[1]]
    grey = (cells == np.array(GREY)).all(axis=-1)
    np.testing.assert_array_equal(grey, land)


def test_index_has_the_test_skill_of_each_target_in_each_layer(report):
    _, _, page = report
    test = _test_rows(_predictions())
    for target in TARGETS:
        for layer in LAYERS:
            part = test[test["layer"] == layer]
            obs, pred = part[f"{target}_obs"], part[f"{target}_pred"]
            r2 = 1 - ((obs - pred) ** 2).sum() / ((obs - obs.mean()) ** 2).sum()
            row = (
                f"<td>{html.escape(target)}</td><td>{layer}</td><td>{len(part)}</td>"
                f"<td>{format_number(r2)}</td><td>{format_number((pred - obs).mean())}</td>"
            )
            assert row in page


def test_provenance_names_no_local_path_and_the_page_asks_for_no_favicon(tmp_path):
    fields = _fields().assign_attrs(environment=str(tmp_path / "world" / "environment.zarr"))
    write_report(
        str(tmp_path / "r"),
        metrics=METRICS,
        predictions=_predictions(),
        fields=fields,
        targets=TARGETS,
    )
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert str(tmp_path) not in page
    assert "<td>environment.zarr</td>" in page
    assert '<link rel="icon" href="data:,">' in page


@pytest.mark.skipif(chromium() is None, reason="no Chromium (.ci/run installs it)")
def test_report_loads_in_headless_chromium_without_console_error_or_broken_image(report):
    out, written, _ = report
    pages = ["index.html", written[f"months_{TARGETS[0]}"]]
    with serve_folder(out) as url:
        problems = page_problems([f"{url}/{p}" for p in pages])
    assert {k: v for k, v in problems.items() if not k.endswith("#images")} == {
        f"{url}/{p}": [] for p in pages
    }
    assert int(problems[f"{url}/index.html#images"][0]) == 5  # every figure of the index
    assert int(problems[f"{url}/{pages[1]}#images"][0]) == 1 + 3 * len(LAYERS)


@pytest.mark.skipif(chromium() is None, reason="no Chromium (.ci/run installs it)")
def test_the_browser_check_catches_a_broken_image_and_a_console_error(tmp_path):
    (tmp_path / "bad.html").write_text(
        '<html><head><link rel="icon" href="data:,"></head><body><img src="gone.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    with serve_folder(tmp_path) as url:
        problems = page_problems([f"{url}/bad.html"])[f"{url}/bad.html"]
    assert "broken image: gone.png" in problems
    assert "console: boom" in problems
