"""One feature spread evenly over k units under dropout: its optimal norm, bias and loss in closed form.

The feature x (zero with probability 1 - s, else Uniform[0, 1]) is written
into k units with equal weights, W = (w, ..., w) up to signs, and read back
with bias b. With inverted dropout the output is

    y = b + G x,   G = (a / k) * N / (1 - p),   N ~ Binomial(k, 1 - p),   a = k w^2 = ||W||^2,

so E[G] = a and Var[G] = a^2 q with q = p / (k (1 - p)): spreading over k
units divides the dropout noise by k. Where nothing clips (b >= 0, G >= 0)

    L(a, b) = (1 - s) b^2 + s E[(x (1 - G) - b)^2]
            = b^2 + s [((1 - a)^2 + a^2 q) / 3 - (1 - a) b],

and setting both derivatives to zero, with u = 1 - 3 s / 4,

    a* = u / (u + q),   b* = s q / (2 (u + q)),   L* = L(a*, b*).

At p = 0 this is a* = 1, b* = 0, L* = 0 (the TMS dedicated feature); the
bias grows with p and with density and takes the part of the feature's mean
that the noisy gain cannot carry, and L* falls as k grows: dropout rewards
writing a feature into more units, not fewer. That the no-clipping regime
holds the global optimum is not assumed: `tests/theory/test_lone_feature.py`
checks the stationarity by sympy and the optimum against a global
minimisation of the exact loss over all of W and b (any weights, not only
equal ones), and scripts/closed_forms.py does so over a grid, with Monte
Carlo beside it.

To first order in density (s -> 0, where b* -> 0 and a* -> 1 / (1 + q))

    L* / s -> q / (3 (1 + q)) = p / (3 (k - (k - 1) p))   (`sparse_limit`),

p / 3 in one unit (the feature is lost whenever its unit is dropped) down
to p / (3 k (1 - p)) for large k. The same number prices a pair: two
features written antipodally into the same k units (columns w_1 u and
-w_2 u, u with equal entries up to sign) interfere only with a negative sign
under every dropout mask, which the ReLU removes when one feature is active
alone; both active at once is second order in s. So the pair costs, to first
order, what its two features cost alone, (I_1 + I_2) s p / (3 (k - (k - 1) p)).
With the biases at zero nothing does better: a feature active alone sees a
gain of mean ||w||^2 and variance p / (1 - p) sum_l w_l^4, least for equal
weights, so it costs at least a lone feature's loss, and the other outputs
can only add to it; scripts/antipodal_pair.py checks the optimum over all of
W and b (any bias) against this, with Monte Carlo beside it. Two
features in k units therefore gain from sharing every unit antipodally:
against one unit each, the loss falls by the factor 1 / (k - (k - 1) p),
1 / (2 - p) for a pair written across two neurons at 45 degrees.

The TMS model has no bias in its hidden layer. Give the feature one, a
constant offset -c w in its units (h = w (x - c)), and the output is
y = b + G (x - c): the mask now multiplies the input less c. Where nothing
clips, with mu = s / 2 and sigma^2 = s / 3 - s^2 / 4 the input's mean and
variance,

    L(a, b, c) = (b - a c)^2 + a^2 q c^2 + s (b - a c)(a - 1) - s a^2 q c + s ((1 - a)^2 + a^2 q) / 3,

least at c* = mu, b* = mu, a* = 1 / (1 + q), where (`lone_feature_offset_optimum`)

    L*_c = sigma^2 q / (1 + q) = L* (u + q) / (1 + q):

the gain's noise then falls on the input's variance instead of its second
moment, and the offset saves the fraction (1 - u) / (1 + q) of the loss,
3 s / 4 for small q. In one unit (k = 1) G is 0 or exactly 1 at the optimum,
so nothing clips and L*_c = p sigma^2 is the ReLU model's loss: the
dropped feature is read as its mean, the kept one exactly. In k > 1 units G
can exceed 1 and the output of an inactive feature, mu (1 - G), then goes
negative; the ReLU clips it towards its target 0, so L*_c bounds the ReLU
model's loss at (a*, b*, c*) from above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LoneFeature:
    """The optimum of one feature spread evenly over k units (arrays broadcast over the inputs)."""

    norm_squared: np.ndarray  # a* = ||W||^2 = E[G]
    bias: np.ndarray  # b*
    loss: np.ndarray  # L*, importance 1
    noise: np.ndarray  # q = Var[G] / E[G]^2 = p / (k (1 - p))

    def weights(self, k: int) -> np.ndarray:
        """W (k, 1) at the optimum for scalar inputs: every unit the same weight."""
        return np.full((k, 1), np.sqrt(float(self.norm_squared) / k))


def loss(a, b, density, p, k):
    """L(a, b) in the regime where nothing clips (b >= 0, a >= 0), importance 1."""
    a, b, s = np.asarray(a, float), np.asarray(b, float), np.asarray(density, float)
    q = np.asarray(p, float) / (np.asarray(k, float) * (1 - np.asarray(p, float)))
    return b**2 + s * (((1 - a) ** 2 + a**2 * q) / 3 - (1 - a) * b)


def lone_feature_optimum(density, p, k=1) -> LoneFeature:
    """a*, b*, L* for density s in (0, 1], dropout p in [0, 1), k >= 1 units (numpy broadcasting)."""
    s, p, k = np.asarray(density, float), np.asarray(p, float), np.asarray(k, float)
    if np.any((s <= 0) | (s > 1)) or np.any((p < 0) | (p >= 1)) or np.any(k < 1):
        raise ValueError("need 0 < density <= 1, 0 <= p < 1 and k >= 1")
    q = p / (k * (1 - p))
    u = 1 - 0.75 * s
    a = u / (u + q)
    b = s * q / (2 * (u + q))
    return LoneFeature(a, b, loss(a, b, s, p, k), q)


def sparse_limit(p, k=1):
    """lim_{s -> 0} L* / s = p / (3 (k - (k - 1) p)) for one feature spread evenly over k units, importance 1;
    also each feature's share of an antipodal pair on those k units (numpy broadcasting)."""
    p, k = np.asarray(p, float), np.asarray(k, float)
    if np.any((p < 0) | (p >= 1)) or np.any(k < 1):
        raise ValueError("need 0 <= p < 1 and k >= 1")
    return p / (3 * (k - (k - 1) * p))


