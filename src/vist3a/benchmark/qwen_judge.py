"""A Qwen2.5-VL model as a VQA judge: one image and one question in, the decoded answer out.

The text-to-3D tables use UnifiedReward-Qwen-7B (:data:`UNIFIED_REWARD_REPO`, a Qwen2.5-VL-7B fine-tune) for the
UnifiedReward ratings and as DPG-Bench's VQA model; what it is asked and how its answers are read is
:mod:`vist3a.evaluation.vqa_protocols`. Like the VIST3A release (``evaluation/gen_eval/``), each question is one
chat turn ``[image, text]`` through the processor's chat template with the generation prompt, decoded with the
model's own generation config (its repo's ``generation_config.json``) and ``max_new_tokens``, one image at a time.

Loading goes through transformers' classes (``Qwen2_5_VLForConditionalGeneration`` and ``AutoProcessor``) from a
Hub id or a local folder (:func:`vist3a.hub.resolve_dir`). transformers' Qwen2.5-VL processor needs torchvision (its
video processor is part of it), which ``pip install 'vist3a[eval]'`` brings.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

UNIFIED_REWARD_REPO = "CodeGoat24/UnifiedReward-qwen-7b"
EVAL_EXTRA = "pip install 'vist3a[eval]'"


def to_pil(image: torch.Tensor) -> Any:
    """``[3, H, W]`` in ``[0, 1]`` -> an RGB ``PIL.Image`` (rounded to 8 bits, as a saved render would be)."""
    from PIL import Image

    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"a judge image must be [3, H, W], got {tuple(image.shape)}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(pixels)


class QwenVLJudge:
    """A frozen Qwen2.5-VL model and its processor answering questions about single images.

    Args:
        model: a ``Qwen2_5_VLForConditionalGeneration`` (any device and dtype).
        processor: its ``Qwen2_5_VLProcessor`` (chat template, tokenizer, image processor).
        name: the source it came from (recorded with the scores).
    """

    def __init__(self, model: Any, processor: Any, name: str = "") -> None:
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        self.name = name

    @staticmethod
    def messages(image: Any, question: str) -> list[dict[str, Any]]:
        """The chat of one question: a user turn with the image first, then the text."""
        return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]

    def prompt_text(self, image: Any, question: str) -> str:
        """The templated prompt (before image tokens are expanded) of one question."""
        return self.processor.apply_chat_template(self.messages(image, question), tokenize=False,
                                                  add_generation_prompt=True)

    @torch.no_grad()
    def ask(self, image: torch.Tensor, question: str, max_new_tokens: int) -> str:
        """The judge's decoded answer (special tokens dropped) about ``image [3, H, W]`` in ``[0, 1]``."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        pil = to_pil(image)
        inputs = self.processor(text=[self.prompt_text(pil, question)], images=[pil], return_tensors="pt",
                                padding=True)
        device = next(self.model.parameters()).device
        inputs = inputs.to(device)
        generated = self.model.generate(**inputs, max_new_tokens=max_new_tokens, use_cache=True)
        new_tokens = generated[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]


def _missing_libraries() -> str | None:
    """Why the judge's libraries cannot load it here, or None."""
    try:
        from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: F401
    except ImportError:
        return "transformers with Qwen2.5-VL (>= 4.49)"
    if importlib.util.find_spec("torchvision") is None:
        return "torchvision (transformers' Qwen2.5-VL processor needs it)"
    return None


def judge_available(source: str = UNIFIED_REWARD_REPO) -> tuple[bool, str]:
    """Whether :func:`load_qwen_judge` can load ``source`` without a download: ``(ok, why not)``. A folder needs its
    ``config.json``; a Hub id needs it in the local Hugging Face cache."""
    missing = _missing_libraries()
    if missing:
        return False, f"{missing} is not installed ({EVAL_EXTRA})"
    folder = Path(source).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file(), f"'{folder}' has no config.json"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json")
    except Exception:  # an invalid repo id
        cached = None
    return isinstance(cached, str), f"'{source}' is not in the local Hugging Face cache"


def check_judge(source: str | None = None, local_files_only: bool | None = None) -> None:
    """Fail early, before any scene is generated, where :func:`load_qwen_judge` is sure to fail: a missing
    library, a folder that does not exist, or a Hub id that is not cached while downloads are off."""
    from vist3a.hub import is_offline, looks_like_path

    source = source or UNIFIED_REWARD_REPO
    missing = _missing_libraries()
    if missing:
        raise UserInputError(f"the UnifiedReward judge ({source}) needs {missing}: {EVAL_EXTRA}")
    ok, why = judge_available(source)
    if not ok and (looks_like_path(source) or Path(source).expanduser().is_dir() or is_offline(local_files_only)):
        raise UserInputError(f"the UnifiedReward judge cannot be loaded: {why}; pass a local copy with "
                             f"--metric-model unifiedreward=FOLDER (its libraries: {EVAL_EXTRA})")


def load_qwen_judge(source: str | None = None, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, local_files_only: bool | None = None) -> QwenVLJudge:
    """The judge ``source`` (Hub id or local folder; None: :data:`UNIFIED_REWARD_REPO`) on ``device``, in bfloat16
    on CUDA and float32 elsewhere unless ``dtype`` says otherwise. A missing library or model is one
    :class:`~vist3a.errors.UserInputError` naming it, ``--metric-model unifiedreward=FOLDER`` and the extra."""
    from vist3a.hub import resolve_dir

    source = source or UNIFIED_REWARD_REPO
    missing = _missing_libraries()
    if missing:
        raise UserInputError(f"the UnifiedReward judge ({source}) needs {missing}: {EVAL_EXTRA}")
    try:
        folder = resolve_dir(source, local_files_only=local_files_only, what=f"the UnifiedReward judge ({source})")
    except UserInputError as exc:
        raise UserInputError(f"{exc}. The judge's weights are ~16 GB; pass a local copy with --metric-model "
                             f"unifiedreward=FOLDER (its libraries: {EVAL_EXTRA})") from None
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    device = torch.device(device)
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device)
        processor = AutoProcessor.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"the UnifiedReward judge could not be loaded from '{folder}' ({type(exc).__name__}: "
                             f"{exc}); it must be a Qwen2.5-VL model folder with its processor files") from None
    logger.info("UnifiedReward judge %s loaded on %s (%s)", source, device, dtype)
    return QwenVLJudge(model, processor, name=source)
