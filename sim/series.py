"""Training the series model (theory.series: a residual stream through blocks that may fail), many
instances at once: in torch (backend "torch"), or in the numba kernel of sim.series_kernel (backend
"fused", the default on CPU: same model, law, objective and optimiser, its own random stream).

Each instance has its own setup (same shapes; density, importance, p_block and p_unit may differ) and
its own parameters; the objective is the sum over instances of each one's batch-mean loss divided by
n (the TMS notebook's mean over features), so AdamW (element-wise) trains every instance as if alone.
Inputs and masks are drawn from seeded generators: the same seed and backend give the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sim.trainer import check_schedule, logged_steps
from theory.errors import InputError
from theory.progress import Progress
from theory.series import SeriesModel, SeriesSetup

_NAMES = ("E", "R", "c", "U", "O", "b")
#: The series model's trainers: "fused" (sim.series_kernel, CPU) and "torch" (this module's loop).
SERIES_BACKENDS = ("fused", "torch")


@dataclass(frozen=True)
class SeriesResult:
    """Trained instances: params name -> (instances, *shape); loss_history (instances, logged steps), the
    training batch's loss (sum over features, with dropout) at log_steps."""

    setups: tuple[SeriesSetup, ...]
    params: dict[str, np.ndarray]
    log_steps: np.ndarray
    loss_history: np.ndarray
    steps: int
    batch: int
    lr: float
    weight_decay: float
    seed: int
    seconds: float

    def model(self, instance: int) -> SeriesModel:
        return SeriesModel.of(self.setups[instance], **{k: v[instance] for k, v in self.params.items()})


def _check_backend(backend: str) -> None:
    if backend not in SERIES_BACKENDS:
        raise InputError(f"backend = {backend!r} is unknown for the series model; allowed: {SERIES_BACKENDS}")


def check_setups(setups) -> tuple[SeriesSetup, ...]:
    setups = tuple(setups)
    if not setups or not all(isinstance(s, SeriesSetup) for s in setups):
        raise InputError("setups must be a non-empty sequence of theory.series.SeriesSetup")
    shapes = {(s.n_features, s.stream, s.blocks, s.units, s.direct) for s in setups}
    if len(shapes) > 1:
        raise InputError(
            f"the setups must share (n_features, stream, blocks, units, direct); got {sorted(shapes)}"
        )
    return setups


def series_init(setups: Sequence[SeriesSetup], seed: int = 0) -> dict[str, np.ndarray]:
    """Initial parameters for every instance: matrices Xavier-normal (std sqrt(2 / (fan_in + fan_out))),
    biases 0; float32, from torch's CPU generator seeded by `seed`."""
    setups = check_setups(setups)
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, shape in setups[0].shapes.items():
        full = (len(setups), *shape)
        if name in ("c", "b"):
            out[name] = np.zeros(full, dtype=np.float32)
            continue
        fan_out, fan_in = shape[-2], shape[-1]
        std = float(np.sqrt(2.0 / (fan_in + fan_out)))
        out[name] = (torch.randn(full, generator=generator) * std).numpy()
    return out


class _Batch:
    """The instances' fixed tensors and the training forward pass."""

    def __init__(self, setups: tuple[SeriesSetup, ...]):
        self.setups = setups
        first = setups[0]
        self.n, self.L, self.k = first.n_features, first.blocks, first.units
        self.density = torch.tensor(np.array([s.density for s in setups]), dtype=torch.float32)[:, None, :]
        self.importance = torch.tensor(np.array([s.importance_array for s in setups]), dtype=torch.float32)
        p_block = torch.tensor([s.p_block for s in setups], dtype=torch.float32)
        p_unit = torch.tensor([s.p_unit for s in setups], dtype=torch.float32)
        self.p_block, self.p_unit = p_block[:, None, None], p_unit[:, None, None]

    def losses(self, params: dict[str, torch.Tensor], batch: int, generator: torch.Generator) -> torch.Tensor:
        """Each instance's batch-mean loss (sum over features, importance-weighted), (instances,)."""
        I, n = len(self.setups), self.n  # noqa: E741 (instances)
        x = torch.rand(I, batch, n, generator=generator)
        x = x * (torch.rand(I, batch, n, generator=generator) < self.density)
        s = start = torch.einsum("ibn,idn->ibd", x, params["E"])
        for layer in range(self.L):
            a = torch.relu(
                torch.einsum("ibd,ikd->ibk", s, params["R"][:, layer]) + params["c"][:, None, layer]
            )
            unit_keep = torch.rand(I, batch, self.k, generator=generator) >= self.p_unit
            a = a * unit_keep / (1.0 - self.p_unit)
            block_keep = torch.rand(I, batch, 1, generator=generator) >= self.p_block
            s = s + torch.einsum("ibk,idk->ibd", a, params["U"][:, layer]) * block_keep / (1.0 - self.p_block)
        if not self.setups[0].direct:  # the readout sees what the blocks wrote only
            s = s - start
        out = torch.relu(torch.einsum("ibd,ind->ibn", s, params["O"]) + params["b"][:, None, :])
        return (((x - out) ** 2) * self.importance[:, None, :]).sum(-1).mean(-1)


