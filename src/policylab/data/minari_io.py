"""Minari import/export: policylab datasets to and from local Minari datasets (`pip install policylab[minari]`).

Both formats hold the same episodes (T + 1 observations, T actions, terminations and truncations
apart), so the episode structure converts exactly; the numbers do not always: import stores
observations, continuous actions and rewards as float32, so float64 values (the rewards Minari's
collector records as Python floats, MuJoCo's observations) are rounded to float32 (about 7 significant
digits); export writes float32 rewards, and observations / actions in the spaces' dtypes. Export
writes Minari's `arrow` storage (pyarrow is already a policylab dependency) with the env's spaces when
the env can be made, else unbounded Box / Discrete spaces; `env_spec`, `ref_min_score` /
`ref_max_score` and policylab's own metadata (under the `policylab` key) go in Minari's metadata.
A policylab -> Minari -> policylab round trip is exact (policylab data are float32 already). Import
reads Box observations and Box or Discrete actions. Only local datasets: nothing here downloads or
uploads (`minari download <id>` first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from policylab.core.atomic import fsync_dir
from policylab.data.format import DatasetError, Episode, OfflineData, episodes_of, load_dataset, save_dataset

# metadata that save_dataset computes from the episodes; everything else travels under "policylab"
DERIVED_METADATA = ("format", "sha256", "observation_dim", "action_dim", "action_type", "num_episodes",
                    "num_transitions", "returns")


def _minari():
    try:
        import minari
    except ImportError:
        raise DatasetError("Minari import/export needs the minari package: pip install 'policylab[minari]'") from None
    return minari


@contextlib.contextmanager
def _datasets_root(root: str | Path | None) -> Iterator[None]:
    """Point Minari's local store at `root` (it reads MINARI_DATASETS_PATH) for the duration."""
    if root is None:
        yield
        return
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if before is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


# -- export --------------------------------------------------------------------------------------

def _env_spec_and_spaces(meta: dict[str, Any]):
    """The env's spec and spaces when gymnasium knows the env; unbounded spaces shaped by the data otherwise."""
    import gymnasium as gym

    env_id, obs_dim, act_dim = meta["env_id"], meta["observation_dim"], meta["action_dim"]
    discrete = meta["action_type"] == "discrete"
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = (gym.spaces.Discrete(int(meta["num_actions"])) if discrete
                 else gym.spaces.Box(-np.inf, np.inf, (act_dim,), np.float32))
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return None, obs_space, act_space  # an env gymnasium does not know: the data alone says the spaces
    try:
        env = gym.make(spec)
    except Exception:  # registered but not makeable here (a missing simulator): keep the spec, data spaces
        return spec, obs_space, act_space
    env_obs, env_act = env.observation_space, env.action_space
    env.close()
    obs_fits = isinstance(env_obs, gym.spaces.Box) and env_obs.shape == (obs_dim,)
    act_fits = (isinstance(env_act, gym.spaces.Discrete) and env_act.start == 0 and env_act.n >= meta["num_actions"]
                if discrete else isinstance(env_act, gym.spaces.Box) and env_act.shape == (act_dim,))
    if not (obs_fits and act_fits):
        kind = f"{meta['num_actions']} discrete actions" if discrete else f"{act_dim}-dim actions"
        raise DatasetError(f"dataset metadata names env {env_id!r}, whose spaces are observation {env_obs} and action "
                           f"{env_act}, but the data has {obs_dim}-dim observations and {kind}")
    return spec, env_obs, env_act


def _episode_buffer(index: int, episode: Episode, obs_space, act_space):
    from minari.data_collector import EpisodeBuffer

    return EpisodeBuffer(id=index, observations=episode.observations.astype(obs_space.dtype),
                         actions=episode.actions.astype(act_space.dtype),
                         rewards=episode.rewards.astype(np.float32),
                         terminations=episode.terminations.astype(bool),
                         truncations=episode.truncations.astype(bool))


