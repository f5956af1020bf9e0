"""Image-text scorers: differentiable "how well does this image show this prompt" models for the rewards.

Any object with ``score(images, prompts) -> [N]`` is a scorer (:class:`ImageTextScorer`); the reward terms only
call that. Images are ``[N, 3, H, W]`` RGB in ``[0, 1]`` (any size: each scorer resizes and normalises as its
model expects), ``prompts`` has ``N`` strings, and the result must stay differentiable w.r.t. the images.

Real scorers (optional dependencies, loaded on demand, never downloaded by the tests):

- ``"dfn-clip"``: DFN5B-CLIP ViT-H/14 at 378 px (``open_clip``), cosine similarity in ``[-1, 1]``;
- ``"hpsv2.1"``: HPSv2.1 (``open_clip`` ViT-H/14 with the HPSv2.1 fine-tuned weights), cosine similarity;
- ``"pickscore"``: PickScore v1 (``transformers`` CLIP), ``logit_scale * cosine`` (about 0..100, typically ~20).

:class:`NanoClipScorer` wraps a nano image-text model on MiniLM (cosine); the shipped ones are loaded by the nano
component provider (``vist3a.nano.provider``: ``"nano-clip"``, the reward model, and ``"nano-clip-eval"``).

``"tiny-random"``: :class:`TinyImageTextScorer`, a seeded random model of a few thousand weights (tests, CI).
:func:`load_scorer` maps a name to a scorer and raises ``ValueError`` on unknown names.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

#: Normalisation of OpenAI-CLIP-style image encoders (DFN5B, HPSv2, PickScore all use it).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DFN_CLIP_ID = "hf-hub:apple/DFN5B-CLIP-ViT-H-14-378"
HPS_REPO, HPS_FILE, HPS_ARCH = "xswu/HPSv2", "HPS_v2.1_compressed.pt", "ViT-H-14"
PICKSCORE_MODEL, PICKSCORE_PROCESSOR = "yuvalkirstain/PickScore_v1", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
REWARDS_EXTRA = "pip install 'vist3a[rewards]'"


@runtime_checkable
class ImageTextScorer(Protocol):
    """``score(images [N, 3, H, W] in [0, 1], prompts: N strings) -> [N]``, differentiable in ``images``."""

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


def check_score_inputs(images: torch.Tensor, prompts: Sequence[str]) -> list[str]:
    """Validate the scorer contract; returns ``prompts`` as a list."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be shaped [N, 3, H, W] (RGB in [0, 1]), got {tuple(images.shape)}")
    if isinstance(prompts, str) or len(prompts) != images.shape[0]:
        raise ValueError(f"`prompts` must be a list of N={images.shape[0]} strings, got {prompts!r:.120}")
    return [str(p) for p in prompts]


def clip_preprocess(
    images: torch.Tensor, size: int, *, crop: bool = True, mean=CLIP_MEAN, std=CLIP_STD
) -> torch.Tensor:
    """``[N, 3, H, W]`` in ``[0, 1]`` -> normalised ``[N, 3, size, size]``, differentiably.

    ``crop=True``: bicubic resize of the shorter side to ``size`` then a centre crop (CLIP's preprocessing);
    ``crop=False``: resize straight to ``size x size``.
    """
    x = images.float().clamp(0.0, 1.0)
    h, w = x.shape[-2:]
    if crop:
        scale = size / min(h, w)
        new_hw = (max(size, round(h * scale)), max(size, round(w * scale)))
    else:
        new_hw = (size, size)
    if tuple(new_hw) != (h, w):
        x = F.interpolate(x, size=new_hw, mode="bicubic", align_corners=False, antialias=True)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def _pooled(out: Any) -> torch.Tensor:
    """Projected features from ``get_*_features`` (a tensor in transformers 4, an output object in 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TinyImageTextScorer(nn.Module):
    """A seeded random image-text model: cosine between a conv image embedding and a hashed bag of words.

    Meaningless as a judge of quality, but a real differentiable scorer of the right contract, for tests and the
    ``tiny-random`` preset. Words are lower-cased and hashed (CRC32) into ``vocab_buckets`` embeddings, so any
    prompt works without a tokenizer. Frozen on construction.
    """

    def __init__(self, dim: int = 16, image_size: int = 32, vocab_buckets: int = 256, seed: int = 0) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"`image_size` must be a multiple of 4, got {image_size}")
        self.image_size = image_size
        self.vocab_buckets = vocab_buckets
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(3, 8, kernel_size=4, stride=4)
            self.image_proj = nn.Linear(8 * (image_size // 4) ** 2, dim)
            self.words = nn.EmbeddingBag(vocab_buckets, dim, mode="mean")
            self.text_proj = nn.Linear(dim, dim)
        self.requires_grad_(False)
        self.eval()

    def _token_ids(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, offsets = [], []
        for prompt in prompts:
            offsets.append(len(ids))
            words = prompt.lower().split() or [""]
            ids.extend(zlib.crc32(w.encode("utf-8")) % self.vocab_buckets for w in words)
        device = self.text_proj.weight.device
        return torch.tensor(ids, device=device), torch.tensor(offsets, device=device)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """``[N, dim]`` unit text embeddings."""
        ids, offsets = self._token_ids(list(prompts))
        return F.normalize(self.text_proj(self.words(ids, offsets)), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, dim]`` unit image embeddings of ``[N, 3, H, W]`` images in ``[0, 1]``."""
        x = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = F.gelu(self.conv(x * 2.0 - 1.0)).flatten(1)
        return F.normalize(self.image_proj(x), dim=-1)

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        prompts = check_score_inputs(images, prompts)
        return (self.embed_images(images) * self.embed_text(prompts)).sum(-1)


