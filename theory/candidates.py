"""The candidates a phase diagram ranks: named geometries for the small problems, composites otherwise.

A candidate is a theory.geometries.Geometry (fitted on its closed form, or on
the exact loss when it has a polygon block: theory.fits.fitted_on) or a
theory.composite.Composite (a sum of fitted blocks). Both have a name, the
count of features they represent and a complexity (ties go to the least).
"""

from __future__ import annotations

from theory.blocks import antipodal, dedicated, free_polygon, ignore, irregular_polygon, parallel, polygon
from theory.composite import Composite, composites
from theory.errors import InputError
from theory.geometries import Geometry

#: The problems with named geometries; every other (n, m) gets composites of blocks.
NAMED = ((2, 1), (3, 2), (5, 2))


def catalogue(n_features: int, n_hidden: int, max_polygon: int = 5) -> tuple[Geometry | Composite, ...]:
    """The candidates for n_features in n_hidden: the named geometries for 2 in 1, 3 in 2 and 5 in 2,
    else every composite of blocks (theory.composite; polygons up to max_polygon vertices)."""
    if (n_features, n_hidden) in NAMED:
        return geometries(n_features, n_hidden)
    return composites(n_features, n_hidden, max_polygon)


def complexity(candidate) -> int:
    """Ties go to the least: a geometry's parameter count, a composite's own measure."""
    return candidate.complexity if isinstance(candidate, Composite) else len(candidate.parameters())


def geometries(n_features: int, n_hidden: int) -> tuple[Geometry, ...]:
    """The named geometries of the problems studied one by one: (2, 1), (3, 2), (5, 2).

    For 3 in 2 the triangle also with free vertices (norms, biases) and with free angles (under dropout
    the optimal triangle is isosceles: the more important feature moves towards the diagonal between
    the neurons), and an antipodal pair turned by an angle in the plane of both neurons, the third
    feature ignored (under dropout the pair written across both neurons beats the pair on one neuron
    where the third feature matters little; freeing the pair's two angles too gave the same optimum at
    every cell of the 3-in-2 diagram, to 1e-13); for 5 in 2 the other two ways of pairing features 0-3,
    the pentagon with free vertices and free angles, and the square with free vertices.
    """
    shape = (n_features, n_hidden)
    G = Geometry
    if shape == (2, 1):
        return (
            G("ignore all", 2, 1, (ignore(0), ignore(1))),
            G("dedicated 0", 2, 1, (dedicated(0, 0), ignore(1))),
            G("dedicated 1", 2, 1, (dedicated(1, 0), ignore(0))),
            G("antipodal", 2, 1, (antipodal(0, 1, 0),)),
            G("same-sign pair", 2, 1, (parallel(0, 1, 0),)),
        )
    if shape == (3, 2):
        return (
            G("ignore all", 3, 2, (ignore(0), ignore(1), ignore(2))),
            G("dedicated 0", 3, 2, (dedicated(0, 0), ignore(1), ignore(2))),
            G("dedicated 0 1", 3, 2, (dedicated(0, 0), dedicated(1, 1), ignore(2))),
            G("antipodal 0 1, ignore 2", 3, 2, (antipodal(0, 1, 0), ignore(2))),
            G("antipodal 0 2, ignore 1", 3, 2, (antipodal(0, 2, 0), ignore(1))),
            G("antipodal 1 2, dedicated 0", 3, 2, (dedicated(0, 0), antipodal(1, 2, 1))),
            G("antipodal 0 2, dedicated 1", 3, 2, (antipodal(0, 2, 0), dedicated(1, 1))),
            G("antipodal 0 1, dedicated 2", 3, 2, (antipodal(0, 1, 0), dedicated(2, 1))),
            G("triangle", 3, 2, (polygon((0, 1, 2)),)),
            G("triangle, free vertices", 3, 2, (free_polygon(range(3)),)),
            G("triangle, free angles", 3, 2, (irregular_polygon(range(3)),)),
            G("antipodal 0 1 turned, ignore 2", 3, 2, (free_polygon((0, 1)), ignore(2))),
            G("antipodal 0 2 turned, ignore 1", 3, 2, (free_polygon((0, 2)), ignore(1))),
        )
    if shape == (5, 2):
        return (
            G("pentagon", 5, 2, (polygon(range(5)),)),
            G("square, ignore 4", 5, 2, (polygon(range(4)), ignore(4))),
            G("two antipodal, ignore 4", 5, 2, (antipodal(0, 2, 0), antipodal(1, 3, 1), ignore(4))),
            G("two dedicated", 5, 2, (dedicated(0, 0), dedicated(1, 1), ignore(2), ignore(3), ignore(4))),
            G(
                "antipodal 0 1, dedicated 2",
                5,
                2,
                (antipodal(0, 1, 0), dedicated(2, 1), ignore(3), ignore(4)),
            ),
            G("triangle, ignore 3 4", 5, 2, (polygon(range(3)), ignore(3), ignore(4))),
            G("antipodal 0 1 and 2 3, ignore 4", 5, 2, (antipodal(0, 1, 0), antipodal(2, 3, 1), ignore(4))),
            G("antipodal 0 3 and 1 2, ignore 4", 5, 2, (antipodal(0, 3, 0), antipodal(1, 2, 1), ignore(4))),
            G("pentagon, free vertices", 5, 2, (free_polygon(range(5)),)),
            G("pentagon, free angles", 5, 2, (irregular_polygon(range(5)),)),
            G("square, free vertices, ignore 4", 5, 2, (free_polygon(range(4)), ignore(4))),
        )
    raise InputError(
        f"no named geometries for n_features = {n_features}, n_hidden = {n_hidden} (only 2 in 1, 3 in 2, "
        "5 in 2); theory.catalogue gives composites of blocks, or build a Geometry from blocks"
    )


def geometry(name: str, n_features: int, n_hidden: int) -> Geometry:
    """A named geometry by name."""
    options = geometries(n_features, n_hidden)
    for g in options:
        if g.name == name:
            return g
    raise InputError(
        f"unknown geometry {name!r} for ({n_features}, {n_hidden}); "
        f"allowed: {', '.join(repr(g.name) for g in options)}"
    )
