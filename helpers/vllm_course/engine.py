"""The one obvious way to construct `vllm.LLM` on this machine and free it again: `LLM(..., **machine_kwargs())`
inside `with load_report() as report:` (seconds, sizes from vLLM's log, RSS), then `release(llm)`. Importing this
module runs `prepare_environment()`: vLLM reads its env vars at `import vllm`."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config, console, envvars
from .machine import best_dtype, has_gpu  # the one GPU/ISA probe (has_gpu is re-exported here)

_VLLM_LOGGER = "vllm"
# vLLM's own wording (v0.32): CPU and GPU runners report differently.
_CHECKPOINT_RE = re.compile(r"Checkpoint size: ([\d.]+) GiB")
_CPU_WEIGHTS_RE = re.compile(r"Loading weights took ([\d.]+) seconds")
_GPU_WEIGHTS_RE = re.compile(r"Model loading took ([\d.]+) GiB memory and ([\d.]+) seconds")
# The log lines the lessons teach (LoadReport.highlights).
_TEACHING_RE = re.compile(r"HF_HUB_OFFLINE is True, replace|Resolved architecture|Starting to load model|"
                          r"Time spent downloading weights|Checkpoint size|Loading weights took|Model loading took|"
                          r"quantization|(?:Selected|Using) \w*Kernel\w* for", re.IGNORECASE)


def prepare_environment() -> None:
    """Set vLLM's CPU env vars (only where the user has not) and quiet its console log, each with why."""
    envvars.default("VLLM_LOGGING_COLOR", "0", "vLLM's log without ANSI colour codes")
    envvars.default("TOKENIZERS_PARALLELISM", "false", "no fork warning from the tokenizers library")
    envvars.default("VLLM_ENABLE_V1_MULTIPROCESSING", "0", "vLLM's engine in this process: ~3 s start, not ~20 s")
    envvars.default(
        "VLLM_LOGGING_CONFIG_PATH", os.environ.get("VLLM_LOGGING_CONFIG_PATH") or str(_write_logging_config()),
        "vLLM's console log shows errors only; load_report() keeps the whole log and shows the taught lines")
    if not has_gpu():
        envvars.default("VLLM_CPU_KVCACHE_SPACE", config.CPU_KVCACHE_GIB,
                        "GiB for the KV cache on CPU; without it vLLM's start fails on this machine")
        envvars.default("VLLM_CPU_NUM_OF_RESERVED_CPU", config.CPU_RESERVED_CORES, "vLLM computes on every core")


def machine_kwargs(**overrides: Any) -> dict[str, Any]:
    """Return the `LLM(...)` keywords this machine needs, updated with `overrides`: on CPU eager mode (a
    compiled start takes ~50 s on 2 cores), a KV cache that fits in 1 GiB, float32 on AVX2; on a GPU none."""
    kwargs: dict[str, Any] = {} if has_gpu() else {"enforce_eager": True, "max_model_len": 2048}
    if dtype := best_dtype():
        kwargs["dtype"] = dtype
    return kwargs | overrides


@dataclass(frozen=True)
class LoadReport:
    """What one `LLM(...)` construction cost, read from vLLM's own log and the OS."""

    model: str
    seconds: float
    device: str
    checkpoint_gib: float | None = None
    weights_seconds: float | None = None
    gpu_weights_gib: float | None = None
    rss_bytes: int | None = None
    gpu_bytes: int | None = None
    log: tuple[str, ...] = field(default=(), repr=False)

    @property
    def weights_gib(self) -> float | None:
        """Weights size as vLLM reported it (GPU: memory taken; CPU: checkpoint size)."""
        return self.gpu_weights_gib if self.gpu_weights_gib is not None else self.checkpoint_gib

    @property
    def highlights(self) -> list[str]:
        """The few vLLM log lines that teach something about the load."""
        return [line for line in self.log if len(line) < 300 and _TEACHING_RE.search(line)]

    @property
    def vllm_log(self) -> str:
        """The taught lines of vLLM's log, verbatim, to print (`report.log` holds every line)."""
        lines = "".join(f"\n  {line}" for line in self.highlights) or "\n  (none: the load failed before them)"
        return f"vLLM's log, the lines about this load:{lines}"

    def __str__(self) -> str:
        parts = [f"loaded {self.model} on {self.device} in {self.seconds:.1f} s",
                 self.weights_gib is not None and f"weights {self.weights_gib:.2f} GiB",
                 self.rss_bytes is not None and f"process RSS {self.rss_bytes / 2**30:.2f} GiB",
                 self.gpu_bytes is not None and f"GPU memory {self.gpu_bytes / 2**30:.2f} GiB"]
        return ", ".join(p for p in parts if p)


_LOG_LINES: list[str] = []  # every vLLM log message of this process, in order


class LogBuffer(logging.Handler):
    """Keeps vLLM's log messages for `load_report`; every instance (vLLM re-applies the config) shares one list."""

    def emit(self, record: logging.LogRecord) -> None:
        _LOG_LINES.append(record.getMessage())
        del _LOG_LINES[:-5000]


class _ReportBox:
    """Filled in when the `with load_report()` block ends; prints like a LoadReport."""

    report: LoadReport | None = None

    def __getattr__(self, name: str) -> Any:
        if self.report is None:
            raise AttributeError(f"{name}: the load has not finished yet")
        return getattr(self.report, name)

    def __str__(self) -> str:
        return str(self.report) if self.report else "load not finished"

    __repr__ = __str__


