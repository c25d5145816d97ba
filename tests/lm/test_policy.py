"""Policies and generation: cache equals recompute, padding invariance, sampling rules, beam search."""

import pytest
import torch

from policylab.core.errors import ConfigError, NonFiniteLossError
from policylab.lm.generate import SamplingConfig, beam_search, generate, left_pad, top_p_filter
from policylab.lm.policy import HFPolicy, TinyGPT, TinyGPTConfig, buffer_attention, position_ids_from_mask
from policylab.lm.tasks import CharTokenizer, prompt_ids

TOK = CharTokenizer()
PROMPTS = ["gcd(12,18)=", "bits(7)=", "h + 6 = 7; h=", "lcm(3,4)="]


def tiny(seed=0, block=48):
    torch.manual_seed(seed)
    return TinyGPT(TinyGPTConfig(vocab_size=TOK.vocab_size, block_size=block, n_layer=2, n_head=2, d_model=32)).eval()


def llama(seed=0):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=TOK.vocab_size, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=48)
    return HFPolicy.from_config(cfg, seed=seed).eval()


POLICIES = {"tiny": tiny, "hf-llama": llama}


def ids():
    return [prompt_ids(TOK, p) for p in PROMPTS]


@pytest.mark.parametrize("kind", POLICIES)
def test_cached_generation_logprobs_match_a_full_forward(kind):
    policy = POLICIES[kind]()
    gen = generate(policy, ids(), SamplingConfig(max_new_tokens=8), TOK.eos_id, TOK.pad_id,
                   torch.Generator().manual_seed(0))
    out = policy.response_outputs(gen.input_ids, gen.attention_mask, gen.prompt_len)
    assert torch.allclose(out.logprobs * gen.response_mask, gen.logprobs, atol=1e-5)
    assert out.entropy.shape == gen.logprobs.shape and (out.entropy >= 0).all()


@pytest.mark.parametrize("kind", POLICIES)
def test_greedy_batch_equals_one_prompt_at_a_time_without_cache(kind):
    policy = POLICIES[kind]()
    gen = generate(policy, ids(), SamplingConfig(max_new_tokens=6, greedy=True), TOK.eos_id, TOK.pad_id)
    for row, prompt in enumerate(ids()):
        seq = torch.tensor([prompt])
        tokens = []
        for _ in range(6):
            mask = torch.ones_like(seq)
            nxt = int(policy.step(seq, mask, position_ids_from_mask(mask)).logits[0, -1].argmax())
            tokens.append(nxt)
            if nxt == TOK.eos_id:
                break
            seq = torch.cat([seq, torch.tensor([[nxt]])], 1)
        n = int(gen.lengths[row])
        assert gen.responses[row, :n].tolist() == tokens


@pytest.mark.parametrize("kind", POLICIES)
def test_left_padding_does_not_change_a_prompts_logits(kind):
    policy = POLICIES[kind]()
    batch_ids, mask = left_pad(ids(), TOK.pad_id)
    batched = policy.step(batch_ids, mask, position_ids_from_mask(mask)).logits[:, -1]
    for row, prompt in enumerate(ids()):
        alone = torch.tensor([prompt])
        single = policy.step(alone, torch.ones_like(alone), position_ids_from_mask(torch.ones_like(alone))).logits
        assert torch.allclose(batched[row], single[0, -1], atol=1e-5)


def test_hidden_states_and_logits_on_request():
    policy = tiny()
    gen = generate(policy, ids(), SamplingConfig(max_new_tokens=5), TOK.eos_id, TOK.pad_id,
                   torch.Generator().manual_seed(1))
    out = policy.response_outputs(gen.input_ids, gen.attention_mask, gen.prompt_len, want_logits=True,
                                  want_hidden=True)
    R = gen.response_mask.shape[1]
    assert out.hidden.shape == (4, R, 32) and out.logits.shape == (4, R, TOK.vocab_size)
    # tied embeddings: logits are the hidden state times the embedding matrix
    assert torch.allclose(out.logits, out.hidden @ policy.wte.weight.t(), atol=1e-5)
    logp = torch.log_softmax(out.logits, -1)
    assert torch.allclose(out.entropy, -(logp.exp() * logp).sum(-1), atol=1e-5)


def test_masks_stop_at_eos_and_finished_rows_emit_pad():
    policy = tiny()
    with torch.no_grad():  # make EOS by far the likeliest token after two steps
        policy.wte.weight[TOK.eos_id] *= 0
    gen = generate(policy, ids(), SamplingConfig(max_new_tokens=10), TOK.eos_id, TOK.pad_id,
                   torch.Generator().manual_seed(0))
    for row in range(len(PROMPTS)):
        tokens, mask = gen.responses[row].tolist(), gen.response_mask[row]
        if TOK.eos_id in tokens:
            end = tokens.index(TOK.eos_id)
            assert mask[:end + 1].all() and not mask[end + 1:].any()
            assert all(t == TOK.pad_id for t in tokens[end + 1:])
            assert not gen.truncated[row]
        else:
            assert gen.truncated[row] and mask.all()
    assert torch.equal(gen.attention_mask[:, gen.prompt_len:].float(), gen.response_mask)


