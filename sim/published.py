"""The published TMS notebook's training loop, kept as a yardstick and an independent check.

Faithful to the notebook (Anthropic, "Toy Models of Superposition"): W of
shape (instances, features, hidden), xavier_normal_, einsum forward, two
torch.rand calls per batch, autograd, AdamW, constant lr, loss =
mean over batch and features summed over instances; plus F.dropout on the
hidden layer, as in the dropout study. The library's trainers share none of
it: benchmarks/trainer_speed.py times them against it, and
scripts/independent_check.py trains with it to check theory's optimum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceModel(nn.Module):
    def __init__(self, n_instances, n_features, n_hidden, feature_probability, importance, p):
        super().__init__()
        self.W = nn.Parameter(torch.empty((n_instances, n_features, n_hidden)))
        nn.init.xavier_normal_(self.W)
        self.b_final = nn.Parameter(torch.zeros((n_instances, n_features)))
        self.feature_probability = feature_probability  # (instances, features)
        self.importance = importance  # (instances, features)
        self.p = p
        self.n_instances, self.n_features = n_instances, n_features

    def forward(self, features):
        hidden = torch.einsum("...if,ifh->...ih", features, self.W)
        hidden = F.dropout(hidden, p=self.p, training=True)
        out = torch.einsum("...ih,ifh->...if", hidden, self.W)
        return F.relu(out + self.b_final)

    def generate_batch(self, n_batch):
        shape = (n_batch, self.n_instances, self.n_features)
        feat = torch.rand(shape, device=self.W.device)
        return torch.where(
            torch.rand(shape, device=self.W.device) <= self.feature_probability,
            feat,
            torch.zeros((), device=self.W.device),
        )


def reference_optimize(model: ReferenceModel, n_batch=1024, steps=10_000, lr=1e-3, on_step=None):
    """Train model in place; on_step (optional) is called after every step. Returns the last loss."""
    opt = torch.optim.AdamW(list(model.parameters()), lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        batch = model.generate_batch(n_batch)
        out = model(batch)
        error = model.importance * (batch.abs() - out) ** 2
        loss = error.mean(dim=(0, 2)).sum()  # einops.reduce(error, 'b i f -> i', 'mean').sum()
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step()
    return loss.item()
