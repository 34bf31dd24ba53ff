"""A job stopped with SIGTERM leaves neither its output nor a temporary file behind."""

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {scripts!r})
    from atomic_io import atomic_path
    from job import start_job
    start_job({log!r})
    with atomic_path({out!r}) as tmp:
        tmp.write_text("half of it")
        print("writing", file=sys.stderr)
        os.kill(os.getpid(), signal.SIGTERM)
        tmp.write_text("all of it")
    """
)


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path: Path) -> None:
    out, log = tmp_path / "out.txt", tmp_path / "job.log"
    child = CHILD.format(scripts=str(REPO / "scripts"), log=str(log), out=str(out))
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 128 + 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]
    assert log.read_text() == "writing\n"
