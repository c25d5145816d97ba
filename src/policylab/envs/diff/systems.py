"""Three small differentiable systems and a batched rollout with a gradient-truncation hook.

Each system is a torch function of (state [B, n], action [B, m]) -> next state, semi-implicit Euler:
- `DiffPendulum`: angle theta (0 upright) and rate; theta'' = (g / l) sin theta + u / (m l^2), |u| <= 5 < g:
  a swing-up from hanging needs momentum (the ILD notes' check);
- `DiffCartPole`: the classic cart-pole equations (Barto et al.) with a continuous force;
- `DiffPointMass`: a 2-D point mass with linear drag.
`observe` gives the policy's features (angles as cos / sin), `cost` a per-state task cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from policylab.core.errors import ConfigError


@dataclass(frozen=True)
class DiffEnv:
    state_dim: int
    action_dim: int
    max_action: float
    dt: float

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def cost(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def clip(self, action: torch.Tensor) -> torch.Tensor:
        return action.clamp(-self.max_action, self.max_action)


@dataclass(frozen=True)
class DiffPendulum(DiffEnv):
    state_dim: int = 2
    action_dim: int = 1
    max_action: float = 5.0
    dt: float = 0.05
    gravity: float = 10.0
    length: float = 1.0
    mass: float = 1.0

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        theta, omega = state[:, 0], state[:, 1]
        torque = self.clip(action)[:, 0]
        accel = self.gravity / self.length * torch.sin(theta) + torque / (self.mass * self.length ** 2)
        omega = omega + self.dt * accel
        return torch.stack([theta + self.dt * omega, omega], 1)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.cos(state[:, 0]), torch.sin(state[:, 0]), state[:, 1]], 1)

    def cost(self, state: torch.Tensor) -> torch.Tensor:
        return 1 - torch.cos(state[:, 0])

    def swing_up(self, obs: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """A hand-made expert: pump energy E = w^2 / 2 + (g / l) cos(theta) toward the upright value
        (a hanging, resting start gets a full push), then hold with saturated PD within 0.5 rad of upright."""
        cos, sin, omega = obs.unbind(1)
        target = self.gravity / self.length
        energy = 0.5 * omega ** 2 + target * cos
        pump = torch.where(omega.abs() < 0.1, torch.full_like(omega, self.max_action), 2.0 * (target - energy) * omega)
        hold = -(15.0 * sin + 3.0 * omega)
        return self.clip(torch.where(cos > math.cos(0.5), hold, pump))[:, None]


@dataclass(frozen=True)
class DiffCartPole(DiffEnv):
    state_dim: int = 4
    action_dim: int = 1
    max_action: float = 10.0
    dt: float = 0.02
    gravity: float = 9.8
    cart_mass: float = 1.0
    pole_mass: float = 0.1
    half_length: float = 0.5

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x, v, theta, omega = state.unbind(1)
        force = self.clip(action)[:, 0]
        total = self.cart_mass + self.pole_mass
        cos, sin = torch.cos(theta), torch.sin(theta)
        temp = (force + self.pole_mass * self.half_length * omega ** 2 * sin) / total
        alpha = (self.gravity * sin - cos * temp) / (
            self.half_length * (4.0 / 3.0 - self.pole_mass * cos ** 2 / total))
        accel = temp - self.pole_mass * self.half_length * alpha * cos / total
        v, omega = v + self.dt * accel, omega + self.dt * alpha
        return torch.stack([x + self.dt * v, v, theta + self.dt * omega, omega], 1)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        x, v, theta, omega = state.unbind(1)
        return torch.stack([x, v, torch.cos(theta), torch.sin(theta), omega], 1)

    def cost(self, state: torch.Tensor) -> torch.Tensor:
        return 1 - torch.cos(state[:, 2]) + 0.01 * state[:, 0] ** 2


@dataclass(frozen=True)
class DiffPointMass(DiffEnv):
    state_dim: int = 4
    action_dim: int = 2
    max_action: float = 1.0
    dt: float = 0.1
    drag: float = 0.5

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        position, velocity = state[:, :2], state[:, 2:]
        velocity = velocity + self.dt * (self.clip(action) - self.drag * velocity)
        return torch.cat([position + self.dt * velocity, velocity], 1)

    def cost(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, :2].square().sum(1)


DIFF_ENVS: dict[str, Callable[[], DiffEnv]] = {"pendulum": DiffPendulum, "cartpole": DiffCartPole,
                                               "point_mass": DiffPointMass}


def rollout(env: DiffEnv, policy: Callable[[torch.Tensor, int], torch.Tensor], start: torch.Tensor, horizon: int,
            truncate_every: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """States [B, T + 1, n] and actions [B, T, m] of `policy(observation, t)` from `start`; gradients flow
    through the dynamics except across every `truncate_every`-th step (the state is detached there),
    the truncated back-propagation that keeps long rollouts' gradients finite."""
    if truncate_every is not None and truncate_every < 1:
        raise ConfigError(f"truncate_every = {truncate_every} is not allowed: must be >= 1 or None")
    states, actions = [start], []
    for t in range(horizon):
        state = states[-1]
        if truncate_every is not None and t > 0 and t % truncate_every == 0:
            state = state.detach()
        action = policy(env.observe(state), t)
        actions.append(action)
        states.append(env.step(state, action))
    return torch.stack(states, 1), torch.stack(actions, 1)

