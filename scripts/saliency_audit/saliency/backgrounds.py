"""BG-Gap on the user's data: how much of a prediction does another image's background decide?

After the Backgrounds Challenge (Xiao et al. 2020, "Noise or Signal: The Role of
Image Backgrounds in Object Recognition"). The probes ask of one image whether
its prediction needs its own background; BG-Gap asks of a class whether its
accuracy follows the object or the background it is shown on. Each image with a
usable object region is shown to the model five times:

- as it is, *object only* and *background only*, exactly as the ``probes`` rule
  shows them (``interventions``: the same object part, fill and per-id seed);
- *Mixed-Same*: its object part pasted onto the filled background of another
  image of the same true class;
- *Mixed-Rand*: pasted onto the filled background of an image of another class,
  the class drawn uniformly among the other classes (the paper's random class,
  never the image's own, so that the two views differ in the background's class
  only).

A partner's *filled background* is its background-only view: its object part
replaced by the fill, everything else (other sources, a planted star) kept.
The pasted pixels are the object's part (its region grown by
``saliency.probes.dilation`` cells, never into another source), the same pixels
that the object-only view keeps, so the object-only, Mixed-Same and Mixed-Rand
views differ only in what surrounds the object. ``bg_gap`` = accuracy on
Mixed-Same minus on Mixed-Rand, on the same images: near 0 when the model reads
the object, large when the background's class decides (7.3 points for a
ResNet-50 on ImageNet-9 in the paper).

Partners are drawn once for the whole labels table, with a generator seeded by
``saliency.probes.seed``, among the images with a usable region, ordered by id:
they depend on neither the sharding, the batch size nor the table's row order.
Mixed-Same partners follow a random cycle through each class (no image is its
own partner, each background is used once); Mixed-Rand partners are drawn with
replacement.

The job streams: a first pass over the packed images reads their regions (the
``regions`` rule's), shows the three probe views and writes every image's filled background and object
part to scratch files (plain sequential writes beside the output); a second
pass reads the partners' backgrounds from them by row.
"""

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from saliency_audit.audit.map_geometry import derive_geometry
from saliency_audit.data.image_io import image_area, open_packed, packed_writer, read_rows, uint8_writer
from saliency_audit.data.packing import PackedIndex
from saliency_audit.data.region_store import RegionStore
from saliency_audit.data.regions import image_sizes
from saliency_audit.model.batches import batch_rows, to_tensor
from saliency_audit.model.factory import find_module
from saliency_audit.saliency.interventions import object_parts, probe_images
from saliency_audit.saliency.vocabulary import STATE_OK

PARTNER_STREAM = 0xB6  # mixed into the seed: the partners' draws are independent of the fills'
VIEWS = ("original", "object_only", "background_only", "mixed_same", "mixed_rand")
ALL = "all"  # the row over every split (split column) or every class (class column)
COLUMNS = ["class", "split", "n_images", "n", *(f"acc_{view}" for view in VIEWS[:3]), "n_mixed",
           *(f"acc_{view}" for view in VIEWS[3:]), "bg_gap", "bg_gap_se", "chance"]  # fmt: skip


@dataclass
class SplitViews:
    """One batch taken apart: each image's object part, its object-only and background-only views, its state."""

    parts: np.ndarray  # B x H x W bool: the pixels that go with the object (empty unless the state is ok)
    object_only: np.ndarray  # B x H x W x 3 uint8: the background replaced by the fill
    background_only: np.ndarray  # B x H x W x 3 uint8: the object part replaced by the fill
    state: np.ndarray  # B states: ok, empty_object, no_background


def split_views(
    images: np.ndarray,
    masks: np.ndarray,
    areas: np.ndarray,
    ids: Sequence[str],
    fill: str,
    radius: float,
    seed: int,
    neighbours: np.ndarray | None = None,
) -> SplitViews:
    """The probes' two views of each image (``interventions.probe_images``, draw for draw) and the object
    part they were cut along, which the mixed views paste; images not ok come back unchanged.
    ``neighbours`` (B x H x W, optional): the other segments of ``segments``, never part of the object."""
    # the probes' own views (their control, drawn last, is not used), then the parts they were cut along
    object_only, background_only, _, state = probe_images(images, masks, areas, ids, fill, radius, seed,
                                                          neighbours=neighbours)  # fmt: skip
    parts = np.zeros(images.shape[:3], dtype=bool)
    ok = state == STATE_OK
    others = None if neighbours is None else neighbours[ok]
    if ok.any():
        parts[ok] = object_parts(images[ok], masks[ok], areas[ok], radius, others)
    return SplitViews(parts, object_only, background_only, state)


def paste(images: np.ndarray, parts: np.ndarray, backgrounds: np.ndarray) -> np.ndarray:
    """Each image's object part (B x H x W bool) laid over the matching background (B x H x W x 3)."""
    return np.where(parts[..., None], images, backgrounds)


