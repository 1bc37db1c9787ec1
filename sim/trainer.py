"""Batched training of the toy models: one instance per Setup, all at once.

The model, the data and the objective are docs/model.md section 2 and the TMS
notebook's loop (section 3): xavier-normal init over the (instances, n, m)
tensor, b = 0, AdamW (lr 1e-3, weight decay 0.01), constant lr, batch 1024,
the per-feature mean of the importance-weighted squared error as the
objective, dropout on the hidden layer (inverted, PyTorch's convention).

Three things are done differently from the published loop, none of which
changes the estimator or the optimiser:

- one uniform draw per feature instead of two: x = r / P(active) where
  r < P(active), else 0; r / P is uniform on [0, 1) given r < P;
- the uniforms are 24-bit integers: on CPU raw SFC64 output, drawn and
  turned into a batch one step ahead in a background thread (on CUDA,
  torch's generator);
- a hand-written forward and backward pass in five batched matmuls
  (no autograd), and torch's AdamW update applied to one flat buffer
  holding W and b.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sim.config import BACKENDS
from theory import InputError, Setup, expected_loss, expected_loss_bounds
from theory.progress import Progress

#: Instances with at most this many features get the exact loss; larger
#: ones get a bracket from active sets of at most MAX_ACTIVE_BOUNDS features
#: (0.3 s for 20 features in 5 dims; 3 would take ~8 s, and the bracket is
#: wide unless the features are sparse).
EXACT_LOSS_MAX_FEATURES = 8
MAX_ACTIVE_BOUNDS = 2


@dataclass(frozen=True)
class TrainResult:
    """Trained instances. Losses are sums over features (docs/model.md, the loss L), importance-weighted.

    W: (instances, m, n); b: (instances, n); loss_history: (instances, len(log_steps)),
    the training batch's loss at each logged step.
    """

    setups: tuple[Setup, ...]
    W: np.ndarray
    b: np.ndarray
    log_steps: np.ndarray
    loss_history: np.ndarray
    steps: int
    batch: int
    lr: float
    weight_decay: float
    seed: int
    device: str
    seconds: float
    #: With train(snapshot_below=...): each instance's W, b at the first logged step whose batch
    #: loss was at or below its threshold, and that step (-1, with the final W, b, if never).
    snapshot_W: np.ndarray | None = None
    snapshot_b: np.ndarray | None = None
    snapshot_step: np.ndarray | None = None

    def expected_losses(self) -> ExpectedLosses:
        """Each instance's expected loss with dropout (the training objective), from theory."""
        return expected_losses(self.setups, self.W, self.b)


@dataclass(frozen=True)
class ExpectedLosses:
    """Each instance's expected loss under its setup's dropout (sum over features, importance-weighted).

    For n_features <= EXACT_LOSS_MAX_FEATURES it is theory's exact loss:
    `loss`, and lower == upper == loss. Larger models get a rigorous bracket
    lower <= L <= upper from active sets of at most MAX_ACTIVE_BOUNDS
    features (theory.expected_loss_bounds), and `loss` is an error.
    """

    lower: np.ndarray
    upper: np.ndarray
    exact: bool

    @property
    def loss(self) -> np.ndarray:
        """The exact expected loss of each instance (only where it was computed exactly)."""
        if not self.exact:
            raise InputError(
                f"the exact loss is computed for at most {EXACT_LOSS_MAX_FEATURES} features; "
                "this is a bracket: use .lower and .upper"
            )
        return self.lower


def expected_losses(setups: Sequence[Setup], W: np.ndarray, b: np.ndarray) -> ExpectedLosses:
    """theory's expected loss of each instance (exact for n <= EXACT_LOSS_MAX_FEATURES)."""
    exact = setups[0].n_features <= EXACT_LOSS_MAX_FEATURES
    lower, upper = np.empty(len(setups)), np.empty(len(setups))
    for i, setup in enumerate(setups):
        if exact:
            lower[i] = upper[i] = expected_loss(setup, W[i], b[i])
        else:
            bounds = expected_loss_bounds(setup, W[i], b[i], MAX_ACTIVE_BOUNDS)
            lower[i], upper[i] = bounds.lower, bounds.upper
    return ExpectedLosses(lower=lower, upper=upper, exact=exact)


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else must be a usable torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"device = {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device = {device!r} was asked for but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"device = {device!r} is not supported; use 'auto', 'cpu' or 'cuda'")
    return resolved


