"""Generator stage: the flow-matching objective, sigma sampling, EMA, and the stage end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vist3a.nano import train_generator as tg


class _Recorder(torch.nn.Module):
    """Stands in for the transformer: records its inputs and predicts zero velocity."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.calls: list[dict] = []

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        self.calls.append({"x": hidden_states, "t": timestep, "text": encoder_hidden_states})
        return (torch.zeros_like(hidden_states) + 0 * self.weight,)


def test_flow_matching_inputs_and_target():
    z0, noise = torch.randn(2, 16, 2, 2, 2), torch.randn(2, 16, 2, 2, 2)
    sigma = torch.tensor([0.25, 0.8])
    text = torch.randn(2, 3, 4)
    model = _Recorder()
    loss = tg.flow_matching_loss(model, z0, text, sigma, noise)
    call = model.calls[0]
    s = sigma.view(-1, 1, 1, 1, 1)
    assert torch.allclose(call["x"], (1 - s) * z0 + s * noise)
    assert torch.allclose(call["t"], 1000 * sigma)
    assert torch.equal(call["text"], text)
    # zero velocity -> the loss is the mean square of the target eps - z0
    assert float(loss.detach()) == pytest.approx(float((noise - z0).square().mean()), rel=1e-6)


def test_sigma_sampling_ranges():
    gen = torch.Generator().manual_seed(0)
    cfg = tg.GeneratorTrainConfig(sigma_sampling="logit_normal")
    s = tg.sample_sigmas(20000, cfg, gen, torch.device("cpu"))
    assert float(s.min()) > 0 and float(s.max()) < 1
    assert float(s.median()) == pytest.approx(0.5, abs=0.02)  # sigmoid(N(0, 1)) is symmetric about 1/2
    u = tg.sample_sigmas(20000, tg.GeneratorTrainConfig(sigma_sampling="uniform"), gen, torch.device("cpu"))
    assert float(u.mean()) == pytest.approx(0.5, abs=0.02) and float(u.std()) == pytest.approx(12**-0.5, abs=0.01)
    with pytest.raises(ValueError, match="sigma_sampling"):
        tg.GeneratorTrainConfig(sigma_sampling="beta")


def test_ema_update_with_warmup():
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = tg.EMA(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer, step=0)  # decay min(0.9, 1 / 10) = 0.1 -> 0.9 of the new value
    assert float(ema.shadow["weight"]) == pytest.approx(0.9)
    ema.update(layer, step=1000)  # decay 0.9
    assert float(ema.shadow["weight"]) == pytest.approx(0.9 * 0.9 + 0.1)
    ema.copy_to(layer)
    assert float(layer.weight.detach()) == pytest.approx(0.91)


def test_generator_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_vae_config, tiny_transformer_config):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.nano.weights import load_component_from

    vae = AutoencoderKLWan(**tiny_vae_config)
    cfg = tg.GeneratorTrainConfig(**stage_defaults, steps=2, batch_size=2, model=tiny_transformer_config,
                                  text_max_length=16, num_samples=1, ema_decay=0.9)
    run = tg.train_generator(cfg, tmp_path / "generator", "cpu", caches=tiny_caches, vae=vae)
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["heldout_text_gain"] == pytest.approx(
        evaluation["heldout_fm_loss_empty_prompt"] - evaluation["heldout_fm_loss"])
    assert (run / "samples.png").is_file()
    prompts = json.loads((run / "samples.json").read_text())["prompts"]
    assert prompts == tiny_caches[1].compositions[:1]
    model = load_component_from(run, "generator")
    assert isinstance(model, WanTransformer3DModel) and model.config.text_dim == 384


@pytest.mark.slow
def test_generator_loss_decreases_on_a_fixed_batch(tiny_transformer_config):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(**tiny_transformer_config)
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(4, 16, 2, 2, 2, generator=gen)
    text = torch.randn(4, 8, 384, generator=gen)
    noise = torch.randn(4, 16, 2, 2, 2, generator=gen)
    sigma = torch.tensor([0.2, 0.4, 0.6, 0.8])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = tg.flow_matching_loss(model, z0, text, sigma, noise)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_generator_stage_continues_from_a_run_and_streams_clips(tmp_path, stage_defaults, tiny_vae_config,
                                                                 tiny_transformer_config):
    """``init`` starts from a saved run's weights (a mismatched config is a clear error); with ``stream_clips`` the
    world is rendered in the background and the training set grows, never past the clips asked for; ``mirror``
    adds every clip's mirror image."""
    from diffusers import AutoencoderKLWan

    from vist3a.nano.weights import load_component_from

    vae = AutoencoderKLWan(**tiny_vae_config)
    base = dict(stage_defaults, batch_size=2, model=tiny_transformer_config, text_max_length=16, num_samples=0,
                ema_decay=0.0, data_workers=0)
    first = tg.train_generator(tg.GeneratorTrainConfig(**base, steps=1), tmp_path / "a", "cpu", vae=vae)
    cfg = tg.GeneratorTrainConfig(**base, steps=4, lr=1e-12, init=str(first), seed=1, stream_clips=3, stream_every=1,
                                  mirror=True)
    second = tg.train_generator(cfg, tmp_path / "b", "cpu", vae=vae)
    before, after = load_component_from(first, "generator"), load_component_from(second, "generator")
    for key, value in before.state_dict().items():  # lr ~ 0: the weights are the first run's
        assert torch.allclose(value, after.state_dict()[key], atol=1e-3), key
    clips = json.loads((second / "train_config.json").read_text())["train_clips"]
    assert 8 <= clips <= 14 and clips % 2 == 0  # every clip and its mirror image
    wider = dict(tiny_transformer_config, ffn_dim=2 * tiny_transformer_config["ffn_dim"])
    with pytest.raises(ValueError, match="does not match this stage's model config"):
        tg.train_generator(tg.GeneratorTrainConfig(**dict(base, model=wider), steps=1, init=str(first)),
                           tmp_path / "c", "cpu", vae=vae)


