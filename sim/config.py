"""Sweep configs: TOML -> a frozen, validated TrainConfig.

    [model]
    n_features = 5
    n_hidden = 2
    importance = { decay = 0.9 }   # importance_i = decay**i; or a list; omitted: all ones

    [grid]                         # the axes; one model is trained per cell
    sparsity = { tms = 10 }        # the notebook's 1 - 20**-linspace(0, 1, 10); or a list;
                                   # or { density = [lo, hi, count] }: log-spaced densities
    p = [0.0, 0.4]
    seeds = [0, 1, 2]
    # At most one importance axis (omitted: the model's importance for every cell):
    # r = [0.1, 1.0, 10.0]            # the last feature's importance times r; or { log = [0.1, 10, 30] }
    # importance_decay = [0.7, 0.9, 1.0]   # importance_i = decay**i

    [train]                        # every key optional; defaults are the TMS notebook's
    steps = 10000
    batch = 1024
    lr = 1e-3
    weight_decay = 0.01
    device = "auto"
    backend = "auto"               # "torch", "fused", "tiled" (both CPU) or auto (sim.trainer.train)
    log_every = 100

    [sweep]
    chunk = 512                    # instances trained together; omitted: sized to the device

The grid's cells are ordered (seed, p, importance axis, sparsity), C order;
that order, cut into chunks, is the sweep's packing (sim.sweep).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from theory import InputError, Setup

#: The trainers (sim.trainer.train's backend argument).
BACKENDS = ("auto", "torch", "fused", "tiled")

#: The importance axes a grid may declare, at most one at a time.
IMPORTANCE_AXES = ("r", "importance_decay")


def tms_sparsities(count: int) -> tuple[float, ...]:
    """The notebook's sweep: feature probability 20 ** -linspace(0, 1, count), as sparsity."""
    return tuple(float(s) for s in 1.0 - 20.0 ** -np.linspace(0, 1, count))


def log_density_sparsities(low: float, high: float, count: int) -> tuple[float, ...]:
    """Sparsities whose densities 1 - S are geomspace(low, high, count)."""
    return tuple(float(1.0 - d) for d in np.geomspace(low, high, count))


@dataclass(frozen=True)
class Cell:
    """One model of the grid: its labels and its Setup."""

    seed: int
    p: float
    importance_label: float | None
    sparsity: float
    setup: Setup


