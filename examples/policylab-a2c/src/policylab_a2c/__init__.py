from dataclasses import dataclass
from functools import partial

from policylab.core.algorithm import AlgorithmSpec
from policylab.core.config import param
from policylab.core.registry import ALGORITHMS
from policylab.rl.ppo import PPO, PPOConfig
from policylab.rl.train import train_online


@dataclass(frozen=True)
class A2CConfig(PPOConfig):
    rollout_steps: int = param(5, gt=0)
    """Steps per env per update (A2C's n-step horizon)."""
    epochs: int = param(1, gt=0)
    minibatch_size: int = param(40, gt=0)
    """The whole rollout (8 envs x 5 steps) in one gradient step."""
    lr: float = param(7e-4, gt=0)


class A2C(PPO):
    name = "a2c"

    def _minibatch_step(self, obs, actions, old_logprobs, advantages, returns, clip):
        dist = self.dist(obs)
        policy_loss = -(self.log_prob(dist, actions) * advantages).mean()  # no ratio, no clip
        value_loss = (self.value(obs) - returns).pow(2).mean()
        loss = policy_loss + self.cfg.vf_coef * value_loss - self.cfg.ent_coef * self.entropy(dist).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss/policy": policy_loss.detach(), "loss/value": value_loss.detach()}


ALGORITHMS.add("a2c", AlgorithmSpec("a2c", A2CConfig, partial(train_online, A2C),
                                    "advantage actor-critic", "rl", "CartPole-v1", A2C))
