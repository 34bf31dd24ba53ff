"""Reuse of a job's outputs when the content of its inputs is unchanged; the image manifest."""

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from saliency_audit.runtime import reuse
from saliency_audit.runtime.checksums import ContentMismatch, recorded_sha256, verified_sha256
from saliency_audit.runtime.manifest import image_manifest
from saliency_audit.runtime.reuse import code_digest, fingerprint, frame_digest, reusable


def compute(outputs: list[Path], key: str, text: str, calls: list[str]) -> bool:
    """A stand-in job: writes ``text`` into each output unless reused."""
    with reusable(outputs, key) as reused:
        if not reused:
            calls.append(key)
            for output in outputs:
                output.write_text(text)
    return reused


def test_outputs_come_back_for_the_same_key_only(tmp_path: Path) -> None:
    outputs, calls = [tmp_path / "model.pt", tmp_path / "sub" / "history.csv"], []
    outputs[1].parent.mkdir()
    assert not compute(outputs, "k1", "first", calls)
    for output in outputs:  # Snakemake removes a job's outputs before it runs it again
        output.unlink()
    time.sleep(0.01)
    started = time.time()
    assert compute(outputs, "k1", "second", calls)
    assert [o.read_text() for o in outputs] == ["first", "first"] and calls == ["k1"]
    assert all(o.stat().st_mtime >= started - 1 for o in outputs)  # as new as a computed output
    for output in outputs:
        output.unlink()
    assert not compute(outputs, "k2", "third", calls)  # another key: computed again
    assert [o.read_text() for o in outputs] == ["third", "third"] and calls == ["k1", "k2"]
    with reusable(outputs, "k2", enabled=False) as reused:  # reuse: false always computes
        assert not reused


def test_a_previous_output_damaged_on_disk_is_computed_again(tmp_path: Path) -> None:
    output, calls = tmp_path / "part-0.parquet", []
    compute([output], "k", "good content", calls)
    with open(output, "r+") as handle:  # damaged in place: the kept link shares the file
        handle.write("BAD!")
    output.unlink()
    assert not compute([output], "k", "good content", calls)
    assert output.read_text() == "good content" and calls == ["k", "k"]


def test_a_missing_record_means_compute(tmp_path: Path) -> None:
    output, calls = tmp_path / "metrics.json", []
    compute([output], "k", "x", calls)
    (tmp_path / ".metrics.json.previous.json").unlink()
    assert not compute([output], "k", "x", calls)


def test_keys_follow_content_not_file_times(tmp_path: Path) -> None:
    data = tmp_path / "labels.parquet"
    frame = pd.DataFrame({"id": ["a", "b"], "class": ["low", "high"]})
    frame.to_parquet(data)
    key = fingerprint([data], [frame], {"lr": 0.1})
    os.utime(data, (1, 1))  # only the time changed
    assert fingerprint([data], [frame], {"lr": 0.1}) == key
    assert fingerprint([data], [frame], {"lr": 0.2}) != key
    assert fingerprint([data], [frame.iloc[::-1]], {"lr": 0.1}) != key  # row order matters
    frame.assign(extra=1).to_parquet(data)
    assert fingerprint([data], [frame], {"lr": 0.1}) != key
    assert frame_digest(frame) == frame_digest(frame.copy()) != frame_digest(frame.rename(columns={"id": "objID"}))


def flip_bytes_keeping_time(path: Path, offset: int) -> None:
    """Bit rot, or a bad copy made with ``cp -p``: other bytes, the same size and modification time."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_outputs_are_checked_by_content_not_by_clock(tmp_path: Path) -> None:
    output, calls = tmp_path / "model.pt", []
    compute([output], "k", "weights" * 100, calls)
    assert recorded_sha256(output) == verified_sha256(output)
    key = fingerprint([output])
    flip_bytes_keeping_time(output, 10)
    with pytest.raises(ContentMismatch, match=r"model\.pt has changed since the workflow wrote it"):
        fingerprint([output])  # the job reading it stops; it never gets a key, old or new
    output.unlink()  # deleted as the message says: the damaged hard-linked copy is not restored
    assert not compute([output], "k", "weights" * 100, calls) and fingerprint([output]) == key


def test_a_job_computed_without_reuse_records_what_it_wrote(tmp_path: Path) -> None:
    output = tmp_path / "metrics.json"
    with reusable([output], "k"):
        output.write_text("first")
    with reusable([output], "k", enabled=False):  # reuse: false writes other content
        output.write_text("second")
    assert verified_sha256(output) == recorded_sha256(output)


def test_files_without_a_record_are_hashed_every_time(tmp_path: Path) -> None:
    data = tmp_path / "images.npy"
    data.write_bytes(b"a" * 1000)
    first = fingerprint([data])
    flip_bytes_keeping_time(data, 0)
    assert fingerprint([data]) != first


def test_the_image_manifest_follows_every_file_a_pattern_reaches(tmp_path: Path) -> None:
    folder = tmp_path / "cutouts"
    pattern = str(folder / "{id}.jpg")
    assert image_manifest(pattern).startswith("0:")
    folder.mkdir()
    for name in ("1", "2", ".3"):
        (folder / f"{name}.jpg").write_bytes(b"x")
    (folder / "notes.txt").write_text("not an image of the pattern")
    first = image_manifest(pattern)
    assert first.startswith("3:")
    (folder / "notes.txt").write_text("changed")
    assert image_manifest(pattern) == first
    (folder / "4.jpg").write_bytes(b"new download")
    second = image_manifest(pattern)
    assert second.startswith("4:") and second != first
    os.utime(folder / "1.jpg", ns=(1, 1))  # replaced by another file of the same size
    assert image_manifest(pattern) != second
    nested = tmp_path / "nested"
    (nested / "a b").mkdir(parents=True)
    (nested / "a b" / "img[1].png").write_bytes(b"y")
    assert image_manifest(str(nested / "{id}" / "img[1].png")).startswith("1:")


@pytest.mark.parametrize("n", [1, 50])
def test_the_manifest_does_not_depend_on_the_listing_order(tmp_path: Path, n: int) -> None:
    for i in range(n):
        (tmp_path / f"{n - i}.png").write_bytes(b"z")
    assert image_manifest(str(tmp_path / "{id}.png")) == image_manifest(str(tmp_path / "{id}.png"), workers=1)


def test_the_code_digest_covers_every_module_of_the_package_by_its_path(tmp_path: Path, monkeypatch) -> None:
    module = tmp_path / "saliency_audit/saliency/stats.py"
    module.parent.mkdir(parents=True)
    module.write_text("A = 1\n")
    (tmp_path / "saliency_stats.py").write_text("def main(snakemake): ...\n")
    monkeypatch.setattr(reuse, "CODE", tmp_path)
    before = code_digest()
    module.write_text("A = 2\n")  # a change two folders down
    assert code_digest() != before
    module.write_text("A = 1\n")
    assert code_digest() == before
    module.rename(tmp_path / "saliency_audit/stats.py")  # the same text in another module
    assert code_digest() != before
    (tmp_path / "saliency_audit/__pycache__").mkdir()
    (tmp_path / "saliency_audit/__pycache__/stats.py").write_text("compiled")  # not code
    moved = code_digest()
    (tmp_path / "saliency_audit/__pycache__/stats.py").write_text("other")
    assert code_digest() == moved
