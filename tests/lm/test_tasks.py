"""Tasks, splits, scorers and tokenizers."""

import random

import pytest

from policylab.core.errors import ConfigError, UnknownNameError
from policylab.lm.tasks import (
    DEFAULT_MIX,
    CharTokenizer,
    HFTokenizer,
    Problem,
    TaskMix,
    TokenizerError,
    distinct_problems,
    get_task,
    split_of,
)


@pytest.mark.parametrize("name", DEFAULT_MIX)
def test_answers_score_one_and_test_questions_never_reach_training(name):
    task = get_task(name)
    test = distinct_problems(task, 50, "test", seed=0)
    train = task.sample(3000, "train", random.Random(1))
    assert len(test) == 50 and {p.prompt for p in test}.isdisjoint(p.prompt for p in train)
    assert all(split_of(p.task, p.prompt) == "test" for p in test)
    for p in train[:50]:
        assert task.score(p, p.answer).exact == 1.0 and task.score(p, " " + p.answer + " ").dense == 1.0


def test_split_is_a_property_of_the_question_not_of_the_seed():
    a = distinct_problems(get_task("lcm"), 30, "test", seed=0)
    b = distinct_problems(get_task("lcm"), 30, "test", seed=99)
    assert {split_of("lcm", p.prompt) for p in a + b} == {"test"}
    assert distinct_problems(get_task("lcm"), 30, "test", seed=0) == a  # same seed -> same set


def test_scores_of_wrong_empty_and_garbage_answers():
    gcd = get_task("gcd")
    p = Problem("gcd", "gcd(12,18)=", "6")
    assert gcd.score(p, "6").exact == 1.0
    near, far = gcd.score(p, "7"), gcd.score(p, "60")
    assert near.exact == 0.0 and 0.9 < near.dense < 1.0 and far.dense == 0.0
    for bad in ("", "   ", "six", "6x", "9" * 40):
        assert gcd.score(p, bad) == type(near)(0.0, 0.0)
    sort = get_task("number_sorting")
    q = Problem("number_sorting", "sort 59 37 62=", "37 59 62")
    assert sort.score(q, "37 59 62").exact == 1.0
    assert sort.score(q, "37 62 59").dense == pytest.approx(1 / 3)
    assert sort.score(q, "").dense == 0.0


def test_prompts_match_the_compact_formats():
    rng = random.Random(0)
    assert get_task("gcd").sample(1, "train", rng)[0].prompt.startswith("gcd(")
    eq = get_task("simple_equations").sample(1, "train", rng)[0]
    var = eq.meta["variable"]
    lhs = eq.meta["equation"].split("=")[0].replace(var, eq.answer)
    assert eq.prompt.endswith(f"; {var}=") and eq.meta["rhs"] == eval(lhs)


def test_mix_and_unknown_task_names():
    mix = get_task("mix")
    assert isinstance(mix, TaskMix) and sorted(mix.tasks) == sorted(DEFAULT_MIX)
    drawn = {p.task for p in mix.sample(200, "train", random.Random(0))}
    assert drawn == set(DEFAULT_MIX)
    assert sorted(get_task("gcd,lcm").tasks) == ["gcd", "lcm"]
    with pytest.raises(UnknownNameError, match="unknown task 'gdc'; did you mean 'gcd'"):
        get_task("gdc")
    with pytest.raises(ConfigError, match="split = 'dev'"):
        get_task("gcd").sample(1, "dev", random.Random(0))


def test_reasoning_gym_adapter_scores_exact_match_only():
    pytest.importorskip("reasoning_gym")
    task = get_task("rg:gcd")
    problems = task.sample(200, "train", random.Random(0))
    p = next(q for q in problems if len(q.answer) == 1)
    assert p.prompt.startswith("gcd(") and task.score(p, p.answer).exact == 1.0
    partial = task.score(p, "1" + p.answer)  # rg's default scorer: substring credit len(oracle)/len(answer)
    assert partial.exact == 0.0 and partial.dense == pytest.approx(0.5)
    assert task.score(p, "") == type(partial)(0.0, 0.0)
    with pytest.raises(ConfigError, match="'no_such_dataset'.*not registered"):
        get_task("rg:no_such_dataset")


def test_char_tokenizer_round_trip_and_refusal():
    tok = CharTokenizer()
    text = "h + 6 = 7; h=[1,2] 'x'"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("12") + [tok.eos_id] + tok.encode("99")) == "12"
    with pytest.raises(TokenizerError, match=r"character 'é' at position 3"):
        tok.encode("caféine")
    with pytest.raises(TokenizerError, match="character '\\\\n'"):
        tok.encode("a\nb")


def test_hf_tokenizer_adapter():
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    chars = list("0123456789gcd(),=")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    backend.decoder = tokenizers.decoders.Fuse()
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                              unk_token="<unk>")
    tok = HFTokenizer(hf)
    ids = tok.encode("gcd(12,18)=")
    assert len(ids) == 11 and tok.decode(ids + [tok.eos_id] + ids) == "gcd(12,18)="
    with pytest.raises(TokenizerError, match="unknown token"):
        tok.encode("lcm(1,2)=")
