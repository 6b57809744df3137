"""Customer-lifetime models fitted by maximum likelihood: BG/NBD and Gamma-Gamma.

Pure: NumPy and SciPy only, no session, no settings. The job that reads purchase
histories and stores the scores calls these functions (docs/scores.md).

Per member, as NumPy arrays of one length:

- ``frequency`` x: repeat purchases, the purchases after the first;
- ``recency`` t_x: days from the first purchase to the last (0 when x = 0);
- ``T``: days from the first purchase to the date of the fit;
- ``monetary`` m_x: mean spend of the x repeat purchases (Gamma-Gamma only; ignored
  where x = 0).

BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way: An Alternative
to the Pareto/NBD Model", Marketing Science 24(2)): while alive a member buys as a Poisson
process of rate lambda ~ Gamma(r, alpha); after each repeat purchase they drop out for
good with probability p ~ Beta(a, b). Time is in days, so alpha is in days.

Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV: Using Iso-Value Curves for Customer
Base Analysis", Journal of Marketing Research 42(4)): each purchase's spend is
Gamma(p, nu) with nu ~ Gamma(q, v) per member, independent of the purchase process.
Spend is in whatever unit ``monetary`` is given in (v has that unit).

Both are fitted by maximising the summed log-likelihood over log-parameters with
L-BFGS-B and analytic gradients; with a ``LogNormalPrior`` (the refit's fallback for
small merchants) the maximum is that of the likelihood times the prior, which always
has one. Terms that depend on x only are computed once per
distinct x, which makes an evaluation over 20,000 members a handful of array operations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

FloatArray = npt.NDArray[np.float64]

DAYS_PER_MONTH = 30.0
DEFAULT_HORIZON_DAYS = 90.0
# Every parameter is searched in [1e-8, 1e8]: an estimate that ends on either edge means
# the data cannot pin it down (e.g. hardly any repeat purchases), and the fit says so.
_LOG_BOUND = float(np.log(1e8))
# The fit has converged when no component of the gradient of the mean log-likelihood per
# member (in log-parameters) exceeds this: moving the estimates further would change them
# by far less than their sampling error, for any number of members up to millions.
_STATIONARY = 1e-5
_ATTEMPTS = 3
# Equation 10 divides by a - 1; its limit at a = 1 is finite. Closer to 1 than this, the
# expectation is interpolated linearly between a = 1 - step and a = 1 + step (it is smooth
# in a: the error is of the order of step squared).
_A_NEAR_ONE = 1e-4


class ClvError(Exception):
    """A customer-lifetime model cannot be fitted or applied."""


class ClvInputError(ClvError, ValueError):
    """The purchase histories or parameters are unusable (empty, negative, NaN, ...)."""


class ClvFitError(ClvError):
    """Maximum likelihood did not converge to an interior optimum."""


# --- parameters ---------------------------------------------------------------------


@dataclass(frozen=True)
class LogNormalPrior:
    """Independent normal priors on the logarithms of the parameters, centred on the fit's
    starting point (BG/NBD: r = 1, alpha = 1 / the observed repeat-purchase rate, a = b = 1;
    Gamma-Gamma: p = 1, q = 2, v = the mean of the observed spends), each with standard
    deviation ``sd``. With it a fit maximises likelihood x prior (penalised maximum
    likelihood): the penalty keeps every parameter off the search's edges, so a few dozen
    histories give an answer, and its weight against the likelihood falls as 1/members."""

    sd: float = float(np.log(10.0))  # a factor of 10 either way is one standard deviation

    def __post_init__(self) -> None:
        _check_positive(sd=self.sd)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise ClvInputError(f"parameter {name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class BgNbdParameters:
    """lambda ~ Gamma(shape r, rate alpha [days]); p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        _check_positive(r=self.r, alpha=self.alpha, a=self.a, b=self.b)


