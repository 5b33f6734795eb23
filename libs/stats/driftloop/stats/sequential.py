"""Always-valid inference for continuously monitored A/B tests and canaries (mSPRT).

A fixed-horizon test looked at after every batch inflates its false-positive rate far above
alpha. The mixture sequential probability ratio test (Robbins 1970; Johari, Koomen, Pekelis
and Walsh, "Always valid inference", Operations Research 2022) gives a p-value and a
confidence interval that stay valid however often they are looked at and whenever the test
stops.

The difference theta = mean_b - mean_a of two streams is estimated by d = xbar_b - xbar_a
with variance V = s_a^2 / n_a + s_b^2 / n_b, and d ~ N(theta, V). Mixing the likelihood
ratio of theta against theta_0 over a normal prior theta - theta_0 ~ N(0, tau^2) gives in
closed form
    Lambda(theta_0) = sqrt(V / (V + tau^2)) * exp(tau^2 (d - theta_0)^2 / (2 V (V + tau^2))),
a non-negative martingale under theta_0 with mean 1, so by Ville's inequality
P(sup_n Lambda_n >= 1/alpha) <= alpha. With equal arms (V = 2 sigma^2 / n) this is the
two-stream mSPRT of Johari et al. exactly. Hence:
- the always-valid p-value p_n = min(1, min_{m <= n} 1 / Lambda_m(0)) (the running minimum);
- the confidence sequence {theta_0 : Lambda_n(theta_0) < 1/alpha}, which is
  d +- sqrt(2 V (V + tau^2) / tau^2 * (log(1/alpha) + log(sqrt((V + tau^2) / V)))),
  intersected over time. 0 leaves the running intersection exactly when the running p
  drops below alpha, so the interval and the decision never disagree.

`SequentialTest` takes cumulative totals (count, sum, sum of squares per arm), so feeding
the same totals twice changes nothing; it keeps the running minimum p-value and the
running intersection, and decides once p < alpha: "b_better" or "b_worse" by the sign of d
at that moment and `higher_is_better` (a conversion rate: higher; a loss or a latency:
lower). The decision is final. 0/1 values work unchanged: the sums give the rate and
s^2 = p (1 - p) n / (n - 1).

tau, the spread of effects the mixture expects, defaults to the minimum effect of interest:
the mixture then puts its weight on effects of that size, where the test is most efficient;
Johari et al. show the expected sample size is flat around the best tau, so a factor of two
off costs little. Effects much larger than tau are still detected quickly.

Caveats: the variances are plug-in estimates (the theory assumes them known), so no
evidence is counted until both arms have two values; the guarantee is asymptotic in that
sense and the plug-in is poor for 0/1 data with very few successes. A varying allocation
ratio between the arms breaks the martingale argument slightly: keep the split fixed.
Should the running intersection become empty (possible only if the plug-in variance was
badly off or the true difference moved), the current interval replaces it. Sums of squares
lose precision when the mean is huge compared with the spread: centre the values first.

`fixed_horizon_n` is the per-group n of the two-sided two-sample z-test with the same alpha
and a given power, 2 sd^2 (z_{1-alpha/2} + z_power)^2 / effect^2, to compare with the
sequential test's sample sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from driftloop.stats.experiments import normal_quantile

Decision = Literal["continue", "b_better", "b_worse"]


def msprt_log_ratio(difference: float, variance: float, tau: float) -> float:
    """log Lambda of the normal-mixture SPRT for an estimated difference (minus the null
    value) with the given variance."""
    if not variance > 0:
        raise ValueError(f"variance must be positive, got {variance}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    tau2 = tau * tau
    total = variance + tau2
    return 0.5 * math.log(variance / total) + tau2 * difference * difference / (
        2.0 * variance * total
    )


def _difference_and_variance(
    n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float, var_b: float
) -> tuple[float, float]:
    if n_a < 1 or n_b < 1:
        raise ValueError(f"both arms need at least one value, got n_a={n_a}, n_b={n_b}")
    if not (var_a >= 0 and var_b >= 0):
        raise ValueError("variances must be non-negative")
    if not all(math.isfinite(v) for v in (mean_a, var_a, mean_b, var_b)):
        raise ValueError("means and variances must be finite")
    return mean_b - mean_a, var_a / n_a + var_b / n_b


def msprt_p_value(
    n_a: int, mean_a: float, var_a: float, n_b: int, mean_b: float, var_b: float, tau: float
) -> float:
    """min(1, 1 / Lambda) for no difference at this moment (the caller keeps the running
    minimum over time); 1 when the estimated variance is zero."""
    difference, variance = _difference_and_variance(n_a, mean_a, var_a, n_b, mean_b, var_b)
    if variance == 0:
        return 1.0
    return min(1.0, math.exp(-msprt_log_ratio(difference, variance, tau)))


def msprt_interval(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    tau: float,
    alpha: float,
) -> tuple[float, float]:
    """This moment's confidence-sequence interval for mean_b - mean_a (the caller
    intersects them over time); the whole line when the estimated variance is zero."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    difference, variance = _difference_and_variance(n_a, mean_a, var_a, n_b, mean_b, var_b)
    if variance == 0:
        return -math.inf, math.inf
    tau2 = tau * tau
    total = variance + tau2
    bound = math.log(1.0 / alpha) + 0.5 * math.log(total / variance)
    half = math.sqrt(2.0 * variance * total / tau2 * bound)
    return difference - half, difference + half


