"""Less compilation before the first scene: regional ``torch.compile`` and compile caches that outlive the process.

Every ``vist3a generate --compile`` is a new process, and ``torch.compile`` of the whole Wan transformer used to
cost ~2 minutes of each one (on an H100) before the first denoising step. Three things cut that:

- **Regional compilation** (:func:`compile_transformer`): only the transformer's repeated block class
  (``WanTransformer3DModel._repeated_blocks``, through diffusers' ``ModelMixin.compile_repeated_blocks``) is
  compiled; dynamo traces one block and every block reuses its graph, so inductor compiles one block-sized graph
  instead of the whole model. Models without ``_repeated_blocks`` fall back to compiling the whole module.
- **A persistent inductor cache** (:func:`use_persistent_inductor_cache`): torch's FX-graph and AOTAutograd
  caches are on by default but live under ``/tmp/torchinductor_<user>``, which containers and many machines
  clear. Unless the user set ``TORCHINDUCTOR_CACHE_DIR`` themselves, it is pointed at
  ``<cache root>/inductor`` (:func:`cache_root`: ``$VIST3A_CACHE``, else ``$XDG_CACHE_HOME/vist3a``, else
  ``~/.cache/vist3a``). A later process at the same shapes then loads the compiled graphs (and, on CPU, the
  built C++ kernels) instead of compiling them.
- **A portable artifact** ("mega-cache", :func:`save_artifacts` / :func:`load_artifacts` over
  ``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``): after the first compiled forward at a
  given set of input shapes, the compile artifacts of the process are written atomically to
  ``<cache root>/compile-artifacts/<key>.bin`` (``<key>.json`` beside it says what the key covers: torch and
  diffusers versions, the transformer's class, config and parameter dtypes/types, the input shapes, the device
  name, the compile scope and mode); the next process loads that file before its first compiled forward. The
  file can be copied to another machine with the same GPU and versions (on CUDA inductor bundles the Triton
  kernels into it; on CPU the C++ kernels are not in it and are rebuilt from their cached source).

``VIST3A_COMPILE_CACHE=0`` (or ``vist3a generate --no-compile-cache``) turns off the last two (torch's own
default caches still apply then). Loading and saving each log one line (logger ``vist3a.video.compile_cache``),
as does the first compiled forward: how long it took and how many inductor graphs were compiled or came from
the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Root of vist3a's caches (the inductor cache and the compile artifacts live below it).
ENV_ROOT = "VIST3A_CACHE"
#: ``0`` / ``false`` / ``off`` / ``no`` turns the persistent compile caches off.
ENV_SWITCH = "VIST3A_COMPILE_CACHE"
SCOPES = ("blocks", "model")
_OFF = {"0", "false", "off", "no"}
_HOOKS_ATTR = "_vist3a_compile_cache_hooks"


# ----------------------------------------------------------------------------------------------- locations
def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$VIST3A_CACHE``, else ``$XDG_CACHE_HOME/vist3a``, else ``~/.cache/vist3a`` (``~`` and variables
    expanded; empty values count as unset, as XDG says)."""
    env = os.environ if env is None else env
    if env.get(ENV_ROOT):
        return Path(os.path.expandvars(os.path.expanduser(env[ENV_ROOT])))
    xdg = env.get("XDG_CACHE_HOME")
    base = Path(os.path.expanduser(xdg)) if xdg and os.path.isabs(os.path.expanduser(xdg)) else (
        Path(os.path.expanduser("~")) / ".cache")
    return base / "vist3a"


def inductor_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / "inductor"


def artifacts_dir(env: Mapping[str, str] | None = None) -> Path:
    return cache_root(env) / "compile-artifacts"


def cache_enabled(flag: bool | None = None, env: Mapping[str, str] | None = None) -> bool:
    """``flag`` when given, else on unless ``$VIST3A_COMPILE_CACHE`` is ``0`` / ``false`` / ``off`` / ``no``."""
    if flag is not None:
        return bool(flag)
    env = os.environ if env is None else env
    return env.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def _torch_default_inductor_dir() -> str | None:
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # an older or newer torch without this helper
        return None
    return os.path.abspath(default_cache_dir())


