"""Start-up of the commands that load models: the big imports with the cyclic garbage collector paused.

Importing torch, diffusers (whose ``models.autoencoders`` and ``models.transformers`` packages import every model
family diffusers ships, and with them ``torch._dynamo``, peft and scipy) and transformers' modelling code makes
~770 k objects that live as long as the process. While they are made, CPython's collector runs ~1,100 young,
~100 middle and 8 full collections, each full one walking every object made so far: 1.3-1.6 s of the nano
``vist3a generate`` on the 2-core CPU machine (measured with ``gc.callbacks``), half of what the nano models take
to generate the scene (~3 s). These imports cannot be made lazy from here: the Wan classes live in those packages.
Instead, :func:`collector_paused` runs a command's input checks and :func:`import_model_libraries` without the
collector and then freezes what exists (:func:`gc.freeze`: kept out of every later collection); the collections
of the whole command then take ~0.02 s. The price is the cyclic garbage the imports leave (~14 k small objects,
~9 MB), which is never freed. Model loading runs with the collector on, so no garbage holding tensors is kept.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator

#: What every generator preset's loading imports (Wan / CogVideoX classes, their VAEs, the text encoders' base).
MODEL_LIBRARIES = ("torch", "diffusers.models.autoencoders", "diffusers.models.transformers",
                   "transformers.modeling_utils")


def import_model_libraries() -> None:
    """Import :data:`MODEL_LIBRARIES` (inside :func:`collector_paused`, so that their objects are frozen)."""
    for name in MODEL_LIBRARIES:
        importlib.import_module(name)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector paused, then :func:`gc.freeze` every object and resume it.

    Only the process's first import of :data:`MODEL_LIBRARIES` is paused: when they are all imported already (a
    second command in one process: tests, the app) or the collector is off, the block runs as it is. After an
    exception nothing is frozen; the collector is resumed in every case.
    """
    pause = gc.isenabled() and not all(name in sys.modules for name in MODEL_LIBRARIES)
    if not pause:
        yield
        return
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        gc.enable()
