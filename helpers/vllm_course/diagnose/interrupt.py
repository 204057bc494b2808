"""Clean up after a load interrupted by Ctrl-C (or the notebook's stop button).

`release_interrupted()` frees the half-built engine an interrupted `LLM(...)` leaves reachable
from the traceback, so the next load starts clean; `engine.load_report()` calls it.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import traceback


def release_interrupted(exc: BaseException) -> None:
    """Free what an interrupted `LLM(...)` left behind, so the next load starts clean.

    A KeyboardInterrupt mid-load leaves the half-built engine reachable from the traceback's
    frames (Jupyter keeps the last traceback: ~1.7 GiB of KV cache and weights on the course
    model) and vLLM's process groups initialised. This clears those frames' locals, tears the
    groups down and collects, then notes on the exception that it did.
    """
    traceback.clear_frames(exc.__traceback__)
    with contextlib.suppress(Exception):
        if "vllm" in sys.modules:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
    gc.collect()
    with contextlib.suppress(Exception):
        from .. import engine

        if engine.has_gpu():
            import torch

            torch.cuda.empty_cache()
    note = "vllm_course: the interrupted load was released; the next load starts clean."
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
