"""Shared fixtures: a tiny demo run of the real workflow, reused by the end-to-end tests."""

from pathlib import Path

import pytest

from helpers import TINY_DEMO, run_workflow


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results folder of the whole workflow on a 60-galaxy demo (.test/config/config.yaml)."""
    results = tmp_path_factory.mktemp("tiny") / "results"
    run_workflow(TINY_DEMO, results)
    return results


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the tiny demo's run is in the `workflow` layer, marked or not: a new
    end-to-end test cannot land in the fast layer by accident."""
    for item in items:
        if "tiny_demo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.workflow)
