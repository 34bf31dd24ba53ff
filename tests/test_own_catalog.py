"""An own catalog (an id and a target column, nothing of the demo's) in each way Snakemake takes a config."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from helpers import REPO

pytestmark = pytest.mark.workflow  # every test here runs Snakemake

TARGET = {"column": "metallicity", "bins": [8.1, 8.9, 9.3], "labels": ["low", "high"]}


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """30 cutouts of a centred blob on noise, and the four-line config of the README that points at them."""
    folder = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(3)
    ids = [f"G{i:03d}" for i in range(30)]
    values = np.round(rng.uniform(8.2, 9.25, len(ids)), 3)
    (folder / "img").mkdir()
    yy, xx = np.mgrid[:40, :40] - 19.5
    for obj_id, value in zip(ids, values):
        width = 3 + 4 * (value - 8.2)
        blob = 200 * np.exp(-(xx**2 + yy**2) / (2 * width**2)) + rng.normal(20, 4, (40, 40))
        Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8)).convert("RGB").save(folder / f"img/{obj_id}.png")
    pd.DataFrame({"objID": ids, "metallicity": values}).to_csv(folder / "cat.csv", index=False)
    config = {"catalog": str(folder / "cat.csv"), "id_column": "objID", "images": str(folder / "img/{id}.png"),
              "target": TARGET}  # fmt: skip
    return {"folder": folder, "config": config, "ids": ids, "values": values}


def snakemake(*args: str) -> subprocess.CompletedProcess:
    """Targets first: --configfile and --config take every word after them."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"snakemake failed:\n{done.stdout}\n{done.stderr}"
    return done


def check_labels(results: Path, own_data: dict) -> None:
    labels = pd.read_parquet(results / "classes/labels.parquet")
    expected = pd.cut(pd.Series(own_data["values"], index=own_data["ids"]), TARGET["bins"], labels=TARGET["labels"])
    assert sorted(labels["id"]) == own_data["ids"]  # no class is dropped: the demo's target.keep stays with the demo
    assert (labels.set_index("id")["class"].astype(str) == expected.astype(str)).all()
    assert not (results / "demo").exists()


def test_a_plain_configfile_runs_an_own_catalog(own_data: dict) -> None:
    results = own_data["folder"] / "run-configfile"
    configfile = own_data["folder"] / "my.yaml"
    configfile.write_text(yaml.safe_dump({"results": str(results), **own_data["config"]}))
    snakemake(str(results / "classes/labels.parquet"), "--configfile", str(configfile))
    check_labels(results, own_data)
    integrity = pd.read_csv(results / "catalog/integrity.csv")
    assert integrity.empty, integrity  # no truth column, no demo masks: nothing of the demo is asked of this catalog


def test_config_keys_on_the_command_line_run_an_own_catalog(own_data: dict) -> None:
    results = own_data["folder"] / "run-config"
    config = own_data["config"]
    snakemake(str(results / "classes/labels.parquet"), "--config", f"results={results}",
              f"catalog={config['catalog']}", f"images={config['images']}",
              f"target={yaml.safe_dump(TARGET, default_flow_style=True).strip()}")  # fmt: skip
    check_labels(results, own_data)


def test_replacing_the_workflow_config_and_the_readme_resources_plan_every_job(own_data: dict) -> None:
    readme = (REPO / "README.md").read_text()
    million = yaml.safe_load(readme.split("### A million images", 1)[1].split("```yaml\n", 1)[1].split("```")[0])
    resources = {"resources": million["resources"]}  # its 64 shards would outnumber these 30 rows
    for extra, name in (("--replace-workflow-config", {}), ("", resources)):
        results = own_data["folder"] / f"plan-{bool(extra)}"
        configfile = own_data["folder"] / f"plan-{bool(extra)}.yaml"
        configfile.write_text(yaml.safe_dump({"results": str(results), **own_data["config"], **name}))
        done = snakemake("-n", "--configfile", str(configfile), *([extra] if extra else []))
        plan = done.stdout + done.stderr
        assert "rule train:" in plan and "rule saliency_summary:" in plan
        assert "simulate_demo" not in plan and "score_twins" not in plan
        assert not results.exists() or not any(results.iterdir())


def planned_jobs(dry_run: subprocess.CompletedProcess) -> set[str]:
    """The rules a ``snakemake -n`` would run, from its job table."""
    table = dry_run.stdout.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.split() and line.split()[0] != "total"}


def test_a_fixed_mask_reruns_what_reads_masks_and_only_that(own_data: dict) -> None:
    folder, ids = own_data["folder"], own_data["ids"]
    masks = folder / "masks"
    masks.mkdir()
    yy, xx = np.mgrid[:40, :40] - 19.5
    disk = np.where(xx**2 + yy**2 < 8**2, 255, 0).astype(np.uint8)
    for obj_id in ids[2:]:
        Image.fromarray(disk).save(masks / f"{obj_id}.png")
    Image.fromarray(np.zeros_like(disk)).save(masks / f"{ids[1]}.png")  # all zero; ids[0] has none yet
    results = folder / "run-masks"
    region = {"method": "masks", "masks": str(masks / "{id}.png")}
    configfile = folder / "masks.yaml"
    train = {"epochs": 6, "lr": 0.02, "batch_size": 8}
    settings = {"results": str(results), **own_data["config"], "train": train, "saliency": {"object": region}}
    configfile.write_text(yaml.safe_dump(settings))
    target = str(results / "saliency/localisation.parquet")
    snakemake(target, "--configfile", str(configfile))
    problems = pd.read_csv(results / "saliency/region_problems.csv")
    assert problems.set_index("id")["problem"].to_dict() == {ids[0]: "missing_mask"}
    states = pd.read_parquet(results / "saliency/localisation.parquet").set_index("id")["state"]
    assert states[ids[1]] == "empty_object"

    for obj_id in ids[:2]:  # the missing mask is added, the empty one replaced
        Image.fromarray(disk).save(masks / f"{obj_id}.png")
    jobs = planned_jobs(snakemake(target, "-n", "--configfile", str(configfile)))
    # the regions are found again, and what reads them reruns; not validation, packing, training or the audit
    assert jobs == {"regions", "probes", "saliency_stats"}, jobs
    snakemake(target, "--configfile", str(configfile))
    assert pd.read_csv(results / "saliency/region_problems.csv").empty
    states = pd.read_parquet(results / "saliency/localisation.parquet").set_index("id")["state"]
    assert states[ids[1]] != "empty_object" and ids[0] in states.index