@dataclass(frozen=True)
class GammaGammaParameters:
    """Spend per purchase ~ Gamma(shape p, rate nu); nu ~ Gamma(shape q, rate v)."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        _check_positive(p=self.p, q=self.q, v=self.v)

    @property
    def population_mean_spend(self) -> float:
        """E[spend per purchase] = p v / (q - 1); infinite unless q > 1."""
        if self.q <= 1:
            raise ClvError(f"q = {self.q:g} <= 1: the mean spend of the population is "
                           f"infinite under these parameters")
        return self.p * self.v / (self.q - 1)


@dataclass(frozen=True)
class BgNbdFit:
    parameters: BgNbdParameters
    log_likelihood: float  # summed over the members, at the estimates (without the prior)
    members: int
    iterations: int
    evaluations: int  # of the log-likelihood and its gradient
    prior: LogNormalPrior | None = None


@dataclass(frozen=True)
class GammaGammaFit:
    parameters: GammaGammaParameters
    log_likelihood: float  # summed over the members with x > 0, at the estimates
    members: int  # members with x > 0: the others carry no spend information
    iterations: int
    evaluations: int
    prior: LogNormalPrior | None = None


# --- input checks -------------------------------------------------------------------


def _as_vector(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ClvInputError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ClvInputError(f"{name} is empty: no members")
    bad = ~np.isfinite(array)
    if bad.any():
        raise ClvInputError(f"{name} has {int(bad.sum())} values that are NaN or infinite "
                            f"(first at index {int(np.argmax(bad))})")
    return array


def _refuse(where: npt.NDArray[np.bool_], message: str) -> None:
    if where.any():
        raise ClvInputError(f"{message} for {int(where.sum())} members "
                            f"(first at index {int(np.argmax(where))})")


def _same_length(**arrays: FloatArray) -> None:
    lengths = {name: array.size for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ClvInputError(f"the arrays differ in length: {lengths}")


def _frequency(values: npt.ArrayLike) -> FloatArray:
    x = _as_vector("frequency", values)
    _refuse(x < 0, "frequency is negative")
    _refuse(x != np.floor(x), "frequency is not a whole number")
    return x


def _histories(frequency: npt.ArrayLike, recency: npt.ArrayLike,
               T: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _frequency(frequency)
    t_x = _as_vector("recency", recency)
    age = _as_vector("T", T)
    _same_length(frequency=x, recency=t_x, T=age)
    _refuse(t_x < 0, "recency is negative")
    _refuse(age < 0, "T is negative")
    _refuse(t_x > age, "recency is greater than T")
    _refuse((x == 0) & (t_x != 0), "recency is not 0 where frequency is 0")
    return x, t_x, age


def _spends(frequency: npt.ArrayLike,
            monetary: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = _frequency(frequency)
    m = _as_vector("monetary", monetary)
    _same_length(frequency=x, monetary=m)
    _refuse(m < 0, "monetary is negative")
    _refuse((x > 0) & (m == 0), "monetary is 0 where frequency is above 0")
    return x, m


# --- BG/NBD -------------------------------------------------------------------------


class _BgNbdObjective:
    """Minus the mean log-likelihood per member, and its gradient in log-parameters.

    Per member (the paper's likelihood function, in logs):
        ll = ln G(r+x) - ln G(r) + r ln(alpha)
             + logaddexp(A1, A2)
        A1 = ln B(a, b+x) - ln B(a, b) - (r+x) ln(alpha+T)
        A2 = ln B(a+1, b+x-1) - ln B(a, b) - (r+x) ln(alpha+t_x)   (x > 0; else -inf)
    """

    def __init__(self, x: FloatArray, t_x: FloatArray, age: FloatArray) -> None:
        self.values, self.index = np.unique(x, return_inverse=True)
        self.members = x.size
        self.t_x = t_x
        self.age = age
        # Where x = 0, b+x-1 is replaced by 1 (the A2 term is absent there anyway).
        self.b_shift = np.where(self.values > 0, self.values - 1, 0.0)

    def __call__(self, log_params: FloatArray) -> tuple[float, FloatArray]:
        r, alpha, a, b = np.exp(log_params)
        xs, per = self.values, self.index
        b_dropped = np.where(xs > 0, b + self.b_shift, 1.0)
        log_beta = betaln(a, b)
        # Per distinct x.
        head = gammaln(r + xs) - gammaln(r) + r * np.log(alpha)
        alive_x = betaln(a, b + xs) - log_beta
        dropped_x = np.where(xs > 0, betaln(a + 1, b_dropped) - log_beta, -np.inf)
        # Per member.
        x = xs[per]
        log_alpha_age = np.log(alpha + self.age)
        log_alpha_recency = np.log(alpha + self.t_x)
        alive = alive_x[per] - (r + x) * log_alpha_age
        dropped = dropped_x[per] - (r + x) * log_alpha_recency
        mix = np.logaddexp(alive, dropped)
        total = float(head[per].sum() + mix.sum())
        w_alive = np.exp(alive - mix)
        w_dropped = np.exp(dropped - mix)  # 0 where x = 0

        grad_r = (digamma(r + xs) - digamma(r))[per] + np.log(alpha) \
            - w_alive * log_alpha_age - w_dropped * log_alpha_recency
        grad_alpha = r / alpha - (r + x) * (w_alive / (alpha + self.age)
                                           + w_dropped / (alpha + self.t_x))
        common_ab = digamma(a + b) - digamma(a + b + xs)
        grad_a = common_ab[per] + w_dropped / a
        grad_b = (digamma(b + xs) - digamma(b) + common_ab)[per] \
            - w_dropped / b_dropped[per]
        gradient = np.array([grad_r.sum() * r, grad_alpha.sum() * alpha,
                             grad_a.sum() * a, grad_b.sum() * b])
        return -total / self.members, -gradient / self.members


def bgnbd_log_likelihood(parameters: BgNbdParameters, *, frequency: npt.ArrayLike,
                         recency: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
    """Each member's log-likelihood ln L(r, alpha, a, b | x, t_x, T)."""
    x, t_x, age = _histories(frequency, recency, T)
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    log_beta = betaln(a, b)
    alive = betaln(a, b + x) - log_beta - (r + x) * np.log(alpha + age)
    b_dropped = np.where(x > 0, b + x - 1, 1.0)
    dropped = np.where(x > 0, betaln(a + 1, b_dropped) - log_beta
                       - (r + x) * np.log(alpha + t_x), -np.inf)
    head = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    return np.asarray(head + np.logaddexp(alive, dropped), dtype=np.float64)


def _bgnbd_start(x: FloatArray, age: FloatArray) -> FloatArray:
    """r = 1 and alpha from the observed purchase rate; a = b = 1 (mean dropout 1/2)."""
    rate = max(float(x.sum()), 1.0) / max(float(age.sum()), 1.0)
    return np.log(np.array([1.0, 1.0 / rate, 1.0, 1.0], dtype=np.float64))


def fit_bgnbd(*, frequency: npt.ArrayLike, recency: npt.ArrayLike,
              T: npt.ArrayLike, prior: LogNormalPrior | None = None) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for the members' histories (penalised by
    ``prior`` if given)."""
    x, t_x, age = _histories(frequency, recency, T)
    if not (x > 0).any():
        raise ClvInputError("no member has a repeat purchase: BG/NBD cannot be fitted")
    objective = _BgNbdObjective(x, t_x, age)
    maximum = _maximise(objective, _bgnbd_start(x, age), ("r", "alpha", "a", "b"),
                        prior=prior)
    return BgNbdFit(parameters=BgNbdParameters(*maximum.estimate),
                    log_likelihood=maximum.log_likelihood_per_member * x.size,
                    members=x.size, iterations=maximum.iterations,
                    evaluations=maximum.evaluations, prior=prior)


def probability_alive(parameters: BgNbdParameters, *, frequency: npt.ArrayLike,
                      recency: npt.ArrayLike, T: npt.ArrayLike) -> FloatArray:
    """P(alive at T | x, t_x, T) (FHL 2005; Fader, Hardie & Lee 2008, "Computing P(alive)
    Using the BG/NBD Model"):

        1 / (1 + [x > 0] a / (b+x-1) ((alpha+T) / (alpha+t_x))^(r+x));

    1 for a member without repeat purchases: in BG/NBD one can only drop out right after
    a repeat purchase."""
    x, t_x, age = _histories(frequency, recency, T)
    return _probability_alive(parameters, x, t_x, age)


def _probability_alive(parameters: BgNbdParameters, x: FloatArray, t_x: FloatArray,
                       age: FloatArray) -> FloatArray:
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    repeat = x > 0
    log_odds_dead = np.full(x.shape, -np.inf)
    xr = x[repeat]
    log_odds_dead[repeat] = (np.log(a) - np.log(b + xr - 1) + (r + xr) * (
        np.log(alpha + age[repeat]) - np.log(alpha + t_x[repeat])))
    return np.asarray(expit(-log_odds_dead), dtype=np.float64)


def expected_purchases(parameters: BgNbdParameters, days: float, *,
                       frequency: npt.ArrayLike, recency: npt.ArrayLike,
                       T: npt.ArrayLike) -> FloatArray:
    """E[Y(days) | x, t_x, T]: each member's expected purchases in the next ``days``
    (FHL 2005, eq. 10)."""
    x, t_x, age = _histories(frequency, recency, T)
    return _expected_purchases(parameters, _days("days", days), x, t_x, age)


def _days(name: str, value: float) -> float:
    if not (np.isfinite(value) and value >= 0):
        raise ClvInputError(f"{name} must be a number of days >= 0, got {value!r}")
    return float(value)


def _expected_purchases(parameters: BgNbdParameters, days: float, x: FloatArray,
                        t_x: FloatArray, age: FloatArray) -> FloatArray:
    if abs(parameters.a - 1) < _A_NEAR_ONE:
        below = replace(parameters, a=1 - _A_NEAR_ONE)
        above = replace(parameters, a=1 + _A_NEAR_ONE)
        at_below = _expected_if_alive(below, days, x, age)
        at_above = _expected_if_alive(above, days, x, age)
        share = (parameters.a - below.a) / (above.a - below.a)
        if_alive = at_below + share * (at_above - at_below)
    else:
        if_alive = _expected_if_alive(parameters, days, x, age)
    expected = if_alive * _probability_alive(parameters, x, t_x, age)
    if not np.isfinite(expected).all():
        raise ClvError("the expected purchases are not finite for these parameters")
    return expected


def _expected_if_alive(parameters: BgNbdParameters, days: float, x: FloatArray,
                       age: FloatArray) -> FloatArray:
    """Eq. 10's numerator: E[Y(days) | alive at T, x, T].

        (a+b+x-1)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
        z = t / (alpha+T+t).

    With Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z), the
    product in brackets becomes (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z): no huge
    hypergeometric value times a tiny power for frequent buyers."""
    r, alpha, a, b = parameters.r, parameters.alpha, parameters.a, parameters.b
    log_rest = np.log(alpha + age) - np.log(alpha + age + days)  # ln(1 - z)
    z = -np.expm1(log_rest)
    c = a + b + x - 1
    remaining = np.exp((a - 1) * log_rest) * hyp2f1(a + b - 1 - r, a - 1, c, z)
    return np.asarray(c / (a - 1) * (1 - remaining), dtype=np.float64)


# --- Gamma-Gamma --------------------------------------------------------------------


class _GammaGammaObjective:
    """Minus the mean log-likelihood per member with x > 0, and its gradient in
    log-parameters. The mean of x purchases is Gamma(px, x nu) given nu, so per member:

        ll = ln G(px+q) - ln G(px) - ln G(q) + q ln v + (px-1) ln m + px ln x
             - (px+q) ln(v + x m)
    """

    def __init__(self, x: FloatArray, m: FloatArray) -> None:
        self.values, self.index = np.unique(x, return_inverse=True)
        self.members = x.size
        self.x = x
        self.m = m
        self.xm = x * m
        self.log_m = np.log(m)
        self.x_log_xm = float((x * (np.log(x) + self.log_m)).sum())
        self.sum_log_m = float(self.log_m.sum())

    def __call__(self, log_params: FloatArray) -> tuple[float, FloatArray]:
        p, q, v = np.exp(log_params)
        xs, per = self.values, self.index
        shape_x = p * xs + q
        log_v_xm = np.log(v + self.xm)
        total = float((gammaln(shape_x) - gammaln(p * xs))[per].sum()) \
            + self.members * (q * np.log(v) - gammaln(q)) \
            + p * self.x_log_xm - self.sum_log_m - float(((p * self.x + q) * log_v_xm).sum())
        psi_shape = digamma(shape_x)
        grad_p = float((xs * (psi_shape - digamma(p * xs)))[per].sum()) + self.x_log_xm \
            - float((self.x * log_v_xm).sum())
        grad_q = float(psi_shape[per].sum()) + self.members * (np.log(v) - digamma(q)) \
            - float(log_v_xm.sum())
        grad_v = self.members * q / v - float(((p * self.x + q) / (v + self.xm)).sum())
        gradient = np.array([grad_p * p, grad_q * q, grad_v * v])
        return -total / self.members, -gradient / self.members


def gamma_gamma_log_likelihood(parameters: GammaGammaParameters, *,
                               frequency: npt.ArrayLike,
                               monetary: npt.ArrayLike) -> FloatArray:
    """Each member's log-likelihood of m_x given x; NaN where x = 0 (no spend observed)."""
    x, m = _spends(frequency, monetary)
    p, q, v = parameters.p, parameters.q, parameters.v
    result = np.full(x.shape, np.nan)
    repeat = x > 0
    xr, mr = x[repeat], m[repeat]
    result[repeat] = (gammaln(p * xr + q) - gammaln(p * xr) - gammaln(q) + q * np.log(v)
                      + (p * xr - 1) * np.log(mr) + p * xr * np.log(xr)
                      - (p * xr + q) * np.log(v + xr * mr))
    return result