def test_encode_cache_mirror_adds_mirrored_clips_with_swapped_captions(tiny_caches, tiny_vae_config):
    from diffusers import AutoencoderKLWan

    from vist3a.data.cache import mirror_batch
    from vist3a.nano.train_vae import encode_mean
    from vist3a.video.latents import normalize_latents

    class Words:  # a stand-in text encoder: one row per caption holding its length, enough to check the pairing
        def encode(self, captions):
            return (torch.tensor([[[float(len(c))]] for c in captions]),)

    vae = AutoencoderKLWan(**tiny_vae_config).eval()
    plain = tg.encode_cache(tiny_caches[0], vae, Words(), batch_size=4)
    both = tg.encode_cache(tiny_caches[0], vae, Words(), batch_size=4, mirror=True)
    n = len(plain)
    assert len(both) == 2 * n and torch.equal(both.latents[:n], plain.latents)
    mirrored = mirror_batch(tiny_caches[0].batch(range(n)))
    assert both.captions[n:] == [c or "" for c in mirrored.captions]
    expected = normalize_latents(encode_mean(vae, mirrored.frames), vae.config)
    assert torch.allclose(both.latents[n:], expected, atol=1e-5)
    # partners: a clip and its mirror point at each other exactly where the captions differ (left/right)
    assert plain.partner is None and both.partner.shape == (2 * n,)
    for i in range(2 * n):
        j = (i + n) % (2 * n)  # batch_size 4 >= n: one chunk, mirrors right after the originals
        differs = both.captions[i] != both.captions[j]
        assert int(both.partner[i]) == (j if differs else -1)


def test_latent_cache_extend_shifts_partners():
    def cache(n, partner):
        return tg.LatentCache(torch.zeros(n, 1, 1, 1, 1), torch.zeros(n, 1, 1), [""] * n, torch.tensor(partner))

    a = cache(2, [1, 0])
    a.extend(cache(3, [-1, 2, 1]))
    assert a.partner.tolist() == [1, 0, -1, 4, 3] and len(a) == 5
    with pytest.raises(ValueError, match="mirror partners"):
        a.extend(tg.LatentCache(torch.zeros(1, 1, 1, 1, 1), torch.zeros(1, 1, 1), [""]))


def test_relation_contrast_is_a_two_way_classifier_cross_entropy():
    """``margin * softplus((l_true - l_swapped) / margin)``: log 2 * margin at a tie, ~0 once the swapped loss is
    far higher, ~the gap once it is far lower; the gradient at a tie is half of d(l_true - l_swapped)."""
    margin = 0.01
    tie = torch.tensor([0.2], requires_grad=True)
    swapped = torch.tensor([0.2], requires_grad=True)
    value = tg.relation_contrast(tie, swapped, margin)
    value.backward()
    assert float(value.detach()) == pytest.approx(margin * math.log(2.0))
    assert float(tie.grad) == pytest.approx(0.5) and float(swapped.grad) == pytest.approx(-0.5)
    assert float(tg.relation_contrast(torch.tensor([0.2]), torch.tensor([0.4]), margin)) < 1e-9
    assert float(tg.relation_contrast(torch.tensor([0.4]), torch.tensor([0.2]), margin)) == pytest.approx(0.2, abs=1e-6)


