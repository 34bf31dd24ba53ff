import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from saliency_audit.audit.audit_pass import run_audit
from saliency_audit.audit.gradcam import GradCAM
from saliency_audit.audit.moments import Moments
from saliency_audit.audit.tables import read_audit_metadata, read_list_column, read_logits
from saliency_audit.model.batches import to_tensor
from saliency_audit.model.factory import build_model
from saliency_audit.runtime.shards import shard_labels, shard_rows


@pytest.mark.parametrize(("n", "k"), [(10, 1), (10, 3), (7, 7), (1000, 4)])
def test_shards_cover_every_row_once(n: int, k: int) -> None:
    parts = [shard_rows(n, k, i) for i in range(k)]
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.fixture
def toy(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (23, 32, 32, 3), dtype=np.uint8)
    labels = pd.DataFrame(
        {
            "id": [f"g{i}" for i in range(23)],
            "class": pd.Categorical.from_codes(rng.integers(0, 3, 23), ["a", "b", "c"]),
            "split": np.where(np.arange(23) % 5 == 0, "valid", "train"),
        }
    )
    torch.manual_seed(0)
    model = build_model("simple_cnn", 3).eval()
    meta = {"classes": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}
    return images, labels, model, meta, tmp_path


def test_audit_table_contract_and_values(toy) -> None:
    images, labels, model, meta, tmp_path = toy
    rows = np.arange(3, 20)
    out = tmp_path / "part-0.parquet"
    moments = run_audit(
        model, meta, images[rows], labels.iloc[rows], "body.2", 5, torch.device("cpu"), out, {"model_sha256": "x"}
    )
    file = pq.ParquetFile(out)
    assert file.metadata.num_row_groups == 4  # one per batch of 5
    table = file.read()
    assert table.column_names == [
        "id", "split", "label", "predicted", "prob_a", "prob_b", "prob_c", "logit_a", "logit_b", "logit_c",
        "activation", "cam_a", "cam_b", "cam_c",
    ]  # fmt: skip
    assert table.schema.field("activation").type == pa.list_(pa.float32())
    metadata = read_audit_metadata(table.schema)
    assert metadata == {"classes": ["a", "b", "c"], "map_shape": [4, 4], "layer": "body.2", "n_features": 128,
                        "map_geometry": {"origin": [0.0, 0.0], "stride": [8.0, 8.0]},
                        "compiled": False, "model_sha256": "x"}  # fmt: skip
    frame = table.to_pandas()
    assert frame["id"].tolist() == labels["id"].iloc[rows].tolist()
    assert frame["label"].tolist() == labels["class"].iloc[rows].astype(str).tolist()

    with GradCAM(model, "body.2") as gradcam:
        expected = gradcam(to_tensor(images[rows], meta["mean"], meta["std"], torch.device("cpu")))
    np.testing.assert_allclose(read_list_column(table, "activation"), expected.activations.numpy(), rtol=1e-5)
    for k, name in enumerate("abc"):
        cams = read_list_column(table, f"cam_{name}").reshape(-1, 4, 4)  # row-major
        np.testing.assert_allclose(cams, expected.cams[:, k].numpy(), rtol=1e-5, atol=1e-7)
    probs = frame[["prob_a", "prob_b", "prob_c"]].to_numpy()
    np.testing.assert_allclose(probs, torch.softmax(expected.logits, 1).numpy(), rtol=1e-5)
    assert frame["predicted"].tolist() == [("a", "b", "c")[i] for i in probs.argmax(1)]
    logits = frame[["logit_a", "logit_b", "logit_c"]].to_numpy()
    np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=1e-5, atol=1e-6)
    # read back by id, in any order asked, for the probes
    ids = frame["id"].tolist()[::-1]
    np.testing.assert_array_equal(read_logits(out, ids, ["a", "b", "c"]), logits[::-1])
    with pytest.raises(ValueError, match="lacks 1 of the shard's images, e.g. 'g0'"):
        read_logits(out, ["g0", *ids], ["a", "b", "c"])
    older = tmp_path / "older.parquet"  # an audit table of a version that kept no logits
    pq.write_table(table.drop_columns(["logit_a", "logit_b", "logit_c"]), older)
    with pytest.raises(ValueError, match="has no logit columns .*: run the audit again"):
        read_logits(older, ids, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"holds the classes \['a', 'b', 'c'\], the model \['a', 'c', 'b'\]"):
        read_logits(out, ids, ["a", "c", "b"])

    whole = Moments.of(read_list_column(table, "activation"))
    assert moments.count == len(rows)
    np.testing.assert_allclose(moments.mean, whole.mean, rtol=1e-10)
    np.testing.assert_allclose(moments.m2, whole.m2, rtol=1e-8, atol=1e-8)


def test_shards_read_back_as_one_dataset_equal_one_shard(toy) -> None:
    images, labels, model, meta, tmp_path = toy
    cpu = torch.device("cpu")
    run_audit(model, meta, images, labels, "body.2", 8, cpu, tmp_path / "one.parquet", {})
    parts = [tmp_path / f"part-{i}.parquet" for i in range(3)]
    for i, part in enumerate(parts):
        rows = shard_rows(23, 3, i)
        run_audit(model, meta, images[rows], labels.iloc[rows], "body.2", 8, cpu, part, {})
    one = pq.read_table(tmp_path / "one.parquet").to_pandas()
    three = ds.dataset([str(p) for p in parts], format="parquet").to_table().to_pandas()
    pd.testing.assert_frame_equal(
        one[["id", "split", "label", "predicted"]], three[["id", "split", "label", "predicted"]]
    )
    np.testing.assert_allclose(np.stack(one["cam_b"]), np.stack(three["cam_b"]), rtol=1e-5, atol=1e-7)


def test_failed_audit_leaves_no_file(toy) -> None:
    images, labels, model, meta, tmp_path = toy
    with pytest.raises(ValueError, match="not a module"):
        run_audit(model, meta, images[:5], labels[:5], "body.7", 2, torch.device("cpu"), tmp_path / "p.parquet", {})
    assert not list(tmp_path.iterdir())


def test_a_packed_part_of_another_length_is_named_not_misaligned() -> None:
    labels = pd.DataFrame({"id": [f"g{i}" for i in range(10)]})
    part = shard_labels(labels, 3, 3, 1, "images/part-1.npy", "labels.parquet")
    assert part["id"].tolist() == ["g4", "g5", "g6"] and part.index.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"images/part-1.npy holds 4 images, but shard 1 of 3 covers 3 rows"):
        shard_labels(labels, 4, 3, 1, "images/part-1.npy", "labels.parquet")
