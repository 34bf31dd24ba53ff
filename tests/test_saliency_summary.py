"""Flag-rate summaries, the shortcut benchmark, headlines and gallery selection on hand-made tables."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from saliency_audit.audit.map_geometry import MapGeometry
from saliency_audit.model.metrics import top_losses
from saliency_audit.saliency.clusters import cluster_summary
from saliency_audit.saliency.galleries import GalleryError, gallery_table, most_background_reliant, random_sample
from saliency_audit.saliency.stats import image_stats, with_probes
from saliency_audit.saliency.summary import (
    headlines,
    reliance_benchmark,
    shortcut_benchmark,
    summary_table,
)

CLASSES = ["low", "high"]


def stats_table() -> pd.DataFrame:
    """8 images: 4 true high (2 with a shortcut, off the object), 4 true low."""
    frame = pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(8)],
            "split": ["train", "valid"] * 4,
            "label": ["high"] * 4 + ["low"] * 4,
            "predicted": ["high", "high", "high", "low", "low", "low", "low", "high"],
            "prob_low": [0.1, 0.2, 0.3, 0.55, 0.9, 0.8, 0.7, 0.4],
            "prob_high": [0.9, 0.8, 0.7, 0.45, 0.1, 0.2, 0.3, 0.6],
            "energy_in_object": [0.2, 0.3, 0.8, 0.1, 0.7, 0.6, np.nan, 0.5],
            "relative_energy": [0.25, 0.35, 0.95, 0.1, 0.8, 0.7, np.nan, 0.6],
            "state": ["ok"] * 6 + ["empty_map", "ok"],
        }
    )
    for column in ("label", "predicted"):
        frame[column] = pd.Categorical(frame[column], categories=CLASSES)
    frame["correct"] = frame["label"].astype(str) == frame["predicted"].astype(str)
    frame["background_focused"] = (frame["state"] == "ok") & (frame["relative_energy"] < 0.5)
    for metric in ("pointing_hit", "rank_accuracy", "peak_offset", "entropy"):
        frame[metric] = 0.5
    # the maps of each class: 'high' evidence of g3 (a clean high galaxy predicted low) is on the object
    frame["energy_in_object_high"] = [0.2, 0.3, 0.8, 0.7, 0.1, 0.1, np.nan, 0.5]
    frame["relative_energy_high"] = [0.25, 0.35, 0.95, 0.8, 0.1, 0.1, np.nan, 0.6]
    frame["state_high"] = frame["state"]
    frame["energy_in_object_low"] = frame["relative_energy_low"] = 0.5
    frame["state_low"] = "ok"
    # the probes: g0 and g1 (the shortcut images) need their background, g7 a little
    frame["background_reliance"] = [0.9, 0.6, 0.1, 0.0, 0.0, 0.2, np.nan, 0.3]
    frame["probe_state"] = ["ok"] * 5 + ["uncertain", "no_margin", "ok"]
    frame["background_reliant"] = (frame["probe_state"] == "ok") & (frame["background_reliance"] >= 0.5)
    sign = np.where(frame["predicted"] == "high", 1.0, -1.0)
    for view, kept in (("", [1] * 8), ("_object_only", [0, 0, 1, 1, 1, 1, 1, 1]), ("_background_only", [1] + [0] * 7)):
        frame[f"margin{view}_high"] = sign * np.where(kept, 1.0, -1.0)  # each view keeps or flips the prediction
        frame[f"margin{view}_low"] = -frame[f"margin{view}_high"]
    return frame


def test_benchmark_scores_shortcut_images_within_their_class() -> None:
    stats = stats_table()
    truth = pd.Series([1, 1, 0, 0, 0, 0, 0, 0], index=stats["id"])
    result = shortcut_benchmark(stats, truth, "shortcut")
    assert list(result["classes"]) == ["high"]
    high = result["classes"]["high"]
    assert high["auroc_energy_in_object"] == pytest.approx(1.0)
    assert high["auroc_relative_energy"] == pytest.approx(1.0)
    # g3, clean but predicted low, has its 'low' map on the sky: only the predicted-class score suffers
    assert high["auroc_energy_in_object_predicted"] == pytest.approx(0.5)
    assert (high["n_shortcut"], high["n_clean"]) == (2, 2)
    assert high["flag_rate_shortcut"] == 1.0 and high["flag_rate_clean"] == 0.5


def test_benchmark_without_shortcut_images_says_so() -> None:
    stats = stats_table()
    result = shortcut_benchmark(stats, pd.Series(0, index=stats["id"]), "shortcut")
    assert result["classes"] == {} and "shortcut" in result["note"]


def test_summary_rows_per_group() -> None:
    stats = stats_table()
    truth = pd.Series([1, 1, 0, 0, 0, 0, 0, 0], index=stats["id"])
    summary = summary_table(stats, shortcut_benchmark(stats, truth, "shortcut"), truth.to_numpy() > 0)
    row = summary.set_index(["group_by", "group"])
    assert row.loc[("all", "all"), "n"] == 8
    assert row.loc[("all", "all"), "flagged"] == 3
    assert row.loc[("all", "all"), "reliant"] == 2
    assert row.loc[("all", "all"), "uncertain"] == 1 and row.loc[("all", "all"), "uncertain_rate"] == 1 / 8
    assert row.loc[("predicted class", "high"), "flag_rate"] == pytest.approx(2 / 4)
    assert row.loc[("predicted class", "low"), "empty_map_rate"] == pytest.approx(1 / 4)
    # the mean is over the "ok" rows only
    assert row.loc[("true class", "low"), "mean_energy_in_object"] == pytest.approx(np.mean([0.7, 0.6, 0.5]))
    assert row.loc[("prediction", "incorrect"), "n"] == 2
    assert row.loc[("split", "valid"), "n"] == 4
    shortcut, clean = (
        row.loc[("shortcut in true class", "high: shortcut")],
        row.loc[("shortcut in true class", "high: clean")],
    )
    assert (shortcut["n"], shortcut["flagged"], shortcut["flag_rate"]) == (2, 2, 1.0)  # g0, g1: complete rows
    assert (clean["n"], clean["flagged"], clean["reliant"]) == (2, 1, 0)  # g2, g3 (its predicted-low map is off)
    assert shortcut["auroc_energy_in_object"] == pytest.approx(1.0) and pd.isna(clean["auroc_energy_in_object"])
    assert row.loc[("shortcut in true class", "high: shortcut"), "mean_energy_in_object"] == pytest.approx(0.25)


def test_headlines_name_class_and_rate() -> None:
    stats = stats_table()
    summary = summary_table(stats, None)
    lines = headlines(summary, None, 0.5, 0.5)
    assert lines[1].startswith(
        "50% of 'high' predictions lose at least 50% of their margin when the background "
        "is replaced, beyond what the fill alone does (2 of 4; 0 are uncertain, their margin within the fill's "
        "own effect). Their maps say 50% rest mainly on the background (2 of 4"
    )
    assert lines[1].endswith("the two verdicts agree on 100% of them.")


def test_summary_rows_carry_both_verdicts() -> None:
    row = summary_table(stats_table(), None).set_index(["group_by", "group"])
    assert row.loc[("predicted class", "low"), "reliant"] == 0
    assert row.loc[("predicted class", "low"), "agreement"] == pytest.approx(3 / 4)  # g3 is flagged, not reliant
    assert row.loc[("all", "all"), "mean_background_reliance"] == pytest.approx(
        np.mean([0.9, 0.6, 0.1, 0, 0, 0.2, 0.3])
    )


def test_reliance_benchmark_against_twins() -> None:
    stats = stats_table()
    twins = pd.DataFrame({"id": stats["id"], "off_object_share": [0.8, 0.7, 0.6, 0.0, 0.0, 0.0, 0.0, 0.1]})
    high = reliance_benchmark(stats, twins)["classes"]["high"]
    # predicted high: g0, g1, g2 (truth reliant), g7 (not); reliant flags g0, g1; focused flags g0, g1
    assert (high["n"], high["n_reliant"]) == (4, 3)
    assert high["recall_reliant"] == pytest.approx(2 / 3) and high["precision_reliant"] == 1.0
    assert high["auroc_background_reliance"] == pytest.approx(2 / 3)  # g2 (0.1) ranks below g7 (0.3)
    assert high["tpr_at_5pct_fpr_background_reliance"] == pytest.approx(2 / 3)


def test_a_class_without_an_object_is_never_flagged_and_is_counted_apart() -> None:
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[:, 2:6, 2:6] = True
    cams = np.zeros((2, 2, 8, 8), dtype=np.float32)
    cams[:, :, 0, 0] = 1.0  # both maps off the object
    frame = pd.DataFrame({"id": ["a", "b"], "split": ["valid"] * 2, "label": ["low", "high"],
                          "predicted": ["low", "high"], "prob_low": [0.9, 0.1], "prob_high": [0.1, 0.9]})  # fmt: skip
    geometry = MapGeometry((0.0, 0.0), (1.0, 1.0))
    everywhere = image_stats(frame, cams, mask, CLASSES, 0.5, geometry)
    assert everywhere["background_focused"].tolist() == [True, True]  # the counterfactual: both flagged
    out = image_stats(frame, cams, mask, CLASSES, 0.5, geometry, object_classes=["high"])
    assert out["state"].tolist() == ["no_object_expected", "ok"] and out["background_focused"].tolist() == [False, True]
    assert out.loc[0, "energy_in_object_low"] == pytest.approx(0.0)  # the statistics are kept
    probes = pd.DataFrame({"probe_state": ["ok", "ok"], "background_reliance": [0.9, 0.9]}, index=["a", "b"])
    out = with_probes(out, probes, 0.5)
    assert out["background_reliant"].tolist() == [False, True]
    summary = summary_table(out, None).set_index(["group_by", "group"])
    assert summary.loc[("predicted class", "low"), "no_object_expected"] == 1
    assert summary.loc[("predicted class", "low"), ["flagged", "reliant"]].tolist() == [0, 0]
    lines = headlines(summary.reset_index(), None, 0.5, 0.5)
    assert lines[0].startswith("'low' has no object (saliency.object_classes): its 1 predictions are not scored")


def test_image_stats_pick_the_predicted_class_map() -> None:
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 2:6, 2:6] = True
    cams = np.zeros((1, 2, 8, 8), dtype=np.float32)
    cams[0, 0, 0, 0] = 1.0  # 'low' map: off the object
    cams[0, 1, 3, 3] = 1.0  # 'high' map: on it
    frame = pd.DataFrame({"id": ["a"], "split": ["valid"], "label": ["low"], "predicted": ["high"]})
    out = image_stats(frame, cams, mask, CLASSES, 0.5, MapGeometry((0.0, 0.0), (1.0, 1.0)))
    assert out.loc[0, "energy_in_object"] == pytest.approx(1.0)
    assert out.loc[0, "energy_in_object_low"] == pytest.approx(0.0)
    assert out.loc[0, "energy_in_object_high"] == pytest.approx(1.0)
    assert not out.loc[0, "correct"] and not out.loc[0, "background_focused"]


def test_gallery_selection() -> None:
    stats = stats_table()
    high = stats["predicted"] == "high"
    # without probes: the least map energy on the object, correct and misclassified apart
    assert most_background_reliant(stats, high & stats["correct"], 2)["id"].tolist() == ["g0", "g1"]
    assert most_background_reliant(stats, high & ~stats["correct"], 2)["id"].tolist() == ["g7"]
    # with probes: the highest background_reliance among those with a verdict, whatever the maps say
    probed = stats.assign(background_reliance=[0.1, 0.0, 0.9, 0.0, 0.0, 0.0, np.nan, 0.3],
                          probe_state=["ok", "ok", "ok", "ok", "ok", "ok", "empty_object", "ok"])  # fmt: skip
    chosen = most_background_reliant(probed, high & probed["correct"], 3)
    assert chosen["id"].tolist() == ["g2", "g0", "g1"]
    table = gallery_table(chosen)
    assert table["rank"].tolist() == [1, 2, 3] and table["id"].tolist() == ["g2", "g0", "g1"]
    assert table["prob_predicted"].tolist() == [0.7, 0.9, 0.8] and "background_reliance" in table
    assert top_losses(stats, CLASSES, 1)["id"].tolist() == ["g7"]  # valid, true low, p(low) = 0.4
    catalog = pd.DataFrame({"z": np.linspace(0.0, 0.14, 8)}, index=stats["id"])
    sample = random_sample(stats, catalog, 5, "0.03 < z < 0.07", seed=0)
    assert set(sample["id"]) == {"g2", "g3"}
    with pytest.raises(GalleryError, match="saliency.gallery.where"):
        random_sample(stats, catalog, 5, "redshift > 0.1", seed=0)


def cluster_stats(groups: list[tuple[str, int, int, int]], probes: bool = True) -> pd.DataFrame:
    """Per-image statistics of (predicted class, cluster, images, of which off the object) groups."""
    rows = []
    for predicted, cluster, n, off in groups:
        for k in range(n):
            rows.append({"id": f"{predicted}{cluster}-{k}", "predicted": predicted, "cluster": cluster,
                         "energy_in_object": 0.5, "relative_energy": 0.9, "correct": True,
                         "background_focused": False, "state": "ok", "pointing_hit": float(k >= off)})  # fmt: skip
    stats = pd.DataFrame(rows)
    if probes:
        stats["probe_state"] = "ok"
        stats["background_reliance"] = 1.0 - stats["pointing_hit"]
        stats["background_reliant"] = stats["pointing_hit"] == 0.0
    return stats


@pytest.mark.parametrize("probes", [True, False])
def test_a_candidate_shortcut_is_a_cluster_that_contrasts_with_the_rest_of_its_class(probes: bool) -> None:
    stats = cluster_stats([("high", 0, 40, 4), ("high", 1, 30, 20), ("high", 2, 3, 2), ("low", 0, 50, 50)], probes)
    summary = cluster_summary(stats).set_index(["predicted", "cluster"])
    assert summary["contrast_measure"].eq("background_reliant" if probes else "pointing_miss").all()
    high = summary.loc["high"]
    assert high["candidate_shortcut"].tolist() == [False, True, False]
    # 20 of 30 against 6 of 43 elsewhere in the class; Fisher's exact test written out as a hypergeometric tail
    assert high.loc[1, "contrast"] == pytest.approx(20 / 30 - 6 / 43)
    assert high.loc[1, "contrast_p"] == pytest.approx(hypergeom.sf(19, 73, 26, 30))
    assert high.loc[2, "contrast"] > 0.2 and high.loc[2, "contrast_p"] > 0.01  # 2 of 3: too few to tell
    assert high["share"].sum() == pytest.approx(1.0) and high["n"].tolist() == [40, 30, 3]
    # a class that is one cluster is the class's behaviour, not a candidate, however far off the object
    low = summary.loc[("low", 0)]
    assert low["off_object_rate"] == 1.0 and np.isnan(low["contrast"]) and not low["candidate_shortcut"]