def random_source(device: torch.device) -> str:
    """The torch backend's random numbers on `device`: "sfc64" (numpy, CPU) or "torch" (the device's)."""
    return "sfc64" if device.type == "cpu" else "torch"


class _Batches:
    """Seeded training batches (minus the features, dropout scale) of one shape, on the device.

    The randomness is 24-bit integers s in [-2**23, 2**23), one per feature
    and per hidden unit, so r = s / 2**24 + 1/2 is exactly numpy's float32
    uniform on [0, 1); `model.sample` turns them into a batch.
    CPU: the integers are raw SFC64 output (numpy's fastest generator, five
    times torch.rand here), and drawing and sampling run in a background
    thread one batch ahead, so they overlap the arithmetic on the batch
    before (numpy and torch release the GIL; torch runs half the threads on
    each side). The stream is the same as doing it in turn.
    CUDA: torch's generator on the device, sampled in line.
    source: "sfc64" or "torch" (the CUDA path, on any device); None: the device's.
    """

    def __init__(self, seed: int, device: torch.device, model: _Batched, batch: int, source=None):
        self.device, self.model = device, model
        self.shape = model.random_shape(batch)
        self._threads = None
        if source is None:
            source = random_source(device)
        if source not in ("sfc64", "torch"):
            raise ValueError(f"source = {source!r}; use 'sfc64' or 'torch'")
        if source == "sfc64":
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._threads // 2))
            self._bits = np.random.SFC64(seed)
            self._pool = ThreadPoolExecutor(max_workers=1)
            self._next = self._pool.submit(self._make)
        else:
            self._bits = None
            self._torch = torch.Generator(device=device).manual_seed(seed)

    def _integers(self) -> torch.Tensor:
        if self._bits is None:
            return torch.randint(
                -(2**23), 2**23, self.shape, dtype=torch.int32, device=self.device, generator=self._torch
            )
        size = math.prod(self.shape)
        raw = self._bits.random_raw((size + 1) // 2).view(np.int32)[:size]
        return torch.from_numpy(raw).view(self.shape).bitwise_right_shift_(8)

    def _make(self):
        return self.model.sample(self._integers())

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(minus the features, dropout scale) of the next batch; see _Batched.sample."""
        if self._bits is None:
            return self._make()
        batch = self._next.result()
        self._next = self._pool.submit(self._make)
        return batch

    def close(self) -> None:
        if self._bits is not None:
            self._pool.shutdown(wait=True)
            torch.set_num_threads(self._threads)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Batched:
    """The instances' fixed tensors on the device: sampler, forward pass, gradient.

    Tensors are feature-major, (instances, features or hidden, batch): on CPU
    the small batched matmuls are 2-4x faster in that layout than batch-major.
    The batch is carried as xn = -x (the sampler's threshold keeps values
    above a bound, so -x costs no extra pass); the signs are folded into the
    matmuls. Written without boolean tensors: on CPU a comparison that makes
    one costs about as much as five float passes over the batch. Importance
    weights are applied to the small (m, n) operands, not to the batch.
    """

    def __init__(self, setups: Sequence[Setup], device: torch.device):
        dtype = torch.float32
        self.device = device
        self.n, self.m = setups[0].n_features, setups[0].n_hidden
        density = torch.tensor(np.array([s.density for s in setups]), dtype=torch.float64, device=device)
        # xn = s * slope + offset = -(s / 2**24 + 1/2) / density (both 0 for a never-active feature).
        inv = torch.where(density > 0, 1.0 / density.clamp(min=1e-300), 0.0)[:, :, None]
        self.slope = (-(2.0**-24) * inv).to(dtype)
        self.offset = (-0.5 * inv).to(dtype)
        self.importance = torch.tensor(
            np.array([s.importance_array for s in setups]), dtype=dtype, device=device
        )[:, :, None]
        p = torch.tensor([s.p for s in setups], dtype=torch.float64, device=device)
        self.inv_keep = (1.0 / (1.0 - p)).to(dtype)[:, None, None]  # (I, 1, 1)
        self.keep_offset = (0.5 - p).to(dtype)[:, None, None]
        self.any_dropout = bool((p > 0).any())
        leaders = np.array([s.group_leaders for s in setups])
        # a unit's draw is its group leader's: gathered only where some instance has groups
        self.leaders = None
        if (leaders != np.arange(self.m)).any():
            self.leaders = torch.tensor(leaders, device=device)[:, :, None]  # (I, m, 1)

    def random_shape(self, batch: int) -> tuple[int, int, int]:
        """Shape of the random integers one batch consumes: features, then dropout draws."""
        return (self.inv_keep.shape[0], self.n + (self.m if self.any_dropout else 0), batch)

    def sample(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """From 24-bit integers s (random_shape): xn = -x, (I, n, B), and the dropout scale, (I, m, B).

        With r = s / 2**24 + 1/2 uniform on [0, 1) and P_i = 1 - S_i:
        x_i = r / P_i if r < P_i else 0. As -r/P_i > -1 exactly when r < P_i,
        one threshold pass makes -x. The scale is mask/(1-p) with mask = 1
        when r < 1 - p: ceil((1 - p) - r) is that mask. The scale is None
        when every instance has p = 0.
        """
        xn = torch.mul(s[:, : self.n], self.slope).add_(self.offset)
        F.threshold(xn, -1.0, 0.0, inplace=True)
        scale = None
        if self.any_dropout:
            draws = s[:, self.n :]
            if self.leaders is not None:  # dropout groups: each unit takes its group leader's draw
                draws = torch.gather(draws, 1, self.leaders.expand(-1, -1, draws.shape[2]))
            scale = torch.mul(draws, -(2.0**-24)).add_(self.keep_offset).ceil_().mul_(self.inv_keep)
        return xn, scale

    @staticmethod
    def forward(W, b, xn, scale):
        """hn = -h = -mask * W x / (1-p), (I, m, B), and the pre-activation y = W^T h + b, (I, n, B)."""
        hn = torch.bmm(W, xn)
        if scale is not None:
            hn.mul_(scale)
        return hn, torch.baddbmm(b.unsqueeze(2), W.transpose(1, 2), hn, alpha=-1.0)

    def per_sample_loss(self, xn, y) -> torch.Tensor:
        """Each sample's loss, sum over features, importance-weighted: (I, B)."""
        return (self.importance * (y.clamp(min=0) + xn) ** 2).sum(1)

    def loss(self, xn, y) -> torch.Tensor:
        """Per-instance batch loss: (I,)."""
        return self.per_sample_loss(xn, y).mean(1)

    def gradient(self, W, xn, scale, hn, y, grad_W, grad_b):
        """Gradient of the TMS objective (batch and feature mean) for W and b, into grad_W, grad_b.

        With d = y - x where y > 0, else 0, and w_j = 2 I_j / (B n):
        grad_b = w * sum_B d; grad_W = h (w d)^T + (scale * W (w d)) x^T.
        """
        weight = self.importance * (2.0 / (xn.shape[2] * self.n))  # (I, n, 1)
        d = torch.add(y, xn)
        torch.ops.aten.threshold_backward.grad_input(d, y, 0.0, grad_input=d)  # ReLU's masking kernel
        torch.sum(d, 2, out=grad_b)
        grad_b.mul_(weight[:, :, 0])
        row = weight.transpose(1, 2)  # (I, 1, n)
        torch.bmm(hn, d.transpose(1, 2), out=grad_W)
        grad_W.mul_(row.neg())
        dh = torch.bmm(W * row, d)
        if scale is not None:
            dh.mul_(scale)
        grad_W.baddbmm_(dh, xn.transpose(1, 2), alpha=-1.0)


class _FlatAdamW:
    """torch.optim.AdamW's update (its single-tensor algorithm, same defaults) on one flat buffer.

    W and b are views into `params` and their gradients views into `grad`,
    so one step is a handful of kernels instead of torch's per-tensor loop,
    which costs ~0.3 ms a step at this size on CPU.
    """

    def __init__(self, shapes, device, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
        sizes = [math.prod(s) for s in shapes]
        self.params = torch.zeros(sum(sizes), device=device)
        self.grad = torch.zeros_like(self.params)
        self.exp_avg = torch.zeros_like(self.params)
        self.exp_avg_sq = torch.zeros_like(self.params)
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.step_count = 0
        offsets = np.cumsum([0] + sizes)
        self.param_views = [
            self.params[a:b].view(s) for a, b, s in zip(offsets, offsets[1:], shapes, strict=False)
        ]
        self.grad_views = [
            self.grad[a:b].view(s) for a, b, s in zip(offsets, offsets[1:], shapes, strict=False)
        ]

    def step(self):
        beta1, beta2 = self.betas
        self.step_count += 1
        self.params.mul_(1 - self.lr * self.weight_decay)
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**self.step_count
        bias_correction2_sqrt = math.sqrt(1 - beta2**self.step_count)
        denom = (self.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        self.params.addcdiv_(self.exp_avg, denom, value=-self.lr / bias_correction1)


def tms_init(instances: int, n: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """The notebook's xavier_normal_ on an (instances, n, m) tensor, returned as (instances, m, n).

    Its fans are n*m and instances*m, so the scale depends on how many
    instances are trained together: a quirk of the published code, kept.
    """
    std = math.sqrt(2.0 / (n * m + instances * m))
    W = torch.randn((instances, n, m), generator=generator) * std
    return W.transpose(1, 2).contiguous()


#: The backends compiled with numba (CPU only), run through sim.kernel_run.KernelRun.
NUMBA_BACKENDS = ("fused", "tiled")


def resolve_backend(backend: str, device: torch.device, n: int, m: int) -> str:
    """'auto' -> on CPU 'fused' for n * m <= sim.fused.FUSED_MAX_SIZE, else 'tiled'; on CUDA 'torch'."""
    from sim.fused import FUSED_MAX_SIZE

    if backend not in BACKENDS:
        raise InputError(f"backend = {backend!r} is unknown; allowed: {', '.join(BACKENDS)}")
    if backend in NUMBA_BACKENDS and device.type != "cpu":
        raise InputError(f"backend {backend!r} runs on CPU only; the device is {device}")
    if backend == "auto":
        if device.type != "cpu":
            return "torch"
        return "fused" if n * m <= FUSED_MAX_SIZE else "tiled"
    return backend


def _check_snapshot(snapshot_below, instances):
    if snapshot_below is not None and np.shape(snapshot_below) != (instances,):
        raise InputError(f"snapshot_below has shape {np.shape(snapshot_below)}; expected ({instances},)")


def logged_steps(steps: int, log_every: int) -> list[int]:
    """The steps whose batch loss a run logs: every log_every-th and the last."""
    return [s for s in range(steps) if s % log_every == 0 or s == steps - 1]


def _initial_W(init, seed: int, instances: int, n: int, m: int) -> np.ndarray:
    """The starting W (instances, m, n) in float32, every backend's: init, or tms_init from seed on
    torch's CPU generator (so every device starts from the same W)."""
    if init is None:
        return tms_init(instances, n, m, torch.Generator().manual_seed(int(seed))).numpy()
    if np.shape(init) != (instances, m, n):
        raise InputError(f"init has shape {np.shape(init)}; expected {(instances, m, n)}")
    return np.asarray(init, dtype=np.float32)


def _train_numba(
    backend, setups, init, log_steps, steps, batch, lr, weight_decay, seed, progress, on_steps, snapshot_below
):
    """train() with a numba backend: 'fused' (sim.fused) or 'tiled' (sim.tiled)."""
    from sim.kernel_run import KernelRun, numba_kernels

    n, m = setups[0].n_features, setups[0].n_hidden
    run = KernelRun(
        setups, init, numba_kernels(backend, n, m), batch=batch, lr=lr, weight_decay=weight_decay,
        seed=int(seed), log_steps=log_steps, snapshot_below=snapshot_below,
    )  # fmt: skip
    start = time.perf_counter()
    with Progress(steps, "train", "step", show=progress) as bar:
        while run.done < steps:
            before = run.done
            run.advance(100)
            if on_steps is not None:
                on_steps(run.done - before)
            bar.update(run.done - before)
    extra = {}
    if snapshot_below is not None:
        never = run.snap_step < 0
        run.snap_W[never], run.snap_b[never] = run.W[never], run.b[never]
        extra = dict(snapshot_W=run.snap_W, snapshot_b=run.snap_b, snapshot_step=run.snap_step)
    return TrainResult(
        setups=tuple(setups),
        W=run.W,
        b=run.b,
        log_steps=np.array(log_steps),
        loss_history=run.history,
        steps=steps,
        batch=batch,
        lr=float(lr),
        weight_decay=float(weight_decay),
        seed=int(seed),
        device="cpu",
        seconds=time.perf_counter() - start,
        **extra,
    )


def _check_positive(name, value, kind=int):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer() and value >= 1
    else:
        ok = ok and math.isfinite(value) and value > 0
    if not ok:
        allowed = "an integer >= 1" if kind is int else "a finite number > 0"
        raise InputError(f"{name} = {value!r} is not allowed; it must be {allowed}")


def check_schedule(steps, batch, lr, weight_decay, log_every) -> tuple[int, int, int]:
    """The training loop's settings checked (every trainer's): (steps, batch, log_every) as ints."""
    for name, value in (("steps", steps), ("batch", batch), ("log_every", log_every)):
        _check_positive(name, value)
    _check_positive("lr", lr, float)
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise InputError(f"weight_decay = {weight_decay!r} is not allowed; it must be a finite number >= 0")
    return int(steps), int(batch), int(log_every)


def train(
    setups: Sequence[Setup],
    *,
    steps: int = 10_000,
    batch: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    device: str = "auto",
    log_every: int = 100,
    init: np.ndarray | None = None,
    progress: bool | None = None,
    on_steps: Callable[[int], None] | None = None,
    snapshot_below: np.ndarray | None = None,
    backend: str = "auto",
) -> TrainResult:
    """Train one model per Setup, all at once; same seed and device give the same numbers.

    setups may differ in sparsity, importance and p but share n and m.
    init: the starting W, (instances, m, n); None: tms_init from `seed`.
    progress: None shows a bar when stderr is a terminal, else a line every ~10 s
    (theory.progress); False is silent.
    on_steps: called now and then with the number of steps done since its last call.
    snapshot_below: per-instance losses (sum over features); each instance's W and b are
        copied at the first logged step whose batch loss is at or below its value (the
        dropout study's "p = 0 model trained only to the same loss"). Training goes on.
    backend: "torch" (batched tensors, CPU or CUDA), "fused" (sim.fused: one compiled loop per
        instance, one sample at a time, CPU), "tiled" (sim.tiled: one compiled loop per instance,
        vectorised over tiles of samples, CPU), or "auto": on CPU fused for the smallest models
        (n * m <= sim.fused.FUSED_MAX_SIZE), else tiled; on CUDA torch. All follow the same law;
        their random streams differ.
    """
    setups = tuple(setups)
    if not setups or not all(isinstance(s, Setup) for s in setups):
        raise InputError("setups must be a non-empty sequence of theory.Setup")
    shapes = {(s.n_features, s.n_hidden) for s in setups}
    if len(shapes) > 1:
        raise InputError(f"setups must share n_features and n_hidden; got {sorted(shapes)}")
    steps, batch, log_every = check_schedule(steps, batch, lr, weight_decay, log_every)
    dev = resolve_device(device)
    n, m = setups[0].n_features, setups[0].n_hidden
    backend = resolve_backend(backend, dev, n, m)
    init = _initial_W(init, seed, len(setups), n, m)
    _check_snapshot(snapshot_below, len(setups))
    args = (setups, init, logged_steps(steps, log_every), steps, batch, lr, weight_decay, seed, progress)
    if backend in NUMBA_BACKENDS:
        return _train_numba(backend, *args, on_steps, snapshot_below)
    return _train_torch(dev, *args, on_steps, snapshot_below)


def _train_torch(
    dev, setups, init, log_steps, steps, batch, lr, weight_decay, seed, progress, on_steps, snapshot_below
):
    """train() with the torch backend, on dev (CPU or CUDA)."""
    model = _Batched(setups, dev)
    instances = len(setups)
    optimizer = _FlatAdamW([(instances, model.m, model.n), (instances, model.n)], dev, lr, weight_decay)
    W, b = optimizer.param_views
    grad_W, grad_b = optimizer.grad_views
    W.copy_(torch.as_tensor(init))
    history = torch.empty((len(setups), len(log_steps)), device=dev)
    snapshot = None
    if snapshot_below is not None:
        threshold = torch.as_tensor(np.asarray(snapshot_below, dtype=np.float32), device=dev)
        snapshot = (torch.zeros_like(W), torch.zeros_like(b), torch.full((instances,), -1, device=dev))
    start = time.perf_counter()
    logged = 0
    with (
        torch.no_grad(),
        _Batches(int(seed), dev, model, batch) as batches,
        Progress(steps, "train", "step", show=progress) as bar,
    ):
        for step in range(steps):
            xn, scale = batches.next()
            hn, y = model.forward(W, b, xn, scale)
            if logged < len(log_steps) and step == log_steps[logged]:
                history[:, logged] = model.loss(xn, y)
                if snapshot is not None:
                    now = (history[:, logged] <= threshold) & (snapshot[2] < 0)
                    snapshot[0][now] = W[now]
                    snapshot[1][now] = b[now]
                    snapshot[2][now] = step
                logged += 1
            model.gradient(W, xn, scale, hn, y, grad_W, grad_b)
            optimizer.step()
            if step % 100 == 99 or step == steps - 1:
                if on_steps is not None:
                    on_steps(step + 1 - bar.done)
                bar.update(step + 1 - bar.done)
                if bar.drawn:
                    bar.set_postfix(loss=f"{history[:, logged - 1].mean().item():.4g}")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    extra = {}
    if snapshot is not None:
        never = snapshot[2] < 0
        snapshot[0][never], snapshot[1][never] = W[never], b[never]
        extra = dict(
            snapshot_W=snapshot[0].double().cpu().numpy(),
            snapshot_b=snapshot[1].double().cpu().numpy(),
            snapshot_step=snapshot[2].long().cpu().numpy(),
        )
    return TrainResult(
        setups=setups,
        W=W.double().cpu().numpy(),
        b=b.double().cpu().numpy(),
        log_steps=np.array(log_steps),
        loss_history=history.double().cpu().numpy(),
        steps=steps,
        batch=batch,
        lr=float(lr),
        weight_decay=float(weight_decay),
        seed=int(seed),
        device=str(dev),
        seconds=seconds,
        **extra,
    )


@dataclass(frozen=True)
class SampledLoss:
    """Each instance's loss (sum over features) on fresh samples, with its standard error."""

    mean: np.ndarray  # (instances,)
    stderr: np.ndarray  # (instances,)
    n_samples: int


def sampled_loss(
    setups: Sequence[Setup],
    W,
    b,
    *,
    n_samples: int = 1_000_000,
    seed: int = 1,
    device: str = "cpu",
    backend: str = "torch",
) -> SampledLoss:
    """Each instance's loss (sum over features) on fresh samples through the training forward pass.

    backend as in train().
    """
    setups = tuple(setups)
    dev = resolve_device(device)
    backend = resolve_backend(backend, dev, setups[0].n_features, setups[0].n_hidden)
    if backend in NUMBA_BACKENDS:
        from sim import kernel_run

        kernels = kernel_run.numba_kernels(backend, setups[0].n_features, setups[0].n_hidden)
        mean, stderr = kernel_run.sampled_loss(setups, W, b, kernels, n_samples=n_samples, seed=seed)
        return SampledLoss(mean, stderr, n_samples)
    model = _Batched(setups, dev)
    Wt = torch.as_tensor(np.asarray(W), dtype=torch.float32, device=dev)
    bt = torch.as_tensor(np.asarray(b), dtype=torch.float32, device=dev)
    total = torch.zeros(len(setups), dtype=torch.float64, device=dev)
    total_sq = torch.zeros_like(total)
    chunk = min(65_536, n_samples)
    done = 0
    with torch.no_grad(), _Batches(int(seed), dev, model, chunk) as batches:
        while done < n_samples:
            size = min(chunk, n_samples - done)
            xn, scale = batches.next()
            xn, scale = xn[..., :size], None if scale is None else scale[..., :size]
            _, y = model.forward(Wt, bt, xn, scale)
            per_sample = model.per_sample_loss(xn, y).double()
            total += per_sample.sum(1)
            total_sq += (per_sample**2).sum(1)
            done += size
    mean = total / n_samples
    var = (total_sq / n_samples - mean**2).clamp(min=0)
    return SampledLoss(mean.cpu().numpy(), (var / (n_samples - 1)).sqrt().cpu().numpy(), n_samples)