def use_persistent_inductor_cache(env: dict[str, str] | None = None) -> tuple[Path, bool]:
    """Point ``TORCHINDUCTOR_CACHE_DIR`` at :func:`inductor_dir` unless the user chose a directory.

    Returns ``(directory in effect, whether it was set here)``. torch writes its temp default into the variable
    itself the first time it needs the cache, so a value equal to that default counts as unset.
    """
    env = os.environ if env is None else env
    current = env.get("TORCHINDUCTOR_CACHE_DIR")
    if current and os.path.abspath(current) != _torch_default_inductor_dir():
        return Path(current), False
    target = inductor_dir(env)
    target.mkdir(parents=True, exist_ok=True)
    env["TORCHINDUCTOR_CACHE_DIR"] = str(target)
    return target, True


# ----------------------------------------------------------------------------------------------- artifacts
def mega_cache_supported() -> bool:
    """Whether this torch has ``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``."""
    compiler = getattr(torch, "compiler", None)
    return all(callable(getattr(compiler, name, None)) for name in ("save_cache_artifacts", "load_cache_artifacts"))


def _count(info: Any) -> int:
    artifacts = getattr(info, "artifacts", None) or {}
    return sum(len(keys) for keys in artifacts.values())


def save_artifacts(path: str | os.PathLike) -> int:
    """Write the compile artifacts this process has made or used so far to ``path`` (a temporary file beside it,
    then a rename). Returns how many artifacts were written (0: none yet, nothing written)."""
    from vist3a.io_utils import atomic_path

    if not mega_cache_supported():
        return 0
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return 0
    data, info = saved
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return _count(info)


def load_artifacts(path: str | os.PathLike) -> int:
    """Hot-load artifacts written by :func:`save_artifacts` into the caches (the inductor cache directory must be
    chosen before). Returns how many were loaded; 0 when the file is missing or torch rejects it (other versions)."""
    path = Path(path)
    if not mega_cache_supported() or not path.is_file():
        return 0
    try:
        info = torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception as exc:  # a truncated or foreign file must not stop a generation
        logger.warning("compile cache: could not load %s (%s); compiling instead", path, exc)
        return 0
    return _count(info)


def device_name(device: torch.device) -> str:
    """The accelerator's name (``NVIDIA H100 80GB HBM3``) or, on CPU, the processor's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu:{platform.machine()}:{platform.processor() or 'unknown'}"


def _model_description(module: torch.nn.Module) -> dict[str, Any]:
    config = getattr(module, "config", None)
    # private entries (diffusers' ``_use_default_values`` lists names in set order) would change the key per process
    public = {k: v for k, v in dict(config or {}).items() if not str(k).startswith("_")}
    config_json = json.dumps(public, sort_keys=True, default=str)
    parameters = sorted({f"{type(p).__name__}:{p.dtype}" for p in module.parameters()})
    return {"class": type(module).__name__, "config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
            "parameters": parameters}


def _inputs_description(args: tuple, kwargs: dict[str, Any]) -> tuple:
    """Shapes, dtypes and devices of the tensor arguments (what a ``dynamic=False`` compilation specialises on)."""
    tensors = [(str(i), a) for i, a in enumerate(args)] + sorted(kwargs.items())
    described = [(k, tuple(v.shape), str(v.dtype), str(v.device)) for k, v in tensors if isinstance(v, torch.Tensor)]
    return tuple(described) + (("grad", torch.is_grad_enabled()),)


def artifact_key(model: dict[str, Any], inputs: tuple, *, scope: str, mode: str | None) -> tuple[str, dict]:
    """``(key, description)``: a hash over the torch/diffusers versions, the model description, the input shapes,
    the name of the inputs' device (the GPU model, not its index), the compile scope and mode."""
    import diffusers

    devices = sorted({item[3] for item in inputs if len(item) == 4})
    description = {"torch": torch.__version__, "diffusers": diffusers.__version__, "model": model,
                   "device": [device_name(torch.device(d)) for d in devices],
                   "inputs": [list(map(str, item[:3])) for item in inputs], "scope": scope, "mode": mode}
    blob = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24], description


