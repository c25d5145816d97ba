"""Registry: names map to entries, duplicates are refused, unknown names explain themselves."""

from __future__ import annotations

import pytest

from policylab.core.errors import PolicylabError, UnknownNameError
from policylab.core.registry import Registry


def _filled() -> Registry:
    reg: Registry = Registry("algorithm")
    reg.add("sac", "SAC entry")
    reg.add("ppo", "PPO entry")
    reg.add("td3", "TD3 entry")
    return reg


def test_add_and_get_return_the_entry():
    reg = _filled()
    assert reg.get("sac") == "SAC entry"
    assert reg.get("ppo") == "PPO entry"
    assert reg.get("td3") == "TD3 entry"


def test_register_decorator_adds_and_returns_the_object_unchanged():
    reg: Registry = Registry("loss")

    @reg.register("huber")
    def huber(x):
        return x * 2

    assert reg.get("huber") is huber
    assert huber(3) == 6  # the decorator hands back the function itself


def test_names_sorted_len_iter_and_contains():
    reg = _filled()
    assert reg.names() == ["ppo", "sac", "td3"]
    assert list(reg) == ["ppo", "sac", "td3"]
    assert len(reg) == 3
    assert "sac" in reg
    assert "dqn" not in reg
    assert 5 not in reg


def test_empty_registry():
    reg: Registry = Registry("dataset")
    assert reg.names() == []
    assert len(reg) == 0
    with pytest.raises(UnknownNameError) as info:
        reg.get("d4rl")
    message = str(info.value)
    assert "dataset" in message
    assert "'d4rl'" in message
    assert "(none registered)" in message
    assert "did you mean" not in message


def test_duplicate_name_is_refused_and_keeps_the_first_entry():
    reg = _filled()
    with pytest.raises(ValueError, match="algorithm 'sac' is already registered"):
        reg.add("sac", "another")
    assert reg.get("sac") == "SAC entry"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("ppo")(object())
    assert reg.get("ppo") == "PPO entry"
    assert len(reg) == 3


@pytest.mark.parametrize("bad", ["", None, 3])
def test_name_must_be_a_non_empty_string(bad):
    reg: Registry = Registry("environment")
    with pytest.raises(ValueError, match="environment name must be a non-empty string"):
        reg.add(bad, "entry")
    assert len(reg) == 0


def test_unknown_name_names_kind_bad_name_known_names_and_closest_match():
    reg = _filled()
    with pytest.raises(UnknownNameError) as info:
        reg.get("sacc")
    message = str(info.value)
    assert message.startswith("unknown algorithm 'sacc'")
    assert "did you mean 'sac'?" in message
    assert "known: ppo, sac, td3" in message


def test_unknown_name_far_from_everything_has_no_suggestion():
    reg = _filled()
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzzzz")
    message = str(info.value)
    assert "did you mean" not in message
    assert "'zzzzzzzz'" in message
    assert "known: ppo, sac, td3" in message


def test_unknown_name_error_is_a_keyerror_and_a_policylab_error_with_an_unquoted_message():
    reg = _filled()
    with pytest.raises(KeyError) as info:
        reg.get("tdd3")
    assert isinstance(info.value, PolicylabError)
    # KeyError.__str__ would wrap the message in quotes; UnknownNameError must not
    assert str(info.value).startswith("unknown algorithm")
    assert "did you mean 'td3'?" in str(info.value)


def test_registries_are_independent():
    a: Registry = Registry("algorithm")
    b: Registry = Registry("experiment")
    a.add("x", 1)
    b.add("x", 2)
    assert a.get("x") == 1
    assert b.get("x") == 2