def fixed_horizon_n(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Per-group n of a two-sided two-sample z-test detecting `effect` with `power`."""
    if effect == 0 or not math.isfinite(effect):
        raise ValueError(f"effect must be finite and non-zero, got {effect}")
    if not sd > 0:
        raise ValueError(f"sd must be positive, got {sd}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError("alpha and power must be in (0, 1)")
    z = normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power)
    return math.ceil(2.0 * sd * sd * z * z / (effect * effect) - 1e-9)


@dataclass(frozen=True)
class SequentialState:
    """The test after an update: `difference` is mean_b - mean_a now, `p_value` the
    always-valid (running minimum) p-value, [ci_low, ci_high] the running confidence
    sequence for mean_b - mean_a, `decision` final once it leaves "continue"."""

    n_a: int
    n_b: int
    difference: float
    p_value: float
    ci_low: float
    ci_high: float
    decision: Decision


class SequentialTest:
    """mSPRT of mean_b - mean_a over cumulative per-arm totals (see the module docstring)."""

    def __init__(
        self,
        min_effect: float,
        *,
        alpha: float = 0.05,
        tau: float | None = None,
        higher_is_better: bool = True,
    ) -> None:
        if not (min_effect > 0 and math.isfinite(min_effect)):
            raise ValueError(f"min_effect must be positive and finite, got {min_effect}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if tau is not None and not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"tau must be positive and finite, got {tau}")
        self.alpha = alpha
        self.tau = min_effect if tau is None else tau
        self.higher_is_better = higher_is_better
        self._state = SequentialState(
            n_a=0,
            n_b=0,
            difference=0.0,
            p_value=1.0,
            ci_low=-math.inf,
            ci_high=math.inf,
            decision="continue",
        )

    @property
    def state(self) -> SequentialState:
        return self._state

    def update(
        self,
        n_a: int,
        sum_a: float,
        sumsq_a: float,
        n_b: int,
        sum_b: float,
        sumsq_b: float,
    ) -> SequentialState:
        """Feed the cumulative totals of both arms so far; return the new state."""
        previous = self._state
        for name, count in (("n_a", n_a), ("n_b", n_b)):
            if int(count) != count or count < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {count}")
        if n_a < previous.n_a or n_b < previous.n_b:
            raise ValueError(
                f"totals must be cumulative: counts went from ({previous.n_a}, {previous.n_b}) "
                f"to ({n_a}, {n_b})"
            )
        if not all(math.isfinite(v) for v in (sum_a, sumsq_a, sum_b, sumsq_b)):
            raise ValueError("sums must be finite")
        if sumsq_a < 0 or sumsq_b < 0:
            raise ValueError("sums of squares must be non-negative")
        if n_a < 2 or n_b < 2:
            difference = sum_b / n_b - sum_a / n_a if n_a and n_b else 0.0
            p_value, low, high = 1.0, -math.inf, math.inf
        else:
            mean_a, var_a = _mean_and_variance(n_a, sum_a, sumsq_a)
            mean_b, var_b = _mean_and_variance(n_b, sum_b, sumsq_b)
            difference = mean_b - mean_a
            p_value = msprt_p_value(n_a, mean_a, var_a, n_b, mean_b, var_b, self.tau)
            low, high = msprt_interval(n_a, mean_a, var_a, n_b, mean_b, var_b, self.tau, self.alpha)
        running_low = max(previous.ci_low, low)
        running_high = min(previous.ci_high, high)
        if running_low > running_high:
            running_low, running_high = low, high
        running_p = min(previous.p_value, p_value)
        decision = previous.decision
        if decision == "continue" and running_p < self.alpha:
            b_higher = difference > 0
            decision = "b_better" if b_higher == self.higher_is_better else "b_worse"
        self._state = SequentialState(
            n_a=int(n_a),
            n_b=int(n_b),
            difference=difference,
            p_value=running_p,
            ci_low=running_low,
            ci_high=running_high,
            decision=decision,
        )
        return self._state


def _mean_and_variance(n: int, total: float, sumsq: float) -> tuple[float, float]:
    mean = total / n
    return mean, max(0.0, (sumsq - total * mean) / (n - 1))
