"""The Python face of offline RL, in d3rlpy's shape.

    dataset = policylab.Dataset.from_arrays(observations, actions, rewards, terminals, timeouts)
    model = policylab.IQL(expectile=0.7).fit(dataset, 10_000)   # no env, no reference scores needed
    action = model.predict(obs)                                # one observation or a batch, env units
    model.save("iql.pt"); model = policylab.IQL.load("iql.pt")

`fit` runs `offline.train.fit_offline`, the loop `policylab train iql --dataset ...` and the claim checks
use, so the same config, dataset and seed give bitwise the same model. It evaluates only when given an
`eval_env` (an id, an env or a factory), and reports normalized scores only when the dataset has
reference scores. The saved file holds the config, the weights and the dataset statistics the model
acts with (state normalization, action bounds), never the dataset.

What a saved model cannot carry: an algorithm's data-derived training constants beyond plain numbers
(they are restored when they are ints, floats or bools, e.g. IQL's reward scale); a model loaded and
fitted again keeps its saved state normalization and takes the new dataset's batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from policylab.core.api_classes import ApiClasses, as_callbacks, open_run
from policylab.core.atomic import atomic_write
from policylab.core.checkpoint import FORMAT, load_checkpoint
from policylab.core.config import from_dict, to_dict, validate
from policylab.core.errors import CheckpointError, ConfigError
from policylab.core.plugins import load_plugins
from policylab.core.registry import ALGORITHMS
from policylab.core.seeding import check_seed
from policylab.core.tracking import logging_to
from policylab.data.arrays import from_episodes
from policylab.data.format import Episode, OfflineData
from policylab.envs.encoders import flatten_batch
from policylab.envs.factory import EnvLike
from policylab.envs.spaces import space_from_dict, space_to_dict
from policylab.offline.train import EnvPolicy, check_steps, fit_offline, open_data, prepare_offline

Callback = Callable[[str, int, Any], "bool | None"]


class _Configured:
    """A registry name, its validated config and a seed: what every offline model starts from."""

    algorithm: ClassVar[str] = ""

    def __init__(self, *, seed: int = 0, **config: Any):
        self.spec = self._lookup(self.algorithm)
        self.cfg = validate(from_dict(self.spec.config, config, source=type(self).__name__))
        self.seed = check_seed(seed)
        self.last_summary: dict[str, Any] = {}

    @staticmethod
    def _lookup(name: str) -> Any:
        raise NotImplementedError


class OfflineAlgorithm(_Configured):
    """An offline algorithm: `fit(dataset, steps)`, `predict`, `save`, `load`."""

    def __init__(self, *, seed: int = 0, **config: Any):
        super().__init__(seed=seed, **config)
        self.algo: Any = None
        self.prepared: Any = None
        self._stats: dict[str, Any] | None = None
        self._scalars: dict[str, Any] = {}

    @staticmethod
    def _lookup(name: str) -> Any:
        return _spec(name)

    def fit(self, dataset: OfflineData | str | Path, steps: int, callback: Callback | Sequence[Callback] | None = None,
            *, eval_env: EnvLike | None = None, eval_episodes: int = 10, evals: int = 10,
            run_dir: str | Path | None = None, checkpoints: int = 5, fresh: bool = False,
            max_seconds: float | None = None, progress: bool | None = None,
            log: str | Sequence[str] | None = None) -> OfflineAlgorithm:
        """`steps` gradient steps on `dataset` (an `OfflineData` or a dataset file); returns the model.

        callback(event, update, trainer) as in `OnlineAgent.learn`; `run_dir` keeps metrics and checkpoints
        there and resumes a killed fit exactly; `fresh=True` starts it over; `log` as in `OnlineAgent.learn`."""
        check_steps(steps)
        data = open_data(dataset)
        prepared, algo, source = prepare_offline(self.spec.algorithm, self.cfg, data, self.seed, stats=self._stats)
        if self.algo is not None:  # fitted or loaded before: go on from its weights
            algo.load_state_dict(self.algo.state_dict())
            for key, value in self._scalars.items():
                setattr(algo, key, value)
        run = open_run(run_dir, fresh)
        if run is not None:
            run.save_config(self.cfg, algo=algo.name, dataset=str(data.metadata.get("name", "")), seed=self.seed,
                            steps=steps)
        callbacks = as_callbacks(callback)
        with logging_to(log):  # trackers beside JSONL: tensorboard, wandb, mlflow
            self.last_summary = fit_offline(algo, source, prepared, steps, eval_env=eval_env, seed=self.seed, run=run,
                                            max_seconds=max_seconds, progress=progress, evals=evals,
                                            eval_episodes=eval_episodes, checkpoints=checkpoints if run else 0,
                                            callbacks=callbacks)
        self.algo, self.prepared, self._stats = algo, prepared, prepared.stats()
        self._scalars = _scalars(algo)
        return self

    def _require_model(self, what: str) -> None:
        if self.algo is None:
            raise ConfigError(f"{type(self).__name__}.{what}: the model is not fitted yet; call fit(dataset, steps) "
                              "or load(path) first")

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation, or [n] actions for a batch (env units: the dataset's action range)."""
        self._require_model("predict")
        batch, single = flatten_batch(self.prepared.observation_space, obs)
        actions = EnvPolicy(self.algo, self.prepared).act(batch, deterministic)
        return actions[0] if single else actions

    def save(self, path: str | Path, *, pipeline: str | None = None) -> Path:
        """`pipeline`: the pipeline that trained this model (`OfflinePipeline.save` tags its file so)."""
        self._require_model("save")
        state = {"kind": "offline_model", "pipeline": pipeline, "config": to_dict(self.cfg),
                 "algo": self.algo.state_dict(), "stats": self.prepared.stats(), "scalars": _scalars(self.algo),
                 "observation_dim": int(self.prepared.raw.observations.shape[1]),
                 "action_space": space_to_dict(self.prepared.action_space)}
        payload = {"format": FORMAT, "algo": self.algo.name, "step": -1, "state": state}
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0) -> OfflineAlgorithm:
        """The model saved at `path`: it predicts at once, no dataset or env needed."""
        payload = load_checkpoint(path, cls.algorithm or None)
        state = payload["state"]
        if state.get("kind") != "offline_model":
            raise CheckpointError(f"{path} is not a saved offline model (it holds {state.get('kind', 'a checkpoint')})")
        model_cls = cls if cls.algorithm else model_class(payload["algo"])
        model = model_cls.__new__(model_cls)
        model.spec = _spec(payload["algo"])
        model.cfg = from_dict(model.spec.config, state["config"], source=str(path))
        model.seed, model.last_summary = check_seed(seed), {}
        skeleton = _skeleton(state["observation_dim"], space_from_dict(state["action_space"]))
        model.prepared, model.algo, _ = prepare_offline(model.spec.algorithm, model.cfg, skeleton, model.seed,
                                                        stats=state["stats"])
        model.algo.load_state_dict(state["algo"])
        for key, value in state["scalars"].items():
            setattr(model.algo, key, value)
        model._stats, model._scalars = state["stats"], dict(state["scalars"])
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'fitted' if self.algo is not None else 'not fitted'}, seed={self.seed})"


