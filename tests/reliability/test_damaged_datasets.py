"""Eighteen ways a dataset on disk can be damaged; each is refused with one line naming the file, never a
traceback from pyarrow or json."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policylab.core.errors import PolicylabError
from policylab.data import Episode, load_dataset, save_dataset


def _save(folder, name="d", seed=0):
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(3):
        T = 6
        episodes.append(Episode(rng.normal(size=(T + 1, 3)).astype(np.float32), rng.uniform(-1, 1, (T, 2)).astype(
            np.float32), rng.normal(size=T).astype(np.float32), np.zeros(T, bool), np.eye(T, dtype=bool)[-1]))
    return save_dataset(folder / name, episodes, {"env_id": "Toy-v0", "ref_min_score": 0.0, "ref_max_score": 1.0})


def _meta_edit(change):
    def damage(parquet, sidecar, folder):
        meta = json.loads(sidecar.read_text())
        change(meta)
        sidecar.write_text(json.dumps(meta))
    return damage


def _set(key, value):
    return _meta_edit(lambda m: m.__setitem__(key, value))


def _flip(parquet, sidecar, folder):
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    parquet.write_bytes(bytes(data))


def _foreign(parquet, sidecar, folder):
    other = _save(folder, "other", seed=1)
    parquet.write_bytes(other.read_bytes())


DAMAGE = {
    "parquet truncated": lambda p, s, f: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "parquet byte flipped": _flip,
    "parquet empty": lambda p, s, f: p.write_bytes(b""),
    "parquet deleted": lambda p, s, f: p.unlink(),
    "parquet of another dataset": _foreign,
    "sidecar deleted": lambda p, s, f: s.unlink(),
    "sidecar not JSON": lambda p, s, f: s.write_text("{"),
    "sidecar binary": lambda p, s, f: s.write_bytes(b"\xff\xfe\x00garbage"),
    "sidecar null": lambda p, s, f: s.write_text("null"),
    "sidecar 42": lambda p, s, f: s.write_text("42"),
    "sidecar a list": lambda p, s, f: s.write_text("[1, 2]"),
    "sidecar without sha256": _meta_edit(lambda m: m.pop("sha256")),
    "sidecar of another format": _set("format", "d4rl"),
    "references reversed": _set("ref_max_score", -5.0),
    "reference not a number": _set("ref_min_score", "low"),
    "reference infinite": _set("ref_max_score", float("inf")),
    "observation dim wrong": _set("observation_dim", 4),
    "action type wrong": _set("action_type", "discrete"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_dataset_is_one_line(tmp_path, case):
    parquet = _save(tmp_path)
    sidecar = parquet.with_suffix(".json")
    DAMAGE[case](parquet, sidecar, tmp_path)
    with pytest.raises(PolicylabError) as info:
        load_dataset(parquet)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert "d.parquet" in message or "d.json" in message, message


def test_the_undamaged_dataset_loads(tmp_path):
    assert len(load_dataset(_save(tmp_path))) == 18