def _gamma_gamma_start(m: FloatArray) -> FloatArray:
    """p = 1, q = 2, and v so that the population mean spend p v / (q-1) is the mean of
    the observed means."""
    return np.log(np.array([1.0, 2.0, float(m.mean())], dtype=np.float64))


def fit_gamma_gamma(*, frequency: npt.ArrayLike, monetary: npt.ArrayLike,
                    prior: LogNormalPrior | None = None) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from the members with x > 0 (penalised
    by ``prior`` if given)."""
    x, m = _spends(frequency, monetary)
    repeat = x > 0
    if not repeat.any():
        raise ClvInputError("no member has a repeat purchase: Gamma-Gamma cannot be fitted")
    objective = _GammaGammaObjective(x[repeat], m[repeat])
    maximum = _maximise(objective, _gamma_gamma_start(m[repeat]), ("p", "q", "v"),
                        prior=prior)
    return GammaGammaFit(parameters=GammaGammaParameters(*maximum.estimate),
                         log_likelihood=maximum.log_likelihood_per_member * objective.members,
                         members=objective.members, iterations=maximum.iterations,
                         evaluations=maximum.evaluations, prior=prior)


def expected_average_spend(parameters: GammaGammaParameters, *, frequency: npt.ArrayLike,
                           monetary: npt.ArrayLike) -> FloatArray:
    """E[M | x, m_x] = p (v + x m_x) / (p x + q - 1): a weighted mean of the population's
    mean p v / (q - 1) and the member's own m_x (FHL 2005 "RFM and CLV"; Fader & Hardie
    2013, "The Gamma-Gamma Model of Monetary Value"). Members with x = 0 get the
    population's mean."""
    x, m = _spends(frequency, monetary)
    return _expected_average_spend(parameters, x, m)


