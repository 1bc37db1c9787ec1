"""Sweep configs: TOML -> a frozen, validated TrainConfig.

    [model]                        # and [grid]: the problem, theory.grid.Grid (documented there)
    n_features = 5
    n_hidden = 2
    importance = { decay = 0.9 }
    dropout_groups = [0, 0]        # optional: units with one label are dropped together

    [grid]                         # the axes; one model is trained per cell
    sparsity = { tms = 10 }
    p = [0.0, 0.4]
    seeds = [0, 1, 2]              # sim's own axis, first in every sweep's dims

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

    [series]                       # optional: the series model (theory.series) instead of TMS's;
    blocks = 2                     # [model] n_hidden is then the stream's dims
    units = 2                      # ReLU units per block
    dropout = "block"              # what the grid's p drops: "block", "unit" or "both"
    direct = true                  # false: the readout sees only what the blocks wrote

The cells are ordered (seed, *Grid.dims) = (seed, p, [r | importance_decay],
sparsity), C order; that order, cut into chunks, is the sweep's packing (sim.sweep).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

from theory import InputError, Setup
from theory.grid import (
    IMPORTANCE_AXES,
    Grid,
    at,
    grid_fields,
    integer_at_least_1,
    read_toml,
    table,
)
from theory.series import SeriesSetup

#: The trainers (sim.trainer.train's backend argument).
BACKENDS = ("auto", "torch", "fused", "tiled")
#: What the grid's p drops in a series model: each block as a whole, each unit, or both.
SERIES_DROPOUT = ("block", "unit", "both")


@dataclass(frozen=True)
class Series:
    """A config's [series] table: L blocks of k units on the stream (n_hidden dims), and what p drops."""

    blocks: int
    units: int
    dropout: str = "block"
    direct: bool = True

    def __post_init__(self):
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or self.blocks < 0:
            raise InputError(f"series.blocks = {self.blocks!r} is not allowed; it must be an integer >= 0")
        integer_at_least_1(self.units, "series.units")
        if self.dropout not in SERIES_DROPOUT:
            allowed = ", ".join(SERIES_DROPOUT)
            raise InputError(f"series.dropout = {self.dropout!r} is unknown; allowed: {allowed}")
        if not isinstance(self.direct, bool):
            raise InputError(f"series.direct = {self.direct!r} must be true or false")


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
    dropout_groups: tuple[int, ...] | None = None
    series: Series | None = None

    def __post_init__(self):
        if not self.seeds:
            raise InputError("grid.seeds is empty; give at least one value")
        if len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"grid.seeds = {list(self.seeds)} has repeated values")
        if self.backend not in BACKENDS:
            raise InputError(f"train.backend = {self.backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise InputError(f"grid.seeds has {seed!r}; seeds must be integers >= 0")
        if self.chunk is not None and (
            isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1
        ):
            raise InputError(f"sweep.chunk = {self.chunk!r} must be an integer >= 1")
        if self.series is not None:
            if self.dropout_groups is not None:
                raise InputError("model.dropout_groups is for one layer's units; a [series] model has blocks")
            if self.backend not in ("auto", "fused", "torch"):
                raise InputError(
                    f"train.backend = {self.backend!r}: a [series] model trains on fused (its numba kernel, "
                    "what auto picks) or torch"
                )
        # Every cell must make a valid Setup: validate them all now.
        self.cells()

    @cached_property
    def grid(self) -> Grid:
        """The problem this sweep trains: theory's description, which theory's diagrams read too."""
        return Grid(
            self.n_features,
            self.n_hidden,
            self.sparsity,
            self.p,
            importance=self.importance,
            r=self.r,
            importance_decay=self.importance_decay,
            dropout_groups=self.dropout_groups,
        )

    @property
    def importance_axis(self) -> str | None:
        return self.grid.importance_axis

    @property
    def axes(self) -> dict[str, list]:
        """The sweep's axes in cell order: seed, then the grid's."""
        return {"seed": list(self.seeds), **self.grid.axes}

    @property
    def n_cells(self) -> int:
        """How many models the grid has (without building their Setups)."""
        return math.prod(len(values) for values in self.axes.values())

    def cells(self) -> list[Cell]:
        """Every model of the grid, in C order of axes."""
        grid = self.grid
        return [
            Cell(seed, p, label, s, grid.setup(p, label, s))
            for seed in self.seeds
            for p in grid.p
            for label in grid.labels
            for s in grid.sparsity
        ]

    def series_setup(self, cell: Cell) -> SeriesSetup:
        """A cell's series problem (with a [series] table): the grid's p drops what series.dropout says."""
        s = self.series
        p_block = cell.p if s.dropout in ("block", "both") else 0.0
        p_unit = cell.p if s.dropout in ("unit", "both") else 0.0
        setup = cell.setup
        return SeriesSetup(setup.n_features, setup.n_hidden, s.blocks, s.units, setup.sparsity,
                           setup.importance, p_block=p_block, p_unit=p_unit, direct=s.direct)  # fmt: skip

    def to_dict(self) -> dict:
        """The fields as JSON-able values; dropout_groups and series only when given (a sweep's record of
        its config reads the same as before they existed)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        for key in ("dropout_groups", "series"):
            if out[key] is None:
                del out[key]
        if out.get("series", {}).get("direct") is True:  # the default: recorded as before it existed
            del out["series"]["direct"]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"unknown config keys {sorted(unknown)}; allowed: {sorted(names)}")
        data = dict(data)
        if data.get("dropout_groups") is not None:
            data["dropout_groups"] = tuple(data["dropout_groups"])
        if isinstance(data.get("series"), dict):
            data["series"] = Series(**data["series"])
        for name in ("importance", "sparsity", "p", "seeds", *IMPORTANCE_AXES):
            if name in data:
                data[name] = tuple(data[name])
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        raw = read_toml(path)
        with at(path):
            return cls.from_dict(_flatten(raw))


def _flatten(raw: dict) -> dict:
    unknown = set(raw) - {"model", "grid", "train", "sweep", "series"}
    if unknown:
        raise InputError(
            f"unknown tables {sorted(unknown)}; allowed: [model], [grid], [train], [sweep], [series]"
        )
    out = grid_fields(raw)
    out["importance"] = out["importance"] or [1.0] * out["n_features"]  # TrainConfig keeps it explicit
    train = table(raw, "train", {"steps", "batch", "lr", "weight_decay", "device", "backend", "log_every"})
    sweep = table(raw, "sweep", {"chunk"})
    out["seeds"] = raw.get("grid", {}).get("seeds", [0])
    if not isinstance(out["seeds"], list):
        raise InputError(f"grid.seeds = {out['seeds']!r} must be a list of integers")
    for key, value in train.items():
        _TRAIN_CHECKS[key](value, f"train.{key}")
    out.update(train)
    out.update(sweep)
    if "series" in raw:
        series = table(raw, "series", {"blocks", "units", "dropout", "direct"})
        for key in ("blocks", "units"):
            if key not in series:
                raise InputError(f"[series] needs {key}")
        out["series"] = Series(**series)
    return out


def _number(low: float, low_open: bool):
    def check(value, name: str) -> None:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            raise InputError(f"{name} = {value!r} is not allowed; it must be a finite number {bound}")

    return check


def _choice(allowed: tuple[str, ...]):
    def check(value, name: str) -> None:
        if value not in allowed:
            raise InputError(f"{name} = {value!r} is unknown; allowed: {', '.join(allowed)}")

    return check


def _device(value, name: str) -> None:
    if not isinstance(value, str):
        raise InputError(f"{name} = {value!r} must be a string: auto, cpu, cuda or cuda:N")


_TRAIN_CHECKS = {
    "steps": integer_at_least_1,
    "batch": integer_at_least_1,
    "log_every": integer_at_least_1,
    "lr": _number(0.0, low_open=True),
    "weight_decay": _number(0.0, low_open=False),
    "device": _device,
    "backend": _choice(BACKENDS),
}
