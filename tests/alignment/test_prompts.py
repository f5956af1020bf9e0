"""Training prompts: the text file format, its errors, and the deterministic, camera-augmented sampling."""

from __future__ import annotations

import pytest

from vist3a.alignment.prompts import PromptSampler, read_prompts
from vist3a.errors import UserInputError
from vist3a.video.templates import TEMPLATES


def test_read_prompts_skips_blanks_and_comments(tmp_path):
    path = tmp_path / "prompts.txt"
    text = "# HPSv2 prompts\n  a red chair  \n\n   \n#another comment\na cabin in the woods\n"
    path.write_text(text, encoding="utf-8")
    assert read_prompts(path) == ["a red chair", "a cabin in the woods"]


def test_read_prompts_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        read_prompts(tmp_path / "nope.txt")


def test_read_prompts_without_prompts(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("# only a comment\n\n   \n", encoding="utf-8")
    with pytest.raises(UserInputError, match="holds no prompt"):
        read_prompts(path)


def test_read_prompts_not_text(tmp_path):
    path = tmp_path / "binary.txt"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserInputError, match="UTF-8"):
        read_prompts(path)


def test_each_epoch_visits_every_prompt_once():
    prompts = [f"prompt {i}" for i in range(7)]
    sampler = PromptSampler(prompts, seed=3, augment=False)
    epoch0 = [sampler.draw(step)[0].prompt for step in range(7)]
    epoch1 = [sampler.draw(step)[0].prompt for step in range(7, 14)]
    assert sorted(epoch0) == sorted(prompts) == sorted(epoch1)
    assert epoch0 != epoch1  # reshuffled per epoch (fixed seed: a deterministic fact of this seed)
    again = PromptSampler(prompts, seed=3, augment=False)
    assert [again.draw(step)[0].prompt for step in range(7)] == epoch0


def test_ranks_get_disjoint_prompts():
    prompts = [f"prompt {i}" for i in range(8)]
    sampler = PromptSampler(prompts, seed=0, augment=False)
    seen = [d.prompt for step in range(2) for rank in range(2) for d in sampler.draw(step, 2, rank, world_size=2)]
    assert sorted(seen) == sorted(prompts)


def test_augmentation_wraps_the_prompt_in_a_template():
    sampler = PromptSampler(["a red chair"], seed=0, augment=True, plain_probability=0.0)
    texts = {sampler.draw(step)[0].text for step in range(40)}
    literal = {t.replace("{prompt}", "a red chair") for t in TEMPLATES.values()}
    assert texts <= literal and len(texts) > 3
    draw = sampler.draw(5)[0]
    assert draw.prompt == "a red chair" and "`a red chair`" in draw.text
    assert sampler.draw(5)[0].text == draw.text  # a pure function of (seed, step)


def test_plain_probability_one_keeps_prompts_bare():
    sampler = PromptSampler(["a red chair"], seed=0, augment=True, plain_probability=1.0)
    assert all(sampler.draw(s)[0].text == "a red chair" for s in range(5))


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="at least one prompt"):
        PromptSampler([])
    with pytest.raises(ValueError, match="plain_probability"):
        PromptSampler(["x"], plain_probability=2.0)
