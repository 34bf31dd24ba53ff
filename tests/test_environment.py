"""The software environment: pip and conda pin the same versions, every rule runs in it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO

CONDA_STAND_IN = REPO / "tests/conda"


def pins(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_environment_yml_pins_what_requirements_txt_pins() -> None:
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = environment["dependencies"][:-1], environment["dependencies"][-1]["pip"]
    assert conda == ["python=3.11", "pip"]
    assert pip == pins((REPO / "requirements.txt").read_text().splitlines())
    assert not any(line.startswith("-") for line in pip), "Snakemake copies the file: no -r/-e lines"


@pytest.mark.workflow
def test_snakemake_lint_finds_every_rule_with_its_software_environment(tmp_path: Path) -> None:
    # --lint reports any rule without a conda environment (or container), and other defects
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "--config", f"results={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "Congratulations, your workflow is in a good condition!" in log, log


@pytest.mark.workflow
def test_conda_deployment_resolves_one_environment_from_environment_yml(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{CONDA_STAND_IN}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--software-deployment-method", "conda", "--config",
               f"results={tmp_path}"]  # fmt: skip
    listed = subprocess.run([*command, "--list-conda-envs"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    header = rows.index(["environment", "container", "location"])
    assert [row[0] for row in rows[header + 1 :] if row[0]] == ["environment.yml"]
    planned = subprocess.run([*command, "-n"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    log = planned.stdout + planned.stderr
    assert planned.returncode == 0 and "Conda environment environment.yml will be created." in log, log
    assert not any(tmp_path.iterdir())
