"""Roll a behaviour policy out into episodes of the dataset format (any `act(obs_batch)` callable)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policylab.data.format import Episode
from policylab.envs.factory import make_env


def collect_episodes(env_id: str, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int) -> list[Episode]:
    """`episodes` episodes, env i reset with seed + i, all live envs stepped with one batched `act` call."""
    envs = [make_env(env_id) for _ in range(episodes)]
    current = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    traces = [_new_trace(current[i]) for i in range(episodes)]
    running = np.ones(episodes, dtype=bool)
    while running.any():
        live = np.flatnonzero(running)
        batch = act(current[live])
        for j, i in enumerate(live):
            current[i], ended = _step(envs[i], batch[j], traces[i])
            running[i] = not ended
    for env in envs:
        env.close()
    return [_episode(t) for t in traces]


def _new_trace(obs: np.ndarray) -> dict[str, list]:
    # a copy: callers pass a row of the array they keep overwriting with the next observations
    return {"obs": [np.array(obs, dtype=np.float32)], "actions": [], "rewards": [], "terms": [], "truncs": []}


def _step(env, action, trace: dict[str, list]) -> tuple[np.ndarray, bool]:
    """Step `env`, append the transition to `trace`; (next observation, whether the episode ended)."""
    nxt, reward, terminated, truncated, _ = env.step(action)
    trace["obs"].append(np.array(nxt, dtype=np.float32))
    trace["actions"].append(action)
    trace["rewards"].append(reward)
    trace["terms"].append(terminated)
    trace["truncs"].append(truncated and not terminated)
    return nxt, bool(terminated or truncated)


def cut_episode(episode: Episode, length: int) -> Episode:
    """The first `length` transitions of `episode`, ending in a truncation (the cut keeps the bootstrap)."""
    if length >= episode.length:
        return episode
    truncations = episode.truncations[:length].copy()
    truncations[-1] = True
    return Episode(episode.observations[: length + 1], episode.actions[:length], episode.rewards[:length],
                   episode.terminations[:length], truncations)


def take_transitions(episodes: list[Episode], transitions: int) -> list[Episode]:
    """The leading episodes holding exactly `transitions` transitions, the last one cut if needed."""
    taken: list[Episode] = []
    total = 0
    for episode in episodes:
        if total >= transitions:
            break
        taken.append(cut_episode(episode, transitions - total))
        total += taken[-1].length
    if total < transitions:
        raise ValueError(f"asked for {transitions} transitions, the episodes hold only {total}")
    return taken


def collect_transitions(env_id: str, act: Callable[[np.ndarray], np.ndarray], transitions: int, seed: int,
                        num_envs: int = 16) -> list[Episode]:
    """Episodes from `num_envs` envs stepped as one batch, each env starting a new episode (seeds
    seed, seed + 1, ... in order of starting) until `transitions` transitions are complete; the
    episodes are kept in order of completion and the last is cut short as a truncation."""
    envs = [make_env(env_id) for _ in range(num_envs)]
    started = 0

    def reset(i: int) -> np.ndarray:
        nonlocal started
        obs, _ = envs[i].reset(seed=seed + started)
        started += 1
        return np.asarray(obs, dtype=np.float32)

    current = np.stack([reset(i) for i in range(num_envs)])
    traces = [_new_trace(current[i]) for i in range(num_envs)]
    done: list[Episode] = []
    total = 0
    while total < transitions:
        batch = act(current)
        for i, env in enumerate(envs):
            current[i], ended = _step(env, batch[i], traces[i])
            if ended:
                done.append(_episode(traces[i]))
                total += done[-1].length
                current[i] = reset(i)
                traces[i] = _new_trace(current[i])
    for env in envs:
        env.close()
    return take_transitions(done, transitions)


def _episode(t: dict) -> Episode:
    first = np.asarray(t["actions"][0])
    discrete = first.ndim == 0 and np.issubdtype(first.dtype, np.integer)
    actions = np.asarray(t["actions"], dtype=np.int64 if discrete else np.float32)
    return Episode(np.stack(t["obs"]), actions.reshape(len(actions), *(() if discrete else (-1,))),
                   np.asarray(t["rewards"], dtype=np.float32), np.asarray(t["terms"]), np.asarray(t["truncs"]))
