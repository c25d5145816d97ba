"""The Python face of online RL, in Stable-Baselines3's shape.

    agent = policylab.PPO("CartPole-v1", seed=0, lr=1e-3)   # an id, a gymnasium.Env, a factory or a SyncVectorEnv
    agent.learn(100_000)                                    # environment steps
    action = agent.predict(obs)                             # one observation or a batch
    agent.save("ppo.pt"); agent = policylab.PPO.load("ppo.pt")   # no env needed to act

Config fields are keyword arguments (each algorithm's config dataclass lists them, with its paper's
defaults). `learn` runs `rl.train.fit_online`, the loop the CLI and the experiments use, so
`PPO(env, seed=s, **fields).learn(n)` gives bitwise the result of `policylab train ppo --steps n --seed s`
(`tests/api/test_online_api.py` checks it). Differences from SB3 a user should know:
- `predict` returns the action only, not SB3's (action, state) pair;
- `learn` evaluates only when given `eval_env`, and checkpoints (and resumes a killed run exactly) only
  when given `run_dir`;
- a second `learn` call continues training; schedules (PPO's annealed lr or clip, MDPO's step size) are
  stretched over the steps of all calls so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from policylab.core.api_classes import ApiClasses, as_callbacks, open_run
from policylab.core.atomic import atomic_write
from policylab.core.checkpoint import FORMAT, load_checkpoint
from policylab.core.config import from_dict, to_dict, validate
from policylab.core.errors import ConfigError
from policylab.core.plugins import load_plugins
from policylab.core.registry import ALGORITHMS
from policylab.core.seeding import check_seed, seed_everything
from policylab.core.tracking import logging_to
from policylab.envs.encoders import flatten_batch
from policylab.envs.factory import EnvLike, describe_env, make_env
from policylab.envs.robust import PARAM_FAMILIES
from policylab.envs.spaces import space_from_dict, space_to_dict
from policylab.envs.vector import VectorEnv
from policylab.rl.policy_io import read_policy, save_policy
from policylab.rl.train import fit_online, is_on_policy, make_collector, online_updates

Callback = Callable[[str, int, Any], "bool | None"]


class OnlineAgent:
    """An online algorithm bound to an environment: `learn`, `predict`, `save`, `load`."""

    algorithm: ClassVar[str] = ""
    """The registry name of the algorithm (ALGORITHMS)."""

    def __init__(self, env: EnvLike | gym.vector.VectorEnv, *, seed: int = 0, **config: Any):
        spec = _spec(self.algorithm)
        if isinstance(env, gym.vector.VectorEnv):
            config.setdefault("num_envs", env.num_envs)
        self.cfg = validate(from_dict(spec.config, config, source=type(self).__name__))
        self.seed = check_seed(seed)
        self.env_name = describe_env(env)
        seed_everything(self.seed)
        self.envs: VectorEnv | None = VectorEnv(env, self.cfg.num_envs, self.seed)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.algo = spec.algorithm(self.observation_space, self.action_space, self.cfg, total_updates=None)
        self.source: Any = None
        self.num_timesteps = 0
        """Environment steps taken by `learn` so far."""
        self.last_summary: dict[str, Any] = {}

    # -- training -----------------------------------------------------------------------------
    def learn(self, total_steps: int, callback: Callback | Sequence[Callback] | None = None, *,
              eval_env: EnvLike | None = None, eval_episodes: int = 10, evals: int = 10,
              run_dir: str | Path | None = None, checkpoints: int = 10, fresh: bool = False,
              max_seconds: float | None = None, progress: bool | None = None,
              log: str | Sequence[str] | None = None) -> OnlineAgent:
        """Train for `total_steps` more environment steps; returns the agent.

        callback(event, update, trainer) is called on "log", "eval", "checkpoint" and "end"
        (`trainer.last_log`, `trainer.last_eval` hold the numbers); returning False stops the run.
        `run_dir` keeps config, metrics.jsonl, summary and checkpoints there; a rerun resumes a killed run
        exactly, and `fresh=True` starts over. `log` names the trackers beside metrics.jsonl ("tensorboard",
        "wandb", "mlflow"; default: POLICYLAB_LOG, else TensorBoard when installed)."""
        if self.envs is None:
            raise ConfigError(f"{type(self).__name__}.learn: this agent was loaded without an environment; "
                              "call set_env(env) first")
        updates = online_updates(self.cfg, total_steps, warm=bool(getattr(self.source, "warm", False)))
        if self.source is None:
            self.source = make_collector(self.cfg, self.envs, total_steps)
        else:
            self._extend(total_steps)
        if hasattr(self.algo, "total_updates"):
            self.algo.total_updates = (self.algo.total_updates or 0) + updates
        run = open_run(run_dir, fresh)
        if run is not None:
            run.save_config(self.cfg, algo=self.algo.name, env_id=self.env_name, seed=self.seed, steps=total_steps)
        callbacks = as_callbacks(callback)
        with logging_to(log):  # trackers beside JSONL: tensorboard, wandb, mlflow
            self.last_summary = fit_online(self.algo, self.source, updates, eval_env=eval_env, seed=self.seed, run=run,
                                           max_seconds=max_seconds, eval_episodes=eval_episodes, evals=evals,
                                           checkpoints=checkpoints if run is not None else 0, progress=progress,
                                           callbacks=callbacks)
        self.num_timesteps = self.source.env_steps
        return self

    def _extend(self, total_steps: int) -> None:
        """A later `learn` call: let the replay buffer grow towards buffer_size for the new steps."""
        if not is_on_policy(self.cfg):
            buffer = self.source.buffer
            buffer.grow(min(self.cfg.buffer_size, buffer.capacity + total_steps + self.cfg.num_envs))

    def set_env(self, env: EnvLike | gym.vector.VectorEnv) -> None:
        """Attach an environment (a loaded agent has none); its spaces must be the agent's."""
        if isinstance(env, gym.vector.VectorEnv) and env.num_envs != self.cfg.num_envs:
            raise ConfigError(f"env: a vector env of {env.num_envs} envs does not fit num_envs = {self.cfg.num_envs}")
        envs = VectorEnv(env, self.cfg.num_envs, self.seed)
        for what, mine, theirs in (("observation", self.observation_space, envs.single_observation_space),
                                   ("action", self.action_space, envs.single_action_space)):
            if mine != theirs:
                envs.close()
                raise ConfigError(f"env: its {what} space {theirs} is not the agent's {mine}")
        self.envs, self.env_name, self.source = envs, describe_env(env), None

    # -- acting -------------------------------------------------------------------------------
    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation, or [n] actions for a batch of n (the env's action units)."""
        batch, single = flatten_batch(self.observation_space, obs)
        actions = np.asarray(self.algo.act(batch, deterministic))
        return actions[0] if single else actions

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One file with config, spaces and weights (optimizers included); written atomically."""
        return save_policy(self.algo, self.env_name, path, self.observation_space, self.action_space)

    @classmethod
    def load(cls, path: str | Path, env: EnvLike | gym.vector.VectorEnv | None = None, *,
             seed: int = 0) -> OnlineAgent:
        """The agent saved at `path`; it acts with no env, and `env` (or a later `set_env`) lets it learn on."""
        algo, obs_space, act_space, state = read_policy(path, cls.algorithm or None)
        agent_cls = cls if cls.algorithm else agent_class(algo.name)
        agent = agent_cls.__new__(agent_cls)
        agent.cfg, agent.algo, agent.seed = algo.cfg, algo, check_seed(seed)
        agent.observation_space, agent.action_space = obs_space, act_space
        agent.env_name, agent.envs, agent.source = state.get("env_id", ""), None, None
        agent.num_timesteps, agent.last_summary = 0, {}
        if env is not None:
            agent.set_env(env)
        return agent

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_name!r}, seed={self.seed})"


def _spec(name: str):
    if not name:
        raise ConfigError("OnlineAgent is abstract: use PPO, SAC, ... or agent_class(name)")
    load_plugins()  # an installed package's algorithm is known by name too
    spec = ALGORITHMS.get(name)
    if spec.pillar != "rl" or spec.algorithm is None:
        raise ConfigError(f"algorithm '{name}' is not an online algorithm with a registered class "
                          f"(pillar {spec.pillar}); online ones: {', '.join(online_algorithms())}")
    return spec


def online_algorithms() -> list[str]:
    return [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).pillar == "rl" and ALGORITHMS.get(n).algorithm]


CLASSES = ApiClasses(OnlineAgent, _spec, __name__)


def agent_class(name: str) -> type[OnlineAgent]:
    """The API class of a registered online algorithm, built on first use for one without its own
    (a plugin's or a user's algorithm: `agent_class("a2c")("CartPole-v1").learn(10_000)`)."""
    return CLASSES.get(name)


_public = CLASSES.public
PPO = _public("ppo", "PPO", "PPO (Schulman et al. 2017) on your env; config fields: `policylab.rl.PPOConfig`.")
MDPO = _public("mdpo", "MDPO", "On-policy MDPO (Tomar et al. 2022); config fields: `policylab.rl.MDPOConfig`.")
MDPOOff = _public("mdpo_off", "MDPOOff", "Off-policy MDPO; config fields: `policylab.rl.MDPOOffConfig`.")
SAC = _public("sac", "SAC", "SAC (Haarnoja et al. 2018); config fields: `policylab.rl.SACConfig`.")
TD3 = _public("td3", "TD3", "TD3 (Fujimoto et al. 2018); config fields: `policylab.rl.TD3Config`.")
DQN = _public("dqn", "DQN", "Double DQN (van Hasselt et al. 2016); config fields: `policylab.rl.DQNConfig`.")


class IWOCS:
    """IWOCS (Zouitine et al. 2024), robust TD3 over a parameterised env family, through `train_iwocs`, the
    path `policylab train iwocs` and its claim check run. `env` is a family's id (`policylab.envs.robust.
    PARAM_FAMILIES`; add yours with one `PARAM_FAMILIES.add(...)`); config fields: `policylab.rl.IWOCSConfig`.

        robust = policylab.IWOCS("Pendulum-v1", iterations=3).learn(15_000)   # TD3 steps per iteration
        action = robust.predict(obs); robust.save("iwocs.pt"); policylab.IWOCS.load("iwocs.pt")

    `learn` trains from scratch each call (each iteration is a fresh static problem); no callbacks."""

    algorithm: ClassVar[str] = "iwocs"

    def __init__(self, env: str, *, seed: int = 0, **config: Any):
        spec = ALGORITHMS.get(self.algorithm)
        self.cfg = validate(from_dict(spec.config, config, source=type(self).__name__))
        if not isinstance(env, str) or env not in PARAM_FAMILIES.names():
            raise ConfigError(f"env = {env!r} is not allowed for IWOCS: it needs a parameterised family's id "
                              f"({', '.join(PARAM_FAMILIES.names())}; add one with PARAM_FAMILIES.add)")
        self.env_name, self.seed, self.spec = env, check_seed(seed), spec
        probe = make_env(env)
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        self.policy: Any = None
        self.last_summary: dict[str, Any] = {}

    def learn(self, total_steps: int, *, run_dir: str | Path | None = None, fresh: bool = False,
              eval_episodes: int = 5, max_seconds: float | None = None, progress: bool | None = None,
              log: str | Sequence[str] | None = None) -> IWOCS:
        """`total_steps` TD3 environment steps per iteration, up to `iterations` iterations."""
        run = open_run(run_dir, fresh)
        with logging_to(log):
            self.last_summary = self.spec.train(self.cfg, env_id=self.env_name, seed=self.seed, steps=total_steps,
                                                run=run, max_seconds=max_seconds, progress=progress,
                                                eval_episodes=eval_episodes)
        self.policy = self.last_summary["policy"]
        return self

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        if self.policy is None:
            raise ConfigError("IWOCS.predict: the policy is not trained yet; call learn(steps) or load(path) first")
        batch, single = flatten_batch(self.observation_space, obs)
        actions = self.policy.act(batch, deterministic)
        return actions[0] if single else actions

    def save(self, path: str | Path) -> Path:
        """One file: the config, the spaces and every iteration's TD3 agent (the robust policy picks among them)."""
        if self.policy is None:
            raise ConfigError("IWOCS.save: the policy is not trained yet")
        state = {"kind": "iwocs_policy", "config": to_dict(self.cfg), "env_id": self.env_name,
                 "agents": [agent.state_dict() for agent in self.policy.agents],
                 "observation_space": space_to_dict(self.observation_space),
                 "action_space": space_to_dict(self.action_space)}
        payload = {"format": FORMAT, "algo": "iwocs", "step": -1, "state": state}
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0) -> IWOCS:
        from policylab.rl.iwocs import RobustTD3Policy  # after the registrations
        from policylab.rl.td3 import TD3 as TD3Algorithm

        state = load_checkpoint(path, "iwocs")["state"]
        model = cls.__new__(cls)
        model.spec, model.env_name, model.seed = ALGORITHMS.get("iwocs"), state["env_id"], check_seed(seed)
        model.cfg = from_dict(model.spec.config, state["config"], source=str(path))
        model.observation_space = space_from_dict(state["observation_space"])
        model.action_space = space_from_dict(state["action_space"])
        model.last_summary = {}
        agents = []
        for agent_state in state["agents"]:
            agent = TD3Algorithm(model.observation_space, model.action_space, model.cfg.td3())
            agent.load_state_dict(agent_state)
            agents.append(agent)
        model.policy = RobustTD3Policy(agents)
        return model

    def __repr__(self) -> str:
        return f"IWOCS({self.env_name!r}, seed={self.seed})"