def _expected_average_spend(parameters: GammaGammaParameters, x: FloatArray,
                            m: FloatArray) -> FloatArray:
    p, q, v = parameters.p, parameters.q, parameters.v
    population = parameters.population_mean_spend
    repeat = x > 0
    spend = np.full(x.shape, population)
    denominator = p * x[repeat] + q - 1
    if (denominator <= 0).any():
        raise ClvError("p x + q <= 1 for some members: their expected spend is infinite")
    spend[repeat] = p * (v + x[repeat] * m[repeat]) / denominator
    return spend


# --- CLV ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberScores:
    """Per member, in the input's order."""

    probability_alive: FloatArray
    expected_purchases: FloatArray  # in the horizon
    expected_average_spend: FloatArray  # per purchase, in monetary's unit
    clv: FloatArray  # over the horizon, in monetary's unit


def score_members(bgnbd: BgNbdParameters, gamma_gamma: GammaGammaParameters, *,
                  frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike,
                  monetary: npt.ArrayLike, horizon_days: float = DEFAULT_HORIZON_DAYS,
                  monthly_discount_rate: float = 0.0,
                  spend_frequency: npt.ArrayLike | None = None) -> MemberScores:
    """P(alive), expected purchases in the horizon, expected spend per purchase and CLV.

    ``spend_frequency``: the repeat purchases whose mean spend ``monetary`` is, when not
    all of them (default: ``frequency``). Repeat purchases that paid nothing say nothing
    about spend: they count for BG/NBD but not for Gamma-Gamma, and a member whose repeat
    purchases were all free gets the population's expected spend.

    CLV = sum over the horizon's months of (expected purchases in the month x expected
    spend per purchase) / (1 + monthly_discount_rate)^k, where month k ends k * 30 days
    from now (the last one at the horizon, possibly shorter) and is discounted at its
    end. Undiscounted (the default) it is simply expected purchases x expected spend."""
    x, t_x, age = _histories(frequency, recency, T)
    spend_x, m = _spends(x if spend_frequency is None else spend_frequency, monetary)
    _same_length(frequency=x, monetary=m, spend_frequency=spend_x)
    _refuse(spend_x > x, "spend_frequency is greater than frequency")
    horizon = _days("horizon_days", horizon_days)
    if not (np.isfinite(monthly_discount_rate) and monthly_discount_rate >= 0):
        raise ClvInputError(f"monthly_discount_rate must be >= 0, got "
                            f"{monthly_discount_rate!r}")
    spend = _expected_average_spend(gamma_gamma, spend_x, m)
    alive = _probability_alive(bgnbd, x, t_x, age)
    purchases = _expected_purchases(bgnbd, horizon, x, t_x, age)
    if monthly_discount_rate == 0:
        value = purchases * spend
    else:
        value = _discounted_purchases(bgnbd, horizon, monthly_discount_rate,
                                      x, t_x, age) * spend
    return MemberScores(probability_alive=alive, expected_purchases=purchases,
                        expected_average_spend=spend, clv=value)