def _scalars(algo: Any) -> dict[str, Any]:
    """The algorithm's plain-number attributes (data-derived constants such as a reward scale)."""
    return {k: v for k, v in vars(algo).items() if type(v) in (int, float, bool)}


def _skeleton(obs_dim: int, action_space: Any) -> OfflineData:
    """A two-transition dataset of the model's shapes, to build its networks without the data."""
    import gymnasium as gym

    discrete = isinstance(action_space, gym.spaces.Discrete)
    actions = np.zeros(2, np.int64) if discrete else np.zeros((2, action_space.shape[0]), np.float32)
    episode = Episode(np.zeros((3, obs_dim), np.float32), actions, np.zeros(2, np.float32),
                      np.array([False, True]), np.zeros(2, bool))
    meta: dict[str, Any] = {"name": "skeleton"}
    if discrete:
        meta["num_actions"] = int(action_space.n)
    else:
        meta.update(action_low=action_space.low.tolist(), action_high=action_space.high.tolist())
    return from_episodes([episode], meta)


def _spec(name: str):
    if not name:
        raise ConfigError("OfflineAlgorithm is abstract: use IQL, CQL, ... or model_class(name)")
    load_plugins()  # an installed package's algorithm is known by name too
    spec = ALGORITHMS.get(name)
    if spec.pillar != "offline" or spec.algorithm is None or not _takes_prepared(spec):
        raise ConfigError(f"algorithm '{name}' is not an offline algorithm the Python API can drive; these are: "
                          f"{', '.join(offline_algorithms())}")
    return spec


def _takes_prepared(spec: Any) -> bool:
    """Algorithms trained by `train_offline` (the others have pipelines of their own: ssorl, mbrcsl, ...)."""
    return getattr(spec.train, "func", None) is not None and spec.train.func.__name__ == "train_offline"


