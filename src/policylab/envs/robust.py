"""Robustness tools: environments with editable physics, per-episode domain randomization, evaluation
over a parameter grid with common random numbers, and worst-case search over a parameter box.

A *parameter family* says how to write named physical parameters into a freshly made gymnasium env.
Pendulum-v1 is the first (mass `m` and length `l`, attributes of `env.unwrapped`); another env joins with
one `PARAM_FAMILIES.add(...)` line (a MuJoCo env would write `env.unwrapped.model.body_mass[...]` in its
`apply`). Tools that build envs by id (`train_online`, `VectorEnv`, `evaluate_policy`) reach a fixed or a
randomized model through `param_env_id` / `randomized_env_id`, which register the model under an id.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
import numpy as np

from policylab.core.errors import ConfigError
from policylab.core.registry import ENVIRONMENTS, Registry
from policylab.envs.evaluate import run_episodes
from policylab.envs.factory import make_env


def set_unwrapped_attributes(env: gym.Env, params: Mapping[str, float]) -> None:
    for name, value in params.items():
        setattr(env.unwrapped, name, float(value))


def get_unwrapped_attributes(env: gym.Env, names: Sequence[str]) -> dict[str, float]:
    return {name: float(getattr(env.unwrapped, name)) for name in names}


@dataclass(frozen=True)
class ParamFamily:
    """The editable parameters of one gymnasium env: nominal values, allowed open intervals, writer."""

    env_id: str
    nominal: Mapping[str, float]
    limits: Mapping[str, tuple[float, float]]
    """Open interval of physically meaningful values per parameter (a mass must stay > 0)."""
    apply: Callable[[gym.Env, Mapping[str, float]], None] = set_unwrapped_attributes
    read: Callable[[gym.Env, Sequence[str]], dict[str, float]] = get_unwrapped_attributes


PARAM_FAMILIES: Registry = Registry("parameterised environment")
PARAM_FAMILIES.add("Pendulum-v1", ParamFamily("Pendulum-v1", {"m": 1.0, "l": 1.0},
                                              {"m": (0.0, math.inf), "l": (0.0, math.inf)}))


def check_params(env_id: str, params: Mapping[str, float]) -> dict[str, float]:
    """The parameters as floats; fails naming the parameter, its value and what is allowed."""
    family = PARAM_FAMILIES.get(env_id)
    checked = {}
    for name, value in params.items():
        if name not in family.nominal:
            raise ConfigError(f"parameter {name!r} = {value!r} is not allowed for {env_id}: "
                              f"its parameters are {', '.join(family.nominal)}")
        low, high = family.limits[name]
        if not isinstance(value, (int, float, np.number)) or not low < float(value) < high:
            raise ConfigError(f"parameter {name} = {value!r} is not allowed for {env_id}: "
                              f"must be a number in ({low}, {high})")
        checked[name] = float(value)
    return checked


def make_param_env(env_id: str, params: Mapping[str, float] | None = None) -> gym.Env:
    """`make_env(env_id)` with the given parameters written in (the others stay nominal)."""
    family = PARAM_FAMILIES.get(env_id)
    env = make_env(env_id)
    family.apply(env, {**family.nominal, **check_params(env_id, params or {})})
    return env


@dataclass(frozen=True)
class ParamBox:
    """An uncertainty set: the box low[i] <= params[names[i]] <= high[i]."""

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.names or len(set(self.names)) != len(self.names):
            raise ConfigError(f"box names = {self.names!r} is not allowed: must be distinct and at least one")
        for label, bound in (("low", self.low), ("high", self.high)):
            if len(bound) != len(self.names):
                raise ConfigError(f"box {label} = {bound!r} is not allowed: needs one value per name "
                                  f"({len(self.names)}: {', '.join(self.names)})")
        for name, lo, hi in zip(self.names, self.low, self.high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ConfigError(f"box bounds of {name} = [{lo}, {hi}] are not allowed: "
                                  "must be finite with low <= high")

    @classmethod
    def from_bounds(cls, bounds: Mapping[str, tuple[float, float]]) -> ParamBox:
        return cls(tuple(bounds), tuple(float(b[0]) for b in bounds.values()),
                   tuple(float(b[1]) for b in bounds.values()))

    def check_for(self, env_id: str) -> ParamBox:
        """Fails unless both corners are valid parameters of `env_id`."""
        check_params(env_id, dict(zip(self.names, self.low, strict=True)))
        check_params(env_id, dict(zip(self.names, self.high, strict=True)))
        return self

    def grid(self, points_per_dim: int) -> np.ndarray:
        """[points_per_dim ** d, d] evenly spaced points, corners included (one point: the centre)."""
        if points_per_dim < 1:
            raise ConfigError(f"points_per_dim = {points_per_dim} is not allowed: must be >= 1")
        axes = [np.linspace(lo, hi, points_per_dim) if points_per_dim > 1 else np.array([(lo + hi) / 2])
                for lo, hi in zip(self.low, self.high, strict=True)]
        return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, d] points uniform in the box."""
        return rng.uniform(self.low, self.high, (n, len(self.names)))

    def params(self, point: Sequence[float]) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.names, point, strict=True)}