def test_generator_stage_trains_with_the_relation_contrast(tmp_path, stage_defaults, tiny_vae_config,
                                                         tiny_transformer_config):
    """On left/right clips with their mirrors the contrast term runs and its per-clip loss gap is logged."""
    import csv

    from diffusers import AutoencoderKLWan

    from vist3a.data import SyntheticClips
    from vist3a.data.cache import ClipCache

    size, frames = stage_defaults["size"], stage_defaults["num_frames"]
    caches = tuple(ClipCache.build(SyntheticClips(n, frames, size, seed=2, split=split, direction_focus=1.0),
                                   progress=False) for n, split in ((4, "train"), (1, "heldout")))
    cfg = tg.GeneratorTrainConfig(**dict(stage_defaults, batch_size=4, model=tiny_transformer_config,
                                         text_max_length=16, num_samples=0, ema_decay=0.0, caption_dropout=0.0),
                                  steps=2, mirror=True, relation_contrast=1.0)
    run = tg.train_generator(cfg, tmp_path / "r", "cpu", caches=caches, vae=AutoencoderKLWan(**tiny_vae_config))
    with open(run / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(math.isfinite(float(r["relation_gap"])) for r in rows)
    assert "heldout_relation_gain" in json.loads((run / "eval.json").read_text())


def test_relation_contrast_term_pits_each_caption_against_its_mirror_partners():
    """Stand-in transformer whose velocity is the caption's first feature, zero latents and noise: a row's loss is
    its feature squared, so the term is known exactly. Only rows with a partner and a kept caption count (at most
    half the batch), and the swapped loss uses the partner's caption."""
    features = torch.tensor([0.0, 1.0, 5.0, 7.0])
    train = tg.LatentCache(torch.zeros(4, 4, 2, 8, 8), features.view(4, 1, 1), ["l", "r", "a", "b"],
                           torch.tensor([1, 0, -1, -1]))
    index = torch.tensor([0, 1, 2, 3, 0])
    drop = torch.tensor([False, False, False, False, True])  # the second copy of clip 0 is on the empty prompt
    noise = torch.zeros(5, 4, 2, 8, 8)
    cfg = tg.GeneratorTrainConfig(mirror=True, relation_contrast=1.0, relation_margin=0.5, batch_size=8)
    term, gap = tg.relation_contrast_term(_TextScalar(), train, index, drop, noise, cfg, torch.Generator())
    # rows 0 and 1: (true, swapped) losses (0, 1) and (1, 0)
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(2.0))) / 2  # margin * mean softplus(gap / m)
    assert float(term.detach()) == pytest.approx(expected) and gap == pytest.approx(0.0)
    half = tg.GeneratorTrainConfig(mirror=True, relation_contrast=1.0, relation_margin=0.5, batch_size=2)
    term, gap = tg.relation_contrast_term(_TextScalar(), train, index, drop, noise, half, torch.Generator())
    assert gap == pytest.approx(1.0)  # one row, clip 0: swapped loss 1, true loss 0
    assert tg.relation_contrast_term(_TextScalar(), train, torch.tensor([2, 3]), torch.tensor([False, False]),
                                     noise[:2], cfg, torch.Generator()) is None


def test_relation_contrast_needs_mirrored_clips():
    with pytest.raises(ValueError, match="mirror=true"):
        tg.GeneratorTrainConfig(relation_contrast=1.0)
    with pytest.raises(ValueError, match="`relation_margin`"):
        tg.GeneratorTrainConfig(mirror=True, relation_contrast=1.0, relation_margin=0.0)


class _TextScalar(torch.nn.Module):
    """A stand-in transformer whose velocity is the first text feature everywhere: its loss is known in closed
    form, ``mean((c - (noise - z0))^2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        c = encoder_hidden_states[:, 0, 0].view(-1, 1, 1, 1, 1)
        return (c.expand_as(hidden_states) + 0 * self.anchor,)


class _Marks:
    """A stand-in text encoder: feature 1.0 for captions that say "right" (``sees=True``), else 0.0."""

    def __init__(self, sees: bool) -> None:
        self.sees = sees

    def encode(self, captions):
        return (torch.tensor([[[1.0 if self.sees and "right" in c else 0.0]] for c in captions]),)


@pytest.mark.parametrize("sees", [True, False])
def test_relation_gain_is_the_loss_of_the_swapped_direction(sees):
    captions = ["a red cube to the left of a blue sphere", "a green cone", "a cube on the left side of a torus"]
    encoder = _Marks(sees)
    data = tg.LatentCache(torch.zeros(3, 4, 2, 8, 8), encoder.encode(captions)[0], captions)
    result = tg.relation_gain(_TextScalar(), data, encoder, torch.zeros(1, 1), seed=0)
    assert result["relation_clips"] == 2  # "a green cone" has no direction to swap
    if sees:  # true captions give c = 0, swapped ones c = 1: gain = 1 - 2 mean(noise), noise ~ N(0, 1)
        assert result["relation_gain"] == pytest.approx(1.0, abs=0.1)
    else:  # an encoder blind to the words: exactly no gain
        assert result["relation_gain"] == 0.0


def test_relation_gain_needs_a_direction_word():
    data = tg.LatentCache(torch.zeros(1, 4, 2, 8, 8), torch.zeros(1, 1, 1), ["a green cone"])
    assert tg.relation_gain(_TextScalar(), data, _Marks(True), torch.zeros(1, 1), seed=0) is None