def train_series(
    setups: Sequence[SeriesSetup],
    *,
    steps: int = 10_000,
    batch: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    log_every: int = 100,
    init: dict[str, np.ndarray] | None = None,
    progress: bool | None = None,
    on_steps: Callable[[int], None] | None = None,
    backend: str = "fused",
) -> SeriesResult:
    """Train one series model per setup, all at once (AdamW, the TMS notebook's defaults); init: the
    starting parameters (series_init's shapes), default series_init(setups, seed); on_steps: called at
    every logged step with the number of steps done since its last call; backend: SERIES_BACKENDS."""
    setups = check_setups(setups)
    steps, batch, log_every = check_schedule(steps, batch, lr, weight_decay, log_every)
    _check_backend(backend)
    start = series_init(setups, seed) if init is None else init
    expected = {name: (len(setups), *shape) for name, shape in setups[0].shapes.items()}
    if set(start) != set(expected) or any(np.shape(start[k]) != v for k, v in expected.items()):
        raise InputError(f"init must hold {expected}; got { {k: np.shape(v) for k, v in start.items()} }")
    logged = logged_steps(steps, log_every)
    train = _train_fused if backend == "fused" else _train_torch
    began = time.perf_counter()
    with Progress(steps * len(setups), "series training", "inst-step", show=progress) as bar:
        params, history = train(setups, start, steps, batch, lr, weight_decay, seed, logged, bar, on_steps)
    return SeriesResult(
        setups=setups,
        params=params,
        log_steps=np.array(logged),
        loss_history=history,
        steps=steps,
        batch=batch,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        seconds=time.perf_counter() - began,
    )


def _train_torch(setups, start, steps, batch, lr, weight_decay, seed, logged, bar, on_steps):
    """train_series's torch loop: (params as float64 arrays, loss history)."""
    params = {k: torch.tensor(np.asarray(start[k]), dtype=torch.float32, requires_grad=True) for k in _NAMES}
    optimizer = torch.optim.AdamW(list(params.values()), lr=lr, weight_decay=weight_decay)
    model = _Batch(setups)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    history = np.empty((len(setups), len(logged)))
    slot = reported = 0
    for step in range(steps):
        losses = model.losses(params, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        (losses.sum() / model.n).backward()
        optimizer.step()
        if slot < len(logged) and step == logged[slot]:
            history[:, slot] = losses.detach().numpy()
            slot += 1
            if on_steps is not None:
                on_steps(step + 1 - reported)
                reported = step + 1
        bar.update(len(setups))
    return {k: v.detach().numpy().astype(np.float64) for k, v in params.items()}, history


def _train_fused(setups, start, steps, batch, lr, weight_decay, seed, logged, bar, on_steps):
    """train_series on sim.series_kernel, run from one logged step to the next: (params, loss history)."""
    from sim import series_kernel as kernel
    from sim.splitmix import seed_states

    shapes = setups[0].shapes
    theta = kernel.flatten(start, shapes)
    exp_avg, exp_sq = np.zeros_like(theta), np.zeros_like(theta)
    states = seed_states(int(seed) + 1, len(setups))
    arrays = kernel.setup_arrays(setups)
    train_block = kernel.kernels(setups[0]).train_block
    log_slot = np.full(steps, -1, dtype=np.int64)
    log_slot[logged] = np.arange(len(logged))
    history = np.zeros((len(setups), len(logged)))
    done = 0
    for last in [step + 1 for step in logged]:  # up to and including each logged step
        train_block(
            theta, exp_avg, exp_sq, states, *arrays, done, last, int(batch), float(lr), float(weight_decay),
            0.9, 0.999, 1e-8, log_slot, history,
        )  # fmt: skip
        if on_steps is not None:
            on_steps(last - done)
        bar.update((last - done) * len(setups))
        done = last
    return kernel.unflatten(theta, shapes), history


def batch_losses(
    setups: Sequence[SeriesSetup],
    params: dict[str, np.ndarray],
    batch: int,
    batches: int,
    seed: int = 0,
    backend: str = "torch",
) -> np.ndarray:
    """The training forward pass's batch losses at fixed parameters, (instances, batches): their mean
    estimates each instance's loss (the check that training samples the model's law); backend: whose
    forward pass (SERIES_BACKENDS)."""
    setups = check_setups(setups)
    _check_backend(backend)
    if backend == "fused":
        from sim.series_kernel import batch_gradients

        return batch_gradients(setups, params, batch=batch, batches=batches, seed=seed).loss
    model = _Batch(setups)
    tensors = {k: torch.tensor(np.asarray(params[k]), dtype=torch.float32) for k in _NAMES}
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        return np.stack([model.losses(tensors, batch, generator).numpy() for _ in range(batches)], axis=1)
