"""Frozen dataclass configs: coercion, bounds, overrides from files, save/load round trip."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

import pytest

from policylab.core.config import (
    Config,
    field_names,
    from_dict,
    load_config,
    load_overrides,
    param,
    save_config,
    to_dict,
    type_string,
)
from policylab.core.errors import ConfigError, PolicylabError


@dataclass(frozen=True)
class Toy(Config):
    lr: float = param(3e-4, gt=0)
    n: int = param(4, ge=1)
    mode: str = param("a", choices=("a", "b"))
    hidden: tuple[int, ...] = param((8, 8), gt=0)
    cap: float | None = param(None, gt=0)


@dataclass(frozen=True)
class Bounded(Config):
    frac: float = param(0.5, ge=0, le=1)
    flag: bool = param(False)


def test_defaults_are_valid_and_keep_their_values():
    cfg = Toy()
    assert cfg.lr == 3e-4
    assert cfg.n == 4
    assert cfg.mode == "a"
    assert cfg.hidden == (8, 8)
    assert cfg.cap is None
    assert field_names(Toy) == ["lr", "n", "mode", "hidden", "cap"]


def test_config_is_frozen():
    cfg = Toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_int_is_accepted_for_float_and_coerced():
    cfg = Toy(lr=1)
    assert cfg.lr == 1.0
    assert type(cfg.lr) is float
    capped = Toy(cap=2)
    assert type(capped.cap) is float
    assert capped.cap == 2.0


def test_integral_float_is_accepted_for_int():
    cfg = Toy(n=6.0)
    assert cfg.n == 6
    assert type(cfg.n) is int


@pytest.mark.parametrize(
    ("changes", "field", "shown", "allowed"),
    [
        ({"lr": 0}, "lr", "0.0", "> 0"),
        ({"lr": -1e-3}, "lr", "-0.001", "> 0"),
        ({"n": 0}, "n", "0", ">= 1"),
        ({"cap": -2.5}, "cap", "-2.5", "> 0"),
    ],
)
def test_out_of_range_values_name_class_field_value_and_range(changes, field, shown, allowed):
    with pytest.raises(ConfigError) as info:
        Toy(**changes)
    message = str(info.value)
    assert f"Toy.{field} = {shown}" in message
    assert message.endswith(f"must be {allowed}")


def test_two_sided_bounds_are_both_listed():
    assert Bounded(frac=0).frac == 0.0
    assert Bounded(frac=1).frac == 1.0
    with pytest.raises(ConfigError, match=r"Bounded\.frac = 1\.5 .*must be >= 0 and <= 1$"):
        Bounded(frac=1.5)
    with pytest.raises(ConfigError, match=r"Bounded\.frac = -0\.1 .*must be >= 0 and <= 1$"):
        Bounded(frac=-0.1)


def test_nan_fails_a_bound():
    with pytest.raises(ConfigError, match=r"Toy\.lr = nan"):
        Toy(lr=float("nan"))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"n": "4"}, "Toy.n = '4' is not allowed: must be an integer"),
        ({"n": True}, "Toy.n = True is not allowed: must be an integer"),
        ({"n": 2.5}, "Toy.n = 2.5 is not allowed: must be an integer"),
        ({"lr": "0.1"}, "Toy.lr = '0.1' is not allowed: must be a number"),
        ({"lr": True}, "Toy.lr = True is not allowed: must be a number"),
        ({"mode": 1}, "Toy.mode = 1 is not allowed: must be a string"),
        ({"cap": "big"}, "Toy.cap = 'big' is not allowed: must be a number"),
    ],
)
def test_wrong_types_are_rejected(changes, expected):
    with pytest.raises(ConfigError) as info:
        Toy(**changes)
    assert str(info.value) == expected


def test_bool_field_rejects_non_bool():
    assert Bounded(flag=True).flag is True
    with pytest.raises(ConfigError) as info:
        Bounded(flag=1)
    assert str(info.value) == "Bounded.flag = 1 is not allowed: must be true or false"


def test_choices_are_enforced():
    assert Toy(mode="b").mode == "b"
    with pytest.raises(ConfigError) as info:
        Toy(mode="c")
    assert str(info.value) == "Toy.mode = 'c' is not allowed: must be one of 'a', 'b'"


def test_tuple_elements_are_bounds_checked():
    assert Toy(hidden=(1, 64, 3)).hidden == (1, 64, 3)
    with pytest.raises(ConfigError) as info:
        Toy(hidden=(8, 0))
    assert str(info.value) == "Toy.hidden = (8, 0) is not allowed: must be > 0 and <= 16384"  # a size: bounded
    with pytest.raises(ConfigError) as info:
        Toy(hidden=[-3, 8])
    assert str(info.value) == "Toy.hidden = (-3, 8) is not allowed: must be > 0 and <= 16384"


def test_tuple_elements_are_type_checked():
    with pytest.raises(ConfigError, match=r"Toy\.hidden = 'x' is not allowed: must be an integer"):
        Toy(hidden=[8, "x"])
    with pytest.raises(ConfigError, match=r"Toy\.hidden = True is not allowed: must be an integer"):
        Toy(hidden=(8, True))


def test_lists_are_coerced_to_tuples():
    cfg = Toy(hidden=[16, 32])
    assert cfg.hidden == (16, 32)
    assert type(cfg.hidden) is tuple
    assert hash(cfg) == hash(Toy(hidden=(16, 32)))  # frozen and hashable after coercion


def test_empty_tuple_is_allowed():
    assert Toy(hidden=[]).hidden == ()


@pytest.mark.parametrize("bad", ["abc", 5])
def test_non_sequence_for_tuple_field_is_rejected(bad):
    with pytest.raises(ConfigError, match=r"Toy\.hidden"):
        Toy(hidden=bad)


def test_none_is_allowed_for_optional_and_value_still_bounded():
    assert Toy(cap=None).cap is None
    assert Toy(cap=0.5).cap == 0.5
    with pytest.raises(ConfigError, match=r"Toy\.cap = 0\.0 is not allowed: must be > 0"):
        Toy(cap=0)


def test_none_is_refused_for_a_non_optional_field():
    with pytest.raises(ConfigError, match=r"Toy\.n = None is not allowed: must be an integer"):
        Toy(n=None)


def test_from_dict_builds_and_coerces():
    cfg = from_dict(Toy, {"lr": 1, "hidden": [4], "mode": "b"})
    assert cfg == Toy(lr=1.0, hidden=(4,), mode="b")
    assert type(cfg.lr) is float


def test_from_dict_unknown_key_lists_known_fields_and_suggests_close_match():
    with pytest.raises(ConfigError) as info:
        from_dict(Toy, {"hiden": (4,)}, source="over.yaml")
    message = str(info.value)
    assert "unknown field 'hiden' in over.yaml for Toy" in message
    assert "(did you mean 'hidden'?)" in message
    assert message.endswith("known: lr, n, mode, hidden, cap")


def test_from_dict_unknown_key_without_close_match():
    with pytest.raises(ConfigError) as info:
        from_dict(Toy, {"qqqqqq": 1})
    message = str(info.value)
    assert "unknown field 'qqqqqq' for Toy" in message
    assert "did you mean" not in message
    assert "known: lr, n, mode, hidden, cap" in message


def test_from_dict_refuses_a_non_mapping():
    with pytest.raises(ConfigError, match="src.json: expected a mapping of field: value, got list"):
        from_dict(Toy, [1, 2], source="src.json")  # type: ignore[arg-type]


def test_replace_changes_only_named_fields_and_validates():
    base = Toy(lr=0.1, n=7, hidden=(3,))
    new = base.replace(n=9, mode="b")
    assert new == Toy(lr=0.1, n=9, mode="b", hidden=(3,))
    assert base.n == 7  # the original is untouched
    with pytest.raises(ConfigError, match=r"Toy\.n = 0"):
        base.replace(n=0)
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        base.replace(lrr=0.2)


def test_to_dict_and_type_string():
    assert to_dict(Toy(n=2)) == {"lr": 3e-4, "n": 2, "mode": "a", "hidden": (8, 8), "cap": None}
    assert type_string(Toy) == f"{Toy.__module__}:Toy"


def test_load_overrides_json(tmp_path):
    path = tmp_path / "over.json"
    path.write_text('{"lr": 0.01, "hidden": [4, 4]}')
    data = load_overrides(path)
    assert data == {"lr": 0.01, "hidden": [4, 4]}
    assert from_dict(Toy, data) == Toy(lr=0.01, hidden=(4, 4))


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_load_overrides_yaml(tmp_path, suffix):
    path = tmp_path / f"over{suffix}"
    path.write_text("n: 3\nmode: b\nhidden: [2, 5]\ncap: null\n")
    assert load_overrides(path) == {"n": 3, "mode": "b", "hidden": [2, 5], "cap": None}


def test_load_overrides_empty_file_is_an_empty_mapping(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_overrides(path) == {}


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "lr": 1,\n  "n": \n}\n')
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert message.endswith("at line 4")


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lr: 1\n  n: 2\n")
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid YAML" in message
    assert re.search(r"at line 2$", message)


def test_malformed_yaml_unclosed_bracket_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("lr: 1\nhidden: [1, 2\nn: 3\n")
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    assert str(path) in str(info.value)
    assert str(info.value).endswith("at line 3")


@pytest.mark.parametrize(
    ("name", "text", "kind"),
    [
        ("top.json", "[1, 2]", "list"),
        ("top.yaml", "- a\n- b\n", "list"),
        ("s.yaml", "hello\n", "str"),
    ],
)
def test_non_mapping_top_level_is_an_error(tmp_path, name, text, kind):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    assert str(info.value) == f"config file {path} must hold a mapping of field: value, got {kind}"


def test_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_overrides(path)
    assert str(info.value) == f"cannot read config file {path}: No such file or directory"


def test_undecodable_file_is_a_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00lr: 1\n")
    with pytest.raises(PolicylabError):
        load_overrides(path)


def test_save_and_load_config_round_trip(tmp_path):
    cfg = Toy(lr=0.02, n=3, mode="b", hidden=(5, 6, 7), cap=1.5)
    path = tmp_path / "sub" / "config.json"
    save_config(path, cfg, note="extra field")
    stored = json.loads(path.read_text())
    assert stored["type"] == f"{Toy.__module__}:Toy"
    assert stored["values"]["hidden"] == [5, 6, 7]
    assert stored["note"] == "extra field"
    loaded = load_config(path)
    assert type(loaded) is Toy
    assert loaded == cfg
    assert loaded.hidden == (5, 6, 7)


def test_save_and_load_config_round_trip_with_none(tmp_path):
    path = tmp_path / "config.json"
    save_config(path, Toy())
    assert load_config(path) == Toy()
    assert json.loads(path.read_text())["values"]["cap"] is None