def offline_algorithms() -> list[str]:
    return [n for n in ALGORITHMS.names() if ALGORITHMS.get(n).pillar == "offline"
            and ALGORITHMS.get(n).algorithm is not None and _takes_prepared(ALGORITHMS.get(n))]


CLASSES = ApiClasses(OfflineAlgorithm, _spec, __name__)


def model_class(name: str) -> type[OfflineAlgorithm]:
    """The API class of a registered offline algorithm, built on first use for one without its own."""
    return CLASSES.get(name)


_public = CLASSES.public
BC = _public("bc", "BC", "Behaviour cloning (and x%BC); config fields: `policylab.offline.BCConfig`.")
TD3BC = _public("td3_bc", "TD3BC", "TD3+BC (Fujimoto & Gu 2021); config fields: `policylab.offline.TD3BCConfig`.")
IQL = _public("iql", "IQL", "Implicit Q-learning (Kostrikov et al. 2022); config: `policylab.offline.IQLConfig`.")
CQL = _public("cql", "CQL", "Conservative Q-learning (Kumar et al. 2020); config: `policylab.offline.CQLConfig`.")
ODICE = _public("odice", "ODICE", "O-DICE (Mao et al. 2024); config fields: `policylab.offline.ODICEConfig`.")
RCSL = _public("rcsl", "RCSL", "Return-conditioned supervised learning; config: `policylab.offline.RCSLConfig`.")
DQNOffline = _public("dqn_offline", "DQNOffline", "Double DQN on a fixed dataset (discrete actions); config: "
                     "`policylab.offline.OfflineDQNConfig`.")
DiscreteCQL = _public("cql_discrete", "DiscreteCQL", "CQL for discrete actions; config: "
                      "`policylab.offline.DiscreteCQLConfig`.")


class OfflinePipeline(_Configured):
    """A method whose training is a pipeline of its own, run through the registered train function that
    `policylab train <name> --dataset ...` and its claim check run (one training path):

    - SSORL: an inverse-dynamics model labels the unlabelled trajectories, then a base algorithm (`base`).
    - MBRCSL: a dynamics model's stitched rollouts, then RCSL on them.
    - RLVLMF: preference labels (`fit(..., oracle=...)`, your labeller; a scripted teacher for the catalog's
      envs), a reward model, then a base algorithm on the relabelled data.
    - CDSA: a base algorithm, then a diffusion guide on its actions; HIB: a history encoder with privileged
      information (the dataset's metadata["privileged"]); OPPO: a preference-conditioned policy; ObsHistory:
      a history encoder under partial observability (a dataset with no env is taken as what the agent saw).

    `fit(dataset, steps, **pipeline_inputs)` passes inputs the pipeline takes on (RL-VLM-F's `oracle`);
    evaluation runs only with `eval_env` (a registered env id: the pipelines evaluate by id). `predict` acts
    with the final policy. `save` / `load` work when the final policy is one of the standard algorithms'
    (SSORL, MBRCSL, RLVLMF): the file is that algorithm's saved model, tagged with the pipeline. The others
    keep their whole state in `fit(run_dir=...)`'s checkpoints; `save` says so in one line.
    """

    def __init__(self, *, seed: int = 0, **config: Any):
        super().__init__(seed=seed, **config)
        self.policy: Any = None

    @staticmethod
    def _lookup(name: str) -> Any:
        return _pipeline_spec(name)

    def fit(self, dataset: OfflineData | str | Path, steps: int, callback: Callback | Sequence[Callback] | None = None,
            *, eval_env: str | None = None, eval_episodes: int = 10, evals: int = 10,
            run_dir: str | Path | None = None, checkpoints: int = 5, fresh: bool = False,
            max_seconds: float | None = None, progress: bool | None = None, log: str | Sequence[str] | None = None,
            **pipeline_inputs: Any) -> OfflinePipeline:
        check_steps(steps)
        data = open_data(dataset)
        if eval_env is not None:
            if not isinstance(eval_env, str):
                raise ConfigError(f"eval_env = {eval_env!r} is not allowed for {type(self).__name__}: its pipeline "
                                  "evaluates by env id, so give a registered id (or None)")
            data = replace(data, metadata={**data.metadata, "env_id": eval_env})
        if not data.metadata.get("env_id"):
            eval_episodes = evals = 0
        run = open_run(run_dir, fresh)
        with logging_to(log):
            self.last_summary = self.spec.train(self.cfg, env_id=data, seed=self.seed, steps=steps, run=run,
                                                max_seconds=max_seconds, progress=progress, evals=evals,
                                                eval_episodes=eval_episodes, checkpoints=checkpoints if run else 0,
                                                callbacks=as_callbacks(callback), **pipeline_inputs)
        self.policy = self.last_summary["policy"]
        return self

    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """The action for one observation, or [n] actions for a batch (env units)."""
        if self.policy is None:
            raise ConfigError(f"{type(self).__name__}.predict: the model is not fitted yet; call fit(dataset, steps) "
                              "or load(path) first")
        batch, single = flatten_batch(self.policy.prepared.observation_space, obs)
        if hasattr(self.policy, "reset"):  # a return-conditioned policy starts each call at its target
            self.policy.reset(len(batch))
        actions = self.policy.act(batch, deterministic)
        return actions[0] if single else actions

    def save(self, path: str | Path) -> Path:
        if self.policy is None:
            raise ConfigError(f"{type(self).__name__}.save: the model is not fitted yet")
        final = _standard_model(self.policy)
        if final is None:
            raise ConfigError(f"{type(self).__name__}.save: its final policy ({self.policy.algo.name}) is not one of "
                              "the standard algorithms', so it has no model file yet; fit(run_dir=...) keeps its "
                              "whole state in that run's checkpoints")
        return final.save(path, pipeline=self.algorithm)

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0) -> OfflinePipeline:
        """A saved pipeline model: the standard algorithm its pipeline trained last, ready to predict."""
        payload = load_checkpoint(path)
        if payload["state"].get("pipeline") != cls.algorithm:
            raise CheckpointError(f"{path} was not saved by {cls.__name__} (it holds "
                                  f"{payload['state'].get('pipeline') or payload['algo']})")
        model = cls.__new__(cls)
        model.spec = _pipeline_spec(cls.algorithm)
        model.cfg, model.seed, model.last_summary = None, check_seed(seed), {}
        inner = model_class(payload["algo"]).load(path, seed=seed)
        model.policy = EnvPolicy(inner.algo, inner.prepared)
        return model

    def __repr__(self) -> str:
        return f"{type(self).__name__}({'fitted' if self.policy is not None else 'not fitted'}, seed={self.seed})"