@dataclass(frozen=True)
class TrainConfig:
    n_features: int
    n_hidden: int
    importance: tuple[float, ...]
    sparsity: tuple[float, ...]
    p: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    r: tuple[float, ...] = ()
    importance_decay: tuple[float, ...] = ()
    steps: int = 10_000
    batch: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    device: str = "auto"
    backend: str = "auto"
    log_every: int = 100
    chunk: int | None = None

    def __post_init__(self):
        for name in ("sparsity", "p", "seeds", *IMPORTANCE_AXES):
            values = getattr(self, name)
            if len(values) == 0 and name not in IMPORTANCE_AXES:
                raise InputError(f"grid.{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise InputError(f"grid.{name} = {list(values)} has repeated values")
        if self.backend not in BACKENDS:
            raise InputError(f"train.backend = {self.backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
        if self.r and self.importance_decay:
            raise InputError("grid declares both r and importance_decay; give at most one importance axis")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise InputError(f"grid.seeds has {seed!r}; seeds must be integers >= 0")
        if self.chunk is not None and (
            isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1
        ):
            raise InputError(f"sweep.chunk = {self.chunk!r} must be an integer >= 1")
        # Every cell must make a valid Setup: validate them all now.
        self.cells()

    @property
    def importance_axis(self) -> str | None:
        """'r', 'importance_decay', or None when every cell has the model's importance."""
        return next((name for name in IMPORTANCE_AXES if getattr(self, name)), None)

    def grid(self) -> dict[str, list]:
        """The grid's axes in cell order: name -> coordinate values."""
        axes = {"seed": list(self.seeds), "p": list(self.p)}
        if self.importance_axis:
            axes[self.importance_axis] = list(getattr(self, self.importance_axis))
        axes["sparsity"] = list(self.sparsity)
        return axes

    @property
    def n_cells(self) -> int:
        """How many models the grid has (without building their Setups)."""
        return math.prod(len(values) for values in self.grid().values())

    def importance_for(self, label: float | None) -> tuple[float, ...]:
        if self.importance_axis == "r":
            return (*self.importance[:-1], self.importance[-1] * label)
        if self.importance_axis == "importance_decay":
            return tuple(float(label) ** i for i in range(self.n_features))
        return self.importance

    def cells(self) -> list[Cell]:
        """Every model of the grid, in C order of grid()'s axes."""
        labels = getattr(self, self.importance_axis) if self.importance_axis else (None,)
        return [
            Cell(
                seed,
                p,
                label,
                s,
                Setup(self.n_features, self.n_hidden, sparsity=s, importance=self.importance_for(label), p=p),
            )
            for seed in self.seeds
            for p in self.p
            for label in labels
            for s in self.sparsity
        ]

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        data = dict(data)
        for name in ("importance", "sparsity", "p", "seeds", *IMPORTANCE_AXES):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"config file {path} is not valid TOML: {err}") from None
        try:
            return cls.from_dict(_flatten(raw, path))
        except InputError as err:
            message = str(err)
            raise InputError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def _table(raw: dict, name: str, allowed: set[str], path: Path) -> dict:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [{name}] must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} in [{name}]; allowed: {sorted(allowed)}")
    return table


def _flatten(raw: dict, path: Path) -> dict:
    unknown = set(raw) - {"model", "grid", "train", "sweep"}
    if unknown:
        raise InputError(
            f"{path}: unknown tables {sorted(unknown)}; allowed: [model], [grid], [train], [sweep]"
        )
    model = _table(raw, "model", {"n_features", "n_hidden", "importance"}, path)
    grid = _table(raw, "grid", {"sparsity", "p", "seeds", *IMPORTANCE_AXES}, path)
    train = _table(
        raw, "train", {"steps", "batch", "lr", "weight_decay", "device", "backend", "log_every"}, path
    )
    sweep = _table(raw, "sweep", {"chunk"}, path)
    for key in ("n_features", "n_hidden"):
        if key not in model:
            raise InputError(f"{path}: [model] needs {key}")
    n = model["n_features"]
    _integer_at_least_1(n, "model.n_features", path)
    _integer_at_least_1(model["n_hidden"], "model.n_hidden", path)
    out = dict(n_features=n, n_hidden=model["n_hidden"])
    out["importance"] = _importance(model.get("importance"), n, path)
    out["sparsity"] = _sparsity(grid.get("sparsity", [0.0]), path)
    out["p"] = _number_list(grid.get("p", [0.0]), "grid.p", path)
    out["seeds"] = grid.get("seeds", [0])
    if not isinstance(out["seeds"], list):
        raise InputError(f"{path}: grid.seeds = {out['seeds']!r} must be a list of integers")
    for axis in IMPORTANCE_AXES:
        if axis in grid:
            values = _axis_values(grid[axis], f"grid.{axis}", path)
            if not values or not all(math.isfinite(v) and v > 0 for v in values):
                raise InputError(
                    f"{path}: grid.{axis} = {grid[axis]!r} must be a non-empty list of numbers > 0"
                )
            out[axis] = values
    _check_each(out["importance"], "model.importance", ">= 0", lambda v: v >= 0, path)
    _check_each(out["sparsity"], "grid.sparsity", "in [0, 1]", lambda v: 0 <= v <= 1, path)
    _check_each(out["p"], "grid.p", "in [0, 1)", lambda v: 0 <= v < 1, path)
    for key, value in train.items():
        _TRAIN_CHECKS[key](value, f"train.{key}", path)
    out.update(train)
    out.update(sweep)
    return out


