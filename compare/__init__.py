"""Comparison layer: trained models classified into theory's geometries, empirical phases against analytic.

Imports theory and sim; nothing imports it. Public names are imported on first use (theory.lazy).
"""

from theory.lazy import lazy_exports

_PUBLIC = dict.fromkeys(
    ["UNCLASSIFIED", "Classification", "FeatureRole", "classify"], "compare.classification"
)
__all__ = sorted(_PUBLIC)
__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
