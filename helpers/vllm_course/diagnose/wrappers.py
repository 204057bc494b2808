"""Pre-flight and explain around the real call: `diagnosed()`, `load()` and `download()`.

`diagnosed()` turns what a block raises into a course error with advice (the original chained)
and releases an interrupted load; `load()` and `download()` run `preflight()` and then
`engine.load()` / `snapshot_download()` inside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from .checks import preflight
from .explainer import explain
from .interrupt import release_interrupted


@contextlib.contextmanager
def diagnosed(model: str | os.PathLike[str] | None = None, **context: Any) -> Iterator[None]:
    """Run the block; turn what it raises into a course error with advice (original chained).

    A KeyboardInterrupt (Ctrl-C, the notebook's stop button) first releases whatever half-built
    engine the interrupted `LLM(...)` left (see `release_interrupted`), then propagates.

    Args:
        model: the model the block loads or downloads (named in messages).
        context: revision, load_format, quantization, dtype, as passed to the call.
    """
    try:
        yield
    except KeyboardInterrupt as exc:
        release_interrupted(exc)
        raise
    except Exception as exc:
        course_error = explain(exc, model=os.fspath(model) if model is not None else None, **context)
        if course_error is None:
            raise
        raise course_error from exc


def load(model: str | os.PathLike[str], *, quiet: bool = True, verify: bool = False, **llm_kwargs: Any):
    """Pre-flight, then `engine.load(model, **llm_kwargs)`, explaining what goes wrong.

    Returns:
        The engine and its `LoadReport`, as `engine.load` does.

    Raises:
        A course error (see `preflight` and `explain`), or what vLLM raised if there is no advice.
    """
    from .. import engine

    model = os.fspath(model)
    context = {k: llm_kwargs.get(k) for k in ("revision", "quantization", "dtype")}
    preflight(model, revision=context["revision"], load_format=llm_kwargs.get("load_format", "auto"),
              quantization=context["quantization"], verify=verify)
    with diagnosed(model, load_format=llm_kwargs.get("load_format", "auto"), **context):
        return engine.load(model, quiet=quiet, **llm_kwargs)


def download(repo_id: str, *, revision: str | None = None, timeout: float = 3.0, **snapshot_kwargs: Any) -> str:
    """Pre-flight, then `snapshot_download(repo_id, ...)`, explaining what goes wrong.

    Returns:
        The snapshot folder, as `snapshot_download` does.
    """
    from huggingface_hub import snapshot_download

    preflight(repo_id, revision=revision, load_format=None, allow_patterns=snapshot_kwargs.get("allow_patterns"),
              timeout=timeout)
    with diagnosed(repo_id, revision=revision):
        return snapshot_download(repo_id, revision=revision, **snapshot_kwargs)
