"""The probes' verdicts on a finished demo run, scored against the twins, by class and by the star's distance.

    python benchmarks/demo_verdicts.py RESULTS [RESULTS ...] [--out numbers.json]

Reads what the workflow wrote (``saliency/stats.parquet``, ``saliency/twins.parquet``,
``demo/catalog.csv`` and the true masks under ``demo/masks``) and prints, per predicted
class: the images whose off-object sources truly carry more than half of the margin
(the image against its twin without them), the recall and precision of
``background_reliant``, the share flagged, and the shares of ``uncertain`` (all images
and truly reliant ones). Then the recall of the starred images by the star's distance
from the object's true region, in 2 px bands. Several results folders (the same model
probed with other settings, or the clean demo) are printed one after another.
"""

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

BANDS = np.arange(0, 32, 2)


def star_distance(results: Path, catalog: pd.DataFrame) -> pd.Series:
    """Distance (px) from each planted star's centre to the nearest pixel of its galaxy's true mask."""
    starred = catalog.dropna(subset=["shortcut_x", "shortcut_y"])
    out = {}
    for obj_id, x, y in zip(starred["objID"].astype(str), starred["shortcut_x"], starred["shortcut_y"]):
        mask = np.asarray(Image.open(results / f"demo/masks/{obj_id}.png")) > 0
        distance = ndimage.distance_transform_edt(~mask)
        row, col = int(round(y)), int(round(x))
        if 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]:
            out[obj_id] = float(distance[row, col])
    return pd.Series(out, dtype=float)


def verdicts(results: Path) -> dict[str, Any]:
    stats = pd.read_parquet(results / "saliency/stats.parquet")
    stats["id"] = stats["id"].astype(str)
    twins = pd.read_parquet(results / "saliency/twins.parquet")
    share = twins.set_index(twins["id"].astype(str))["off_object_share"].reindex(stats["id"])
    truth = (share > 0.5).to_numpy()
    known = share.notna().to_numpy()
    flagged = stats["background_reliant"].to_numpy(bool)
    undecided = (stats["probe_state"] == "uncertain").to_numpy()
    out: dict[str, Any] = {"results": str(results), "classes": {}}
    for name in stats["predicted"].astype(str).unique():
        member = (stats["predicted"].astype(str) == name).to_numpy() & known
        positive = member & truth
        out["classes"][name] = {
            "n": int(member.sum()),
            "n_reliant": int(positive.sum()),
            "flagged_rate": float(flagged[member].mean()),
            "recall_reliant": float(flagged[positive].mean()) if positive.any() else None,
            "precision_reliant": float(truth[flagged & member].mean()) if (flagged & member).any() else None,
            "uncertain_rate": float(undecided[member].mean()),
            "uncertain_rate_reliant": float(undecided[positive].mean()) if positive.any() else None,
        }
    catalog = pd.read_csv(results / "demo/catalog.csv", dtype={"objID": str})
    if catalog["shortcut_x"].notna().any():
        distance = star_distance(results, catalog).reindex(stats["id"]).to_numpy()
        bands = []
        for low in BANDS:
            members = known & truth & (distance >= low) & (distance < low + 2)
            if members.any():
                bands.append({"distance_px": f"{low}-{low + 2}", "n_reliant": int(members.sum()),
                              "recall_reliant": float(flagged[members].mean())})  # fmt: skip
        out["recall_by_star_distance"] = bands
    return out


def show(numbers: dict[str, Any]) -> None:
    print(f"\n{numbers['results']}")
    print(pd.DataFrame(numbers["classes"]).T.to_string(float_format=lambda v: f"{v:.3f}"))
    if numbers.get("recall_by_star_distance"):
        print(pd.DataFrame(numbers["recall_by_star_distance"]).to_string(index=False, float_format="{:.3f}".format))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    numbers = [verdicts(results) for results in args.results]
    for each in numbers:
        show(each)
    if args.out:
        args.out.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
