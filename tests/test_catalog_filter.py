"""The filter language of saliency.gallery.where: pandas-query results on numbers, nothing beyond the columns."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saliency_audit.data.catalog_filter import FilterError, evaluate_filter, filter_columns, parse_filter
from saliency_audit.saliency.galleries import GalleryError, random_sample


@pytest.fixture
def catalog() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "z": rng.uniform(0, 0.2, 200),
            "mag_r": rng.uniform(14, 18, 200),
            "kind": rng.choice(["spiral", "elliptical", "merger"], 200),
        }
    )


@pytest.mark.parametrize(
    "expression",
    [
        "0.05 < z < 0.08",
        "z <= 0.1 and mag_r > 16",
        "z < 0.05 or mag_r >= 17.5",
        "not (z > 0.1) and mag_r < 17",
        "~(z > 0.1) | kind == 'merger'",
        "kind in ['spiral', 'merger'] and z > 1e-2",
        "kind not in ['spiral']",
        "z > -1 and 1.5e1 < mag_r",
        'kind != "elliptical"',
    ],
)
def test_filters_select_the_rows_pandas_query_selects(catalog: pd.DataFrame, expression: str) -> None:
    as_text = catalog.astype(str)  # the clean catalog holds unused columns as text: the literal decides
    expected = catalog.eval(expression).to_numpy()
    np.testing.assert_array_equal(evaluate_filter(parse_filter(expression), catalog), expected)
    np.testing.assert_array_equal(evaluate_filter(parse_filter(expression), as_text), expected)


def test_backtick_names_and_cells_that_are_not_numbers() -> None:
    frame = pd.DataFrame({"sky level": ["1.5", "x", "", "3"], "z": ["0.1", "0.2", "1_000", " 0.3 "]})
    assert filter_columns(parse_filter("`sky level` > 1 and z < 0.25")) == {"sky level", "z"}
    assert evaluate_filter(parse_filter("`sky level` > 1"), frame).tolist() == [True, False, False, True]
    assert evaluate_filter(parse_filter("z != 0.2"), frame).tolist() == [True, False, False, True]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@pd.io.common.os.system('touch pwned') == 0", "unexpected '@pd"),
        ("z.__class__ == 1", "unexpected '.__class__"),
        ("__import__('os').system('id') == 0", "unexpected"),
        ("z < 0.1; x = 1", "unexpected ';"),
        ("lambda: 1", "unexpected"),
        ("z", "is not a comparison"),
        ("z <", "ends too early"),
        ("(z < 1", "ends too early"),
        ("z < 1 extra", "after a complete expression"),
        ("kind < 'a'", "text can only be compared with == or !="),
        ("kind in [1, 'a']", "either numbers or strings"),
        ("", "empty"),
    ],
)
def test_anything_else_is_an_error(catalog: pd.DataFrame, expression: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        evaluate_filter(parse_filter(expression), catalog)


def test_a_gallery_filter_cannot_run_a_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stats = pd.DataFrame({"id": ["a", "b"]})
    catalog = pd.DataFrame({"z": [0.1, 0.2]}, index=["a", "b"])
    with pytest.raises(GalleryError, match="saliency.gallery.where"):
        random_sample(stats, catalog, 1, "@pd.io.common.os.system('touch pwned') == 0", seed=0)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(GalleryError, match="column 'redshift' is not in the catalog"):
        random_sample(stats, catalog, 1, "redshift > 0.1", seed=0)