@dataclass(frozen=True)
class OffsetLoneFeature:
    """The optimum of one feature spread evenly over k units with a constant offset -c w in those units
    (arrays broadcast over the inputs): y = ReLU(b + G (x - c))."""

    norm_squared: np.ndarray  # a* = 1 / (1 + q)
    bias: np.ndarray  # b* = mu
    offset: np.ndarray  # c* = mu
    loss: np.ndarray  # L*_c = sigma^2 q / (1 + q), importance 1 (exact in one unit, an upper bound in k > 1)
    noise: np.ndarray  # q


def offset_loss(a, b, c, density, p, k):
    """L(a, b, c) with the hidden offset, where nothing clips, importance 1."""
    a, b, c, s = (np.asarray(v, float) for v in (a, b, c, density))
    q = np.asarray(p, float) / (np.asarray(k, float) * (1 - np.asarray(p, float)))
    beta = b - a * c
    return beta**2 + a**2 * q * c**2 + s * (beta * (a - 1) - a**2 * q * c) + s * ((1 - a) ** 2 + a**2 * q) / 3


def lone_feature_offset_optimum(density, p, k=1) -> OffsetLoneFeature:
    """a*, b*, c*, L*_c with the hidden offset for density s in (0, 1], dropout p in [0, 1), k >= 1 units."""
    s, p, k = np.asarray(density, float), np.asarray(p, float), np.asarray(k, float)
    if np.any((s <= 0) | (s > 1)) or np.any((p < 0) | (p >= 1)) or np.any(k < 1):
        raise ValueError("need 0 < density <= 1, 0 <= p < 1 and k >= 1")
    q = p / (k * (1 - p))
    a, mu = 1 / (1 + q), s / 2
    return OffsetLoneFeature(a, mu, mu, offset_loss(a, mu, mu, s, p, k), q)
