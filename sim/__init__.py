"""Simulation layer: the real toy models trained in torch, many instances at once.

Public names are imported on first use (theory.lazy): torch and numba are slow to import.
"""

from theory.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(
        ["ExpectedLosses", "SampledLoss", "TrainResult", "expected_losses", "sampled_loss", "train"],
        "sim.trainer",
    ),
}
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