def _check_each(values, name: str, allowed: str, ok, path: Path) -> None:
    for i, value in enumerate(values):
        if not (math.isfinite(value) and ok(value)):
            raise InputError(f"{path}: {name}[{i}] = {value!r} is not allowed; it must be {allowed}")


def _integer_at_least_1(value, name: str, path: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{path}: {name} = {value!r} is not allowed; it must be an integer >= 1")


def _number(low: float, low_open: bool):
    def check(value, name: str, path: Path) -> None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise InputError(f"{path}: {name} = {value!r} is not allowed; it must be a finite number {bound}")

    return check


def _choice(allowed: tuple[str, ...]):
    def check(value, name: str, path: Path) -> None:
        if value not in allowed:
            raise InputError(f"{path}: {name} = {value!r} is unknown; allowed: {', '.join(allowed)}")

    return check


def _device(value, name: str, path: Path) -> None:
    if not isinstance(value, str):
        raise InputError(f"{path}: {name} = {value!r} must be a string: auto, cpu, cuda or cuda:N")


_TRAIN_CHECKS = {
    "steps": _integer_at_least_1,
    "batch": _integer_at_least_1,
    "log_every": _integer_at_least_1,
    "lr": _number(0.0, low_open=True),
    "weight_decay": _number(0.0, low_open=False),
    "device": _device,
    "backend": _choice(BACKENDS),
}


def _number_list(value, name: str, path: Path) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise InputError(f"{path}: {name} = {value!r} must be a list of numbers")
    return [float(v) for v in value]


def _axis_values(value, name: str, path: Path) -> list[float]:
    """A list of numbers, or { log = [low, high, count] }: log-spaced from low to high."""
    if isinstance(value, dict):
        spec = value.get("log")
        ok = (
            set(value) == {"log"}
            and isinstance(spec, list)
            and len(spec) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
            and isinstance(spec[2], int)
            and 0 < spec[0] <= spec[1]
            and spec[2] >= 1
        )
        if not ok:
            raise InputError(
                f"{path}: {name} = {value!r} must be a list of numbers or "
                "{ log = [low, high, count] } with 0 < low <= high and an integer count >= 1"
            )
        return [float(v) for v in np.geomspace(spec[0], spec[1], spec[2])]
    return _number_list(value, name, path)


def _importance(value, n: int, path: Path) -> list[float]:
    if value is None:
        return [1.0] * n
    if isinstance(value, dict):
        if set(value) != {"decay"}:
            raise InputError(f"{path}: model.importance table must be {{ decay = r }}; got {value}")
        decay = value["decay"]
        if not isinstance(decay, (int, float)) or not math.isfinite(decay) or decay <= 0:
            raise InputError(f"{path}: importance decay = {decay!r} is not allowed; it must be > 0")
        return [float(decay) ** i for i in range(n)]
    return _number_list(value, "model.importance", path)


def _sparsity(value, path: Path) -> list[float]:
    if isinstance(value, dict):
        if set(value) == {"tms"}:
            count = value["tms"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InputError(f"{path}: grid.sparsity tms = {count!r} must be an integer >= 1")
            return list(tms_sparsities(count))
        if set(value) == {"density"}:
            spec = value["density"]
            ok = (
                isinstance(spec, list)
                and len(spec) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
                and isinstance(spec[2], int)
                and 0 < spec[0] <= spec[1] <= 1
                and spec[2] >= 1
            )
            if not ok:
                raise InputError(
                    f"{path}: grid.sparsity density = {spec!r} must be [low, high, count] "
                    "with 0 < low <= high <= 1 and an integer count >= 1"
                )
            return list(log_density_sparsities(*spec))
        raise InputError(
            f"{path}: grid.sparsity table must be {{ tms = count }} or {{ density = [low, high, count] }}; "
            f"got {value}"
        )
    return _number_list(value, "grid.sparsity", path)
