"""End-to-end ``vist3a generate`` at real size with random weights, and the release's reference path.

Builds Wan 2.1 T2V 1.3B (``WanTransformer3DModel``), the Wan VAE (``AutoencoderKLWan`` defaults), a
UMT5-XXL-sized text encoder (random weights, a small word-level tokenizer: token ids, not words, matter for
speed) and the stitched AnySplat at the release's size and cut (``enc_blocks_2``, LoRA merged), then times:

- **vist3a**: :class:`vist3a.pipeline.Text2ScenePipeline` (bf16, CFG batched into one forward, text embeddings
  cached; placed by ``--offload``, default ``auto`` as ``vist3a generate``) + :func:`vist3a.scene.save_scene`
  pieces (fly-through rendering through gsplat, PLY export);
- **reference**: what the official release does (its ``inference_t23d.py``) — diffusers' ``WanPipeline`` in
  fp16 with its default call (separate conditional / unconditional transformer passes), the reward-aligned
  LoRA left unmerged on the transformer (PEFT, r 8 on the attention projections; ``--reference-lora-rank``),
  the call and the VAE decode under bf16 autocast over the fp16 weights, then the stitched decoder, per-view
  rendering and PLY export (UMT5 with eager attention: today's SDPA path fails under that autocast);
- **vist3a + compile** (``--compile``) and **vist3a + fp8 + compile** (``--fp8``: the transformer blocks' matmuls
  in fp8 through torchao, with how far its output lands from bf16's);
- **vist3a, bf16 VAE** (``--vae-bf16``): the last vist3a row again with the VAE cast to bf16 (vist3a decodes in
  float32; the release under bf16 autocast), with the PSNR of its frames against the float32 VAE's;
- **vist3a + step cache** (``--step-cache first-block|mag``, ``--step-cache-threshold``; eager, as ``vist3a
  generate`` refuses it with ``--compile``): the share of transformer block runs skipped and the PSNR of a fixed
  prompt's decoded frames against the uncached pipeline. With random weights the skip pattern is not the trained
  models' (a ``mag`` cache measures its ratios in the first warm-up run, on these random weights too).

Release settings: 13 frames, 512², 50 UniPC steps, flow shift 5, CFG 7.5. Per-stage wall-clock times
(synchronised), median over ``--repeats`` after ``--warmup`` runs, and peak GPU memory; a table is printed
and JSON written to ``--out``. ``--tiny`` runs the same code on tiny models (CPU smoke test).

The transformer and the text encoder are created in bf16 on the GPU (never in float32 there), so that
``--generator 14b`` fits an 80 GB card: ~45 GB of weights, the reference's float16 copies replacing them.

    python benchmarks/generate_e2e.py --out e2e.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RELEASE_LAYER, RELEASE_SPEC = "enc_blocks_2", "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"
TINY_LAYER, TINY_SPEC = "enc_blocks_1", "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"
UMT5_XXL = {"d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "vocab_size": 256384}


def release_settings(tiny: bool, steps: int, num_gaussians: int | None) -> dict[str, Any]:
    """The release's generation settings (13 frames, 512², CFG 7.5, UniPC shift 5, orbit template, 48-view
    fly-through, a 300 k-splat stand-in scene); ``tiny``: the CPU smoke-test sizes."""
    size = 64 if tiny else 512
    default_splats = 2000 if tiny else 300_000
    return {"num_frames": 5 if tiny else 13, "height": size, "width": size, "num_steps": steps,
            "guidance_scale": 7.5, "flow_shift": 5.0, "scheduler": "unipc", "template": "orbit",
            "negative_prompt": "w7 w8", "flythrough_frames": 4 if tiny else 48,
            "num_gaussians": default_splats if num_gaussians is None else num_gaussians}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def word_tokenizer(vocab_size: int):
    """A whitespace word-level fast tokenizer (ids hashed into the vocabulary); no files needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(2, min(vocab_size, 50000))}
    words.update({"<pad>": 0, "<unk>": 1})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Parameters and buffers created inside are ``dtype`` (``torch.set_default_dtype``, restored on exit)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(tiny: bool, device: torch.device, dtype: torch.dtype, generator: str = "1.3b") -> dict[str, Any]:
    """The benchmark's random-weight models on ``device``: the transformer and the text encoder created directly
    in ``dtype``, the VAE and the stitched decoder in float32 (vist3a decodes the VAE in float32; the reference
    runs the decoder under autocast over float32 weights).

    Creating the big two in ``dtype`` is what lets the 14B generator run on an 80 GB card: in bf16 the
    transformer (14.3 B params) holds 28.6 GB and UMT5-XXL's encoder (5.7 B) 11.4 GB, ~45 GB with the VAE and the
    float32 AnySplat (1.2 B, 4.8 GB); created in float32 and cast afterwards they would first need 57 + 23 GB.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from vist3a.recon import AnySplat, random_tiny_model
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.configs import wan_transformer_config
    from vist3a.video.tiny import tiny_text_encoder_config, tiny_transformer_config, tiny_vae_config

    torch.manual_seed(0)
    with torch.device(device):
        with default_dtype(dtype):
            transformer = WanTransformer3DModel(**(tiny_transformer_config(32) if tiny
                                                   else wan_transformer_config(generator)))
        vae = AutoencoderKLWan(**tiny_vae_config()) if tiny else AutoencoderKLWan()
        if tiny:
            text_cfg = UMT5Config(**tiny_text_encoder_config(32))
            recon, layer, spec = random_tiny_model("anysplat"), TINY_LAYER, TINY_SPEC
        else:
            text_cfg = UMT5Config(**UMT5_XXL, feed_forward_proj="gated-gelu", dropout_rate=0.0)
            recon, layer, spec = AnySplat(), RELEASE_LAYER, RELEASE_SPEC
        with default_dtype(dtype):
            text_model = UMT5EncoderModel(text_cfg)
    recon = recon.to(device)
    decoder = StitchedDecoder.from_recon(recon, layer, spec).eval().requires_grad_(False)
    del recon
    return {
        "transformer": transformer.eval().requires_grad_(False),
        "vae": vae.eval().requires_grad_(False),
        "text_model": text_model.eval().requires_grad_(False),
        "tokenizer": word_tokenizer(text_cfg.vocab_size),
        "decoder": decoder,
        "text_len": 16 if tiny else 512,
    }


def stand_in_scene(num: int, num_views: int) -> tuple[Any, torch.Tensor]:
    """``num`` splats filling a unit ball and ``num_views`` key cameras orbiting it (CPU).

    Random weights make the stitched AnySplat predict scattered cameras and a few hundred splats after voxel
    fusion; trained ones give ~240-310 k (DESIGN.md §7). Both paths render and export this stand-in instead,
    so that the fly-through and PLY stages cost what they cost on real scenes.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, run from anywhere
    from render_backends import random_scene

    from vist3a.cameras import orbit_trajectory

    w2c = orbit_trajectory(torch.zeros(3), 2.5, 20.0, num_views, turns=0.5)
    return random_scene(num, 3, 0, torch.device("cpu")), w2c


def cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``nn.Module.to(dtype)`` (bypasses diffusers' fp32-keep warning; these models keep nothing in fp32)."""
    return torch.nn.Module.to(module, dtype=dtype)


_PROMPTS = iter(range(10**6))


def fresh_prompt() -> str:
    """A prompt never seen before in this process, so that no run is served by the text-embedding cache."""
    return " ".join(f"w{(next(_PROMPTS) * 7 + k) % 40000 + 10}" for k in range(12))


def make_pipeline(parts: dict[str, Any], settings: dict[str, Any], device: torch.device, offload: str = "auto"):
    """vist3a's pipeline over the benchmark's parts, placed by ``offload`` (``vist3a generate --offload``: ``auto``
    keeps the text encoder resident when the card has room, ``text`` streams it from CPU); decoder in bf16."""
    from vist3a.pipeline import Text2ScenePipeline
    from vist3a.video.generator import WanGenerator
    from vist3a.video.sampler import make_scheduler
    from vist3a.video.text import HFTextEncoder

    offload = offload if device.type == "cuda" else "none"
    text = HFTextEncoder(parts["text_model"], parts["tokenizer"], max_length=parts["text_len"], device=device)
    generator = WanGenerator(parts["vae"], parts["transformer"], text, make_scheduler("unipc", 5.0), device=device,
                             offload=offload)
    return Text2ScenePipeline(generator, parts["decoder"], {"name": "benchmark", "defaults": settings})


def run_vist3a(pipe: Any, settings: dict[str, Any], device: torch.device, backend: str) -> dict:
    from vist3a.splats import save_ply

    scene = pipe(fresh_prompt(), progress=False)[0]
    if settings["num_gaussians"]:
        scene.gaussians, scene.w2c = stand_in_scene(settings["num_gaussians"], scene.w2c.shape[0])
    times = dict(scene.timings)
    _sync(device)
    start = time.perf_counter()
    scene.render_flythrough(settings["flythrough_frames"], backend, device=device)
    _sync(device)
    times["render"] = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_ply(scene.gaussians, Path(tmp) / "scene.ply")
    times["ply"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    times["num_gaussians"] = len(scene.gaussians)
    return times


def run_reference(parts: dict[str, Any], settings: dict[str, Any], device: torch.device, backend: str) -> dict:
    """The release's path: WanPipeline fp16 default call, then decode, stitched decoder, per-view renders, PLY."""
    from diffusers import WanPipeline

    from vist3a.cameras import K_from_edge_convention, interpolate_poses, invert_rigid, to_homogeneous
    from vist3a.splats import render, save_ply
    from vist3a.video.sampler import make_scheduler

    pipe = WanPipeline(
        tokenizer=parts["tokenizer"], text_encoder=parts["text_model"], transformer=parts["transformer"],
        vae=parts["vae"], scheduler=make_scheduler("unipc", 5.0),
    )
    release_autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    times: dict[str, float] = {}
    _sync(device)
    t0 = time.perf_counter()
    with torch.no_grad(), release_autocast():
        latents = pipe(
            prompt=fresh_prompt(), negative_prompt="w7 w8", height=settings["height"], width=settings["width"],
            num_frames=settings["num_frames"], num_inference_steps=settings["num_steps"],
            guidance_scale=settings["guidance_scale"], output_type="latent", max_sequence_length=parts["text_len"],
        ).frames
    _sync(device)
    times["denoise"] = time.perf_counter() - t0
    vae = parts["vae"]
    mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    raw = latents.float() * std + mean
    t0 = time.perf_counter()
    with torch.no_grad(), release_autocast():
        video = vae.decode(raw.to(next(vae.parameters()).dtype), return_dict=False)[0]
        frames = ((video.float() + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4)
    _sync(device)
    times["vae_decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoder = parts["decoder"]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = decoder(raw.float(), frames.float())
    _sync(device)
    times["stitched_decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g, w2c = out.gaussians[0], out.cameras.w2c[0].float()
    if settings["num_gaussians"]:
        g, w2c = (x.to(device) for x in stand_in_scene(settings["num_gaussians"], w2c.shape[0]))
    c2w = to_homogeneous(invert_rigid(w2c[:, :3]))
    path = to_homogeneous(invert_rigid(interpolate_poses(c2w, settings["flythrough_frames"])))
    K = K_from_edge_convention(out.cameras.K[0].float().mean(0))
    h, w = out.depth.shape[-2:]
    for i in range(path.shape[0]):  # one view at a time, as the release's fly-through
        render(g, path[i : i + 1], K, w, h, backend=backend).colors.cpu()
    _sync(device)
    times["render"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_ply(g, Path(tmp) / "scene.ply")
    times["ply"] = time.perf_counter() - t0
    times["total"] = sum(times.values())
    times["num_gaussians"] = len(g)
    return times


def fidelity_probe(pipe: Any, settings: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Outputs to compare numerics by: one transformer forward (eager, fixed inputs, a mid-schedule timestep) and
    the decoded frames of a fixed prompt and seed (the full 50-step trajectory)."""
    transformer = pipe.generator.transformer
    gen = torch.Generator().manual_seed(0)
    shape = pipe.generator.latent_shape(settings["num_frames"], settings["height"], settings["width"])
    x = torch.randn(1, *shape, generator=gen)
    text = torch.randn(1, 16, transformer.config.text_dim, generator=gen)
    device, dtype = pipe.device, next(transformer.parameters()).dtype
    # eager even when compiled: regional compilation compiles the blocks inside .forward, so the stance is forced
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        velocity = transformer.forward(x.to(device, dtype), torch.tensor([500], device=device),
                                       text.to(device, dtype), return_dict=False)[0].float().cpu()
    scene = pipe("w1 w2 w3 w4", generator=torch.Generator("cpu").manual_seed(0), progress=False)[0]
    frames = scene.frames.float().cpu()
    return {"velocity": velocity, "frames": frames}


def compare_outputs(reference: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative L2 error of the one-step velocity; PSNR (dB, frames in [0, 1]) between the decoded videos."""
    v0, v1 = reference["velocity"], other["velocity"]
    mse = float(((reference["frames"] - other["frames"]) ** 2).mean())
    return {"velocity_rel_l2": float((v1 - v0).norm() / v0.norm()),
            "frames_psnr_db": float("inf") if mse == 0 else -10.0 * float(torch.log10(torch.tensor(mse)))}


def run_step_cache(pipe: Any, settings: dict[str, Any], device: torch.device, backend: str,
                   args: argparse.Namespace) -> dict[str, Any]:
    """Times of the pipeline with ``args.step_cache`` (at least one warm-up run: a mag cache calibrates there), the
    share of block runs skipped in the timed runs, and ``fidelity``: the PSNR of a fixed prompt's frames against
    the same pipeline uncached. Leaves the pipeline uncached."""
    probe = lambda: pipe("w1 w2 w3 w4", generator=torch.Generator("cpu").manual_seed(0), progress=False)[0].frames
    uncached = probe().float().cpu()
    pipe.enable_step_cache(args.step_cache, args.step_cache_threshold)
    blocks = pipe.generator.transformer.blocks
    runs = [0]
    warmup = max(1, args.warmup)
    try:
        for _ in range(warmup):
            run_vist3a(pipe, settings, device, backend)
        handles = [b.ffn.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1)) for b in blocks]
        try:
            out = median_runs(lambda: run_vist3a(pipe, settings, device, backend), 0, args.repeats, device)
        finally:
            for handle in handles:
                handle.remove()
        out["warmup_s"] = None
        out["block_runs_skipped"] = 1 - runs[0] / (args.repeats * settings["num_steps"] * len(blocks))
        out.update(pipe.step_cache.to_dict())
        cached = probe().float().cpu()
    finally:
        pipe.disable_step_cache()
    mse = float(((cached - uncached) ** 2).mean())
    out["fidelity"] = {"frames_psnr_db": float("inf") if mse == 0 else -10.0 * float(torch.log10(torch.tensor(mse)))}
    return out


def set_attention(model: torch.nn.Module, implementation: str) -> None:
    """Switch a transformers model's attention implementation on every sub-module's config (on the GPU machine's
    transformers 5.17, ``set_attn_implementation("eager")`` still left UMT5's attention on SDPA)."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = implementation


def median_runs(fn, warmup: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median per stage over ``repeats`` runs after ``warmup`` runs (their wall time is ``warmup_s``).

    The peak memory covers warm-up and repeats: whatever the models and the runs held at once.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    warmup_s = time.perf_counter() - start
    runs = [fn() for _ in range(repeats)]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["warmup_s"] = warmup_s
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--generator", choices=["1.3b", "14b"], default="1.3b")
    parser.add_argument("--compile", action="store_true", help="also time vist3a with torch.compile")
    parser.add_argument("--fp8", action="store_true",
                        help="also time vist3a with fp8 block matmuls (torchao, compiled) and measure how far its "
                             "output is from bf16")
    parser.add_argument("--skip-eager", action="store_true", help="time vist3a only compiled (with --compile/--fp8)")
    parser.add_argument("--step-cache", choices=["first-block", "mag"], default=None,
                        help="also time vist3a (eager) with this step cache")
    parser.add_argument("--step-cache-threshold", type=float, default=None,
                        help="its threshold (default: first-block 0.05, mag 0.06)")
    parser.add_argument("--num-gaussians", type=int, default=None,
                        help="splats of the stand-in scene for rendering/PLY (default 300000; 2000 with --tiny)")
    parser.add_argument("--offload", choices=["auto", "text", "none"], default="auto",
                        help="vist3a's placement (default auto, as `vist3a generate`: text encoder resident when the "
                             "card has room; text: streamed from CPU, the 11 GiB path)")
    parser.add_argument("--vae-bf16", action="store_true",
                        help="after the last vist3a row, time it again with the VAE in bf16 (vist3a decodes in "
                             "float32) and measure how far its frames land from the float32 VAE's")
    parser.add_argument("--reference-lora-rank", type=int, default=8,
                        help="rank of the unmerged LoRA on the reference's transformer, as the release loads its "
                             "reward-aligned LoRA (0: none)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    settings = release_settings(args.tiny, args.steps, args.num_gaussians)
    backend = "gsplat" if device.type == "cuda" else "torch"
    half = torch.bfloat16 if device.type == "cuda" else torch.float32  # vist3a's precision: bf16 on the GPU
    parts = build(args.tiny, device, half, args.generator)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                               "torch": torch.__version__, "python": platform.python_version(),
                               "generator": args.generator, "settings": settings}

    def save() -> None:  # after every path, so that a run stopped by a time limit keeps what it measured
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))

    if not args.skip_reference:  # first, while the text encoder is still an ordinary module on the GPU
        from vist3a.video.lora import add_lora, merge_lora

        ref = torch.float16 if device.type == "cuda" else torch.float32
        for key in ("transformer", "text_model"):
            cast(parts[key], ref)
        if args.reference_lora_rank:  # zero-initialised B: outputs unchanged, the cost of the extra matmuls is real
            add_lora(parts["transformer"], r=args.reference_lora_rank, alpha=2 * args.reference_lora_rank)
        # UMT5 with eager attention, as the transformers of the release ran it: the SDPA path of today's
        # transformers overflows building its fp16 position-bias mask under bf16 autocast.
        set_attention(parts["text_model"], "eager")
        results["reference"] = median_runs(lambda: run_reference(parts, settings, device, backend),
                                           args.warmup, args.repeats, device)
        results["reference"]["lora_rank"] = args.reference_lora_rank
        save()
        if args.reference_lora_rank:  # vist3a merges LoRA when it loads one: its path runs the plain transformer
            merge_lora(parts["transformer"])
        set_attention(parts["text_model"], "sdpa")
    for key in ("transformer", "text_model", "decoder"):
        cast(parts[key], half)
    pipe = make_pipeline(parts, settings, device, args.offload)
    results["offload"] = pipe.generator.offload
    if not (args.skip_eager and (args.compile or args.fp8)):
        results["vist3a"] = median_runs(lambda: run_vist3a(pipe, settings, device, backend), args.warmup,
                                        args.repeats, device)
        save()
    if args.step_cache:  # eager (a step cache does not combine with compile); a mag cache calibrates in the warm-up
        results["vist3a_step_cache"] = run_step_cache(pipe, settings, device, backend, args)
        results["step_cache_fidelity"] = results["vist3a_step_cache"].pop("fidelity")
        print("step cache vs none:", json.dumps(results["step_cache_fidelity"]))
        save()
    if args.compile:  # the same pipeline, its transformer compiled: warmup_s includes the compilation
        pipe.compile()
        results["vist3a_compiled"] = median_runs(lambda: run_vist3a(pipe, settings, device, backend), 1,
                                                 args.repeats, device)
        save()
    if args.fp8:  # compared with the bf16 pipeline as it stands (compiled with --compile, else eager)
        bf16 = fidelity_probe(pipe, settings)
        pipe.quantize_fp8().compile()
        results["vist3a_fp8"] = median_runs(lambda: run_vist3a(pipe, settings, device, backend), 1,
                                            args.repeats, device)
        results["fp8_fidelity"] = compare_outputs(bf16, fidelity_probe(pipe, settings))
        print("fp8 vs bf16:", json.dumps(results["fp8_fidelity"]))
        save()
    if args.vae_bf16:  # the pipeline as it stands (fp8 / compiled / eager), only the VAE cast: no recompilation
        before = fidelity_probe(pipe, settings)
        from vist3a.pipeline import cast_vae

        cast_vae(pipe.generator, torch.bfloat16)  # --vae-dtype bfloat16; on the CPU too (the smoke test): slow there
        results["vist3a_vae_bf16"] = median_runs(lambda: run_vist3a(pipe, settings, device, backend), 1,
                                                 args.repeats, device)
        results["vae_bf16_fidelity"] = compare_outputs(before, fidelity_probe(pipe, settings))
        print("bf16 VAE vs float32 VAE:", json.dumps(results["vae_bf16_fidelity"]))
    columns = [k for k in ("reference", "vist3a", "vist3a_step_cache", "vist3a_compiled", "vist3a_fp8",
                           "vist3a_vae_bf16") if k in results]
    stages = ["text", "denoise", "vae_decode", "stitched_decode", "render", "ply", "total", "peak_gib", "warmup_s",
              "block_runs_skipped"]
    print(f"{'stage':>16} " + " ".join(f"{k:>16}" for k in columns))
    for stage in stages:
        row = [results[k].get(stage) for k in columns]
        if any(v is not None for v in row):
            print(f"{stage:>16} " + " ".join(f"{v:16.3f}" if v is not None else f"{'-':>16}" for v in row))
    save()
    return results


if __name__ == "__main__":
    main()
