"""The map placement, before and after: a finished run's statistics re-scored with each cell drawn
at its receptive-field centre (the run's ``map_geometry``) and with the image-resize placement
(``align_corners=False``: cell centres in the middle of their stride blocks).

    python benchmarks/placement.py RESULTS [CONFIG]   # CONFIG on top of config/config.yaml, as Snakemake does

Same model, maps and object regions; only the placement differs. Prints, per predicted class,
the ``background_focused`` rate under both, and where the run has twins (the demo) the recall
and precision of the flag against the twins' truth, and where it has a truth column the AUROC of
1 - relative_energy of the class's own map for the planted shortcut.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from saliency_audit.audit.map_geometry import MapGeometry  # noqa: E402
from saliency_audit.audit.tables import audit_batches, audit_dataset, read_audit_metadata, read_cams  # noqa: E402
from saliency_audit.config import apply_demo, resolve_results, with_defaults  # noqa: E402
from saliency_audit.data.image_io import open_packed, read_rows  # noqa: E402
from saliency_audit.data.regions import image_sizes, object_regions  # noqa: E402
from saliency_audit.model.metrics import binary_auc  # noqa: E402
from saliency_audit.saliency.stats import image_stats  # noqa: E402


def rescore(results: Path, region: dict, threshold: float, max_pixels: int) -> dict[str, pd.DataFrame]:
    dataset = audit_dataset(sorted((results / "audit").glob("part-*.parquet")))
    meta = read_audit_metadata(dataset.schema)
    classes, map_shape = meta["classes"], meta["map_shape"]
    centred = MapGeometry.from_dict(meta["map_geometry"])
    resized = MapGeometry(tuple((s - 1) / 2 for s in centred.stride), centred.stride)
    images = open_packed(results / "images/images.npy")
    index = pd.read_parquet(results / "images/index.parquet")
    rows = index.set_index(index["id"].astype(str))["row"]
    catalog = pd.read_parquet(results / "catalog/clean.parquet").set_index("id")
    keep = ["id", "split", "label", "predicted", *(f"prob_{c}" for c in classes)]
    out: dict[str, list[pd.DataFrame]] = {"centred": [], "resized": []}
    for batch in audit_batches(dataset, keep + [f"cam_{c}" for c in classes], 1024):
        frame = batch.select(keep).to_pandas()
        ids = frame["id"].astype(str).tolist()
        pixels = read_rows(images, rows.loc[ids].to_numpy())
        masks, bad = object_regions(region, ids, pixels, catalog, image_sizes(catalog, ids), max_pixels)
        usable = np.ones(len(ids), bool)
        usable[[p for p, _, _ in bad]] = False
        cams = read_cams(batch, classes, map_shape)[usable]
        for name, geometry in (("centred", centred), ("resized", resized)):
            out[name].append(image_stats(frame[usable], cams, masks[usable], classes, threshold, geometry))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("config", type=Path, nargs="?", help="the run's --configfile, if any")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config/config.yaml").read_text())
    for key, value in (yaml.safe_load(args.config.read_text()) if args.config else {}).items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    config["results"] = str(args.results)
    schema = yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text())
    resolve_results(with_defaults(apply_demo(config, schema), schema))  # the run's own resolution
    region = config["saliency"]["object"]
    threshold = config["saliency"]["min_object_energy"]
    scored = rescore(args.results, region, threshold, config["image"]["max_pixels"])
    twins_file = args.results / "saliency/twins.parquet"
    twins = pd.read_parquet(twins_file).set_index("id")["off_object_share"] if twins_file.exists() else None
    truth_column = config["saliency"].get("truth_column")
    planted = None
    if truth_column:
        planted = pd.read_parquet(args.results / "catalog/clean.parquet").set_index("id")[truth_column]
    print("| placement | predicted | n | background_focused | recall (twins) | precision (twins) | star AUROC |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, stats in scored.items():
        for cls in stats["predicted"].cat.categories:
            member = stats[stats["predicted"] == cls]
            flagged = member["background_focused"].to_numpy()
            cells = [name, cls, str(len(member)), f"{flagged.mean():.1%}"]
            if twins is not None:
                truth = twins.reindex(member["id"]).to_numpy() > 0.5
                cells += [f"{flagged[truth].mean():.2f}" if truth.any() else "n/a",
                          f"{truth[flagged].mean():.2f}" if flagged.any() else "n/a"]  # fmt: skip
            else:
                cells += ["n/a", "n/a"]
            auc = "n/a"
            if planted is not None:
                own = stats[(stats["label"] == cls) & (stats[f"state_{cls}"] == "ok")]
                star = planted.reindex(own["id"]).fillna(0).astype(bool).to_numpy()
                if star.any() and not star.all():
                    auc = f"{binary_auc(star, -own[f'relative_energy_{cls}'].to_numpy()):.3f}"
            print("| " + " | ".join(cells + [auc]) + " |")


if __name__ == "__main__":
    main()
