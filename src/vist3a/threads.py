"""Independent pieces of torch CPU work side by side in threads, each single-threaded.

The CPU reference rasteriser runs many small ops; splitting each of them over the cores gains less than rendering
whole views side by side, one per core, and single-threaded ops do not stall while other processes share the cores
(docs/benchmarks.md, "Rendering on the CPU"). :func:`map_single_threaded` is that scheme: ``fn`` over the items in
worker threads that run torch with one intra-op thread each (the fly-through's frames, the held-out views that
score ``--direction mirror-select``).

torch's intra-op thread count is per thread once a thread has used it, and a new thread takes the count last set
anywhere; so the caller's count is set to 1 while the workers start and restored afterwards. The caller's own ops
after the call run with its count as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def map_single_threaded(fn: Callable[[T], Any], items: Iterable[T], workers: int | None = None,
                        on_result: Callable[[T, Any], None] | None = None) -> list[Any]:
    """``[fn(item) for item in items]`` with ``workers`` threads (default: torch's intra-op thread count), each
    running torch single-threaded; ``on_result(item, result)`` is called in order as results arrive (progress
    bars). With one worker or one item, ``fn`` runs in the calling thread with its thread count unchanged."""
    items = list(items)
    threads = torch.get_num_threads()
    workers = threads if workers is None else workers
    results = []
    if workers <= 1 or len(items) <= 1:
        for item in items:
            results.append(fn(item))
            if on_result is not None:
                on_result(item, results[-1])
        return results
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(min(workers, len(items))) as pool:
            for item, result in zip(items, pool.map(fn, items), strict=True):
                results.append(result)
                if on_result is not None:
                    on_result(item, result)
    finally:
        torch.set_num_threads(threads)
    return results
