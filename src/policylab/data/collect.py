"""Roll a behaviour policy out into episodes of the dataset format (any `act(obs_batch)` callable)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policylab.data.format import Episode
from policylab.envs.factory import make_env


def collect_episodes(env_id: str, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> list[Episode]:
    """`episodes` episodes, env i reset with seed + i, all live envs stepped with one batched `act` call."""
    envs = [make_env(env_id) for _ in range(episodes)]
    first = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    obs = [[np.asarray(o, dtype=np.float32)] for o in first]
    actions, rewards, terms, truncs = ([[] for _ in range(episodes)] for _ in range(4))
    current = np.stack(first).astype(np.float32)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        batch = act(current[live])
        for j, i in enumerate(live):
            nxt, reward, terminated, truncated, _ = envs[i].step(batch[j])
            obs[i].append(np.asarray(nxt, dtype=np.float32))
            actions[i].append(batch[j])
            rewards[i].append(reward)
            terms[i].append(terminated)
            truncs[i].append(truncated and not terminated)
            current[i] = nxt
            running[i] = not (terminated or truncated)
    for env in envs:
        env.close()
    discrete = np.asarray(actions[0][0]).ndim == 0 and np.issubdtype(np.asarray(actions[0][0]).dtype, np.integer)
    return [Episode(np.stack(obs[i]), np.asarray(actions[i], dtype=np.int64 if discrete else np.float32)
                    .reshape(len(actions[i]), *(() if discrete else (-1,))),
                    np.asarray(rewards[i], dtype=np.float32), np.asarray(terms[i]), np.asarray(truncs[i]))
            for i in range(episodes)]
