"""Treatment against holdout, with 95 % confidence intervals and the sample a comparison needs.

Only statsmodels does the arithmetic: rates are compared with Newcombe's hybrid score interval and the
score test of two independent proportions, per-order counts and times with Welch's t interval and
test on the frequency-weighted data, the minimum sample with the power of a two-sided test at 80 %
for the shop's smallest effect worth seeing (`outcomes.minimum_effect`, relative to the holdout), and
the many KPIs of one report are corrected together (Holm). The difference is always treatment minus
holdout: what Doorstep changed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.8


@dataclass
class Comparison:
    treatment: float | None
    holdout: float | None
    n_treatment: int
    n_holdout: int
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    # The orders each arm needs for an 80 % chance of seeing the minimum effect; None: cannot tell yet.
    needed_treatment: int | None = None
    needed_holdout: int | None = None
    p_holm: float | None = None
    significant: bool = False

    @property
    def enough(self) -> bool:
        return (self.needed_treatment is not None and self.needed_holdout is not None
                and self.n_treatment >= self.needed_treatment and self.n_holdout >= self.needed_holdout)

    @property
    def relative(self) -> float | None:
        if self.difference is None or not self.holdout:
            return None
        return self.difference / self.holdout

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "enough": self.enough, "relative": self.relative}


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _needed(effect_size: float, ratio: float, kind: str) -> tuple[int | None, int | None]:
    """Orders per arm for a two-sided test at ALPHA with POWER; `ratio` = holdout / treatment."""
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    if not math.isfinite(effect_size) or effect_size <= 0 or ratio <= 0:
        return None, None
    solver = NormalIndPower() if kind == "proportion" else TTestIndPower()
    try:
        treatment = float(solver.solve_power(effect_size=effect_size, alpha=ALPHA, power=POWER, ratio=ratio,
                                             alternative="two-sided"))
    except (ValueError, RuntimeError):
        return None, None
    if not math.isfinite(treatment):
        return None, None
    return max(2, math.ceil(treatment)), max(2, math.ceil(treatment * ratio))


def compare_proportions(x_t: int, n_t: int, x_h: int, n_h: int, *, minimum_effect: float,
                        ratio: float | None = None, scale: float = 1.0) -> Comparison:
    """Two rates (successes x of n), scaled (e.g. 100 for percent)."""
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        proportion_effectsize,
        test_proportions_2indep,
    )

    result = Comparison(x_t / n_t * scale if n_t else None, x_h / n_h * scale if n_h else None, n_t, n_h)
    ratio = ratio or (n_h / n_t if n_t and n_h else 0.0)
    baseline = x_h / n_h if n_h else None
    if baseline in (None, 0.0, 1.0) and n_t + n_h:
        baseline = (x_t + x_h) / (n_t + n_h)  # the holdout alone cannot tell (no events yet): pooled
    if baseline not in (None, 0.0, 1.0):
        assert baseline is not None
        target = baseline * (1 - minimum_effect) if baseline > 0.5 else baseline * (1 + minimum_effect)
        result.needed_treatment, result.needed_holdout = _needed(
            abs(float(proportion_effectsize(baseline, min(target, 1.0)))), ratio, "proportion")
    if not n_t or not n_h:
        return result
    result.difference = (x_t / n_t - x_h / n_h) * scale
    if x_t + x_h == 0 or x_t + x_h == n_t + n_h:
        result.ci_low = result.ci_high = result.difference  # no variation at all: nothing to test
        return result
    with np.errstate(all="ignore"):  # a rate of 0 in one arm is an answer, not a warning
        low, high = confint_proportions_2indep(x_t, n_t, x_h, n_h, method="newcomb", compare="diff", alpha=ALPHA)
        result.p_value = _finite(test_proportions_2indep(x_t, n_t, x_h, n_h, method="score", compare="diff").pvalue)
    result.ci_low, result.ci_high = _finite(low * scale), _finite(high * scale)
    return result


def _weighted(histogram: dict[float, int]) -> Any:
    from statsmodels.stats.weightstats import DescrStatsW

    values = np.array(sorted(histogram), dtype=float)
    return DescrStatsW(values, weights=np.array([histogram[v] for v in sorted(histogram)], dtype=float), ddof=1)


def compare_means(treatment: dict[float, int], holdout: dict[float, int], *, minimum_effect: float,
                  ratio: float | None = None, scale: float = 1.0) -> Comparison:
    """Two means of a per-order number given as histograms `value -> orders`, scaled (e.g. 1000 for
    "per 1,000 orders")."""
    from statsmodels.stats.weightstats import CompareMeans

    n_t, n_h = sum(treatment.values()), sum(holdout.values())
    t = _weighted(treatment) if n_t else None
    h = _weighted(holdout) if n_h else None
    result = Comparison(float(t.mean) * scale if t else None, float(h.mean) * scale if h else None, n_t, n_h)
    ratio = ratio or (n_h / n_t if n_t and n_h else 0.0)
    spread = [d for d in (t, h) if d is not None and d.nobs > 1]
    if h is not None and spread:
        pooled_sd = math.sqrt(sum(float(d.var) * (d.nobs - 1) for d in spread) / sum(d.nobs - 1 for d in spread))
        mean = float(h.mean) or (float(t.mean) if t is not None else 0.0)
        if pooled_sd > 0 and mean:
            result.needed_treatment, result.needed_holdout = _needed(minimum_effect * abs(mean) / pooled_sd, ratio,
                                                                     "mean")
    if t is None or h is None:
        return result
    result.difference = (float(t.mean) - float(h.mean)) * scale
    if n_t < 2 or n_h < 2 or (float(t.var) == 0 and float(h.var) == 0):
        result.ci_low = result.ci_high = result.difference if n_t >= 2 and n_h >= 2 else None
        return result
    compared = CompareMeans(t, h)
    low, high = compared.tconfint_diff(alpha=ALPHA, usevar="unequal")
    result.ci_low, result.ci_high = _finite(low * scale), _finite(high * scale)
    result.p_value = _finite(compared.ttest_ind(usevar="unequal")[1])
    return result


def holm(comparisons: list[Comparison]) -> None:
    """Correct the p-values of one report's comparisons together (Holm), and mark what stays significant."""
    from statsmodels.stats.multitest import multipletests

    tested = [c for c in comparisons if c.p_value is not None]
    if not tested:
        return
    reject, corrected, _, _ = multipletests([c.p_value for c in tested], alpha=ALPHA, method="holm")
    for comparison, rejected, p in zip(tested, reject, corrected, strict=True):
        comparison.p_holm = float(p)
        comparison.significant = bool(rejected)


def wilson(successes: int, total: int) -> tuple[float | None, float | None]:
    """The 95 % Wilson interval of one rate."""
    from statsmodels.stats.proportion import proportion_confint

    if not total:
        return None, None
    low, high = proportion_confint(successes, total, alpha=ALPHA, method="wilson")
    return float(low), float(high)


def quantile(values: list[float], q: float) -> float | None:
    return float(np.quantile(np.array(values), q)) if values else None
