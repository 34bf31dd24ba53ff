"""The audit explorer: the page's data and tiles, and the page itself in headless Chromium with no
network (hover, pin, filters, ranges, the linked histogram, a box selection, hostile catalog strings
shown as text)."""

import base64
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from matplotlib import colormaps
from PIL import Image

import saliency_audit.report.explorer as explorer
from devtools import open_page
from saliency_audit.data.image_io import open_packed, shown_rgb
from saliency_audit.data.packing import PackedIndex
from saliency_audit.report.explorer import (
    OVERLAY_ALPHA,
    SPRITE_COLUMNS,
    THUMBNAIL,
    SpriteSheets,
    choose_thumbnails,
    explorer_html,
    explorer_points,
    panel_tiles,
    write_explorer,
)

HOSTILE_SPLIT = '<a href="https://example.org/x">valid</a> &amp; <b>b</b>'
HOSTILE = [
    "<script>document.title='pwned'</script>",
    "</script><img src=x id=injected-a onerror=\"document.title='pwned'\">",
    "{{SPRITES}} {{DATA}} & \"quoted\" 'single'",
]
HOSTILE_CLASS = "<img src=x id=injected-c onerror=\"document.title='pwned'\">mid"
CLASSES = ["high", "low", HOSTILE_CLASS]  # five tiles per image: some images straddle two sheets
INFERNO = np.round(colormaps["inferno"](np.arange(256) / 255)[:, :3] * 255)