@contextlib.contextmanager
def load_report(model: str | None = None, *, quiet: bool = True) -> Iterator[_ReportBox]:
    """Time the `LLM(...)` call in the block and parse vLLM's load log into a box that acts as a `LoadReport`.
    `model`: the name to print (default: from vLLM's log); `quiet` keeps vLLM's console output in `report.log`."""
    box, error = _ReportBox(), None
    _import_vllm()
    first, start = len(_LOG_LINES), time.perf_counter()
    if quiet:  # vLLM's console log limited to errors; everything else written to the console kept aside
        for handler in logging.getLogger(_VLLM_LOGGER).handlers:
            if not isinstance(handler, LogBuffer):
                handler.setLevel(logging.ERROR)
    kept = console.captured(skip_loggers=_VLLM_LOGGER) if quiet else contextlib.nullcontext(console.Captured())
    with kept as captured:
        try:
            yield box
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the report
            error = exc
    seconds = time.perf_counter() - start
    lines = tuple(_LOG_LINES[first:]) + tuple(captured.text.splitlines())
    name = next((m.group(1) for line in lines if (m := re.search(r"model='([^']+)'", line))), "model")
    box.report = _parse(model or name, seconds, lines)
    if isinstance(error, KeyboardInterrupt):  # Jupyter's kept traceback would pin the half-built engine (~1.7 GiB)
        traceback.clear_frames(error.__traceback__)
        _free_memory()
        note = "vllm_course: the interrupted load was released; the next load starts clean."
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
    if error is not None:
        raise error


def release(llm: Any) -> None:
    """Shut an engine down and free its memory so the next load in this process starts clean."""
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    shut = False
    with contextlib.suppress(Exception):
        if core is not None:
            core.shutdown()  # vLLM's own teardown: its process groups, then gc.collect()
            shut = True
    del llm, core
    if shut:
        gc.collect()  # frees the engine object itself
    else:
        _free_memory()


def rss_bytes() -> int:
    """Resident memory of this process, in bytes."""
    import psutil
    return int(psutil.Process().memory_info().rss)


def _free_memory() -> None:
    """Tear down vLLM's process groups and collect; vLLM's clean-up also empties the GPU's cache."""
    with contextlib.suppress(Exception):
        if "vllm" in sys.modules:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
            cleanup_dist_env_and_memory()
    gc.collect()


def _write_logging_config() -> Path:
    """Write vLLM's logging config: console errors only (`VLLM_COURSE_VERBOSE=1`: all), LogBuffer keeps all."""
    console_level = "INFO" if os.environ.get("VLLM_COURSE_VERBOSE", "0") == "1" else "ERROR"
    settings = {"version": 1, "disable_existing_loggers": False,
                "formatters": {"plain": {"format": "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s",
                                         "datefmt": "%m-%d %H:%M:%S"}},
                "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                                         "level": console_level, "stream": "ext://sys.stdout"},
                             "course": {"class": "vllm_course.engine.LogBuffer", "level": "DEBUG"}},
                "loggers": {"vllm": {"handlers": ["console", "course"], "level": "INFO", "propagate": False}}}
    # one file per OS user: on a shared machine (a class on JupyterHub) another user's file is not writable
    path = Path(tempfile.gettempdir()) / f"vllm-course-logging-{os.getuid()}-{console_level.lower()}.json"
    path.write_text(json.dumps(settings, indent=1))
    return path


def _import_vllm() -> None:
    """Import vLLM quietly, and apply its logging config (ours) now: vLLM 0.32 applies it when the engine
    starts, and the lines logged before (the offline snapshot swap) would reach no handler."""
    if "vllm" not in sys.modules:
        prepare_environment()
        with open(os.devnull, "wb") as sink, console.fds_to(sink.fileno()):
            from vllm import LLM  # noqa: F401 - configures vLLM logging; prints torch notices
    if not any(isinstance(h, LogBuffer) for h in logging.getLogger(_VLLM_LOGGER).handlers):
        from vllm.config.logging import LoggingConfig
        from vllm.logger import configure_logging_if_needed
        configure_logging_if_needed(LoggingConfig())


def _parse(model: str, seconds: float, lines: tuple[str, ...]) -> LoadReport:
    """The LoadReport of one load, from vLLM's log lines."""
    text = "\n".join(lines)
    checkpoint, cpu_weights, gpu_weights = (r.search(text) for r in (_CHECKPOINT_RE, _CPU_WEIGHTS_RE, _GPU_WEIGHTS_RE))
    weights_seconds = gpu_weights.group(2) if gpu_weights else cpu_weights and cpu_weights.group(1)
    import torch  # vLLM has imported it already
    gpu_bytes = int(torch.cuda.memory_allocated()) if has_gpu() else None
    return LoadReport(model, seconds, "cpu" if gpu_bytes is None else "cuda",
                      checkpoint_gib=checkpoint and float(checkpoint.group(1)),
                      weights_seconds=weights_seconds and float(weights_seconds),
                      gpu_weights_gib=gpu_weights and float(gpu_weights.group(1)),
                      rss_bytes=rss_bytes(), gpu_bytes=gpu_bytes, log=lines)


prepare_environment()