@dataclass
class Partners:
    """Positions (into the ids given to ``draw_partners``) of each image's two partners; -1 where none exists."""

    same: np.ndarray
    rand: np.ndarray


def draw_partners(ids: Sequence[str], classes: Sequence[str], seed: int) -> Partners:
    """Mixed-Same and Mixed-Rand partners of every image, from the ids and classes alone.

    Same: a seeded random cycle through each class's images (ordered by id), so no
    image is its own partner and each background serves once; none for a class of
    one image. Rand: a class drawn uniformly among the other classes that have
    images, then one of its images; none when there is no other class.
    """
    ids_text = np.asarray([str(i) for i in ids], dtype=object)
    labels = np.asarray([str(c) for c in classes], dtype=object)
    order = np.argsort(ids_text, kind="stable")
    names = sorted(set(labels.tolist()))
    members = {name: order[labels[order] == name] for name in names}
    rng = np.random.default_rng([seed, PARTNER_STREAM])
    same = np.full(len(ids_text), -1, dtype=np.int64)
    rand = np.full(len(ids_text), -1, dtype=np.int64)
    for name in names:
        cycle = members[name][rng.permutation(len(members[name]))]
        if len(cycle) >= 2:
            same[cycle] = np.roll(cycle, -1)
    for name in names:
        others = [other for other in names if other != name]
        if not others:
            continue
        chosen = rng.integers(len(others), size=len(members[name]))
        for k, other in enumerate(others):
            takers = members[name][chosen == k]
            rand[takers] = members[other][rng.integers(len(members[other]), size=len(takers))]
    return Partners(same, rand)


def part_radius(model: torch.nn.Module, meta: dict[str, Any], layer: str, dilation: float, size: int) -> float:
    """How far the object part reaches beyond the region, in px: ``dilation`` cells of the map, as in the probes."""
    name = meta["target_layer"] if layer == "auto" else layer
    return float(dilation * max(derive_geometry(model, find_module(model, name), size).stride))