class DomainRandomization(gym.Wrapper):
    """Draws new parameters, uniform in `box`, at every reset; `info["params"]` holds them.

    A reset with a seed also reseeds the parameter generator, so a seeded run replays the same sequence
    of models; resets without a seed (autoreset in `VectorEnv`) continue it.
    """

    def __init__(self, env: gym.Env, env_id: str, box: ParamBox, seed: int | None = None):
        super().__init__(env)
        self.env_id, self.box = env_id, box.check_for(env_id)
        self.rng = np.random.default_rng(seed)
        self.params: dict[str, float] = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([seed, 7_717])  # its own stream, apart from the env's
        self.params = self.box.params(self.box.sample(1, self.rng)[0])
        PARAM_FAMILIES.get(self.env_id).apply(self.env, self.params)
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "params": dict(self.params)}


def make_randomized_env(env_id: str, box: ParamBox, seed: int | None = None) -> gym.Env:
    return DomainRandomization(make_param_env(env_id), env_id, box, seed)


class ParamsInObservation(gym.ObservationWrapper):
    """Appends the env's current parameters `names` (read through its family) to every observation: the
    privileged knowledge e of a teacher or oracle, never of a deployable policy. Read after each reset, so
    a `DomainRandomization` inside shows the model it just drew."""

    def __init__(self, env: gym.Env, env_id: str, names: Sequence[str]):
        super().__init__(env)
        self.family, self.names = PARAM_FAMILIES.get(env_id), tuple(names)
        unknown = [n for n in self.names if n not in self.family.nominal]
        if unknown:
            raise ConfigError(f"parameters {unknown!r} are not allowed for {env_id}: its parameters are "
                              f"{', '.join(self.family.nominal)}")
        space = env.observation_space
        low = np.array([self.family.limits[n][0] for n in self.names], dtype=space.dtype)
        high = np.array([self.family.limits[n][1] for n in self.names], dtype=space.dtype)
        self.observation_space = gym.spaces.Box(np.concatenate([space.low, low]), np.concatenate([space.high, high]),
                                                dtype=space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        params = self.family.read(self.env, self.names)
        return np.concatenate([observation, [params[n] for n in self.names]]).astype(observation.dtype)


def make_privileged_randomized_env(env_id: str, box: ParamBox, seed: int | None = None) -> gym.Env:
    return ParamsInObservation(make_randomized_env(env_id, box, seed), env_id, box.names)


def _register(env_id: str, factory: Callable[[], gym.Env]) -> str:
    if env_id not in ENVIRONMENTS:
        ENVIRONMENTS.add(env_id, factory)
    return env_id


def param_env_id(env_id: str, params: Mapping[str, float]) -> str:
    """An id such as 'Pendulum-v1[m=2.0,l=1.5]' that `make_env` builds (registered in this process)."""
    checked = check_params(env_id, params)
    tag = ",".join(f"{k}={v!r}" for k, v in checked.items())
    return _register(f"{env_id}[{tag}]", partial(make_param_env, env_id, checked))


def randomized_env_id(env_id: str, box: ParamBox) -> str:
    """An id such as 'Pendulum-v1[dr:m=0.5~2.0,l=0.5~1.5]' for the domain-randomized env over `box`."""
    box.check_for(env_id)
    tag = ",".join(f"{n}={lo!r}~{hi!r}" for n, lo, hi in zip(box.names, box.low, box.high, strict=True))
    return _register(f"{env_id}[dr:{tag}]", partial(make_randomized_env, env_id, box))


def privileged_randomized_env_id(env_id: str, box: ParamBox) -> str:
    """An id such as 'Pendulum-v1[dr+e:m=0.5~2.0,l=0.5~1.5]': the randomized env whose observations end with
    the parameters it drew (a teacher's or oracle's input)."""
    box.check_for(env_id)
    tag = ",".join(f"{n}={lo!r}~{hi!r}" for n, lo, hi in zip(box.names, box.low, box.high, strict=True))
    return _register(f"{env_id}[dr+e:{tag}]", partial(make_privileged_randomized_env, env_id, box))


@dataclass(frozen=True)
class GridEvaluation:
    """Returns of one policy on parameter points: `returns[c, k]` is episode k on point c."""

    names: tuple[str, ...]
    points: np.ndarray
    returns: np.ndarray
    env_steps: int
    cell_means: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cell_means", self.returns.mean(1))

    @property
    def worst(self) -> float:
        """The lowest mean return over the points: the worst case over the (discretized) set."""
        return float(self.cell_means.min())

    @property
    def worst_params(self) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self.names, self.points[int(self.cell_means.argmin())], strict=True)}

    @property
    def mean(self) -> float:
        return float(self.cell_means.mean())


