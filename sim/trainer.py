"""Batched training of the toy models: one instance per Setup, all at once.

The model, the data and the objective are DESIGN.md section 2 and the TMS
notebook's loop (section 3): xavier-normal init over the (instances, n, m)
tensor, b = 0, AdamW (lr 1e-3, weight decay 0.01), constant lr, batch 1024,
the per-feature mean of the importance-weighted squared error as the
objective, dropout on the hidden layer (inverted, PyTorch's convention).

Three things are done differently from the published loop, none of which
changes the estimator or the optimiser:

- one uniform draw per feature instead of two: x = r / P(active) where
  r < P(active), else 0; r / P is uniform on [0, 1) given r < P;
- on CPU the uniforms come from numpy's SFC64 generator, drawn one batch
  ahead in a background thread (on CUDA, from torch's generator);
- a hand-written forward and backward pass in five batched matmuls
  (no autograd), and torch's AdamW update applied to one flat buffer
  holding W and b.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from theory import InputError, Setup, expected_loss, expected_loss_bounds

#: Instances with at most this many features get the exact loss; larger
#: ones get a bracket from active sets of at most MAX_ACTIVE_BOUNDS features
#: (0.3 s for 20 features in 5 dims; 3 would take ~8 s, and the bracket is
#: wide unless the features are sparse).
EXACT_LOSS_MAX_FEATURES = 8
MAX_ACTIVE_BOUNDS = 2


@dataclass(frozen=True)
class TrainResult:
    """Trained instances. Losses are sums over features (DESIGN.md L), importance-weighted.

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

    def expected_losses(self) -> ExpectedLosses:
        """Each instance's expected loss with dropout (the training objective), from theory."""
        return expected_losses(self.setups, self.W, self.b)


@dataclass(frozen=True)
class ExpectedLosses:
    """Per-instance expected loss bracket; lower == upper when exact."""

    lower: np.ndarray
    upper: np.ndarray
    exact: bool


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


