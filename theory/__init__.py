"""Theory layer: the problem definition and the exact expected loss under dropout.

Imports nothing from sim or compare. Public names are imported on first use
(theory.lazy), so `import theory` stays fast.
"""

from theory.errors import InputError
from theory.lazy import lazy_exports

_PUBLIC = {
    **dict.fromkeys(
        ["LossAndGrad", "LossBounds", "expected_loss", "expected_loss_and_grad", "expected_loss_bounds"],
        "theory.loss",
    ),
    **dict.fromkeys(["MonteCarloLoss", "monte_carlo_loss"], "theory.montecarlo"),
    **dict.fromkeys(["LossMinimum", "minimize_loss"], "theory.optimize"),
    **dict.fromkeys(["DirectMinimum", "minimize_truncated"], "theory.direct"),
    "Setup": "theory.setup",
    "Grid": "theory.grid",
    **dict.fromkeys(["Optimum", "completeness", "optimal", "phase_diagram"], "theory.diagram"),
    "catalogue": "theory.candidates",
    "metrics": "theory.metrics",
}
__all__ = ["InputError", *sorted(_PUBLIC)]
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