def customer_lifetime_value(bgnbd: BgNbdParameters, gamma_gamma: GammaGammaParameters, *,
                            frequency: npt.ArrayLike, recency: npt.ArrayLike,
                            T: npt.ArrayLike, monetary: npt.ArrayLike,
                            horizon_days: float = DEFAULT_HORIZON_DAYS,
                            monthly_discount_rate: float = 0.0) -> FloatArray:
    """Each member's CLV over the horizon (see ``score_members``)."""
    return score_members(bgnbd, gamma_gamma, frequency=frequency, recency=recency, T=T,
                         monetary=monetary, horizon_days=horizon_days,
                         monthly_discount_rate=monthly_discount_rate).clv


def _discounted_purchases(parameters: BgNbdParameters, horizon: float, rate: float,
                          x: FloatArray, t_x: FloatArray, age: FloatArray) -> FloatArray:
    ends = np.append(np.arange(DAYS_PER_MONTH, horizon, DAYS_PER_MONTH), horizon)
    total = np.zeros(x.shape)
    before = np.zeros(x.shape)
    for end in ends:  # months, not members
        cumulative = _expected_purchases(parameters, float(end), x, t_x, age)
        total += (cumulative - before) / (1 + rate) ** (end / DAYS_PER_MONTH)
        before = cumulative
    return total


