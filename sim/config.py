"""Training configs: TOML -> a frozen, validated TrainConfig.

    [model]
    n_features = 5
    n_hidden = 2
    importance = { decay = 0.9 }   # importance_i = decay**i; or a list; omitted: all ones

    [grid]
    sparsity = { tms = 10 }        # the notebook's 1 - 20**-linspace(0, 1, 10); or a list
    p = [0.0, 0.4]
    seeds = [0, 1, 2]

    [train]                        # every key optional; defaults are the TMS notebook's
    steps = 10000
    batch = 1024
    lr = 1e-3
    weight_decay = 0.01
    device = "auto"
    log_every = 100

One model is trained per (seed, p, sparsity); each seed is one call of
sim.train with all (p, sparsity) instances batched.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from theory import InputError, Setup


def tms_sparsities(count: int) -> tuple[float, ...]:
    """The notebook's sweep: feature probability 20 ** -linspace(0, 1, count), as sparsity."""
    return tuple(float(s) for s in 1.0 - 20.0 ** -np.linspace(0, 1, count))


@dataclass(frozen=True)
class TrainConfig:
    n_features: int
    n_hidden: int
    importance: tuple[float, ...]
    sparsity: tuple[float, ...]
    p: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    steps: int = 10_000
    batch: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    device: str = "auto"
    log_every: int = 100

    def __post_init__(self):
        for name in ("sparsity", "p", "seeds"):
            values = getattr(self, name)
            if len(values) == 0:
                raise InputError(f"grid.{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise InputError(f"grid.{name} = {list(values)} has repeated values")
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise InputError(f"grid.seeds has {seed!r}; seeds must be integers >= 0")
        # Every (p, sparsity) must make a valid Setup: validate them all now.
        self.setups()

    def setups(self) -> list[Setup]:
        """One Setup per (p, sparsity), p-major: the instance order of one training call."""
        return [
            Setup(self.n_features, self.n_hidden, sparsity=s, importance=self.importance, p=p)
            for p in self.p
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
        for name in ("importance", "sparsity", "p", "seeds"):
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
        return cls.from_dict(_flatten(raw, path))


def _table(raw: dict, name: str, allowed: set[str], path: Path) -> dict:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [{name}] must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} in [{name}]; allowed: {sorted(allowed)}")
    return table


def _flatten(raw: dict, path: Path) -> dict:
    unknown = set(raw) - {"model", "grid", "train"}
    if unknown:
        raise InputError(f"{path}: unknown tables {sorted(unknown)}; allowed: [model], [grid], [train]")
    model = _table(raw, "model", {"n_features", "n_hidden", "importance"}, path)
    grid = _table(raw, "grid", {"sparsity", "p", "seeds"}, path)
    train = _table(raw, "train", {"steps", "batch", "lr", "weight_decay", "device", "log_every"}, path)
    for key in ("n_features", "n_hidden"):
        if key not in model:
            raise InputError(f"{path}: [model] needs {key}")
    n = model["n_features"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{path}: n_features = {n!r} is not allowed; it must be an integer >= 1")
    out = dict(n_features=n, n_hidden=model["n_hidden"])
    out["importance"] = _importance(model.get("importance"), n, path)
    out["sparsity"] = _sparsity(grid.get("sparsity", [0.0]), path)
    out["p"] = _number_list(grid.get("p", [0.0]), "grid.p", path)
    out["seeds"] = grid.get("seeds", [0])
    if not isinstance(out["seeds"], list):
        raise InputError(f"{path}: grid.seeds = {out['seeds']!r} must be a list of integers")
    out.update(train)
    return out


def _number_list(value, name: str, path: Path) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise InputError(f"{path}: {name} = {value!r} must be a list of numbers")
    return [float(v) for v in value]


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
        if set(value) != {"tms"}:
            raise InputError(f"{path}: grid.sparsity table must be {{ tms = count }}; got {value}")
        count = value["tms"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InputError(f"{path}: grid.sparsity tms = {count!r} must be an integer >= 1")
        return list(tms_sparsities(count))
    return _number_list(value, "grid.sparsity", path)
