"""Grid: one description of a problem over (p, importance, sparsity) that every layer reads.

    [model]
    n_features = 5
    n_hidden = 2
    importance = { decay = 0.9 }   # importance_i = decay**i; or a list; omitted: all ones
    # dropout_groups = [0, 0, 1, 1] # one label per hidden unit: a group is dropped as a whole;
                                   # omitted: every unit on its own

    [grid]
    sparsity = { tms = 10 }        # the notebook's 1 - 20**-linspace(0, 1, 10); or a list;
                                   # or { density = [lo, hi, count] }: log-spaced densities
    p = [0.0, 0.4]
    # At most one importance axis (omitted: the model's importance in every cell):
    # r = [0.1, 1.0, 10.0]                 # importance (1, ..., 1, r); or { log = [0.1, 10, 30] }
    # importance_decay = [0.7, 0.9, 1.0]   # importance_i = decay**i

The dims of every Dataset over a grid are `Grid.dims`: ("p", [axis], "sparsity"),
the values in the order given, with `density` = 1 - sparsity as a coordinate on
the sparsity dim. Theory's phase diagrams and sim's sweeps (which put `seed`
first) share them, so `xr.align(theory, sim, join="exact")` works as is.

`r` has one meaning: the importance vector is (1, ..., 1, r); a grid with an r
axis takes no model.importance. Validation happens once, here.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from theory.errors import InputError
from theory.setup import Setup

#: The importance axes a grid may declare, at most one at a time.
IMPORTANCE_AXES = ("r", "importance_decay")


def tms_sparsities(count: int) -> tuple[float, ...]:
    """The notebook's sweep: feature probability 20 ** -linspace(0, 1, count), as sparsity."""
    return tuple(float(s) for s in 1.0 - 20.0 ** -np.linspace(0, 1, count))


def log_density_sparsities(low: float, high: float, count: int) -> tuple[float, ...]:
    """Sparsities whose densities 1 - S are geomspace(low, high, count)."""
    return tuple(float(1.0 - d) for d in np.geomspace(low, high, count))


