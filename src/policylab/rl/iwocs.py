"""IWOCS: incremental worst-case search (Zouitine, Geist, Rachelson 2024, arXiv 2410.06212).

A robust MDP over a static uncertainty set (one unknown model per episode) solved as a sequence of
ordinary RL problems (the paper's meta-algorithm, section "IWOCS"):
  1. T_0 = the nominal model; the set of found models is {T_0}.
  2. Solve the static problem on T_i with an off-the-shelf learner: here the library's TD3, trained from
     scratch on T_i through `train_online`, giving Q_i (its twin critics) and an actor mu_i.
  3. Robust policy pi_i(s) = argmax_a min_{j<=i} Q_j(s, a).
  4. Search the uncertainty set for the model where pi_i does worst, T_{i+1} = argmin_T V_T^{pi_i}(rho_0),
     by Monte-Carlo returns on candidate parameters (grid or random search, `envs/robust.py`), with
     common random numbers across candidates.
  5. Stop when the new worst case is not lower by more than epsilon than pi_i's worst return on the
     models already found (it holds nothing new), or after I_max iterations; else add T_{i+1}, go to 2.

Sources. The loop, the static/dynamic equivalence and the use of per-model Q-functions follow the paper's
abstract and the alphaXiv overview of 2410.06212 as summarized in our notes (offline_rl.md 5.11). What is
reconstructed here, not taken from the paper: (a) the paper's deep variant uses SAC and CMA-ES and a
predictive-coding indicator of which critic to trust per state (per an abstract-level summary we could
read; details not recovered); we use TD3 (the issue's choice), grid/random search and step 3 as written,
trusting every critic everywhere. (b) Step 3 for deterministic actor-critics: the argmax over actions is
taken over a finite candidate set, the proposals mu_k(s) of every actor found so far, each scored by
min_j min(Q_j^1, Q_j^2)(s, a) (TD3's clipped estimate per model, then the min over models). (c) The
stopping comparison (against the policy's worst return on the found models, same episodes and seeds)
and the epsilon default are ours. (d) The search after the last training iteration is skipped: it could
only report, not change, the policy. Every search episode counts as environment steps in the cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from policylab.core.config import field_names, param
from policylab.core.errors import ConfigError
from policylab.core.run import RunDir
from policylab.envs.evaluate import evaluate_policy
from policylab.envs.robust import (
    PARAM_FAMILIES,
    SEARCH_METHODS,
    ParamBox,
    evaluate_grid,
    param_env_id,
    policy_worst_case,
)
from policylab.rl.td3 import TD3, TD3Config
from policylab.rl.train import train_online


@dataclass(frozen=True)
class IWOCSConfig(TD3Config):
    """TD3's fields (the inner static learner) plus the worst-case loop's."""

    learning_starts: int = param(1000, ge=0)
    """Uniform-random steps before learning, per iteration (lower than TD3's 25k: each problem is short)."""
    iterations: int = param(3, gt=0)
    """I_max: the most static problems solved (models found)."""
    epsilon: float = param(25.0, ge=0)
    """Stop when the search's worst return is not below the found models' worst by more than this."""
    param_names: tuple[str, ...] = ("m", "l")
    """Parameters spanned by the uncertainty set (the env's parameter family names them)."""
    param_low: tuple[float, ...] = (0.5, 0.5)
    """Lower corner of the uncertainty box, one value per name."""
    param_high: tuple[float, ...] = (2.0, 1.5)
    """Upper corner of the uncertainty box, one value per name."""
    search: str = param("grid", choices=SEARCH_METHODS)
    """Worst-case search: 'grid' (search_size points per dimension, corners included) or 'random'."""
    search_size: int = param(5, gt=0)
    """Grid points per dimension, or the number of random candidates."""
    search_episodes: int = param(2, gt=0)
    """Episodes per candidate model (the same reset seeds on every candidate)."""

    def check(self) -> None:
        self.box()

    def box(self) -> ParamBox:
        return ParamBox(self.param_names, self.param_low, self.param_high)

    def td3(self) -> TD3Config:
        return TD3Config(**{name: getattr(self, name) for name in field_names(TD3Config)})


def robust_choice(q: torch.Tensor) -> torch.Tensor:
    """[batch] index of the candidate maximizing the min over models: q is [models, candidates, batch]."""
    return q.min(0).values.argmax(0)


def should_stop(new_worst: float, known_worst: float, epsilon: float) -> bool:
    """The search found no model worse than the found ones by more than epsilon (step 5)."""
    return new_worst >= known_worst - epsilon


class RobustTD3Policy:
    """pi(s) = the proposal mu_k(s) of the found actors maximizing min_j Q_j(s, mu_k(s)) (step 3)."""

    def __init__(self, agents: list[TD3]):
        if not agents:
            raise ConfigError("a robust policy needs at least one trained agent")
        self.agents = agents

    @torch.no_grad()
    def unit_action(self, obs: torch.Tensor) -> torch.Tensor:
        proposals = torch.stack([agent.actor(obs) for agent in self.agents])  # [K, B, A]
        if len(self.agents) == 1:
            return proposals[0]
        q = torch.stack([torch.stack([agent.q_values(agent.critic, obs, a).min(0).values for a in proposals])
                         for agent in self.agents])  # [J models, K candidates, B]
        pick = robust_choice(q)
        return proposals[pick, torch.arange(obs.shape[0])]

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        unit = self.unit_action(torch.as_tensor(obs, dtype=torch.float32))
        return self.agents[0].scaler.to_env(unit.numpy())


def train_iwocs(cfg: IWOCSConfig, *, env_id: str, seed: int = 0, steps: int = 15_000, run: RunDir | None = None,
                max_seconds: float | None = None, progress: bool | None = None, eval_episodes: int = 5,
                search_seed: int = 20_000) -> dict[str, Any]:
    """Run IWOCS; `steps` are TD3's environment steps per iteration. The summary's `policy` is the last
    robust policy; `env_steps` counts training and search steps, `train_env_steps` training only."""
    box = cfg.box().check_for(env_id)
    nominal = PARAM_FAMILIES.get(env_id).nominal
    models = [{name: nominal[name] for name in box.names}]
    agents: list[TD3] = []
    history: list[dict[str, Any]] = []
    train_steps = search_steps = updates = 0
    seconds = None if max_seconds is None else max_seconds / cfg.iterations
    for i in range(cfg.iterations):
        sub_run = RunDir(run.path, f"iter{i}") if run is not None else None
        summary = train_online(TD3, cfg.td3(), env_id=param_env_id(env_id, models[i]), seed=seed + 1000 * i,
                               steps=steps, run=sub_run, eval_episodes=eval_episodes, evals=1, checkpoints=0,
                               progress=progress, max_seconds=seconds)
        agents.append(summary["algorithm"])
        train_steps += summary["env_steps"]
        updates += summary["steps"]
        policy = RobustTD3Policy(agents)
        record = {"iteration": i, "model": dict(models[i]), "train_env_steps": summary["env_steps"]}
        history.append(record)
        if i == cfg.iterations - 1:
            break
        worst, grid = policy_worst_case(policy, env_id, box, cfg.search, cfg.search_size, cfg.search_episodes,
                                        search_seed)
        known = evaluate_grid(policy, env_id, box.names, np.array([[m[n] for n in box.names] for m in models]),
                              cfg.search_episodes, search_seed)
        search_steps += grid.env_steps + known.env_steps
        record.update(worst_model=worst.params, worst_return=worst.value, known_worst_return=known.worst)
        if should_stop(worst.value, known.worst, cfg.epsilon):
            record["stopped"] = True
            break
        models.append(worst.params)
    policy = RobustTD3Policy(agents)
    nominal_eval = evaluate_policy(policy, param_env_id(env_id, models[0]), max(eval_episodes, 1),
                                   seed=10_000 + 100 * seed)
    result = {"algo": "iwocs", "steps": updates, "env_steps": train_steps + search_steps,
              "train_env_steps": train_steps, "search_env_steps": search_steps, "iterations": history,
              "models": models, "eval": {f"eval/{k}": v for k, v in nominal_eval.items()}, "policy": policy}
    if run is not None:
        run.save_config(cfg, algo="iwocs", env_id=env_id, seed=seed, steps=steps)
        run.save_summary({k: v for k, v in result.items() if k != "policy"})
    return result
