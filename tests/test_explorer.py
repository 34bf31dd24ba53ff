"""The audit explorer: the page's data and thumbnails, and the page itself in headless Chromium with
no network (hover, filters, a box selection, hostile catalog strings shown as text)."""

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from matplotlib import colormaps

from devtools import open_page
from saliency_audit.report.explorer import (
    OVERLAY_ALPHA,
    THUMBNAIL,
    choose_thumbnails,
    explorer_html,
    explorer_points,
    overlay,
    sprite_sheet,
)

HOSTILE_SPLIT = '<a href="https://example.org/x">valid</a> &amp; <b>b</b>'
HOSTILE = [
    "<script>document.title='pwned'</script>",
    "</script><img src=x id=injected-a onerror=\"document.title='pwned'\">",
    "{{SPRITE}} {{DATA}} & \"quoted\" 'single'",
]


def synthetic_points(n_side: int = 12) -> pd.DataFrame:
    """Points on a grid (far enough apart to hover one), two classes, some flagged, hostile ids."""
    yy, xx = np.mgrid[:n_side, :n_side]
    n = n_side * n_side
    ids = [f"img{i:04d}" for i in range(n)]
    ids[:3] = HOSTILE
    label = np.where(xx.ravel() < n_side // 2, "low", "high")
    predicted = np.where(yy.ravel() < 2, np.where(label == "low", "high", "low"), label)
    return pd.DataFrame(
        {
            "id": ids,
            "split": np.where(np.arange(n) % 5 == 0, HOSTILE_SPLIT, "train"),
            "label": label,
            "predicted": predicted,
            "correct": label == predicted,
            "probability": np.linspace(0.5, 1.0, n),
            "target": np.linspace(8.0, 9.3, n),
            "pc1": xx.ravel().astype(float),
            "pc2": yy.ravel().astype(float),
            "pc3": -yy.ravel().astype(float),
            "relative_energy": np.where(np.arange(n) % 7 == 0, np.nan, np.linspace(0, 1, n)),
            "background_focused": np.arange(n) % 4 == 0,
            "background_reliance": np.linspace(-0.2, 0.9, n),
            "background_reliant": np.arange(n) % 6 == 0,
            "cluster": np.arange(n) % 3,
        }
    )


def write_page(points: pd.DataFrame, folder: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 255, (len(points), THUMBNAIL, THUMBNAIL, 3), dtype=np.uint8)
    tile_of_point = np.arange(len(points))
    tile_of_point[5] = -1  # sampled out
    page = folder / "explorer.html"
    page.write_text(explorer_html(points, tile_of_point, sprite_sheet(tiles)), encoding="utf-8")
    return page, tile_of_point


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


PLOTTED = "document.getElementById('scatter').data.reduce((n, t) => n + t.x.length, 0)"


def test_the_page_works_offline_hovers_filters_selects_and_shows_strings_as_text(tmp_path: Path) -> None:
    points = synthetic_points()
    page_path, tile_of_point = write_page(points, tmp_path)
    html = page_path.read_text()
    assert "<script src" not in html and "<link" not in html  # everything inline
    with open_page(page_path.as_uri()) as page:
        n = len(points)
        assert page.wait_for(f"document.getElementById('explorer').dataset.visible === '{n}'")
        assert page.evaluate("document.getElementById('explorer').dataset.nImages") == str(n)
        assert page.evaluate(PLOTTED) == n  # one point per image, drawn by plotly.js from the page itself
        assert page.evaluate("document.title") == "saliency-audit explorer"
        assert page.evaluate("document.getElementById('injected-a')") is None

        # hover: the image's id, values and thumbnail tile; a hostile id is shown as its own text
        for k in (1, 40, 5):
            x, y = point_pixel(page, k)
            page.mouse("mouseMoved", x + 1, y + 1)
            assert page.wait_for(f"document.getElementById('explorer').dataset.hovered === {points['id'][k]!r}")
            values = page.evaluate("document.getElementById('values').textContent")
            assert points["id"][k] in values and points["predicted"][k] in values
            position = page.evaluate("document.getElementById('thumb').style.backgroundPosition")
            if tile_of_point[k] < 0:
                assert "no thumbnail" in page.evaluate("document.getElementById('thumb').textContent")
            else:
                column, row = tile_of_point[k] % 64, tile_of_point[k] // 64
                assert position == f"{-column * 144}px {-row * 144}px"
        assert page.evaluate("document.getElementById('injected-a')") is None

        # catalog classes in the legend stay text: plotly would otherwise draw <a href> as a live link
        page.evaluate("(() => { const s = document.getElementById('colour'); s.value = 'split';"
                      " s.dispatchEvent(new Event('change')); })()")  # fmt: skip
        legend = "document.querySelector('.legend') ? document.querySelector('.legend').textContent : ''"
        assert page.wait_for(f"({legend}).includes('<a href=')")
        assert page.evaluate(f"({legend}).includes({HOSTILE_SPLIT!r})")
        assert page.evaluate("document.querySelectorAll('.legend a, .legend [href]').length") == 0

        # a filter changes the points shown to exactly the images that pass it
        page.evaluate("(() => { const s = document.getElementById('filter-label'); s.value = 'high';"
                      " s.dispatchEvent(new Event('change')); })()")  # fmt: skip
        high = int((points["label"] == "high").sum())
        assert page.wait_for(f"document.getElementById('explorer').dataset.visible === '{high}'")
        assert page.evaluate(PLOTTED) == high
        page.evaluate("(() => { const s = document.getElementById('filter-flag'); s.value = 'background_reliant';"
                      " s.dispatchEvent(new Event('change')); })()")  # fmt: skip
        both = int(((points["label"] == "high") & points["background_reliant"]).sum())
        assert page.wait_for(f"document.getElementById('explorer').dataset.visible === '{both}'")
        for name in ("filter-label", "filter-flag"):
            page.evaluate(f"(() => {{ const s = document.getElementById('{name}'); s.value = '';"
                          " s.dispatchEvent(new Event('change')); })()")  # fmt: skip
        assert page.wait_for(f"document.getElementById('explorer').dataset.visible === '{n}'")

        # a box drawn with the mouse selects the points inside it; their ids are listed and exported
        page.evaluate("Plotly.relayout(document.getElementById('scatter'), {dragmode: 'select'}).then(() => true)")
        (x0, y0), (x1, y1) = point_pixel(page, 0), point_pixel(page, 3 * 12 + 4)  # pc1 0..4, pc2 0..3
        box = (x0 - 8, y1 - 8, x1 + 8, y0 + 8)
        page.mouse("mouseMoved", box[0], box[3])
        page.mouse("mousePressed", box[0], box[3], buttons=1)
        for t in np.linspace(0, 1, 8):
            page.mouse("mouseMoved", box[0] + t * (box[2] - box[0]), box[3] + t * (box[1] - box[3]), buttons=1)
        page.mouse("mouseReleased", box[2], box[1], buttons=1)
        inside = points[(points["pc1"] <= 4) & (points["pc2"] <= 3)]
        selected = "document.getElementById('explorer').dataset.selected"
        assert page.wait_for(f"{selected} !== '0' && {selected}") == str(len(inside))
        listed = page.evaluate("document.getElementById('selected-ids').value").split("\n")
        assert sorted(listed) == sorted(inside["id"])
        exported = list(csv.DictReader(io.StringIO(page.evaluate("csv()"))))
        assert sorted(row["id"] for row in exported) == sorted(inside["id"])  # hostile ids round-trip as text


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
    assert points["background_focused"].tolist() == [False, True, False]
    assert points["background_reliant"].tolist() == [False, False, False]
    assert np.isnan(points.loc[0, "relative_energy"]) and points.loc[1, "relative_energy"] == 0.3
    assert (points["pc3"] == 0).all() and points["split"].tolist() == ["valid", "train", "train"]


def test_thumbnails_go_to_the_flagged_first_then_to_every_label_and_prediction() -> None:
    points = synthetic_points(20)  # 400 images
    flagged = np.flatnonzero(points[["background_focused", "background_reliant"]].any(axis=1))
    chosen = choose_thumbnails(points, 200)
    assert len(chosen) == 200 and set(flagged) <= set(chosen)
    rest = points.drop(index=flagged)
    for (_, _), group in rest.groupby(["label", "predicted"]):
        assert set(group.index) & set(chosen), "every label/prediction pair keeps some thumbnails"
    assert len(choose_thumbnails(points, 50)) == 50 and set(choose_thumbnails(points, 50)) <= set(flagged)
    np.testing.assert_array_equal(choose_thumbnails(points, 1000), np.arange(400))


def test_overlay_blends_the_inferno_map_at_alpha_0_6() -> None:
    pixels = np.full((1, THUMBNAIL, THUMBNAIL, 3), 100, np.uint8)
    maps = np.zeros((1, THUMBNAIL, THUMBNAIL))
    maps[0, :, THUMBNAIL // 2 :] = 5.0  # the right half at the map's peak, the left at zero
    tile = overlay(pixels, maps)[0].astype(float)
    for value, column in ((0.0, 4), (1.0, THUMBNAIL - 5)):
        expected = (1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * 255 * np.asarray(colormaps["inferno"](value)[:3])
        np.testing.assert_allclose(tile[THUMBNAIL // 2, column], expected, atol=1.5)


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
        assert page.evaluate("document.getElementById('thumb').style.backgroundImage").startswith(
            'url("data:image/jpeg'
        )
