"""Shared fixtures: a tiny demo run of the real workflow, reused by the end-to-end tests."""

from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_DEMO, run_workflow
from real_images import m13_image, m13_star_stamps


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results folder of the whole workflow on a 60-galaxy demo (.test/config/config.yaml)."""
    results = tmp_path_factory.mktemp("tiny") / "results"
    run_workflow(TINY_DEMO, results)
    return results


@pytest.fixture(scope="session")
def m13() -> np.ndarray:
    """M13, the globular cluster that astropy ships (300 x 300 integers)."""
    return m13_image()


@pytest.fixture(scope="session")
def m13_stamps(m13: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 32 px stamp on every star of M13, with the stars' rows and columns (real_images.m13_star_stamps)."""
    return m13_star_stamps(m13)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the tiny demo's run is in the `workflow` layer, marked or not: a new
    end-to-end test cannot land in the fast layer by accident."""
    for item in items:
        if "tiny_demo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.workflow)
