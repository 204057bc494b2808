"""The one obvious way to construct `vllm.LLM` on this machine, and to free it again.

The lesson keeps the real call in view::

    from vllm import LLM
    from vllm_course.engine import load_report, machine_kwargs, release

    with load_report() as report:
        llm = LLM(model="course/SmolLM2-135M-Instruct", **machine_kwargs())
    print(report)        # seconds, checkpoint size from vLLM's own log, RSS, weight format
    release(llm)         # shut the engine down so the next load starts clean

`machine_kwargs()` gives what this machine needs (CPU: eager mode; GPU: nothing, vLLM's
defaults); every `LLM(...)` keyword can still be passed next to it. `prepare_environment()` sets
the CPU env vars vLLM reads at start-up and quiets vLLM's console log; it must run before
`import vllm` and is called by this module's import.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from . import config, console, envvars, formats
from .machine import best_dtype, has_gpu  # the one GPU/ISA probe (has_gpu is re-exported here)
from .errors import WeightFormatError

_VLLM_LOGGER = "vllm"
# vLLM's own wording (v0.32): CPU and GPU runners report differently.
_CHECKPOINT_RE = re.compile(r"Checkpoint size: ([\d.]+) GiB")
_CPU_WEIGHTS_RE = re.compile(r"Loading weights took ([\d.]+) seconds")
_GPU_WEIGHTS_RE = re.compile(r"Model loading took ([\d.]+) GiB memory and ([\d.]+) seconds")
# vLLM's log lines the lessons teach (LoadReport.highlights; the rest stays in LoadReport.log): the
# offline snapshot swap (engine/arg_utils.py), the architecture resolved from config.json, which model
# the loader starts on, the weight download, the weights loaded, and the quantization kernels chosen.
_TEACHING_RE = re.compile(
    r"HF_HUB_OFFLINE is True, replace|Resolved architecture|Starting to load model|"
    r"Time spent downloading weights|Checkpoint size|Loading weights took|Model loading took|"
    r"quantization|(?:Selected|Using) \w*Kernel\w* for",
    re.IGNORECASE,
)


def prepare_environment() -> None:
    """Set vLLM's CPU env vars (only where the user has not) and quiet its console log.

    vLLM reads them at start-up; each is recorded with its reason (`envvars`, `print(course)`).
    """
    envvars.default("VLLM_LOGGING_COLOR", "0", "vLLM's log without ANSI colour codes")
    envvars.default("TOKENIZERS_PARALLELISM", "false", "no fork warning from the tokenizers library")
    envvars.default("VLLM_ENABLE_V1_MULTIPROCESSING", "0", "vLLM's engine in this process: ~3 s start, not ~20 s")
    envvars.default("VLLM_LOGGING_CONFIG_PATH", os.environ.get("VLLM_LOGGING_CONFIG_PATH") or str(_write_logging_config()),
                    "vLLM's console log shows errors only; load_report() keeps the whole log and shows the taught lines")
    if not _gpu_visible_cheaply():
        envvars.default("VLLM_CPU_KVCACHE_SPACE", config.CPU_KVCACHE_GIB,
                        "GiB for the KV cache on CPU; without it vLLM's start fails on this machine")
        envvars.default("VLLM_CPU_NUM_OF_RESERVED_CPU", config.CPU_RESERVED_CORES, "vLLM computes on every core")


def machine_kwargs(**overrides: Any) -> dict[str, Any]:
    """Return the `LLM(...)` keywords this machine needs, updated with `overrides`.

    On CPU: `enforce_eager=True` (a compiled start takes ~50 s on 2 cores), a modest
    `max_model_len` so the KV cache fits in 1 GiB, and on AVX2 CPUs `dtype="float32"` (no bf16
    arithmetic there: float32 ran 1.9x faster, see `machine.best_dtype`). On a GPU: nothing,
    vLLM's defaults.

    Example:
        >>> machine_kwargs(load_format="safetensors")   # on an AVX-512 BF16 CPU
        {'enforce_eager': True, 'max_model_len': 2048, 'load_format': 'safetensors'}
        >>> machine_kwargs()                            # on an AVX2 CPU
        {'enforce_eager': True, 'max_model_len': 2048, 'dtype': 'float32'}
    """
    kwargs: dict[str, Any] = {} if has_gpu() else {"enforce_eager": True, "max_model_len": 2048}
    if dtype := best_dtype():
        kwargs["dtype"] = dtype
    kwargs.update(overrides)
    return kwargs


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
    weight_files: tuple[str, ...] = ()
    quantization: str | None = None
    log: tuple[str, ...] = field(default=(), repr=False)
    error: str | None = None

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
        parts = [f"loaded {self.model} on {self.device} in {self.seconds:.1f} s"]
        if self.weight_files:
            parts.append(f"from {', '.join(self.weight_files)}")
        if self.quantization:
            parts.append(f"quantization {self.quantization}")
        if self.weights_gib is not None:
            parts.append(f"weights {self.weights_gib:.2f} GiB")
        if self.rss_bytes is not None:
            parts.append(f"process RSS {self.rss_bytes / 2**30:.2f} GiB")
        if self.gpu_bytes is not None:
            parts.append(f"GPU memory {self.gpu_bytes / 2**30:.2f} GiB")
        return ", ".join(parts)


_LOG_LINES: list[str] = []  # every vLLM log message of this process, in order


class LogBuffer(logging.Handler):
    """Logging handler that keeps vLLM's messages in memory for `load_report` to parse.

    vLLM re-applies its logging config when an engine starts, which replaces handlers; this
    class is named in the config file `prepare_environment` writes, so each new instance
    appends to the same module-level list.
    """

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
    """Time the `LLM(...)` call inside the block and parse vLLM's load log.

    Args:
        model: name to print in the report (default: taken from the engine's config).
        quiet: hide vLLM's console output (INFO lines, C++ warnings, progress bars) during the
            block; it is kept in `report.log`.

    Yields:
        A box that behaves like a `LoadReport` once the block has ended.
    """
    box = _ReportBox()
    _import_vllm()
    _route_vllm_log()
    first = len(_LOG_LINES)
    start = time.perf_counter()
    error: BaseException | None = None
    try:
        with _silenced(quiet) as captured:
            try:
                yield box
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the report
                error = exc
    finally:
        seconds = time.perf_counter() - start
    lines = tuple(_LOG_LINES[first:]) + tuple(captured.splitlines())
    box.report = _parse(model or _model_from_log(lines), seconds, lines, error)
    if isinstance(error, KeyboardInterrupt):
        _release_interrupted(error)  # a half-built engine must not pin memory
    if error is not None:
        raise error


def load(model: str, *, quiet: bool = True, **llm_kwargs: Any) -> tuple[Any, LoadReport]:
    """Construct `LLM(model=model, **machine_kwargs(**llm_kwargs))` and report on it.

    Returns:
        The engine and its LoadReport.

    Raises:
        Whatever vLLM raises (in a notebook, `cell_errors` adds one line of advice under it).
    """
    prepare_environment()
    kwargs = machine_kwargs(**llm_kwargs)
    load_format = kwargs.get("load_format", "auto")
    if Path(model).is_dir() and load_format in formats.LOAD_FORMAT_PATTERNS:
        formats.require_complete(model)
        formats.check_load_format(model, load_format)
    try:
        with load_report(model, quiet=quiet) as report:
            from vllm import LLM

            llm = LLM(model=model, **kwargs)
    except RuntimeError as exc:
        if "Cannot find any model weights" in str(exc):
            raise WeightFormatError(
                f"load_format={load_format!r} matches no weight file of {model}: "
                "list the repo's files (formats.inspect_folder / hf download --dry-run) and pick a format they have."
            ) from exc
        raise
    folder = _local_folder(model, kwargs.get("revision"))
    if folder is not None:
        found = formats.inspect_folder(folder)
        fmt = load_format if load_format in formats.LOAD_FORMAT_PATTERNS else "auto"
        return llm, dataclasses.replace(report.report, weight_files=found.picks(fmt), quantization=found.quantization)
    return llm, report.report


def release(llm: Any) -> None:
    """Shut an engine down and free its memory so the next load in this process starts clean."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    with contextlib.suppress(Exception):
        if core is not None:
            core.shutdown()
    del llm, engine, core
    _free_memory()


def quiet_vllm(quiet: bool = True) -> None:
    """Show only vLLM's errors on the console (True) or its whole INFO log again (False)."""
    level = logging.ERROR if quiet else logging.INFO
    for handler in logging.getLogger(_VLLM_LOGGER).handlers:
        if not isinstance(handler, LogBuffer):
            handler.setLevel(level)


def rss_bytes() -> int:
    """Resident memory of this process, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


# ---------------------------------------------------------------- private helpers


def _free_memory() -> None:
    """Tear down vLLM's process groups, collect, and empty the CUDA cache on a GPU."""
    with contextlib.suppress(Exception):
        if "vllm" in sys.modules:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
    gc.collect()
    if has_gpu():
        import torch

        torch.cuda.empty_cache()


def _release_interrupted(exc: BaseException) -> None:
    """Free what an `LLM(...)` stopped by Ctrl-C left behind, and note it on the exception.

    The half-built engine stays reachable from the traceback's frames (Jupyter keeps the last
    traceback: ~1.7 GiB of KV cache and weights on the course model); clearing those frames'
    locals lets `_free_memory()` reclaim it, so the next load starts clean.
    """
    traceback.clear_frames(exc.__traceback__)
    _free_memory()
    note = "vllm_course: the interrupted load was released; the next load starts clean."
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)


