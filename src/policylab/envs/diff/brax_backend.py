"""Brax as an optional backend of the differentiable environments: any Brax environment behind the
`DiffEnv` interface, so that ILD (whose official code runs on Brax) and anything else that unrolls a
`DiffEnv` can use Brax's physics unchanged. Install with `pip install 'policylab[brax]'`; nothing else in
policylab imports Brax or JAX.

The flat torch state is Brax's generalized positions and velocities, [q, qd]. A step rebuilds Brax's
pipeline state from them (`pipeline_init`), runs the environment's own `step` (its action scaling, its
n_frames of physics, its reward) and returns the next [q, qd]. With the `generalized` backend, whose
pipeline state is a function of (q, qd), this is Brax's own trajectory (tested); the maximal-coordinate
backends (`positional`, `spring`) and `mjx` carry more state than (q, qd), so there a rebuilt state can
drift from an uninterrupted Brax rollout.

Gradients cross the torch / JAX boundary through an autograd function whose backward is JAX's
vector-Jacobian product of the same jitted, batch-vmapped step, so `rollout`'s truncation hook works as on
the torch systems. Actions are in [-1, 1], Brax's convention.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from policylab.core.errors import ConfigError
from policylab.envs.diff.systems import DiffEnv

BACKENDS = ("generalized", "positional", "spring", "mjx")
INSTALL_HINT = "pip install 'policylab[brax]'"


def import_brax() -> tuple[Any, Any, Any]:
    """(jax, jax.numpy, brax.envs), or a ConfigError that says how to install them."""
    # Brax 0.14's own maintenance notices, not about anything a policylab user does: narrowly silenced
    warnings.filterwarnings("ignore", message="Accessing `ncon`", category=DeprecationWarning, module="brax")
    warnings.filterwarnings("ignore", message="JAXopt is no longer", category=DeprecationWarning, module="jaxopt")
    try:
        # mujoco's mjx prints a notice about its optional `warp` module at import; it is not an error here
        with contextlib.redirect_stdout(io.StringIO()):
            import jax
            import jax.numpy as jnp
            from brax import envs
    except ImportError as error:
        raise ConfigError(f"the Brax backend needs the optional `brax` extra ({INSTALL_HINT}); "
                          f"importing it failed: {error}") from error
    return jax, jnp, envs


class JaxFunction(torch.autograd.Function):
    """A jitted JAX function of float arrays as a differentiable torch op; backward is JAX's VJP."""

    @staticmethod
    def forward(ctx, bridge: BraxBridge, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.bridge = bridge
        ctx.save_for_backward(*inputs)
        outputs = bridge.forward(*[bridge.to_jax(x) for x in inputs])
        return tuple(bridge.to_torch(y, inputs[0].dtype) for y in outputs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs = ctx.saved_tensors
        bridge = ctx.bridge
        cotangents = bridge.vjp(tuple(bridge.to_jax(x) for x in inputs), tuple(bridge.to_jax(g) for g in grads))
        return (None, *(bridge.to_torch(g, x.dtype) for g, x in zip(cotangents, inputs)))


class BraxBridge:
    """The jitted batched transition (q_qd [B, n], action [B, m]) -> (next q_qd [B, n], reward [B]) and its VJP."""

    def __init__(self, env: Any, jax: Any, jnp: Any):
        self.jnp = jnp
        template = env.reset(jax.random.PRNGKey(0))
        q_size = int(env.sys.q_size())

        def transition(q_qd, action):
            state = template.replace(pipeline_state=env.pipeline_init(q_qd[:q_size], q_qd[q_size:]))
            after = env.step(state, action)
            next_q_qd = jnp.concatenate([after.pipeline_state.q, after.pipeline_state.qd])
            return next_q_qd, jnp.asarray(after.reward, dtype=q_qd.dtype)

        batched = jax.vmap(transition)
        self.forward = jax.jit(batched)
        self.vjp = jax.jit(lambda inputs, cotangents: jax.vjp(batched, *inputs)[1](cotangents))

    def to_jax(self, x: torch.Tensor) -> Any:
        return self.jnp.asarray(x.detach().to("cpu", torch.float32).numpy())

    @staticmethod
    def to_torch(y: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.array(y)).to(dtype)


@dataclass(frozen=True)
class BraxEnv(DiffEnv):
    """A Brax environment as a `DiffEnv`: `BraxEnv("inverted_pendulum")`. `observe` is the state itself
    ([q, qd]); `cost` is `cost_fn(state)` when given (Brax's rewards belong to transitions: `transition`
    returns them)."""

    name: str = "inverted_pendulum"
    backend: str = "generalized"
    n_frames: int | None = None
    """Physics steps per environment step (None: the environment's own default)."""
    cost_fn: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)
    state_dim: int = field(init=False, default=0)
    action_dim: int = field(init=False, default=0)
    max_action: float = field(init=False, default=1.0)
    dt: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"BraxEnv.backend = {self.backend!r} is not allowed: one of {', '.join(BACKENDS)}")
        if self.n_frames is not None and self.n_frames < 1:
            raise ConfigError(f"BraxEnv.n_frames = {self.n_frames} is not allowed: must be >= 1 or None")
        jax, jnp, envs = import_brax()
        known = sorted(envs._envs)
        if self.name not in known:
            raise ConfigError(f"BraxEnv.name = {self.name!r} is not a Brax environment: one of {', '.join(known)}")
        kwargs = {"backend": self.backend} | ({} if self.n_frames is None else {"n_frames": self.n_frames})
        with warnings.catch_warnings():
            # Brax warns at every model load that its own pipelines are in maintenance mode (MJX is not)
            warnings.filterwarnings("ignore", message="Brax System", category=UserWarning)
            env = envs.get_environment(self.name, **kwargs)
        object.__setattr__(self, "brax_env", env)
        object.__setattr__(self, "bridge", BraxBridge(env, jax, jnp))
        object.__setattr__(self, "state_dim", int(env.sys.q_size()) + int(env.sys.qd_size()))
        object.__setattr__(self, "action_dim", int(env.action_size))
        object.__setattr__(self, "dt", float(env.dt))

    def initial_state(self, batch: int, seed: int = 0) -> torch.Tensor:
        """[batch, n] starts from the environment's own reset distribution."""
        jax, jnp, _ = import_brax()
        states = jax.vmap(self.brax_env.reset)(jax.random.split(jax.random.PRNGKey(seed), batch))
        q_qd = jnp.concatenate([states.pipeline_state.q, states.pipeline_state.qd], 1)
        return self.bridge.to_torch(q_qd, torch.float32)

    def transition(self, state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(next state [B, n], Brax's reward [B]), both differentiable in state and action."""
        if state.ndim != 2 or state.shape[1] != self.state_dim:
            raise ConfigError(f"BraxEnv({self.name!r}) state shape {tuple(state.shape)} is not allowed: "
                              f"must be [batch, {self.state_dim}] ([q, qd])")
        if action.shape != (state.shape[0], self.action_dim):
            raise ConfigError(f"BraxEnv({self.name!r}) action shape {tuple(action.shape)} is not allowed: "
                              f"must be [{state.shape[0]}, {self.action_dim}]")
        return JaxFunction.apply(self.bridge, state, self.clip(action))

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.transition(state, action)[0]

    def cost(self, state: torch.Tensor) -> torch.Tensor:
        if self.cost_fn is None:
            raise ConfigError(f"BraxEnv({self.name!r}) has no per-state cost: pass cost_fn, or use the rewards "
                              "that `transition` returns")
        return self.cost_fn(state)