# --- the optimiser ------------------------------------------------------------------


@dataclass(frozen=True)
class _Maximum:
    estimate: list[float]
    log_likelihood_per_member: float
    iterations: int
    evaluations: int


class _Penalised:
    """Minus the mean log-posterior per member: the objective plus the log-normal prior's
    penalty sum((theta - centre)^2) / (2 sd^2), divided by the members like the rest."""

    def __init__(self, objective: Any, centre: FloatArray, prior: LogNormalPrior) -> None:
        self.objective = objective
        self.centre = centre
        self.weight = 1.0 / (prior.sd ** 2 * objective.members)

    def __call__(self, log_params: FloatArray) -> tuple[float, FloatArray]:
        value, gradient = self.objective(log_params)
        offset = log_params - self.centre
        return (value + 0.5 * self.weight * float(offset @ offset),
                gradient + self.weight * offset)


def _maximise(objective: Any, start: FloatArray, names: tuple[str, ...], *,
              prior: LogNormalPrior | None = None) -> _Maximum:
    """Minimise ``objective`` (minus the mean log-likelihood per member, and its gradient)
    over log-parameters, or raise ClvFitError. With a prior, minimise minus the mean
    log-posterior instead (the prior centred on ``start``); the log-likelihood reported is
    the likelihood's alone.

    Converged means: every parameter inside the search's edges and every component of the
    gradient at most _STATIONARY. L-BFGS-B's own verdict is not enough either way: at the
    optimum its line search can stop "abnormally" on rounding noise, and on a likelihood
    without a maximum it can report success far from any stationary point. Short of
    converged, it runs again from where it stopped (with a fresh curvature estimate),
    twice at most."""
    likelihood = objective
    if prior is not None:
        objective = _Penalised(likelihood, start, prior)
    point = start
    iterations = evaluations = 0
    for attempt in range(_ATTEMPTS):
        # A rerun stops only on the gradient or on rounding noise, not on a small relative
        # change of the value: that is what can stop the first run short.
        ftol = 1e-12 if attempt == 0 else 0.0
        with np.errstate(over="ignore", under="ignore"):
            result = minimize(objective, point, jac=True, method="L-BFGS-B",
                              bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(names),
                              options={"maxiter": 1000, "ftol": ftol, "gtol": 1e-8})
        iterations += int(result.nit)
        evaluations += int(result.nfev)
        point = np.asarray(result.x, dtype=np.float64)
        value, gradient = objective(point)
        if not (np.isfinite(value) and np.isfinite(point).all()):
            raise ClvFitError(f"the fit did not converge after {iterations} iterations: the "
                              f"likelihood is not finite at {_named(names, point)}")
        at_edge = [name for name, log_value in zip(names, point, strict=True)
                   if abs(log_value) >= _LOG_BOUND * (1 - 1e-6)]
        if at_edge:
            raise ClvFitError(f"{', '.join(at_edge)} ran to the edge of the search "
                              f"(1e-8 or 1e8) at {_named(names, point)}: these histories "
                              f"cannot determine it")
        steepest = float(np.abs(gradient).max())
        if steepest <= _STATIONARY:
            if prior is not None:
                value, _ = likelihood(point)
            return _Maximum(estimate=[float(v) for v in np.exp(point)],
                            log_likelihood_per_member=-float(value),
                            iterations=iterations, evaluations=evaluations)
    raise ClvFitError(f"the fit did not converge after {iterations} iterations (last "
                      f"L-BFGS-B stop: {str(result.message).strip()}; gradient "
                      f"{steepest:.1e} at {_named(names, point)}): the likelihood may have no "
                      f"maximum for these histories (too few members, or too little variety "
                      f"among them)")


def _named(names: tuple[str, ...], log_point: FloatArray) -> str:
    return ", ".join(f"{name} = {value:.4g}"
                     for name, value in zip(names, np.exp(log_point), strict=True))