def _gpu_visible_cheaply() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl"))


@contextlib.contextmanager
def _silenced(quiet: bool) -> Iterator[console.Captured]:
    """vLLM's console log limited to errors, and everything else written to the console kept aside."""
    if not quiet:
        yield console.Captured()
        return
    quiet_vllm(True)
    with console.captured(skip_loggers=_VLLM_LOGGER) as captured:
        yield captured


def _write_logging_config() -> Path:
    """Write the logging config vLLM applies: console shows errors only, LogBuffer keeps all.

    `VLLM_COURSE_VERBOSE=1` (set before the first import) shows vLLM's whole INFO log instead.
    """
    console_level = "INFO" if os.environ.get("VLLM_COURSE_VERBOSE", "0") == "1" else "ERROR"
    fmt = "%(levelname)s %(asctime)s [%(filename)s:%(lineno)d] %(message)s"
    settings = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt, "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain",
                        "level": console_level, "stream": "ext://sys.stdout"},
            "course": {"class": "vllm_course.engine.LogBuffer", "level": "DEBUG"},
        },
        "loggers": {"vllm": {"handlers": ["console", "course"], "level": "INFO", "propagate": False}},
    }
    # one file per OS user: on a shared machine (a class on JupyterHub) another user's file is not writable
    path = Path(tempfile.gettempdir()) / f"vllm-course-logging-{os.getuid()}-{console_level.lower()}.json"
    path.write_text(json.dumps(settings, indent=1))
    return path