def _standard_model(policy: Any) -> OfflineAlgorithm | None:
    """The final policy as a standard algorithm's model (data-free: the statistics it acts with only)."""
    name = getattr(policy.algo, "name", "")
    if name not in offline_algorithms():
        return None
    model = model_class(name).__new__(model_class(name))
    model.spec, model.cfg, model.seed = _spec(name), policy.algo.cfg, 0
    model.algo, model.prepared, model.last_summary = policy.algo, policy.prepared, {}
    model._stats, model._scalars = policy.prepared.stats(), _scalars(policy.algo)
    return model


PIPELINES = ("ssorl", "mbrcsl", "rl_vlm_f", "cdsa", "hib", "oppo", "obs_history")


def _pipeline_spec(name: str):
    if name not in PIPELINES:
        raise ConfigError(f"algorithm {name!r} is not an offline pipeline; these are: {', '.join(PIPELINES)}")
    return ALGORITHMS.get(name)


def _pipeline(name: str, cls_name: str, doc: str) -> type[OfflinePipeline]:
    return type(cls_name, (OfflinePipeline,), {"algorithm": name, "__doc__": doc, "__module__": __name__})


SSORL = _pipeline("ssorl", "SSORL", "SS-ORL (Zheng et al. 2023); config: `policylab.offline.SSORLConfig`.")
MBRCSL = _pipeline("mbrcsl", "MBRCSL", "MBRCSL (Zhou et al. 2024); config: `policylab.offline.MBRCSLConfig`.")
RLVLMF = _pipeline("rl_vlm_f", "RLVLMF", "Offline RL-VLM-F (Venkataraman et al. 2024), fit(..., oracle=your "
                   "labeller); config: `policylab.offline.RLVLMFConfig`.")
CDSA = _pipeline("cdsa", "CDSA", "CDSA-style (Liu et al. 2024; reconstructed); config: "
                 "`policylab.offline.CDSAConfig`.")
HIB = _pipeline("hib", "HIB", "HIB, the historical information bottleneck (He et al. 2024); config: "
                "`policylab.offline.HIBConfig`.")
OPPO = _pipeline("oppo", "OPPO", "OPPO (Kang et al. 2023); config: `policylab.offline.OPPOConfig`.")
ObsHistory = _pipeline("obs_history", "ObsHistory", "IQL on observation histories with a bisimulation loss "
                       "(Hong et al. 2024); config: `policylab.offline.ObsHistoryConfig`.")