class OpenClipScorer(nn.Module):
    """Cosine similarity of an ``open_clip`` model (DFN5B-CLIP, HPSv2.1), frozen, text embeddings without grad.

    Args:
        model: an ``open_clip`` CLIP (``encode_image`` / ``encode_text``).
        tokenizer: its tokenizer (``tokenizer(list[str]) -> LongTensor``).
        image_size: the model's input side; ``crop`` chooses resize+centre-crop vs a plain resize.
    """

    def __init__(self, model: nn.Module, tokenizer: Callable, image_size: int, crop: bool = True) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.crop = crop

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        prompts = check_score_inputs(images, prompts)
        param = next(self.model.parameters())
        pixels = clip_preprocess(images, self.image_size, crop=self.crop).to(param.dtype)
        image_features = self.model.encode_image(pixels, normalize=True)
        with torch.no_grad():
            text_features = self.model.encode_text(self.tokenizer(prompts).to(param.device), normalize=True)
        return (image_features.float() * text_features.float()).sum(-1)


class PickScoreScorer(nn.Module):
    """PickScore: ``logit_scale.exp() * cosine`` of a ``transformers`` CLIP model fine-tuned on Pick-a-Pic.

    Args:
        model: ``transformers.CLIPModel`` (``get_image_features`` / ``get_text_features`` / ``logit_scale``).
        tokenizer: its tokenizer (called with padding and truncation to 77 tokens).
        image_size: input side (224 for PickScore v1).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, image_size: int = 224, max_length: int = 77) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.max_length = max_length

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        prompts = check_score_inputs(images, prompts)
        param = next(self.model.parameters())
        pixels = clip_preprocess(images, self.image_size, crop=True).to(param.dtype)
        image_features = F.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(param.device)
        with torch.no_grad():
            text_features = F.normalize(_pooled(self.model.get_text_features(**tokens)).float(), dim=-1)
        return self.model.logit_scale.exp().float() * (image_features * text_features).sum(-1)


class NanoClipScorer(nn.Module):
    """Cosine similarity of a nano image-text model (``NanoImageTextModel`` of the nano package).

    Args:
        model: the image-text model (frozen here).
        text_encoder: MiniLM as a :class:`vist3a.video.text.HFTextEncoder` (``encode(prompts) -> (states,
            mask)``); the nano generator's own encoder can be shared. Its width must be the model's ``text_dim``.
    """

    def __init__(self, model: nn.Module, text_encoder: Any) -> None:
        super().__init__()
        if int(text_encoder.hidden_size) != int(model.config.text_dim):
            raise ValueError(f"the text encoder width {text_encoder.hidden_size} differs from the image-text model's "
                             f"`text_dim` {model.config.text_dim}")
        self.model = model.eval().requires_grad_(False)
        self.text_encoder = text_encoder

    @torch.no_grad()
    def embed_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """``[N, E]`` unit text embeddings of ``prompts`` (no gradient: prompts are not optimised)."""
        states, mask = self.text_encoder.encode(list(prompts))
        device = self.model.logit_scale.device
        return self.model.embed_text(self.model.text_features(states.to(device), mask.to(device)))

    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        prompts = check_score_inputs(images, prompts)
        image_features = self.model.embed_images(images.to(self.model.logit_scale.device))
        return (image_features.float() * self.embed_prompts(prompts).float()).sum(-1)


# ----------------------------------------------------------------------------- loading
def _require(module: str, scorer: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserInputError(
            f"the {scorer!r} reward needs the package `{module}`, which is not installed; {REWARDS_EXTRA}"
        ) from None


def _load_dfn_clip(device: torch.device, dtype: torch.dtype) -> ImageTextScorer:
    open_clip = _require("open_clip", "dfn-clip")
    model, _ = open_clip.create_model_from_pretrained(DFN_CLIP_ID)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    # the release resizes straight to 378 x 378 for this model (no centre crop)
    return OpenClipScorer(model.to(device, dtype), open_clip.get_tokenizer(DFN_CLIP_ID), size, crop=False)


def _load_hpsv21(device: torch.device, dtype: torch.dtype) -> ImageTextScorer:
    open_clip = _require("open_clip", "hpsv2.1")
    from vist3a.hub import resolve_file

    model = open_clip.create_model(HPS_ARCH, pretrained=None)
    checkpoint = torch.load(resolve_file(HPS_REPO, HPS_FILE, what="hpsv2.1"), map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint.get("state_dict", checkpoint))
    return OpenClipScorer(model.to(device, dtype), open_clip.get_tokenizer(HPS_ARCH), 224, crop=True)


def _load_pickscore(device: torch.device, dtype: torch.dtype) -> ImageTextScorer:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(PICKSCORE_MODEL, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(PICKSCORE_PROCESSOR)
    return PickScoreScorer(model, tokenizer, image_size=int(model.config.vision_config.image_size))


def _load_tiny(device: torch.device, dtype: torch.dtype) -> ImageTextScorer:
    return TinyImageTextScorer().to(device)


#: name -> loader ``(device, dtype) -> scorer``.
SCORERS: dict[str, Callable[[torch.device, torch.dtype], ImageTextScorer]] = {
    "dfn-clip": _load_dfn_clip,
    "hpsv2.1": _load_hpsv21,
    "pickscore": _load_pickscore,
    "tiny-random": _load_tiny,
}


def load_scorer(name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> ImageTextScorer:
    """The scorer called ``name`` (see :data:`SCORERS`), frozen, on ``device``.

    Raises ``ValueError`` for unknown names and :class:`UserInputError` when an optional package is missing.
    Hub weights go through the Hugging Face cache (offline machines need them cached beforehand).
    """
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose one of {sorted(SCORERS)}")
    logger.info("Loading the %s scorer", name)
    return SCORERS[name](torch.device(device), dtype)