def evaluate_grid(agent, env_id: str, names: Sequence[str], points: np.ndarray, episodes: int,
                  seed: int, observe_params: bool = False) -> GridEvaluation:
    """Deterministic returns of `agent` on every point, `episodes` each. Common random numbers: episode k
    starts from the reset seed `seed + k` on every point, so cells differ only by their dynamics.
    `observe_params`: the agent also sees the point's parameters (`ParamsInObservation`; an oracle)."""
    if episodes < 1:
        raise ConfigError(f"episodes = {episodes} is not allowed: must be >= 1")
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    if points.shape[1] != len(names):
        raise ConfigError(f"points have {points.shape[1]} columns, names = {tuple(names)!r} has {len(names)}")
    envs = [make_param_env(env_id, dict(zip(names, p, strict=True))) for p in points for _ in range(episodes)]
    if observe_params:
        envs = [ParamsInObservation(env, env_id, names) for env in envs]
    seeds = [seed + k for _ in points for k in range(episodes)]
    returns, steps = run_episodes(agent, envs, seeds)
    for env in envs:
        env.close()
    return GridEvaluation(tuple(names), points, returns.reshape(len(points), episodes), steps)


SEARCH_METHODS = ("grid", "random")


@dataclass(frozen=True)
class WorstCase:
    params: dict[str, float]
    value: float
    points: np.ndarray
    values: np.ndarray


def search_points(box: ParamBox, method: str, size: int, seed: int = 0) -> np.ndarray:
    """Candidates: `size` points per dimension ('grid', corners included) or `size` uniform points ('random')."""
    if method not in SEARCH_METHODS:
        raise ConfigError(f"search = {method!r} is not allowed: must be one of {', '.join(SEARCH_METHODS)}")
    if size < 1:
        raise ConfigError(f"search size = {size} is not allowed: must be >= 1")
    return box.grid(size) if method == "grid" else box.sample(size, np.random.default_rng(seed))


def worst_case_search(objective: Callable[[np.ndarray], np.ndarray], box: ParamBox, method: str = "grid",
                      size: int = 5, seed: int = 0) -> WorstCase:
    """argmin over the candidates of `objective`, which maps [k, d] points to [k] values in one call."""
    points = search_points(box, method, size, seed)
    values = np.asarray(objective(points), dtype=np.float64)
    best = int(values.argmin())
    return WorstCase(box.params(points[best]), float(values[best]), points, values)


def policy_worst_case(agent, env_id: str, box: ParamBox, method: str = "grid", size: int = 5,
                      episodes: int = 3, seed: int = 0) -> tuple[WorstCase, GridEvaluation]:
    """The model of `box` where `agent`'s mean return is lowest, with common random numbers across
    candidates; also the evaluation itself (its `env_steps` are the search's cost)."""
    box.check_for(env_id)
    found: list[GridEvaluation] = []

    def mean_returns(points: np.ndarray) -> np.ndarray:
        found.append(evaluate_grid(agent, env_id, box.names, points, episodes, seed))
        return found[-1].cell_means

    return worst_case_search(mean_returns, box, method, size, seed), found[0]