def _local_folder(model: str, revision: str | None) -> Path | None:
    """The folder vLLM loaded from: `model` itself, or its snapshot in the HF cache."""
    if Path(model).is_dir():
        return Path(model)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached in full: the report just lacks the file list
        return None


def _import_vllm() -> None:
    if "vllm" not in sys.modules:
        prepare_environment()
        with console.discarded():
            from vllm import LLM  # noqa: F401 - configures vLLM logging; prints torch notices


def _route_vllm_log() -> None:
    """Apply vLLM's logging config (ours, from VLLM_LOGGING_CONFIG_PATH) now, if not yet applied.

    vLLM 0.32 applies it only when the engine starts, after `LLM(...)` has read its arguments: the
    INFO lines logged before that (the offline snapshot swap) would reach no handler and be lost.
    """
    if any(isinstance(h, LogBuffer) for h in logging.getLogger(_VLLM_LOGGER).handlers):
        return
    from vllm.config.logging import LoggingConfig
    from vllm.logger import configure_logging_if_needed

    configure_logging_if_needed(LoggingConfig())


def _model_from_log(lines: tuple[str, ...]) -> str:
    for line in lines:
        match = re.search(r"model='([^']+)'", line)
        if match:
            return match.group(1)
    return "model"


def _parse(model: str, seconds: float, lines: tuple[str, ...], error: BaseException | None) -> LoadReport:
    text = "\n".join(lines)
    checkpoint = _CHECKPOINT_RE.search(text)
    cpu_weights = _CPU_WEIGHTS_RE.search(text)
    gpu_weights = _GPU_WEIGHTS_RE.search(text)
    gpu = has_gpu()
    gpu_bytes = None
    if gpu:
        import torch

        gpu_bytes = int(torch.cuda.memory_allocated())
    return LoadReport(
        model=model,
        seconds=seconds,
        device="cuda" if gpu else "cpu",
        checkpoint_gib=float(checkpoint.group(1)) if checkpoint else None,
        weights_seconds=float((gpu_weights or cpu_weights).group(gpu_weights and 2 or 1))
        if (gpu_weights or cpu_weights)
        else None,
        gpu_weights_gib=float(gpu_weights.group(1)) if gpu_weights else None,
        rss_bytes=rss_bytes(),
        gpu_bytes=gpu_bytes,
        log=lines,
        error=f"{type(error).__name__}: {error}" if error else None,
    )


prepare_environment()