def compile_counters() -> dict[str, int]:
    """Inductor's FX-graph cache and AOTAutograd cache hits and misses of this process so far."""
    from torch._dynamo.utils import counters

    return {"fxgraph_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fxgraph_miss": counters["inductor"]["fxgraph_cache_miss"],
            "fxgraph_bypass": counters["inductor"]["fxgraph_cache_bypass"],
            "autograd_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "autograd_miss": counters["aot_autograd"]["autograd_cache_miss"]}


class _FirstCallHooks:
    """Forward hooks on the compiled module: before its first call at new input shapes, load that key's artifact;
    after it, log what the compilation cost and save the artifact (when something was compiled, or none exists).

    The hooks are excluded from compilation (``torch.compiler.disable``), so under whole-model compilation too
    they run as plain Python around the compiled graph.
    """

    def __init__(self, module: torch.nn.Module, scope: str, mode: str | None, use_cache: bool) -> None:
        self.scope, self.mode, self.use_cache = scope, mode, use_cache
        self.model = _model_description(module)
        self.seen: set[tuple] = set()
        self.pending: dict[tuple, tuple[float, dict[str, int], Path | None, dict | None]] = {}
        self.handles = [module.register_forward_pre_hook(torch.compiler.disable(self.before), with_kwargs=True),
                        module.register_forward_hook(torch.compiler.disable(self.after), with_kwargs=True)]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def before(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        inputs = _inputs_description(args, kwargs)
        if inputs in self.seen:  # (a first call that raised is timed again by the next one)
            return
        path = description = None
        if self.use_cache and mega_cache_supported():
            key, description = artifact_key(self.model, inputs, scope=self.scope, mode=self.mode)
            path = artifacts_dir() / f"{key}.bin"
            loaded = load_artifacts(path) if inputs not in self.pending else 0
            if loaded:
                logger.info("compile cache: loaded %d compiled artifacts from %s", loaded, path)
        self.pending[inputs] = (time.perf_counter(), compile_counters(), path, description)

    def after(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        inputs = _inputs_description(args, kwargs)
        if inputs not in self.pending:
            return
        start, counts, path, description = self.pending.pop(inputs)
        self.seen.add(inputs)
        first = next(module.parameters(), None)
        if first is not None and first.device.type == "cuda":
            torch.cuda.synchronize(first.device)
        now = compile_counters()
        compiled = now["fxgraph_miss"] - counts["fxgraph_miss"]
        cached = now["fxgraph_hit"] - counts["fxgraph_hit"]
        logger.info("torch.compile (%s): first forward at new shapes took %.1f s; inductor graphs: %d compiled, "
                    "%d from cache", self.scope, time.perf_counter() - start, compiled, cached)
        if path is None or (path.is_file() and compiled == 0):
            return
        try:
            count = save_artifacts(path)
            if count:
                from vist3a.io_utils import atomic_path

                with atomic_path(path.with_suffix(".json")) as tmp:
                    tmp.write_text(json.dumps(description, indent=2, default=str) + "\n")
                logger.info("compile cache: saved %d compiled artifacts to %s (%.1f MB)", count, path,
                            path.stat().st_size / 1e6)
        except OSError as exc:  # a read-only or full cache directory must not stop a generation
            logger.warning("compile cache: could not save %s (%s)", path, exc)


# ----------------------------------------------------------------------------------------------- compiling
def repeated_blocks(module: torch.nn.Module) -> list[str]:
    """Class names of ``module``'s repeated blocks that are present in it (empty: regional compilation n/a)."""
    names = getattr(module, "_repeated_blocks", None) or []
    if not callable(getattr(module, "compile_repeated_blocks", None)):
        return []
    present = {type(m).__name__ for m in module.modules()}
    return [name for name in names if name in present]


def compile_transformer(module: torch.nn.Module, *, mode: str | None = None, regional: bool = True,
                        cache: bool | None = None, dynamic: bool = False) -> str:
    """``torch.compile`` ``module`` in place: its repeated blocks (``regional``, when it names them) or the whole
    module; returns the scope used (``"blocks"`` or ``"model"``).

    ``cache`` (default: :func:`cache_enabled`): keep inductor's cache in :func:`inductor_dir` (unless
    ``TORCHINDUCTOR_CACHE_DIR`` is set) and save / load the portable artifact of each new input shape.
    """
    use_cache = cache_enabled(cache)
    if use_cache:
        directory, ours = use_persistent_inductor_cache()
        logger.debug("compile cache: inductor cache in %s (%s)", directory,
                     "vist3a's" if ours else "TORCHINDUCTOR_CACHE_DIR")
    scope = "blocks" if regional and repeated_blocks(module) else "model"
    if regional and scope == "model":
        logger.info("torch.compile: %s names no repeated blocks; compiling the whole module", type(module).__name__)
    if scope == "blocks":
        module.compile_repeated_blocks(mode=mode, dynamic=dynamic)
    else:
        module.compile(mode=mode, dynamic=dynamic)
    previous = getattr(module, _HOOKS_ATTR, None)
    if previous is not None:
        previous.remove()
    setattr(module, _HOOKS_ATTR, _FirstCallHooks(module, scope, mode, use_cache))
    return scope
