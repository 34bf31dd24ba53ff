"""A checksum of the image files a path pattern can reach, for Snakemake to notice changed images.

A million images cannot be inputs of a rule, so without this a fixed download (a file that
was missing) or a replaced image goes unnoticed: validation keeps its old verdict. The
workflow computes this when it starts, from each file's name, size, modification and change
times and inode (``stat`` only, in threads; no image is opened), and passes it to
``validate_catalog`` as a parameter: when any file appears, disappears or changes, validation
runs again, and the stages after it see what changed.
"""

import glob
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor


def _entry(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:  # gone between listing and stat, or a dangling link: as absent
        return None
    # the change time too: a file replaced with its old modification time kept (cp -p, rsync -t) still counts
    return f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\n"


def image_manifest(pattern: str, workers: int = 16) -> str:
    """``<files>:<sha256>`` over the ``stat`` of every file matching ``pattern``, where
    ``{id}`` matches any text (``0:...`` when the folder does not exist)."""
    parts = pattern.split("{id}")
    matches = sorted(glob.glob("*".join(glob.escape(part) for part in parts), include_hidden=True))
    digest = hashlib.sha256()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        entries = [entry for entry in pool.map(_entry, matches, chunksize=1024) if entry is not None]
    for entry in entries:
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return f"{len(entries)}:{digest.hexdigest()}"
