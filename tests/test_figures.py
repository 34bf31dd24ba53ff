"""Every figure that prints class labels prints them shortened: a catalog value of any length draws."""

import io

import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from saliency_audit.report.background_figures import backgrounds_figure
from saliency_audit.report.figures import LABEL_LIMIT, plt, short_label
from saliency_audit.report.model_figures import confusion_figure, roc_figure, top_losses_figure
from saliency_audit.report.pca_figures import ColourScale, scatter_figure, thumbnail_figure
from saliency_audit.report.saliency_figures import cluster_figure, energy_figure, gallery_figure

LONG = "x" * 1_000_000
CLASSES = ["b", LONG]
N = 8


def predictions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    label = pd.Categorical.from_codes(np.arange(N) % 2, CLASSES)
    prob = rng.uniform(0.1, 0.9, N)
    return pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(N)],
            "split": "valid",
            "label": label,
            "predicted": pd.Categorical.from_codes((np.arange(N) // 2) % 2, CLASSES),
            f"prob_{CLASSES[0]}": 1 - prob,
            f"prob_{CLASSES[1]}": prob,
            "pc1": rng.normal(size=N),
            "pc2": rng.normal(size=N),
            "target": label.astype(str),
            "row": np.arange(N),
        }
    )


def drawn() -> dict[str, plt.Figure]:
    points = predictions()
    images = np.random.default_rng(1).integers(0, 255, (N, 16, 16, 3), dtype=np.uint8)
    losses = points.assign(loss=np.linspace(2, 1, N), correct=points["label"] == points["predicted"])
    stats = points.assign(state="ok", energy_in_object=np.linspace(0.1, 0.9, N), relative_energy=0.5)
    views = ("acc_original", "acc_object_only", "acc_background_only", "acc_mixed_same", "acc_mixed_rand")
    table = pd.DataFrame({"split": "all", "class": CLASSES, "n": [4, 4], "chance": 0.5, "bg_gap": 0.25,
                          "bg_gap_se": 0.1, **{column: 0.5 for column in views}})  # fmt: skip
    summary = pd.DataFrame({"predicted": [LONG], "cluster": [0], "n": [4], "share": [1.0], "energy_in_object": [0.5],
                            "relative_energy": [1.0], "candidate_shortcut": [True]})  # fmt: skip
    chosen = losses.head(2).assign(**{f"energy_in_object_{name}": 0.5 for name in CLASSES})
    cams, masks = np.ones((2, 2, 4, 4)), np.zeros((2, 16, 16), bool)
    return {
        "confusion": confusion_figure(np.array([[3, 1], [2, 2]]), CLASSES, "kind"),
        "roc": roc_figure(points, CLASSES, 0.5),
        "top losses": top_losses_figure(losses.head(4), images),
        "scatter": scatter_figure(points, ColourScale.from_target({"column": "kind"}, CLASSES), "kind"),
        "thumbnails": thumbnail_figure(points, images, CLASSES),
        "backgrounds": backgrounds_figure(table),
        "energy": energy_figure(stats, 0.5, None),
        "clusters": cluster_figure(LONG, summary, {(LONG, 0): np.ones((4, 4))}, {0: [(images[0], np.ones((4, 4)))]}),
        "gallery": gallery_figure(chosen, images[:2], cams, masks, CLASSES, "Top losses"),
    }


def test_a_million_character_class_label_is_drawn_shortened_in_every_figure() -> None:
    for name, figure in drawn().items():
        png = io.BytesIO()
        figure.savefig(png, format="png", bbox_inches="tight")  # the long label made this 12000030 pixels wide
        assert png.getbuffer().nbytes < 2_000_000, name
        texts = [text.get_text() for text in figure.findobj(matplotlib.text.Text)]
        assert any("x" * (LABEL_LIMIT - 1) + "…" in text for text in texts), name
        assert not any("x" * LABEL_LIMIT in text for text in texts), name
        plt.close(figure)


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ("whale", "whale"),
        ("x" * LABEL_LIMIT, "x" * LABEL_LIMIT),
        ("x" * (LABEL_LIMIT + 1), "x" * (LABEL_LIMIT - 1) + "…"),
        ("two\nlines\tand  tabs", "two lines and tabs"),
        (3.5, "3.5"),
    ],
)
def test_short_label_keeps_short_labels_and_cuts_long_ones_with_an_ellipsis(label, shown) -> None:
    assert short_label(label) == shown and len(short_label(label)) <= LABEL_LIMIT
