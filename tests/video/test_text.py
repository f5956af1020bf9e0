"""Text encoders: the shipped MiniLM offline, Wan-style padding / zeroing, the LRU cache, UMT5 dispatch."""

from __future__ import annotations

import pytest
import torch

from vist3a.video.text import HFTextEncoder, UMT5TextEncoder, clean_prompt, load_minilm_text_encoder, load_text_encoder


@pytest.fixture(scope="module")
def minilm():
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        yield load_minilm_text_encoder(max_length=24, cache_size=2)
    finally:
        mp.undo()


class _CallCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.batches: list[int] = []
        module.register_forward_hook(
            lambda _m, args, kwargs, _out: self.batches.append(kwargs["input_ids"].shape[0]), with_kwargs=True
        )


def test_minilm_shapes_mask_and_zero_padding(minilm):
    prompts = ["a red chair", "a small wooden cabin beside a lake at dawn"]
    embeds, mask = minilm.encode(prompts)
    assert embeds.shape == (2, 24, 384) and mask.shape == (2, 24)
    assert mask.dtype == torch.int64
    reference = minilm.tokenizer(prompts, padding="max_length", max_length=24, return_tensors="pt")["attention_mask"]
    assert torch.equal(mask, reference)
    assert int(mask[0].sum()) < int(mask[1].sum())
    assert torch.all(embeds[mask == 0] == 0)
    assert torch.all(embeds[mask == 1].abs().sum(-1) > 0)


def test_padded_states_equal_unpadded_run(minilm):
    """Independent reference: BERT with its attention mask gives the same token states with or without padding."""
    prompt = "a lighthouse on a cliff"
    embeds, mask = minilm.encode([prompt])
    tokens = minilm.tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        direct = minilm.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
    n = int(mask.sum())
    assert n == direct.shape[1]
    torch.testing.assert_close(embeds[0, :n], direct[0], atol=1e-5, rtol=1e-5)


def test_cache_serves_repeats_and_evicts_lru(minilm):
    minilm.clear_cache()
    counter = _CallCounter(minilm.model)
    first, _ = minilm.encode(["", "a cat", ""])
    assert counter.batches == [2]  # duplicates encoded once
    again, _ = minilm.encode(["a cat", ""])
    assert counter.batches == [2]  # all cached
    torch.testing.assert_close(again[0], first[1])
    torch.testing.assert_close(again[1], first[0])
    minilm.encode(["a dog"])  # cache_size=2: evicts the least recently used ("a cat" was used before "")
    assert counter.batches == [2, 1]
    minilm.encode(["a cat"])
    assert counter.batches == [2, 1, 1]
    minilm.encode([" a   cat "])  # cleaned to the same key
    assert counter.batches == [2, 1, 1]


def test_cache_disabled_and_offload(minilm):
    encoder = HFTextEncoder(minilm.model, minilm.tokenizer, max_length=8, cache_size=0, offload_after_encode=True)
    counter = _CallCounter(encoder.model)
    a, _ = encoder.encode(["a cat"])
    b, _ = encoder.encode(["a cat"])
    assert counter.batches == [1, 1]
    torch.testing.assert_close(a, b)
    assert a.shape == (1, 8, 384)
    assert next(encoder.model.parameters()).device.type == "cpu"


def test_input_validation(minilm):
    with pytest.raises(ValueError, match="list of str"):
        minilm.encode("a cat")
    with pytest.raises(ValueError, match="at least one"):
        minilm.encode([])
    with pytest.raises(ValueError, match="max_length"):
        HFTextEncoder(minilm.model, minilm.tokenizer, max_length=0)


def test_clean_prompt():
    assert clean_prompt("  a&amp;b \n\t c ") == "a&b c"


def test_tiny_umt5_round_trip_dispatches_by_config(tiny_gen, tmp_path):
    encoder = tiny_gen.text_encoder
    assert isinstance(encoder, UMT5TextEncoder)
    encoder.save_pretrained(tmp_path, subfolder="text_encoder", tokenizer_subfolder="tokenizer")
    loaded = load_text_encoder(tmp_path, max_length=encoder.max_length)
    assert isinstance(loaded, UMT5TextEncoder) and type(loaded.model).__name__ == "UMT5EncoderModel"
    saved, reloaded = encoder.model.state_dict(), loaded.model.state_dict()
    assert saved.keys() == reloaded.keys() and all(torch.equal(saved[k], reloaded[k]) for k in saved)
    a, ma = encoder.encode(["a red chair"])
    b, mb = loaded.encode(["a red chair"])
    assert torch.equal(ma, mb)
    # the same weights; two model instances may pick other CPU kernels (seen: 5e-7 apart inside the full suite)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert UMT5TextEncoder(loaded.model, loaded.tokenizer).max_length == 512  # Wan's length, whatever the tokenizer


@pytest.mark.parametrize("which", ["minilm", "umt5"])
def test_trimmed_encoding_equals_full_max_length_padding(which, minilm, tiny_gen):
    """Encoding only up to the longest prompt equals running the model on all ``max_length`` padded tokens."""
    encoder = minilm if which == "minilm" else tiny_gen.text_encoder
    prompts = ["a red chair", "a small wooden cabin beside a lake"]
    embeds, mask = encoder.encode(prompts)
    full = encoder.tokenizer(prompts, padding="max_length", max_length=encoder.max_length, truncation=True,
                             return_tensors="pt")
    with torch.no_grad():
        ref = encoder.model(input_ids=full["input_ids"], attention_mask=full["attention_mask"]).last_hidden_state
    ref = ref * full["attention_mask"].unsqueeze(-1)
    assert torch.equal(mask, full["attention_mask"].long())
    torch.testing.assert_close(embeds, ref, atol=1e-5, rtol=1e-5)


def test_minilm_dir_can_be_pointed_at_an_export(monkeypatch, tmp_path):
    from vist3a.errors import UserInputError
    from vist3a.video.text import minilm_model_dir

    monkeypatch.setenv("VIST3A_MINILM_DIR", str(tmp_path))
    with pytest.raises(UserInputError, match="export-text-encoder"):
        minilm_model_dir()
    (tmp_path / "config.json").write_text("{}")
    assert minilm_model_dir() == tmp_path
