"""Theory layer: the problem definition and the exact expected loss under dropout.

Imports nothing from sim or compare.
"""

from theory.errors import InputError
from theory.loss import (
    LossAndGrad,
    LossBounds,
    expected_loss,
    expected_loss_and_grad,
    expected_loss_bounds,
)
from theory.montecarlo import MonteCarloLoss, monte_carlo_loss
from theory.optimize import LossMinimum, minimize_loss
from theory.setup import Setup

__all__ = [
    "InputError",
    "LossAndGrad",
    "LossBounds",
    "LossMinimum",
    "MonteCarloLoss",
    "Setup",
    "expected_loss",
    "expected_loss_and_grad",
    "expected_loss_bounds",
    "minimize_loss",
    "monte_carlo_loss",
]