def _predict(model: torch.nn.Module, views: np.ndarray, meta: dict[str, Any], device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        return model(to_tensor(views, meta["mean"], meta["std"], device)).float().argmax(dim=1).cpu().numpy()


def view_predictions(
    model: torch.nn.Module, meta: dict[str, Any], images: np.ndarray, index: PackedIndex, regions: RegionStore,
    labels: pd.DataFrame, catalog: pd.DataFrame, settings: dict[str, Any], radius: float, device: torch.device,
    batch_size: int, scratch: str | os.PathLike,
) -> pd.DataFrame:  # fmt: skip
    """Per image of ``labels``: the predicted class under each of the five views (None where not shown),
    and the ids of its partners. ``scratch`` is a folder for the filled backgrounds (as large as the
    packed images) and the object parts."""
    classes, size = list(meta["classes"]), images.shape[1]
    ids = labels["id"].astype(str).to_numpy()
    rows, n = index.rows(ids), len(ids)
    predicted = {view: np.full(n, -1, dtype=np.int64) for view in VIEWS}
    usable = np.zeros(n, dtype=bool)
    model.eval()
    backgrounds_path, parts_path = Path(scratch) / "backgrounds.npy", Path(scratch) / "parts.npy"
    progress = tqdm(total=n, desc="backgrounds: probe views", unit="img", mininterval=2.0)
    with (
        packed_writer(backgrounds_path, n, size, images.shape[-1]) as write_backgrounds,
        uint8_writer(parts_path, (n, (size * size + 7) // 8)) as write_parts,
    ):
        for batch in batch_rows(np.arange(n), batch_size, shuffle=False, generator=None):
            batch_ids = ids[batch].tolist()
            pixels = read_rows(images, rows[batch])
            sizes = image_sizes(catalog, batch_ids)
            masks, neighbours, bad = regions.read(rows[batch], batch_ids)
            areas = np.stack([image_area(h, w, size) for w, h in sizes])
            views = split_views(pixels, masks, areas, batch_ids, settings["fill"], radius, settings["seed"], neighbours)
            ok = views.state == STATE_OK
            ok[[position for position, _, _ in bad]] = False
            write_backgrounds(views.background_only)
            write_parts(np.packbits(views.parts.reshape(len(batch), -1), axis=1))
            progress.update(len(batch))
            keep = np.flatnonzero(ok)
            if not len(keep):
                continue
            shown = np.concatenate([pixels[keep], views.object_only[keep], views.background_only[keep]])
            for view, guess in zip(VIEWS[:3], np.split(_predict(model, shown, meta, device), 3)):
                predicted[view][batch[keep]] = guess
            usable[batch[keep]] = True
    progress.close()
    scored = np.flatnonzero(usable)
    drawn = draw_partners(ids[scored], labels["class"].astype(str).to_numpy()[scored], settings["seed"])
    same, rand = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    same[scored] = np.where(drawn.same >= 0, scored[drawn.same], -1)
    rand[scored] = np.where(drawn.rand >= 0, scored[drawn.rand], -1)
    mixed = np.flatnonzero((same >= 0) & (rand >= 0))
    backgrounds, parts = open_packed(backgrounds_path), np.load(parts_path, mmap_mode="r")
    for batch in tqdm(list(batch_rows(mixed, batch_size, shuffle=False, generator=None)),
                      desc="backgrounds: mixed views", unit="batch", mininterval=2.0):  # fmt: skip
        pixels = read_rows(images, rows[batch])
        part = np.unpackbits(read_rows(parts, batch), axis=1, count=size * size).reshape(-1, size, size) > 0
        shown = np.concatenate([paste(pixels, part, read_rows(backgrounds, same[batch])),
                                paste(pixels, part, read_rows(backgrounds, rand[batch]))])  # fmt: skip
        for view, guess in zip(VIEWS[3:], np.split(_predict(model, shown, meta, device), 2)):
            predicted[view][batch] = guess
    names = np.asarray([*classes, None], dtype=object)  # -1, not shown, indexes the None
    table = pd.DataFrame({"id": ids, "class": labels["class"].astype(str).to_numpy(),
                          "split": labels["split"].astype(str).to_numpy(), "usable": usable})  # fmt: skip
    for view in VIEWS:
        table[f"predicted_{view}"] = names[predicted[view]]
    table["partner_same"] = np.where(same >= 0, ids[same], None)
    table["partner_rand"] = np.where(rand >= 0, ids[rand], None)
    return table


def bg_gap_table(per_image: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Per true class (and all classes) and split (and all splits): the accuracy under each view and the gap.

    ``n_images`` counts every image, ``n`` those with a usable object region (the three probe views),
    ``n_mixed`` those that also have both partners (the two mixed views, and ``bg_gap`` with its
    standard error, paired image by image). Classes and splits without a usable image are left out.
    """
    correct = {view: (per_image[f"predicted_{view}"] == per_image["class"]).to_numpy() for view in VIEWS}
    mixed = per_image["predicted_mixed_same"].notna().to_numpy() & per_image["predicted_mixed_rand"].notna().to_numpy()
    every = np.ones(len(per_image), dtype=bool)
    rows = []
    for split in [ALL, *sorted(per_image["split"].astype(str).unique())]:
        in_split = every if split == ALL else (per_image["split"] == split).to_numpy()
        for name in [*classes, ALL]:
            member = in_split & (every if name == ALL else (per_image["class"] == name).to_numpy())
            usable = member & per_image["usable"].to_numpy()
            if not usable.any():
                continue
            paired = usable & mixed
            row: dict[str, Any] = {"class": name, "split": split, "n_images": int(member.sum()), "n": int(usable.sum())}
            row.update({f"acc_{view}": float(correct[view][usable].mean()) for view in VIEWS[:3]})
            row["n_mixed"] = int(paired.sum())
            row.update({f"acc_{view}": float(correct[view][paired].mean()) if paired.any() else np.nan
                        for view in VIEWS[3:]})  # fmt: skip
            gain = correct["mixed_same"][paired].astype(float) - correct["mixed_rand"][paired]
            row["bg_gap"] = float(gain.mean()) if len(gain) else np.nan
            row["bg_gap_se"] = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else np.nan
            row["chance"] = 1 / len(classes)
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def background_gap(
    model: torch.nn.Module, meta: dict[str, Any], images: np.ndarray, index: PackedIndex, regions: RegionStore,
    labels: pd.DataFrame, catalog: pd.DataFrame, settings: dict[str, Any], device: torch.device, batch_size: int,
    scratch_parent: str | os.PathLike,
) -> pd.DataFrame:  # fmt: skip
    """``bg_gap_table`` of the packed images, with scratch files in a temporary folder under ``scratch_parent``
    (removed at the end, also when the job is stopped)."""
    radius = part_radius(model, meta, settings["layer"], settings["dilation"], images.shape[1])
    with tempfile.TemporaryDirectory(dir=scratch_parent, prefix=".backgrounds-") as scratch:
        per_image = view_predictions(
            model, meta, images, index, regions, labels, catalog, settings, radius, device, batch_size, scratch
        )
    return bg_gap_table(per_image, list(meta["classes"]))


def describe_bg_gap(table: pd.DataFrame) -> str:
    """The log line: images scored and the BG-Gap of every class over all splits."""
    overall = table[table["split"] == ALL]
    gaps = ", ".join(f"{c}: {gap:+.3f} (n={n})" for c, gap, n in overall[["class", "bg_gap", "n_mixed"]].to_numpy())
    return f"BG-Gap (Mixed-Same - Mixed-Rand accuracy), all splits: {gaps or 'no image with a usable region'}"
