"""Comparison layer: trained models classified into theory's geometries, empirical phases against analytic.

Imports theory and sim; nothing imports it.
"""

from compare.classify import UNCLASSIFIED, Classification, FeatureRole, classify

__all__ = ["UNCLASSIFIED", "Classification", "FeatureRole", "classify"]
