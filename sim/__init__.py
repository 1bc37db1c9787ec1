"""Simulation layer: the real toy models trained in torch, many instances at once."""

from sim import metrics
from sim.trainer import ExpectedLosses, TrainResult, expected_losses, sampled_loss, train

__all__ = ["ExpectedLosses", "TrainResult", "expected_losses", "metrics", "sampled_loss", "train"]