@pytest.mark.parametrize("kind", POLICIES)
def test_generation_without_cache_gives_the_same_tokens(kind):
    policy = POLICIES[kind]()
    a, b = (generate(policy, ids(), SamplingConfig(max_new_tokens=6), TOK.eos_id, TOK.pad_id,
                     torch.Generator().manual_seed(5), use_cache=cached) for cached in (True, False))
    assert torch.equal(a.input_ids, b.input_ids) and torch.allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_lean_llama_decoding_equals_hf_forward_with_its_own_cache():
    fast = llama()
    slow = HFPolicy(fast.model, fast_decode=False)
    assert fast._lean(torch.device("cpu")) and not slow._lean(torch.device("cpu"))
    assert not fast._lean(torch.device("cuda")) and HFPolicy(fast.model, fast_decode=True)._lean(torch.device("cuda"))
    assert fast.model.config.num_key_value_heads < fast.model.config.num_attention_heads  # grouped-query path
    a, b = (generate(p, ids(), SamplingConfig(max_new_tokens=8), TOK.eos_id, TOK.pad_id,
                     torch.Generator().manual_seed(2)) for p in (fast, slow))
    assert torch.equal(a.input_ids, b.input_ids) and torch.allclose(a.logprobs, b.logprobs, atol=1e-5)
    beams = [beam_search(p, ids(), 3, 5, TOK.eos_id, TOK.pad_id) for p in (fast, slow)]
    assert beams[0] == beams[1]


def test_buffer_attention_equals_sdpa_on_the_filled_part():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 1, 8), torch.randn(3, 2, 10, 8), torch.randn(3, 2, 10, 8)
    mask = torch.zeros(3, 1, 1, 10, dtype=torch.bool)
    mask[..., 2:7] = True  # filled positions 2..6; 0-1 are left padding, 7-9 not written yet
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k[:, :, 2:7].repeat_interleave(2, 1), v[:, :, 2:7].repeat_interleave(2, 1))
    assert torch.allclose(buffer_attention(q, k, v, mask, 8 ** -0.5), expected, atol=1e-6)


def test_sampling_is_reproducible_from_the_generator():
    policy = tiny()
    a, b = (generate(policy, ids(), SamplingConfig(max_new_tokens=6), TOK.eos_id, TOK.pad_id,
                     torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a.input_ids, b.input_ids)


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()


def test_low_temperature_sampling_is_greedy():
    policy = tiny()
    greedy = generate(policy, ids(), SamplingConfig(max_new_tokens=6, greedy=True), TOK.eos_id, TOK.pad_id)
    cold = generate(policy, ids(), SamplingConfig(max_new_tokens=6, temperature=1e-4), TOK.eos_id, TOK.pad_id,
                    torch.Generator().manual_seed(0))
    assert torch.equal(greedy.input_ids, cold.input_ids)


def sequence_logprob(policy, prompt, response):
    seq = torch.tensor([prompt + response + [TOK.eos_id]])
    out = policy.response_outputs(seq, torch.ones_like(seq), len(prompt), want_entropy=False)
    return float(out.logprobs.sum())


@pytest.mark.parametrize("kind", POLICIES)
def test_beam_search_finds_at_least_the_greedy_likelihood(kind):
    policy = POLICIES[kind]()
    with torch.no_grad():
        if kind == "tiny":
            policy.wte.weight[TOK.eos_id] *= 0.5
    greedy = generate(policy, ids(), SamplingConfig(max_new_tokens=5, greedy=True), TOK.eos_id, TOK.pad_id)
    one = beam_search(policy, ids(), beams=1, max_new_tokens=5, eos_id=TOK.eos_id, pad_id=TOK.pad_id)
    many = beam_search(policy, ids(), beams=4, max_new_tokens=5, eos_id=TOK.eos_id, pad_id=TOK.pad_id,
                       length_penalty=0.0)
    for row, prompt in enumerate(ids()):
        tokens = greedy.responses[row, :int(greedy.lengths[row])].tolist()
        assert one[row] == [t for t in tokens if t != TOK.eos_id]
        if not greedy.truncated[row] and TOK.eos_id not in many[row]:
            best_len = len(many[row])
            if best_len < 5:  # a finished hypothesis: compare complete-sequence likelihoods
                assert sequence_logprob(policy, prompt, many[row]) >= sequence_logprob(policy, prompt, one[row]) - 1e-5


def test_prompt_longer_than_the_context_is_refused():
    policy = tiny(block=16)
    with pytest.raises(ConfigError, match="exceeds the model's context of 16"):
        generate(policy, [prompt_ids(TOK, "gcd(12,18)=")], SamplingConfig(max_new_tokens=8), TOK.eos_id, TOK.pad_id)
    with pytest.raises(ConfigError, match="at least one prompt"):
        generate(policy, [], SamplingConfig(max_new_tokens=2), TOK.eos_id, TOK.pad_id)


def test_nan_weights_give_a_clear_error():
    policy = tiny()
    with torch.no_grad():
        policy.ln_f.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="non-finite logits during generation"):
        generate(policy, ids(), SamplingConfig(max_new_tokens=3), TOK.eos_id, TOK.pad_id)


def test_model_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="d_model = 30 is not allowed: must be divisible by n_head = 4"):
        TinyGPTConfig(d_model=30, n_head=4)
    with pytest.raises(ConfigError, match="SamplingConfig.top_p"):
        SamplingConfig(top_p=1.5)
