"""Every size a user can set has a bound: a config refuses 1e11 envs, widths, batches, prompts... at once."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
import typing

import pytest

from policylab.cli import load_registries
from policylab.core.config import MAX_LAYERS, SIZE_LIMITS, Config, size_limit
from policylab.core.errors import ConfigError

load_registries()


def _configs() -> list[type[Config]]:
    found, todo = [], list(Config.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted({c for c in found if c.__module__.startswith("policylab.")}, key=lambda c: c.__qualname__)


def _size_fields() -> list[tuple[type[Config], dataclasses.Field]]:
    out = []
    for cls in _configs():
        for f in dataclasses.fields(cls):
            if size_limit(f.name) is not None and "le" not in f.metadata and "lt" not in f.metadata:
                out.append((cls, f))
    return out


def test_the_size_fields_are_found():
    names = {f.name for _, f in _size_fields()}
    for expected in ("num_envs", "batch_size", "hidden", "prompts_per_step", "minibatch_size"):
        assert expected in names
    assert len(_size_fields()) >= 40


@pytest.mark.parametrize("cls, field", _size_fields(), ids=lambda x: getattr(x, "__qualname__", getattr(x, "name", "")))
def test_every_size_field_refuses_a_huge_value(cls, field):
    hint = typing.get_type_hints(cls)[field.name]
    default = field.default if field.default is not dataclasses.MISSING else None
    huge = (10**11,) if isinstance(default, tuple) or "tuple" in str(hint) else 10**11
    try:
        base = cls()
    except (ConfigError, TypeError):
        pytest.skip(f"{cls.__qualname__} has required fields")
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{field.name} = .* is not allowed: must be .*<= "
                                          rf"{size_limit(field.name)}"):
        base.replace(**{field.name: huge})


def test_hidden_layers_are_bounded_in_number_too():
    from policylab.rl.ppo import PPOConfig

    with pytest.raises(ConfigError, match=f"at most {MAX_LAYERS} layers"):
        PPOConfig(hidden=(8,) * (MAX_LAYERS + 1))


def test_limits_are_far_above_the_defaults():
    for cls, field in _size_fields():
        default = field.default
        values = default if isinstance(default, tuple) else (default,)
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                assert v <= size_limit(field.name) // 4, (cls.__qualname__, field.name, v)
    assert dict(SIZE_LIMITS)["num_envs"] >= 1024


@pytest.mark.parametrize("flag", ["--num-envs", "--hidden", "--minibatch-size"])
def test_huge_sizes_on_the_command_line_fail_in_seconds(flag, tmp_path):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "policylab", "train", "ppo", flag, "100000000000", "--steps", "1",
                             "--runs-root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "is not allowed" in result.stderr and time.monotonic() - start < 60


def test_many_wide_layers_fail_on_their_total_size_before_allocating():
    import resource

    from policylab.core.nn import MAX_NETWORK_PARAMETERS, EnsembleMLP, mlp

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError, match=f"the most allowed is {MAX_NETWORK_PARAMETERS:,}"):
        mlp(4, 1, hidden=(16384,) * 64)  # each width within its bound; 17 billion parameters together
    with pytest.raises(ConfigError, match="x 1024 members"):
        EnsembleMLP(1024, 17, 1, hidden=(4096, 4096))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: nothing was allocated
    assert sum(p.numel() for p in mlp(4, 1, hidden=(256, 256)).parameters()) == 5 * 256 + 257 * 256 + 257


def test_a_huge_network_on_the_command_line_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "policylab", "train", "ppo", "--hidden", *["16384"] * 8,
                             "--steps", "1", "--runs-root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
    assert "parameters: the most allowed is" in result.stderr


def test_an_lm_step_bounds_its_responses_not_only_each_factor():
    from policylab.lm.trainer import MAX_ROLLOUTS_PER_STEP, RLVRConfig

    with pytest.raises(ConfigError, match=rf"prompts_per_step x group_size = 4096 x 4096 = 16777216 .* at most "
                                          rf"{MAX_ROLLOUTS_PER_STEP}"):
        RLVRConfig(prompts_per_step=4096, group_size=4096)
    assert RLVRConfig(prompts_per_step=256, group_size=64).group_size == 64


def test_a_replay_buffer_checks_its_memory_before_allocating():
    from policylab.rl.buffer import ReplayBuffer

    with pytest.raises(ConfigError, match=r"needs \d+\.\d GiB: the most allowed is 8 GiB"):
        ReplayBuffer(1 << 26, 376, 17)  # a humanoid's observations at the largest buffer_size
    assert ReplayBuffer(1000, 3, 1).capacity == 1000
