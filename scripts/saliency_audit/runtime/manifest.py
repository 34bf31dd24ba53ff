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


def _entries(paths: list[str]) -> tuple[int, bytes]:
    lines = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:  # gone between listing and stat, or a dangling link: as absent
            continue
        # the change time too: a file replaced with its old modification time kept (cp -p, rsync -t) still counts
        lines.append(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\n")
    return len(lines), "".join(lines).encode("utf-8", "surrogateescape")


def image_manifest(pattern: str, workers: int = 4, chunk: int = 4096) -> str:
    """``<files>:<sha256>`` over the ``stat`` of every file matching ``pattern``, where ``{id}``
    matches any text (``0:...`` when the folder does not exist). Threads hide the latency of a
    network file system (where each stat waits on the server); on a local disk 100k files take
    about 1.5 s, at every start of Snakemake."""
    parts = pattern.split("{id}")
    matches = sorted(glob.glob("*".join(glob.escape(part) for part in parts), include_hidden=True))
    chunks = [matches[start : start + chunk] for start in range(0, len(matches), chunk)]
    digest = hashlib.sha256()
    count = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for found, block in pool.map(_entries, chunks):
            digest.update(block)
            count += found
    return f"{count}:{digest.hexdigest()}"
