"""policylab: recent reinforcement-learning methods on one small shared core.

The public face, in the shape Stable-Baselines3, d3rlpy and TRL users know:

    import policylab
    agent = policylab.PPO("CartPole-v1").learn(50_000)      # online: PPO, MDPO, MDPOOff, SAC, TD3, DQN
    dataset = policylab.Dataset.from_arrays(obs, actions, rewards, terminals, timeouts)
    model = policylab.IQL().fit(dataset, 10_000)             # offline: BC, TD3BC, IQL, CQL, ODICE, RCSL, ...

Names resolve on first use, so `import policylab` stays cheap (the CLI starts fast).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    **{name: "policylab.rl.api" for name in ("PPO", "MDPO", "MDPOOff", "SAC", "TD3", "DQN", "OnlineAgent",
                                             "agent_class", "IWOCS")},
    **{name: "policylab.offline.api" for name in ("BC", "TD3BC", "IQL", "CQL", "ODICE", "RCSL", "DQNOffline",
                                                  "DiscreteCQL", "OfflineAlgorithm", "model_class",
                                                  "SSORL", "MBRCSL", "RLVLMF", "CDSA", "HIB", "OPPO", "ObsHistory",
                                                  "OfflinePipeline")},
    "Dataset": "policylab.data.format",
    "RLVRTrainer": "policylab.lm.api",
}
_RENAMED = {"Dataset": "OfflineData"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'policylab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