def export_minari(dataset: OfflineData | str | Path, dataset_id: str, *, root: str | Path | None = None):
    """Write a policylab dataset as the local Minari dataset `dataset_id` under `root` (default: Minari's own).

    Returns the `minari.MinariDataset`. Refuses to overwrite an existing dataset. The dataset is built in a
    hidden staging folder of the same store, its files fsynced, then renamed into place: a killed export
    leaves no half-written dataset under `dataset_id`.
    """
    minari = _minari()
    data = dataset if isinstance(dataset, OfflineData) else load_dataset(dataset)
    meta = data.metadata
    spec, obs_space, act_space = _env_spec_and_spaces(meta)
    with _datasets_root(root):
        from minari.storage.datasets_root_dir import get_dataset_path

        final = get_dataset_path(dataset_id)
        if final.exists():
            raise DatasetError(f"Minari dataset {dataset_id!r} already exists at {final}; delete it "
                               "(minari.delete_dataset) or export under a new id or version")
        staging = Path(tempfile.mkdtemp(prefix=".policylab-export-", dir=get_dataset_path()))
    try:
        with _datasets_root(staging):
            _create_minari(minari, data, dataset_id, spec, obs_space, act_space)
        built = staging / dataset_id
        for path in sorted(built.rglob("*")):
            if path.is_file():
                _fsync_file(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return minari.MinariDataset(final / "data")


def _create_minari(minari: Any, data: OfflineData, dataset_id: str, spec: Any, obs_space: Any, act_space: Any) -> None:
    """Build the Minari dataset in the current store (MINARI_DATASETS_PATH) with policylab's metadata."""
    meta = data.metadata
    buffers = [_episode_buffer(i, ep, obs_space, act_space) for i, ep in enumerate(episodes_of(data))]
    with warnings.catch_warnings():
        # Minari asks for author, code link, eval env...: provenance policylab keeps under "policylab"
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.utils")
        try:
            created = minari.create_dataset_from_buffers(
                dataset_id, buffers, observation_space=obs_space, action_space=act_space,
                description=f"Exported from policylab dataset {meta.get('name', meta['env_id'])!r}",
                data_format="arrow")
        except ValueError as err:  # a malformed id
            raise DatasetError(f"Minari dataset {dataset_id!r}: {err}") from None
    # set afterwards: passed to create_dataset_from_buffers they would make the env again (and need it makeable)
    extra = {"ref_min_score": float(meta["ref_min_score"]), "ref_max_score": float(meta["ref_max_score"]),
             "policylab": {k: v for k, v in meta.items() if k not in DERIVED_METADATA}}
    if spec is not None:
        extra["env_spec"] = spec.to_json()
    created.storage.update_metadata(extra)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


# -- import --------------------------------------------------------------------------------------

def _open(minari, dataset_id_or_path: str | Path, root: str | Path | None):
    local = Path(dataset_id_or_path)
    if isinstance(dataset_id_or_path, Path) or local.is_dir():
        data_path = local / "data" if (local / "data").is_dir() else local
        try:
            return minari.MinariDataset(data_path)
        except (ValueError, KeyError) as err:
            raise DatasetError(f"{local} is not a Minari dataset directory ({err})") from None
    with _datasets_root(root):
        try:
            return minari.load_dataset(str(dataset_id_or_path), download=False)
        except FileNotFoundError as err:
            raise DatasetError(f"{err} policylab never downloads: run `minari download {dataset_id_or_path}` "
                               "first, or pass root= where the dataset lives") from None
        except ValueError as err:
            raise DatasetError(f"Minari dataset {dataset_id_or_path!r}: {err}") from None


def _check_spaces(dataset_id: str, obs_space, act_space) -> bool:
    """True for discrete actions; a DatasetError naming the space for anything policylab cannot hold."""
    import gymnasium as gym

    if not isinstance(obs_space, gym.spaces.Box):
        raise DatasetError(f"Minari dataset {dataset_id!r}: observation space {obs_space} is not supported "
                           "(policylab datasets hold Box observations)")
    if isinstance(act_space, gym.spaces.Discrete):
        if act_space.start != 0:
            raise DatasetError(f"Minari dataset {dataset_id!r}: action space {act_space} starts at {act_space.start}"
                               "; policylab's discrete actions count from 0")
        return True
    if not isinstance(act_space, gym.spaces.Box):
        raise DatasetError(f"Minari dataset {dataset_id!r}: action space {act_space} is not supported "
                           "(policylab datasets hold Box or Discrete actions)")
    return False


def _episode(dataset_id: str, ep, discrete: bool) -> Episode:
    T = len(ep.rewards)
    if T == 0:
        raise DatasetError(f"Minari dataset {dataset_id!r}: episode {ep.id} has no steps")
    terminations = np.asarray(ep.terminations, dtype=bool).reshape(T)
    truncations = np.asarray(ep.truncations, dtype=bool).reshape(T)
    if (terminations | truncations)[:-1].any():
        bad = int(np.flatnonzero(terminations | truncations)[0])
        raise DatasetError(f"Minari dataset {dataset_id!r}: episode {ep.id} terminates or truncates at step {bad} "
                           f"of {T}; an episode ends at its last step")
    if not (terminations[-1] or truncations[-1]):
        truncations = truncations.copy()
        truncations[-1] = True  # collection stopped mid-episode: a truncation, bootstrap kept
    observations = np.asarray(ep.observations, dtype=np.float32).reshape(T + 1, -1)
    actions = (np.asarray(ep.actions, dtype=np.int64).reshape(T) if discrete
               else np.asarray(ep.actions, dtype=np.float32).reshape(T, -1))
    return Episode(observations, actions, np.asarray(ep.rewards, dtype=np.float32).reshape(T), terminations,
                   truncations)


def minari_episodes(dataset_id_or_path: str | Path, *, root: str | Path | None = None,
                    metadata: dict[str, Any] | None = None) -> tuple[list[Episode], dict[str, Any]]:
    """(episodes, metadata) of a local Minari dataset (an id under `root`, or its directory); `metadata` fills
    or overrides what Minari's lacks (env_id, ref_min_score / ref_max_score)."""
    minari = _minari()
    dataset = _open(minari, dataset_id_or_path, root)
    dataset_id = dataset.id
    discrete = _check_spaces(dataset_id, dataset.observation_space, dataset.action_space)
    episodes = [_episode(dataset_id, ep, discrete) for ep in dataset.iterate_episodes()]
    if not episodes:
        raise DatasetError(f"Minari dataset {dataset_id!r} holds no episodes")
    raw = dataset.storage.metadata
    meta: dict[str, Any] = dict(raw.get("policylab") or {})
    if dataset.env_spec is not None:
        meta["env_id"] = dataset.env_spec.id
    meta.update({k: raw[k] for k in ("ref_min_score", "ref_max_score") if raw.get(k) is not None})
    if discrete:
        meta["num_actions"] = int(dataset.action_space.n)
    else:
        meta.setdefault("action_low", np.asarray(dataset.action_space.low, dtype=np.float64).tolist())
        meta.setdefault("action_high", np.asarray(dataset.action_space.high, dtype=np.float64).tolist())
    meta.update({"builder": "import_minari", "source": f"minari:{dataset_id}", "name": str(dataset_id),
                 "minari_version": dataset.minari_version, **(metadata or {})})
    return episodes, meta


def import_minari(dataset_id_or_path: str | Path, out_path: str | Path, *, root: str | Path | None = None,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Convert a local Minari dataset (an id under `root`, or its directory) into a policylab dataset at `out_path`.

    `metadata` fills or overrides what Minari's lacks (env_id, ref_min_score / ref_max_score).
    """
    episodes, meta = minari_episodes(dataset_id_or_path, root=root, metadata=metadata)
    missing = [k for k in ("env_id", "ref_min_score", "ref_max_score") if k not in meta]
    if missing:
        raise DatasetError(f"Minari dataset {meta['source'][7:]!r} has no {', '.join(missing)}; pass them in "
                           "metadata=")
    return save_dataset(out_path, episodes, meta)
