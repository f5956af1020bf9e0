"""Reward alignment of the video generator (VIST3A stage 2, DESIGN.md §4).

A LoRA on the Wan transformer is trained with a flow-matching loss on captioned multi-view clips plus a reward
loss on full text-driven DRTune rollouts, whose latents are decoded by the frozen VAE and stitched 3D decoder:
image-text rewards on decoded frames and on renders at the predicted cameras, and a 3D-consistency reward.

- :class:`AlignConfig` (all knobs), :class:`AlignTrainer` (the loop, checkpoints, resume, logs),
  :func:`load_components` (models and data of a preset);
- :func:`plan_rollout` / :func:`drtune_rollout` (rollouts through :func:`vist3a.video.sampler.sample`);
- :func:`flow_matching_loss`; :class:`EMA` / :func:`ema_decay`;
- rewards: :class:`RewardMix`, :data:`REWARD_TERMS`, :data:`REWARD_MIXES`, :func:`build_reward_mix`;
  scorers: :class:`ImageTextScorer`, :class:`TinyImageTextScorer`, :func:`load_scorer`;
- :class:`StitchedSceneDecoder` (VAE decode + stitched decoder + rendering);
- :func:`read_prompts` / :class:`PromptSampler`.

Modules load on first attribute access, so ``import vist3a.alignment`` stays cheap.
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "AlignConfig": "config",
    "AlignTrainer": "trainer",
    "make_accelerator": "trainer",
    "check_output_dir": "trainer",
    "AlignComponents": "components",
    "load_components": "components",
    "RolloutPlan": "rollout",
    "plan_rollout": "rollout",
    "drtune_rollout": "rollout",
    "flow_matching_loss": "flow_matching",
    "EMA": "ema",
    "ema_decay": "ema",
    "RewardInputs": "rewards",
    "RewardMix": "rewards",
    "RewardTerm": "rewards",
    "ImageTextReward": "rewards",
    "ConsistencyReward": "rewards",
    "REWARD_TERMS": "rewards",
    "REWARD_MIXES": "rewards",
    "build_reward_mix": "rewards",
    "parse_reward_mix": "rewards",
    "ImageTextScorer": "scorers",
    "TinyImageTextScorer": "scorers",
    "SCORERS": "scorers",
    "load_scorer": "scorers",
    "DecodedScene": "scene",
    "SceneDecoder": "scene",
    "StitchedSceneDecoder": "scene",
    "PromptSampler": "prompts",
    "read_prompts": "prompts",
    "save_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint",
}

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