class _Uniforms:
    """Seeded blocks of uniform [0, 1) float32 numbers of one shape, on the device.

    CPU: numpy's SFC64 (about twice torch's CPU generator here), drawn in a
    background thread one block ahead, so that drawing the next batch
    overlaps the arithmetic on this one (numpy releases the GIL while it
    fills). The stream is the same as drawing the blocks in turn.
    CUDA: torch's generator on the device.
    """

    def __init__(self, seed: int, device: torch.device, shape: tuple[int, ...]):
        self.device, self.shape = device, shape
        self._threads = None
        if device.type == "cpu":
            # One core draws, the others compute: measured best on 2 cores.
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._threads - 1))
            self._numpy = np.random.Generator(np.random.SFC64(seed))
            self._pool = ThreadPoolExecutor(max_workers=1)
            self._next = self._pool.submit(self._draw)
        else:
            self._numpy = None
            self._torch = torch.Generator(device=device).manual_seed(seed)

    def _draw(self) -> np.ndarray:
        return self._numpy.random(self.shape, dtype=np.float32)

    def next(self) -> torch.Tensor:
        if self._numpy is None:
            return torch.rand(self.shape, generator=self._torch, device=self.device)
        block = self._next.result()
        self._next = self._pool.submit(self._draw)
        return torch.from_numpy(block)

    def close(self) -> None:
        if self._numpy is not None:
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
    Written without boolean tensors: on CPU a comparison that makes one costs
    about as much as five float passes over the batch.
    """

    def __init__(self, setups: Sequence[Setup], device: torch.device):
        dtype = torch.float32
        self.device = device
        self.n, self.m = setups[0].n_features, setups[0].n_hidden
        density = torch.tensor(np.array([s.density for s in setups]), dtype=dtype, device=device)
        # -1/density (0 for a feature that is never active), for the sampler below.
        self.neg_inv_density = torch.where(density > 0, -1.0 / density.clamp(min=1e-30), 0.0)[:, :, None]
        self.importance = torch.tensor(
            np.array([s.importance_array for s in setups]), dtype=dtype, device=device
        )[:, :, None]
        p = torch.tensor([s.p for s in setups], dtype=dtype, device=device)
        self.keep = (1.0 - p)[:, None, None]  # (I, 1, 1)
        self.inv_keep = 1.0 / self.keep
        self.any_dropout = bool((p > 0).any())

    def uniform_shape(self, batch: int) -> tuple[int, int, int]:
        """Shape of the uniform block one batch consumes: features, then dropout draws."""
        return (self.keep.shape[0], self.n + (self.m if self.any_dropout else 0), batch)

    def sample(self, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """From a block of uniforms (uniform_shape): features x (I, n, batch), dropout scale (I, m, batch).

        The dropout scale is mask/(1-p), or None when every instance has p = 0.

        x_i = r / P_i if r < P_i else 0, with r uniform and P_i = 1 - S_i; as
        -r/P_i > -1 exactly when r < P_i, one threshold pass does it.
        The mask is ceil((1 - p) - u): 1 when u < 1 - p, else 0.
        """
        r = uniforms[:, : self.n]
        x = F.threshold(r.mul_(self.neg_inv_density), -1.0, 0.0).neg_()
        scale = None
        if self.any_dropout:
            scale = torch.sub(self.keep, uniforms[:, self.n :]).ceil_().mul_(self.inv_keep)
        return x, scale

    @staticmethod
    def forward(W, b, x, scale):
        """Hidden h = mask * W x / (1-p), (I, m, B), and pre-activation y = W^T h + b, (I, n, B)."""
        h = torch.bmm(W, x)
        if scale is not None:
            h.mul_(scale)
        return h, torch.baddbmm(b.unsqueeze(2), W.transpose(1, 2), h)

    def loss(self, x, y) -> torch.Tensor:
        """Per-instance batch loss, sum over features, importance-weighted: (I,)."""
        return (self.importance * (x - y.clamp(min=0)) ** 2).sum(1).mean(1)

    def gradient(self, W, x, scale, h, y, grad_W, grad_b):
        """Gradient of the TMS objective (batch and feature mean) for W and b, written into grad_W, grad_b."""
        batch = x.shape[2]
        # d/dy of mean_{batch, feature} I (x - relu(y))^2 is 2 I (y - x)/(B n)
        # where y > 0, else 0: ReLU's own backward kernel does the masking.
        dy = torch.ops.aten.threshold_backward(y - x, y, 0.0)
        dy.mul_(self.importance * (2.0 / (batch * self.n)))
        torch.sum(dy, 2, out=grad_b)
        torch.bmm(h, dy.transpose(1, 2), out=grad_W)
        dh = torch.bmm(W, dy)
        if scale is not None:
            dh.mul_(scale)
        grad_W.baddbmm_(dh, x.transpose(1, 2))


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


def _check_positive(name, value, kind=int):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer() and value >= 1
    else:
        ok = ok and math.isfinite(value) and value > 0
    if not ok:
        allowed = "an integer >= 1" if kind is int else "a finite number > 0"
        raise InputError(f"{name} = {value!r} is not allowed; it must be {allowed}")


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
) -> TrainResult:
    """Train one model per Setup, all at once; same seed and device give the same numbers.

    setups may differ in sparsity, importance and p but share n and m.
    init: the starting W, (instances, m, n); None: tms_init from `seed`.
    progress: None shows a bar only when stderr is a terminal.
    on_steps: called now and then with the number of steps done since its last call.
    """
    setups = tuple(setups)
    if not setups or not all(isinstance(s, Setup) for s in setups):
        raise InputError("setups must be a non-empty sequence of theory.Setup")
    shapes = {(s.n_features, s.n_hidden) for s in setups}
    if len(shapes) > 1:
        raise InputError(f"setups must share n_features and n_hidden; got {sorted(shapes)}")
    for name, value in (("steps", steps), ("batch", batch), ("log_every", log_every)):
        _check_positive(name, value)
    _check_positive("lr", lr, float)
    if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise InputError(f"weight_decay = {weight_decay!r} is not allowed; it must be a finite number >= 0")
    dev = resolve_device(device)
    steps, batch, log_every = int(steps), int(batch), int(log_every)

    model = _Batched(setups, dev)
    # The init comes from torch's CPU generator, so every device starts from the same W.
    instances = len(setups)
    optimizer = _FlatAdamW([(instances, model.m, model.n), (instances, model.n)], dev, lr, weight_decay)
    W, b = optimizer.param_views
    grad_W, grad_b = optimizer.grad_views
    if init is None:
        init = tms_init(instances, model.n, model.m, torch.Generator().manual_seed(int(seed)))
    elif np.shape(init) != (instances, model.m, model.n):
        raise InputError(f"init has shape {np.shape(init)}; expected {(instances, model.m, model.n)}")
    W.copy_(torch.as_tensor(np.asarray(init, dtype=np.float32)))

    log_steps = [s for s in range(steps) if s % log_every == 0 or s == steps - 1]
    history = torch.empty((len(setups), len(log_steps)), device=dev)
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    logged = 0
    with (
        torch.no_grad(),
        _Uniforms(int(seed), dev, model.uniform_shape(batch)) as uniforms,
        tqdm(total=steps, disable=not show, desc="train", unit="step") as bar,
    ):
        for step in range(steps):
            x, scale = model.sample(uniforms.next())
            h, y = model.forward(W, b, x, scale)
            if logged < len(log_steps) and step == log_steps[logged]:
                history[:, logged] = model.loss(x, y)
                logged += 1
            model.gradient(W, x, scale, h, y, grad_W, grad_b)
            optimizer.step()
            if step % 100 == 99 or step == steps - 1:
                if on_steps is not None:
                    on_steps(step + 1 - bar.n)
                bar.update(step + 1 - bar.n)
                if show:
                    bar.set_postfix(loss=f"{history[:, logged - 1].mean().item():.4g}")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
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
    )


def sampled_loss(
    setups: Sequence[Setup], W, b, *, n_samples: int = 1_000_000, seed: int = 1, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Each instance's loss (sum over features) on fresh samples through the training forward pass.

    Returns (mean, standard error), each (instances,).
    """
    setups = tuple(setups)
    dev = resolve_device(device)
    model = _Batched(setups, dev)
    Wt = torch.as_tensor(np.asarray(W), dtype=torch.float32, device=dev)
    bt = torch.as_tensor(np.asarray(b), dtype=torch.float32, device=dev)
    total = torch.zeros(len(setups), dtype=torch.float64, device=dev)
    total_sq = torch.zeros_like(total)
    chunk = min(65_536, n_samples)
    done = 0
    with torch.no_grad(), _Uniforms(int(seed), dev, model.uniform_shape(chunk)) as uniforms:
        while done < n_samples:
            size = min(chunk, n_samples - done)
            x, scale = model.sample(uniforms.next()[..., :size])
            _, y = model.forward(Wt, bt, x, scale)
            per_sample = (model.importance * (x - y.clamp(min=0)) ** 2).sum(1).double()
            total += per_sample.sum(1)
            total_sq += (per_sample**2).sum(1)
            done += size
    mean = total / n_samples
    var = (total_sq / n_samples - mean**2).clamp(min=0)
    return mean.cpu().numpy(), (var / (n_samples - 1)).sqrt().cpu().numpy()
