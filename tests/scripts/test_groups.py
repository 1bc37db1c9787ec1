"""scripts/groups.py: the report's statements follow the numbers."""

import importlib.util
from pathlib import Path

import numpy as np
import xarray as xr

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "groups.py"
_SPEC = importlib.util.spec_from_file_location("groups", _PATH)
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)


def _values(by_p: dict[float, list[float]]) -> xr.Dataset:
    ps = list(by_p)
    return xr.Dataset({"x": (("p", "sparsity"), np.array([by_p[p] for p in ps]))}, coords={"p": ps})


def test_trend_says_lower_only_when_every_p_is_lower():
    assert script.trend(_values({0.0: [1, 1], 0.2: [0.5, 0.7], 0.4: [0.2, 0.4]}), "x", [0.0, 0.2, 0.4]) == (
        "1.00 -> 0.60 -> 0.30 (lower at every p > 0 than at p = 0)"
    )
    higher = script.trend(_values({0.0: [0, 0], 0.4: [0.3, 0.3]}), "x", [0.0, 0.4])
    assert higher.endswith("(not lower at every p > 0 than at p = 0)")
    mixed = script.trend(_values({0.0: [1, 1], 0.2: [2, 2], 0.4: [0.5, 0.5]}), "x", [0.0, 0.2, 0.4])
    assert mixed.endswith("(lower than at p = 0 at some p > 0, not at others)")
    assert script.trend(_values({0.2: [1, 3], 0.4: [2, 2]}), "x", [0.2, 0.4]) == "2.00 -> 2.00"


def test_numbers_are_printed_as_counts_or_to_two_decimals():
    assert script.number(5.0, "represented") == "5"
    assert script.number(0.456, "superposition") == "0.46"