def synthetic_points(n_side: int = 12) -> pd.DataFrame:
    """Points on a grid (far enough apart to hover one), two classes, some flagged, hostile ids."""
    yy, xx = np.mgrid[:n_side, :n_side]
    n = n_side * n_side
    ids = [f"img{i:04d}" for i in range(n)]
    ids[:3] = HOSTILE
    label = np.where(xx.ravel() < n_side // 2, "low", "high")
    predicted = np.where(yy.ravel() < 2, np.where(label == "low", "high", "low"), label)
    probability = np.linspace(0.5, 1.0, n)
    return pd.DataFrame(
        {
            "id": ids,
            "split": np.where(np.arange(n) % 5 == 0, HOSTILE_SPLIT, "train"),
            "label": label,
            "predicted": predicted,
            "correct": label == predicted,
            "probability": probability,
            "target": np.linspace(8.0, 9.3, n),
            "pc1": xx.ravel().astype(float),
            "pc2": yy.ravel().astype(float),
            "pc3": -yy.ravel().astype(float),
            "relative_energy": np.where(np.arange(n) % 7 == 0, np.nan, np.linspace(0, 1, n)),
            "background_focused": np.arange(n) % 4 == 0,
            "background_reliance": np.linspace(-0.2, 0.9, n),
            "background_reliant": np.arange(n) % 6 == 0,
            "cluster": np.where(np.arange(n) % 11 == 0, np.nan, np.arange(n) % 3),
            "prob_high": np.where(predicted == "high", probability, 0.7 * (1 - probability)),
            "prob_low": np.where(predicted == "low", probability, 0.7 * (1 - probability)),
            f"prob_{HOSTILE_CLASS}": 0.3 * (1 - probability),
        }
    )


def synthetic_tiles(n: int) -> np.ndarray:
    """n x 5 tiles: a smooth cutout of its own colour, three ramps as maps, a disc of its own radius."""
    yy, xx = np.mgrid[:THUMBNAIL, :THUMBNAIL] / (THUMBNAIL - 1)
    tiles = np.zeros((n, 5, THUMBNAIL, THUMBNAIL, 3), np.uint8)
    for k in range(n):
        colour = np.array([(37 * k) % 200 + 30, (91 * k) % 200 + 30, (53 * k) % 200 + 30])
        tiles[k, 0] = np.clip(colour * (0.6 + 0.4 * xx[..., None]), 0, 255)
        tiles[k, 1] = np.round(255 * xx)[..., None]
        tiles[k, 2] = np.round(255 * yy * (0.5 + 0.5 * (k % 2)))[..., None]
        tiles[k, 3] = np.round(255 * (1 - xx) * yy)[..., None]
        radius = 8 + k % 12
        disc = (xx * (THUMBNAIL - 1) - 24) ** 2 + (yy * (THUMBNAIL - 1) - 24) ** 2 <= radius**2
        tiles[k, 4] = np.where(disc, 255, 0)[..., None]
    return tiles


def write_page(points: pd.DataFrame, folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The page of ``points`` (point 5 sampled out) on sheets of 256 tiles, so that hovers cross sheets."""
    tiles = synthetic_tiles(len(points))
    first_tile = np.arange(len(points)) * 5
    first_tile[5] = -1
    sheets = SpriteSheets()
    sheets.add(tiles[first_tile >= 0].reshape(-1, THUMBNAIL, THUMBNAIL, 3))
    first_tile[first_tile >= 0] = np.arange(len(points) - 1) * 5
    page = folder / "explorer.html"
    page.write_text(explorer_html(points, first_tile, sheets.finish()), encoding="utf-8")
    return page, first_tile, tiles


def blended(tiles: np.ndarray, c: int | None, outline: bool) -> np.ndarray:
    """The reference of what the page shows: the cutout under class c's map (inferno at alpha 0.6),
    the object's boundary (object pixels with a 4-neighbour outside) in cyan."""
    out = tiles[0].astype(float)
    if c is not None:
        out = (1 - OVERLAY_ALPHA) * out + OVERLAY_ALPHA * INFERNO[tiles[1 + c][..., 0]]
    if outline:
        inside = tiles[-1][..., 0] > 127
        padded = np.pad(inside, 1, mode="edge")
        edge = inside & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
        out[edge] = (0, 255, 255)
    return out


def canvas_pixels(page, selector: str) -> np.ndarray:
    """The RGB pixels of a canvas, scaled down by block means to THUMBNAIL x THUMBNAIL."""
    width, data = page.evaluate(
        f"(() => {{ const c = document.querySelector({selector!r});"
        " return [c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.width).data)]; })()"
    )
    rgb = np.asarray(data, float).reshape(width, width, 4)[..., :3]
    f = width // THUMBNAIL
    return rgb.reshape(THUMBNAIL, f, THUMBNAIL, f, 3).mean(axis=(1, 3))


def composite(page, k: int, c: int, outline: bool) -> np.ndarray:
    """What the page composes for point k (class c, -1: the cutout alone), as an RGB array."""
    data = page.evaluate(f"composite({k}, {c}, {str(outline).lower()}).then((d) => Array.from(d.data))")
    return np.asarray(data, float).reshape(THUMBNAIL, THUMBNAIL, 4)[..., :3]


def point_pixel(page, k: int) -> tuple[float, float]:
    """Where point ``k`` (its pc1/pc2) is drawn, in page pixels."""
    return tuple(
        page.evaluate(
            f"""(() => {{ const gd = document.getElementById('scatter'), L = gd._fullLayout;
                const r = gd.getBoundingClientRect();
                return [r.left + L._size.l + L.xaxis.l2p(C.pc1[{k}]),
                        r.top + L._size.t + L.yaxis.l2p(C.pc2[{k}])]; }})()"""
        )
    )


def drag(page, x0: float, y0: float, x1: float, y1: float) -> None:
    """A mouse drag from (x0, y0) to (x1, y1)."""
    page.mouse("mouseMoved", x0, y0)
    page.mouse("mousePressed", x0, y0, buttons=1)
    for t in np.linspace(0, 1, 8):
        page.mouse("mouseMoved", x0 + t * (x1 - x0), y0 + t * (y1 - y0), buttons=1)
    page.mouse("mouseReleased", x1, y1, buttons=1)


def choose(page, select: str, value: str) -> None:
    page.evaluate(f"(() => {{ const s = document.getElementById({select!r}); s.value = {value!r};"
                  " s.dispatchEvent(new Event('change')); })()")  # fmt: skip


PLOTTED = "document.getElementById('scatter').data.reduce((n, t) => n + t.x.length, 0)"


def test_the_page_works_offline_hovers_filters_selects_and_shows_strings_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explorer, "SHEET_TILES", 256)  # 715 tiles on three sheets
    points = synthetic_points()
    page_path, first_tile, tiles = write_page(points, tmp_path)
    html = page_path.read_text()
    assert "<script src" not in html and "<link" not in html  # everything inline
    assert html.count("data:image/jpeg;base64,") == 3
    root = "document.getElementById('explorer').dataset"
    with open_page(page_path.as_uri()) as page:
        n = len(points)
        assert page.wait_for(f"{root}.visible === '{n}'")
        assert page.evaluate(f"{root}.nImages") == str(n)
        assert page.evaluate(PLOTTED) == n  # one point per image, drawn by plotly.js from the page itself
        assert page.evaluate("document.title") == "saliency-audit explorer"
        assert page.evaluate("document.getElementById('injected-a')") is None

        # hover: the image's id and values, and its cutout under the predicted class's map, from any sheet
        # (point 52's tiles are 255-259: across the first two sheets; 103's are 510-514)
        for k in (1, 52, 103, 130, 5):
            x, y = point_pixel(page, k)
            page.mouse("mouseMoved", x + 1, y + 1)
            assert page.wait_for(f"{root}.drawn === {points['id'][k]!r}")
            values = page.evaluate("document.getElementById('values').textContent")
            assert points["id"][k] in values and points["predicted"][k] in values
            if first_tile[k] < 0:
                assert "no thumbnail" in page.evaluate("document.getElementById('thumb-note').textContent")
                continue
            shown = canvas_pixels(page, "#thumb")
            c = CLASSES.index(points["predicted"][k])
            own = np.abs(shown - blended(tiles[k], c, False)).mean()
            assert own < 6  # JPEG and the canvas's scaling
            assert np.abs(shown - blended(tiles[k + 1], c, False)).mean() > 3 * own  # not a neighbour's tile
            for c in (-1, 0, 1, 2):  # the page's blend against the reference, tile by tile
                reference = blended(tiles[k], None if c < 0 else c, False)
                assert np.abs(composite(page, k, c, False) - reference).max() <= 12
        assert page.evaluate("document.getElementById('injected-a')") is None

        # click pins the image: the cutout and every class's map with the object's outline, probabilities;
        # a hostile id and class stay text
        for k in (1, 52):
            x, y = point_pixel(page, k)
            page.mouse("mouseMoved", x, y)
            page.mouse("mousePressed", x, y, buttons=1)
            page.mouse("mouseReleased", x, y, buttons=1)
            assert page.wait_for(f"{root}.pinnedDrawn === {points['id'][k]!r}")
            assert page.evaluate("document.getElementById('pinned-id').textContent") == points["id"][k]
            captions = page.evaluate(
                "Array.from(document.querySelectorAll('#pinned-maps figcaption'), (f) => f.textContent)"
            )
            assert captions == ["image"] + [f"{c} \u00b7 p = {points[f'prob_{c}'][k]:.3f}" for c in CLASSES]
        assert page.evaluate("document.querySelectorAll('#injected-a, #injected-c').length") == 0
        for position, c in enumerate((None, 0, 1, 2)):
            reference = blended(tiles[k], c, True)
            shown = canvas_pixels(page, f"#pinned-maps figure:nth-child({position + 1}) canvas")
            assert np.abs(shown - reference).mean() < 8
            drawn = composite(page, k, -1 if c is None else c, True)
            cyan = np.all(reference == (0, 255, 255), axis=-1)
            assert cyan.sum() > 20 and np.array_equal(np.all(drawn == (0, 255, 255), axis=-1), cyan)
        page.mouse("mouseMoved", *point_pixel(page, 5))  # a hover elsewhere keeps the pin
        assert page.wait_for(f"{root}.drawn === {points['id'][5]!r}")
        assert page.evaluate(f"{root}.pinned") == points["id"][k]

        # catalog classes in the legend stay text: plotly would otherwise draw <a href> as a live link
        choose(page, "colour", "split")
        legend = "document.querySelector('.legend') ? document.querySelector('.legend').textContent : ''"
        assert page.wait_for(f"({legend}).includes('<a href=')")
        assert page.evaluate(f"({legend}).includes({HOSTILE_SPLIT!r})")
        assert page.evaluate("document.querySelectorAll('.legend a, .legend [href]').length") == 0

        # filters change the points shown to exactly the images that pass them
        choose(page, "filter-label", "high")
        high = points["label"] == "high"
        assert page.wait_for(f"{root}.visible === '{high.sum()}'")
        assert page.evaluate(PLOTTED) == high.sum()
        choose(page, "filter-flag", "background_reliant")
        assert page.wait_for(f"{root}.visible === '{(high & points['background_reliant']).sum()}'")
        choose(page, "filter-flag", "")
        choose(page, "filter-cluster", "high \u00b7 2")  # clusters are numbered within each predicted class
        strategy = high & (points["predicted"] == "high") & (points["cluster"] == 2)
        assert page.wait_for(f"{root}.visible === '{strategy.sum()}'")
        for name in ("filter-label", "filter-cluster"):
            choose(page, name, "")
        assert page.wait_for(f"{root}.visible === '{n}'")

        # a range of a statistic; the linked histogram counts the images shown
        choose(page, "range-stat", "relative_energy")
        page.evaluate("(() => { const a = document.getElementById('range-min'),"
                      " b = document.getElementById('range-max'); a.value = '0.2'; b.value = '0.6';"
                      " b.dispatchEvent(new Event('change')); })()")  # fmt: skip
        energy = points["relative_energy"]
        in_range = (energy >= 0.2) & (energy <= 0.6)
        assert page.wait_for(f"{root}.visible === '{in_range.sum()}'")
        assert "relative_energy" in page.evaluate("document.getElementById('ranges').textContent")
        # the histogram follows the other filters and shows its own statistic's range as a band
        counted = "document.getElementById('histogram').data[0].x.length"
        assert page.evaluate(counted) == energy.notna().sum()
        choose(page, "filter-label", "high")
        assert page.wait_for(f"{root}.visible === '{(in_range & high).sum()}'")
        assert page.evaluate(counted) == (energy.notna() & high).sum()
        choose(page, "filter-label", "")
        page.evaluate("document.getElementById('clear-ranges').click()")
        assert page.wait_for(f"{root}.visible === '{n}'")
        assert page.evaluate(counted) == energy.notna().sum()

        # a box dragged on the histogram keeps that range of the statistic
        edge = ("(() => { const gd = document.getElementById('histogram'), L = gd._fullLayout,"
                " r = gd.getBoundingClientRect(); return [r.left + L._size.l + L.xaxis.l2p(%s),"
                " r.top + L._size.t + L._size.h / 2]; })()")  # fmt: skip
        (hx0, hy), (hx1, _) = page.evaluate(edge % "0.3"), page.evaluate(edge % "0.5")
        drag(page, hx0, hy, hx1, hy)
        assert page.wait_for("ranges.relative_energy !== undefined")
        lo, hi = page.evaluate("ranges.relative_energy")
        assert abs(lo - 0.3) < 0.03 and abs(hi - 0.5) < 0.03
        kept = (energy >= lo) & (energy <= hi)
        assert page.wait_for(f"{root}.visible === '{kept.sum()}'")
        layout = "document.getElementById('histogram').layout"
        assert page.evaluate(f"{layout}.selections.length") == 0 and page.evaluate(f"{layout}.shapes.length") == 1
        # the histogram still shows every value, so a second box can widen the range
        (hx0, hy), (hx1, _) = page.evaluate(edge % "0.1"), page.evaluate(edge % "0.8")
        drag(page, hx0, hy, hx1, hy)
        assert page.wait_for("ranges.relative_energy[0] < 0.2")
        lo, hi = page.evaluate("ranges.relative_energy")
        assert abs(lo - 0.1) < 0.03 and abs(hi - 0.8) < 0.03
        assert page.wait_for(f"{root}.visible === '{((energy >= lo) & (energy <= hi)).sum()}'")
        page.evaluate("document.getElementById('clear-ranges').click()")
        assert page.wait_for(f"{root}.visible === '{n}'")

        # a box drawn with the mouse selects the points inside it; their ids are listed and exported
        page.evaluate("Plotly.relayout(document.getElementById('scatter'), {dragmode: 'select'}).then(() => true)")
        (x0, y0), (x1, y1) = point_pixel(page, 0), point_pixel(page, 3 * 12 + 4)  # pc1 0..4, pc2 0..3
        drag(page, x0 - 8, y0 + 8, x1 + 8, y1 - 8)
        inside = points[(points["pc1"] <= 4) & (points["pc2"] <= 3)]
        selected = f"{root}.selected"
        assert page.wait_for(f"{selected} !== '0' && {selected}") == str(len(inside))
        listed = page.evaluate("document.getElementById('selected-ids').value").split("\n")
        assert sorted(listed) == sorted(inside["id"])
        exported = list(csv.DictReader(io.StringIO(page.evaluate("csv()"))))
        assert sorted(row["id"] for row in exported) == sorted(inside["id"])  # hostile ids round-trip as text
        histogram = "document.getElementById('histogram').data"
        assert page.wait_for(f"{histogram}.length === 2")
        assert page.evaluate(f"{histogram}[1].x.length") == inside["relative_energy"].notna().sum()

        # a filter keeps the selected points it shows, highlighted, and lists only those
        choose(page, "filter-predicted", "high")
        both = inside[inside["predicted"] == "high"]
        assert 0 < len(both) < len(inside)
        assert page.wait_for(f"{selected} === '{len(both)}'")
        assert sorted(page.evaluate("document.getElementById('selected-ids').value").split("\n")) == sorted(both["id"])
        highlighted = "document.getElementById('scatter').data.reduce((n, t) => n + (t.selectedpoints || []).length, 0)"
        assert page.evaluate(highlighted) == len(both)


def test_points_join_pca_labels_predictions_and_statistics() -> None:
    pcs = pd.DataFrame({"id": ["b", "a", "c"], "pc1": [1.0, 2.0, 3.0], "pc2": [0.0, 1.0, 2.0]})
    labels = pd.DataFrame({"id": ["a", "b", "c"], "split": ["train", "valid", "train"], "target": [1.0, 2.0, 3.0]})
    predictions = pd.DataFrame(
        {"id": ["a", "b", "c"], "label": ["x", "y", "x"], "predicted": ["x", "x", "y"],
         "prob_x": [0.9, 0.6, 0.2], "prob_y": [0.1, 0.4, 0.8]}
    )  # fmt: skip
    stats = pd.DataFrame({"id": ["a"], "relative_energy": [0.3], "background_focused": [True], "cluster": [1]})
    points = explorer_points(pcs, labels, predictions, stats)
    assert points["id"].tolist() == ["b", "a", "c"]
    assert points["correct"].tolist() == [False, True, False]
    np.testing.assert_allclose(points["probability"], [0.6, 0.9, 0.8])
    np.testing.assert_allclose(points[["prob_x", "prob_y"]], [[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    assert points["background_focused"].tolist() == [False, True, False]
    assert points["background_reliant"].tolist() == [False, False, False]
    assert np.isnan(points.loc[0, "relative_energy"]) and points.loc[1, "relative_energy"] == 0.3
    assert (points["pc3"] == 0).all() and points["split"].tolist() == ["valid", "train", "train"]
    one_axis = explorer_points(pcs[["id", "pc1"]], labels, predictions, stats)  # pca.components: 1
    assert (one_axis["pc2"] == 0).all() and one_axis["pc1"].tolist() == [1.0, 2.0, 3.0]


def test_thumbnails_go_to_the_flagged_first_then_to_every_label_prediction_and_cluster() -> None:
    points = synthetic_points(20)  # 400 images
    flagged = np.flatnonzero(points[["background_focused", "background_reliant"]].any(axis=1))
    chosen = choose_thumbnails(points, 200)
    assert len(chosen) == 200 and set(flagged) <= set(chosen)
    rest = points.drop(index=flagged)
    strata = rest.groupby(["label", "predicted", "cluster"], dropna=False)
    assert strata.ngroups == 16  # 2 labels x 2 predictions x 4 clusters (one of them "none")
    share = (200 - len(flagged)) / len(rest)
    for _, group in strata:
        kept = len(set(group.index) & set(chosen))
        assert kept >= 1, "every stratum keeps some thumbnails"
        if len(group) >= 10:
            assert abs(kept / len(group) - share) < 0.1  # the larger ones in proportion to their sizes
    tight = choose_thumbnails(points, len(flagged) + 16)  # room for one per stratum
    for _, group in strata:
        assert len(set(group.index) & set(tight)) == 1
    assert len(choose_thumbnails(points, 50)) == 50 and set(choose_thumbnails(points, 50)) <= set(flagged)
    np.testing.assert_array_equal(choose_thumbnails(points, 1000), np.arange(400))


def test_tiles_hold_the_cutout_each_class_map_scaled_to_its_peak_and_the_object() -> None:
    size = 96
    pixels = np.full((1, size, size, 1), 100, np.uint8)
    maps = np.zeros((1, 2, size, size))
    maps[0, 0, :, size // 2 :] = 5.0  # class 0: the right half at its peak, the left at zero
    maps[0, 1] = -1.0  # class 1: nothing left after the ReLU
    yy, xx = np.mgrid[:size, :size]
    masks = ((yy - 48) ** 2 + (xx - 48) ** 2 <= 20**2)[None]
    tiles = panel_tiles(pixels, maps, masks)
    assert tiles.shape == (1, 4, THUMBNAIL, THUMBNAIL, 3)
    assert (tiles[0, 0] == 100).all()  # the grey band shown as grey
    assert (tiles[0, 1, :, :20] == 0).all() and (tiles[0, 1, :, -20:] == 255).all()
    assert (tiles[0, 2] == 0).all()
    region = tiles[0, 3, ..., 0] == 255
    assert region[24, 24] and not region[2, 2]
    assert abs(region.sum() - np.pi * 10**2) < 20  # the disc at half the scale


def test_sprite_sheets_hold_every_tile_in_order_across_sheets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explorer, "SHEET_TILES", 128)
    tiles = np.zeros((300, THUMBNAIL, THUMBNAIL, 3), np.uint8)
    tiles[:, :, :, 0] = (np.arange(300) % 256)[:, None, None]
    tiles[:, :, :, 1] = (np.arange(300) // 256 * 200)[:, None, None]
    sheets = SpriteSheets()
    sheets.add(tiles[:100])
    sheets.add(tiles[100:])
    jpegs = sheets.finish()
    assert len(jpegs) == 3 and SpriteSheets().finish() == []  # explorer.max_thumbnails: 0 makes no sheet
    decoded = [np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), float) for jpeg in jpegs]
    assert decoded[2].shape == (THUMBNAIL, SPRITE_COLUMNS * THUMBNAIL, 3)  # 44 tiles: one row
    for g in range(300):
        at = g % 128
        r, c = divmod(at, SPRITE_COLUMNS)
        y, x = r * THUMBNAIL, c * THUMBNAIL
        tile = decoded[g // 128][y + 8 : y + THUMBNAIL - 8, x + 8 : x + THUMBNAIL - 8]
        np.testing.assert_allclose(tile.mean(axis=(0, 1))[:2], tiles[g, 0, 0, :2], atol=3)


@pytest.mark.workflow
def test_the_demo_run_writes_an_explorer_of_every_audited_image(tiny_demo: Path) -> None:
    page_path = tiny_demo / "explorer.html"
    audited = ds.dataset(sorted((tiny_demo / "audit").glob("part-*.parquet"))).count_rows()
    assert f'data-n-images="{audited}"' in page_path.read_text()
    with open_page(page_path.as_uri()) as page:
        assert page.wait_for(f"document.getElementById('explorer').dataset.visible === '{audited}'")
        assert page.evaluate(PLOTTED) == audited
        x, y = point_pixel(page, 0)
        page.mouse("mouseMoved", x, y)
        hovered = page.wait_for("document.getElementById('explorer').dataset.hovered")  # '' until a hover
        assert hovered in pd.read_parquet(tiny_demo / "pca/pca.parquet")["id"].tolist()
        assert page.wait_for(f"document.getElementById('explorer').dataset.drawn === {hovered!r}")
        page.mouse("mousePressed", x, y, buttons=1)
        page.mouse("mouseReleased", x, y, buttons=1)
        assert page.wait_for(f"document.getElementById('explorer').dataset.pinnedDrawn === {hovered!r}")
        classes = page.evaluate("D.classes")
        assert page.evaluate("document.querySelectorAll('#pinned-maps canvas').length") == 1 + len(classes)
        maps = [composite(page, 0, c, False) for c in range(len(classes))]
        assert all(np.abs(m - composite(page, 0, -1, False)).mean() > 1 for m in maps)  # a map is drawn on each


@pytest.mark.workflow
def test_each_point_gets_its_own_tiles_whatever_the_tables_order(tiny_demo: Path, tmp_path: Path) -> None:
    """The rule's code on the tiny demo's outputs with the PCA rows shuffled (points no longer in the
    audit tables' order): every point's cutout tile is its own packed image."""
    pcs = pd.read_parquet(tiny_demo / "pca/pca.parquet").sample(frac=1.0, random_state=3)
    pcs.to_parquet(tmp_path / "pca.parquet")
    regions = (sorted(tiny_demo.glob("regions/part-*.npy")), sorted(tiny_demo.glob("regions/problems-*.csv")))
    out = tmp_path / "explorer.html"
    shown, tiled = write_explorer(
        tmp_path / "pca.parquet", tiny_demo / "classes/labels.parquet", tiny_demo / "eval/predictions.parquet",
        tiny_demo / "saliency/stats.parquet", sorted(tiny_demo.glob("audit/part-*.parquet")),
        tiny_demo / "images/images.npy", tiny_demo / "images/index.parquet", regions, 25, out,
    )  # fmt: skip
    assert shown == len(pcs) and tiled == min(25, len(pcs))
    none = write_explorer(
        tmp_path / "pca.parquet", tiny_demo / "classes/labels.parquet", tiny_demo / "eval/predictions.parquet",
        tiny_demo / "saliency/stats.parquet", sorted(tiny_demo.glob("audit/part-*.parquet")),
        tiny_demo / "images/images.npy", tiny_demo / "images/index.parquet", regions, 0, tmp_path / "none.html",
    )  # fmt: skip
    assert (
        none == (len(pcs), 0)
        and '<script id="sprites" type="application/json">[]<' in (tmp_path / "none.html").read_text()
    )
    html = out.read_text()
    data = json.loads(re.search(r'<script id="data"[^>]*>(.*?)</script>', html, re.S).group(1))
    urls = json.loads(re.search(r'<script id="sprites"[^>]*>(.*?)</script>', html, re.S).group(1))
    sheets = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB"), float)
              for u in urls]  # fmt: skip
    packed, index = open_packed(tiny_demo / "images/images.npy"), PackedIndex.read(tiny_demo / "images/index.parquet")
    assert data["columns"]["id"] == pcs["id"].tolist()
    with_tile = [k for k, t in enumerate(data["tile"]) if t >= 0]
    assert len(with_tile) == tiled
    for k in with_tile:
        g = data["tile"][k]
        assert g % data["tiles_per_image"] == 0
        r, c = divmod(g % data["sheet_tiles"], SPRITE_COLUMNS)
        y, x = r * THUMBNAIL, c * THUMBNAIL
        tile = sheets[g // data["sheet_tiles"]][y : y + THUMBNAIL, x : x + THUMBNAIL]
        own = shown_rgb(packed[index.rows([data["columns"]["id"][k]])[0]])
        reference = np.asarray(Image.fromarray(own).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR), float)
        assert np.abs(tile - reference).mean() < 4, data["columns"]["id"][k]