@dataclass(frozen=True)
class Grid:
    """n_features in n_hidden over the axes p, [r | importance_decay], sparsity (every cell a Setup)."""

    n_features: int
    n_hidden: int
    sparsity: tuple[float, ...]
    p: tuple[float, ...] = (0.0,)
    importance: tuple[float, ...] | None = None
    r: tuple[float, ...] = ()
    importance_decay: tuple[float, ...] = ()
    dropout_groups: tuple[int, ...] | None = None

    def __post_init__(self):
        for name in ("n_features", "n_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} = {value!r} is not allowed; it must be an integer >= 1")
        for name in ("sparsity", "p", *IMPORTANCE_AXES):
            values = tuple(float(v) for v in getattr(self, name))
            object.__setattr__(self, name, values)
            if not values and name not in IMPORTANCE_AXES:
                raise InputError(f"grid.{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise InputError(f"grid.{name} = {list(values)} has repeated values")
        _check_each(self.sparsity, "grid.sparsity", "in [0, 1]", lambda v: 0 <= v <= 1)
        _check_each(self.p, "grid.p", "in [0, 1)", lambda v: 0 <= v < 1)
        for axis in IMPORTANCE_AXES:
            _check_each(getattr(self, axis), f"grid.{axis}", "> 0", lambda v: v > 0)
        if self.r and self.importance_decay:
            raise InputError("grid declares both r and importance_decay; give at most one importance axis")
        if self.r and self.importance is not None and any(v != 1.0 for v in self.importance):
            raise InputError(
                f"grid.r sets the importance to (1, ..., 1, r); model.importance = {list(self.importance)} "
                "cannot be given with it"
            )
        importance = (1.0,) * self.n_features if self.importance is None else self.importance
        object.__setattr__(self, "importance", tuple(float(v) for v in importance))
        if len(self.importance) != self.n_features:
            raise InputError(
                f"model.importance has {len(self.importance)} values; it needs one per feature "
                f"({self.n_features})"
            )
        _check_each(self.importance, "model.importance", ">= 0", lambda v: v >= 0)
        try:  # Setup's validation and canonical labels
            groups = Setup(self.n_features, self.n_hidden, dropout_groups=self.dropout_groups).dropout_groups
        except InputError as error:
            raise InputError(f"model.{error}") from None
        object.__setattr__(self, "dropout_groups", groups)

    @property
    def unit_groups(self) -> np.ndarray:
        """Each hidden unit's dropout group, as every cell's Setup.unit_groups."""
        return np.arange(self.n_hidden) if self.dropout_groups is None else np.array(self.dropout_groups)

    @property
    def importance_axis(self) -> str | None:
        """'r', 'importance_decay', or None when every cell has the model's importance."""
        return next((name for name in IMPORTANCE_AXES if getattr(self, name)), None)

    @property
    def labels(self) -> tuple:
        """The importance axis's values ((None,) without one)."""
        return getattr(self, self.importance_axis) if self.importance_axis else (None,)

    @property
    def axes(self) -> dict[str, list[float]]:
        """The grid's axes in cell order: name -> coordinate values."""
        out = {"p": list(self.p)}
        if self.importance_axis:
            out[self.importance_axis] = list(self.labels)
        out["sparsity"] = list(self.sparsity)
        return out

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def density(self) -> np.ndarray:
        return 1.0 - np.asarray(self.sparsity)

    def coords(self) -> dict:
        """xarray coordinates of the grid's dims, with density (1 - sparsity) on the sparsity dim."""
        return {**self.axes, "density": ("sparsity", self.density)}

    def importance_for(self, label: float | None) -> tuple[float, ...]:
        """The importance vector at one value of the importance axis (None: the model's)."""
        if self.importance_axis == "r":
            return (1.0,) * (self.n_features - 1) + (float(label),)
        if self.importance_axis == "importance_decay":
            return tuple(float(label) ** i for i in range(self.n_features))
        return self.importance

    def setup(self, p: float, label: float | None, sparsity: float) -> Setup:
        return Setup(
            self.n_features,
            self.n_hidden,
            sparsity=sparsity,
            importance=self.importance_for(label),
            p=p,
            dropout_groups=self.dropout_groups,
        )

    def setups(self) -> np.ndarray:
        """Every cell's Setup, an object array of shape (p, importance values, sparsity)."""
        out = np.empty((len(self.p), len(self.labels), len(self.sparsity)), dtype=object)
        for k, j, i in np.ndindex(*out.shape):
            out[k, j, i] = self.setup(self.p[k], self.labels[j], self.sparsity[i])
        return out

    def to_dict(self) -> dict:
        """The fields, without dropout_groups when every unit is its own group (as before it existed)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["dropout_groups"] is None:
            del out["dropout_groups"]
        return out

    @classmethod
    def from_toml(cls, path: str | Path, other_tables: tuple[str, ...] = ("train", "sweep")) -> Grid:
        """The [model] and [grid] tables of a config (seeds and other_tables are left to their reader)."""
        path = Path(path)
        raw = read_toml(path)
        with at(path):
            known = {"model", "grid", *other_tables}
            unknown = set(raw) - known
            if unknown:
                raise InputError(
                    f"unknown tables {sorted(unknown)}; allowed: {', '.join(f'[{t}]' for t in sorted(known))}"
                )
            return cls(**grid_fields(raw))


class at:
    """Context: an InputError raised inside names the config file first."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, InputError) and not str(error).startswith(f"{self.path}:"):
            raise type(error)(f"{self.path}: {error}") from None
        return False


def read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config file {path} is not valid TOML: {err}") from None


def table(raw: dict, name: str, allowed: set[str]) -> dict:
    found = raw.get(name, {})
    if not isinstance(found, dict):
        raise InputError(f"[{name}] must be a table")
    unknown = set(found) - allowed
    if unknown:
        raise InputError(f"unknown keys {sorted(unknown)} in [{name}]; allowed: {sorted(allowed)}")
    return found


def grid_fields(raw: dict) -> dict:
    """Grid's keyword arguments from a config's [model] and [grid] tables (grid.seeds is sim's)."""
    model = table(raw, "model", {"n_features", "n_hidden", "importance", "dropout_groups"})
    grid = table(raw, "grid", {"sparsity", "p", "seeds", *IMPORTANCE_AXES})
    for key in ("n_features", "n_hidden"):
        if key not in model:
            raise InputError(f"[model] needs {key}")
        integer_at_least_1(model[key], f"model.{key}")
    n = model["n_features"]
    out = dict(n_features=n, n_hidden=model["n_hidden"])
    out["importance"] = _importance(model.get("importance"), n)
    if "dropout_groups" in model:
        groups = model["dropout_groups"]
        if not isinstance(groups, list) or not all(type(g) is int for g in groups):
            raise InputError(f"model.dropout_groups = {groups!r} must be a list of integers, one per unit")
        out["dropout_groups"] = tuple(groups)
    out["sparsity"] = _sparsity(grid.get("sparsity", [0.0]))
    out["p"] = number_list(grid.get("p", [0.0]), "grid.p")
    for axis in IMPORTANCE_AXES:
        if axis in grid:
            values = _axis_values(grid[axis], f"grid.{axis}")
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise InputError(f"grid.{axis} = {grid[axis]!r} must be a non-empty list of numbers > 0")
            out[axis] = values
    return out


def _check_each(values, name: str, allowed: str, ok) -> None:
    for i, value in enumerate(values):
        if not (math.isfinite(value) and ok(value)):
            raise InputError(f"{name}[{i}] = {value!r} is not allowed; it must be {allowed}")


def integer_at_least_1(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} = {value!r} is not allowed; it must be an integer >= 1")


def number_list(value, name: str) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise InputError(f"{name} = {value!r} must be a list of numbers")
    return [float(v) for v in value]


def _spaced(spec, low_ok) -> bool:
    """[low, high, count] with numbers, an integer count >= 1 and low_ok(low, high)."""
    return (
        isinstance(spec, list)
        and len(spec) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
        and isinstance(spec[2], int)
        and spec[2] >= 1
        and low_ok(spec[0], spec[1])
    )


def _axis_values(value, name: str) -> list[float]:
    """A list of numbers, or { log = [low, high, count] }: log-spaced from low to high."""
    if isinstance(value, dict):
        spec = value.get("log")
        if set(value) != {"log"} or not _spaced(spec, lambda low, high: 0 < low <= high):
            raise InputError(
                f"{name} = {value!r} must be a list of numbers or "
                "{ log = [low, high, count] } with 0 < low <= high and an integer count >= 1"
            )
        return [float(v) for v in np.geomspace(spec[0], spec[1], spec[2])]
    return number_list(value, name)


def _importance(value, n: int) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"decay"}:
            raise InputError(f"model.importance table must be {{ decay = r }}; got {value}")
        decay = value["decay"]
        if not isinstance(decay, (int, float)) or not math.isfinite(decay) or decay <= 0:
            raise InputError(f"importance decay = {decay!r} is not allowed; it must be > 0")
        return [float(decay) ** i for i in range(n)]
    return number_list(value, "model.importance")


def _sparsity(value) -> list[float]:
    if isinstance(value, dict):
        if set(value) == {"tms"}:
            count = value["tms"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InputError(f"grid.sparsity tms = {count!r} must be an integer >= 1")
            return list(tms_sparsities(count))
        if set(value) == {"density"}:
            spec = value["density"]
            if not _spaced(spec, lambda low, high: 0 < low <= high <= 1):
                raise InputError(
                    f"grid.sparsity density = {spec!r} must be [low, high, count] "
                    "with 0 < low <= high <= 1 and an integer count >= 1"
                )
            return list(log_density_sparsities(*spec))
        raise InputError(
            "grid.sparsity table must be { tms = count } or { density = [low, high, count] }; "
            f"got {value}"
        )
    return number_list(value, "grid.sparsity")
