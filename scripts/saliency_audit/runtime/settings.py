"""Nested settings as dotted keys: how the provenance table lists them and how two runs' settings are compared."""

import json
from typing import Any


def flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested config -> (dotted key, JSON value) rows, in the config's order."""
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows
