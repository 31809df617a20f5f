"""Declared priors for simulation parameters: the contract every injector shares.

Following lenstronomy's profile idea (one fixed contract, declarative parameter
names with limits), every skysift injector (point-source transients, strong
lenses, planetary transits, GW signals) declares its parameters as a mapping
of name to :class:`Prior`. Parameters are drawn with :func:`sample_parameters`,
the injection is a pure function of ``(data, parameters, rng)``, and the drawn
parameters are stored beside every sample in the product's ``/samples`` table.

Priors are plain frozen dataclasses, so a prior can be written in a config file
(:func:`prior_from_config`) and recorded in product metadata (:func:`describe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "Choice",
    "Fixed",
    "LogUniform",
    "Prior",
    "SeedPrior",
    "TruncatedNormal",
    "Uniform",
    "describe",
    "prior_from_config",
    "sample_parameters",
]


class Prior:
    """Base class: a one-dimensional distribution with a unit and limits."""

    unit: str = ""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:  # pragma: no cover - abstract
        """Draw ``size`` values."""
        raise NotImplementedError

    @property
    def limits(self) -> tuple[float, float]:  # pragma: no cover - abstract
        """Smallest and largest value the prior can produce."""
        raise NotImplementedError


@dataclass(frozen=True)
class Uniform(Prior):
    """Uniform between ``low`` and ``high``."""

    low: float
    high: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.high >= self.low:
            raise ValueError(f"Uniform prior needs high >= low, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size=size)

    @property
    def limits(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class LogUniform(Prior):
    """Uniform in the logarithm between ``low > 0`` and ``high``."""

    low: float
    high: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not (self.low > 0 and self.high >= self.low):
            raise ValueError(f"LogUniform prior needs 0 < low <= high, got [{self.low}, {self.high}]")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.exp(rng.uniform(np.log(self.low), np.log(self.high), size=size))

    @property
    def limits(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class TruncatedNormal(Prior):
    """Normal(``mean``, ``sigma``) truncated to [``low``, ``high``] (rejection sampling)."""

    mean: float
    sigma: float
    low: float = -np.inf
    high: float = np.inf
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.sigma > 0 or not self.high > self.low:
            raise ValueError(f"TruncatedNormal needs sigma > 0 and high > low, got {self}")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        values = np.empty(size)
        filled = 0
        for _ in range(1000):
            if filled == size:
                break
            draw = rng.normal(self.mean, self.sigma, size=2 * (size - filled) + 8)
            draw = draw[(draw >= self.low) & (draw <= self.high)][: size - filled]
            values[filled : filled + draw.size] = draw
            filled += draw.size
        if filled < size:
            raise ValueError(f"TruncatedNormal {self} accepts almost nothing; widen its limits")
        return values

    @property
    def limits(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Fixed(Prior):
    """Always ``value``."""

    value: float
    unit: str = ""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=float)

    @property
    def limits(self) -> tuple[float, float]:
        return (self.value, self.value)


@dataclass(frozen=True)
class Choice(Prior):
    """One of ``values`` with optional ``weights`` (numbers only, so it fits a table column)."""

    values: tuple[float, ...]
    weights: tuple[float, ...] | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Choice prior needs at least one value")
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError("Choice prior: weights and values differ in length")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        p = None if self.weights is None else np.asarray(self.weights, float) / np.sum(self.weights)
        return rng.choice(np.asarray(self.values, dtype=float), size=size, p=p)

    @property
    def limits(self) -> tuple[float, float]:
        return (float(min(self.values)), float(max(self.values)))


@dataclass(frozen=True)
class SeedPrior(Prior):
    """Integer seed, uniform in ``[0, 2**31)`` and stored as a float (exact below 2**53).

    Sub-structure with many random values (e.g. the knots of a ring galaxy,
    :mod:`skysift.lens.negatives`) is drawn from a generator seeded with this value, so
    the rendering stays a pure function of the stored parameters.
    """

    unit: str = ""

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.integers(0, 2**31, size=size).astype(np.float64)

    @property
    def limits(self) -> tuple[float, float]:
        return (0.0, float(2**31 - 1))


_KINDS: dict[str, type[Prior]] = {
    "uniform": Uniform,
    "loguniform": LogUniform,
    "normal": TruncatedNormal,
    "fixed": Fixed,
    "choice": Choice,
}


def prior_from_config(spec: Mapping[str, Any] | float | int) -> Prior:
    """Build a prior from a config entry.

    ``{"uniform": [0.5, 2.0]}``, ``{"loguniform": [1, 100], "unit": "d"}``,
    ``{"normal": [0, 0.05], "low": -0.2, "high": 0.2}``, ``{"choice": [0, 1]}`` or a
    bare number (fixed). No code is evaluated: the kind comes from a fixed table.

    Raises
    ------
    ValueError
        Naming the unknown kind or the malformed entry.
    """
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Fixed(float(spec))
    if not isinstance(spec, Mapping):
        raise ValueError(f"a prior must be a number or a mapping like {{'uniform': [low, high]}}, got {spec!r}")
    kinds = [k for k in spec if k in _KINDS]
    if len(kinds) != 1:
        raise ValueError(f"a prior needs exactly one of {sorted(_KINDS)}, got keys {sorted(spec)}")
    kind = kinds[0]
    arguments = spec[kind]
    unit = str(spec.get("unit", ""))
    if kind == "normal":
        mean, sigma = arguments
        return TruncatedNormal(float(mean), float(sigma), float(spec.get("low", -np.inf)), float(spec.get("high", np.inf)), unit)
    if kind == "fixed":
        return Fixed(float(arguments), unit)
    if kind == "choice":
        weights = spec.get("weights")
        return Choice(tuple(float(v) for v in arguments), None if weights is None else tuple(map(float, weights)), unit)
    low, high = arguments
    return _KINDS[kind](float(low), float(high), unit)


def sample_parameters(priors: Mapping[str, Prior], size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw ``size`` values of every parameter, in the declared order.

    Drawing in a fixed order from one generator keeps samples reproducible
    from the seed alone.
    """
    return {name: np.asarray(prior.sample(rng, size), dtype=np.float64) for name, prior in priors.items()}


def describe(priors: Mapping[str, Prior]) -> dict[str, str]:
    """Describe priors as strings for product metadata (``meta.prior.<name>``)."""
    return {name: f"{type(prior).__name__}({', '.join(f'{k}={v}' for k, v in asdict(prior).items())})" for name, prior in priors.items()}

