"""Real 4-bit GPTQ and AWQ quantization of a course model, on CPU, in an isolated tool venv.

The quantizer (gptqmodel 7.7.0) asks for a newer torch and transformers than vLLM's CPU build can
take, so it lives in its own venv under the course home, built once from a pinned recipe. The
course venv only starts it as a subprocess (`_quantize_tool.py`) and never imports it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from . import config
from .errors import ModelBuildError

Method = Literal["gptq", "awq"]
METHODS: tuple[str, ...] = ("gptq", "awq")

TORCH = "torch==2.13.0+cpu"
GPTQMODEL = "gptqmodel==7.7.0"

# The recipe measured on a 2-core CPU box (see COURSE_DESIGN.md): torch/transformers as in the
# course venv, gptqmodel WITHOUT its deps (it pins torch>=2.14.1, transformers>=5.20.2), then its
# light deps with torch held at the pin.
_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch, transformers, accelerate, safetensors",
     (TORCH, "transformers==5.19.0", "accelerate==1.15.0", "safetensors==0.8.0")),
    ("gptqmodel (without its deps: they would replace torch)", ("--no-deps", GPTQMODEL)),
    ("gptqmodel's light deps",
     (TORCH, "threadpoolctl==3.8.0", "device-smi==0.5.7", "pypcre==0.6.4", "logbar==0.4.15",
      "tokenicer==0.0.14", "defuser==0.0.28", "dill==0.4.1", "jinja2==3.1.6", "ninja==1.13.2",
      "protobuf==7.36.2", "pillow==13.0.0", "requests==2.34.2", "packaging==26.4")),
)

# Every transitive dependency, pinned (`pip freeze` of a working tool venv), passed as constraints.
_LOCK: tuple[str, ...] = (
    "accelerate==1.15.0", "annotated-doc==0.0.7", "annotated-types==0.8.0", "anyio==4.16.0",
    "certifi==2026.10.19.post1", "charset-normalizer==3.5.3", "click==8.5.1", "defuser==0.0.28",
    "device-smi==0.5.7", "dill==0.4.1", "filelock==4.3.1", "fsspec==2026.9.0", "h11==0.16.0",
    "hf-xet==1.8.0", "httpcore2==2.16.2", "httpx2==2.16.2", "huggingface-hub==2.4.0", "idna==3.20",
    "jinja2==3.1.6", "logbar==0.4.15", "markdown-it-py==4.3.0", "markupsafe==3.0.4", "mdurl==0.1.2",
    "mpmath==1.3.0", "networkx==3.6.1", "ninja==1.13.2", "numpy==2.4.6", "packaging==26.4",
    "pillow==13.0.0", "protobuf==7.36.2", "psutil==7.2.2", "pydantic==2.14.4", "pydantic-core==2.50.5",
    "pygments==2.21.0", "pypcre==0.6.4", "pyyaml==6.0.4", "regex==2026.11.19", "requests==2.34.2",
    "rich==15.0.0", "safetensors==0.8.0", "shellingham==1.5.4", "sympy==1.14.0",
    "threadpoolctl==3.8.0", "tokenicer==0.0.14", "tokenizers==0.23.3", TORCH, "tqdm==4.70.1",
    "transformers==5.19.0", "truststore==0.10.5", "typer==0.29.2", "typing-inspection==0.4.5",
    "typing-extensions==4.16.0", "urllib3==2.8.0",
)

STAMP_NAME = ".course-recipe"
_TOOL_SCRIPT = Path(__file__).with_name("_quantize_tool.py")
# Files a loadable folder needs besides weights and config.json; copied from src if missing.
_COPY_IF_MISSING = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json",
                    "chat_template.jinja", "generation_config.json")
# gptqmodel's per-layer log: timings make it differ on every build, and vLLM does not read it.
_DROP = ("quant_log.csv",)


def tool_venv_dir() -> Path:
    """Where the quantizer's venv lives: `<course home>/tool-venv`."""
    return config.course_home() / "tool-venv"


def recipe_hash() -> str:
    """Hash of the tool venv recipe and this Python's version: a change means a rebuild.

    Returns:
        A short hex digest.
    """
    recipe = {"python": list(sys.version_info[:2]), "steps": _STEPS, "lock": _LOCK}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run_logged(cmd: list[str], what: str) -> None:
    """Run `cmd`, raise ModelBuildError with the tail of its output if it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        exc = subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        raise ModelBuildError(
            f"{what} failed (exit {proc.returncode}); check network access to the package index "
            f"and disk space, then retry. Last output: {_tail(proc.stderr or proc.stdout)}"
        ) from exc


def _tail(text: str, lines: int = 5) -> str:
    """The last non-empty lines of `text`, ANSI colours removed, joined on one line."""
    clean = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", l).strip() for l in text.splitlines()]
    # pip warns about every unreachable index location; those lines bury the real error.
    clean = [l for l in clean if l and not l.startswith("WARNING: Location")]
    return " | ".join(clean[-lines:]) or "(no output)"


def ensure_tool_venv() -> Path:
    """Create the quantizer's isolated venv once (pinned recipe); later calls do nothing.

    A stamp file holds the recipe's hash; when it matches, nothing is installed. A missing or
    stale stamp (first run, interrupted build, changed recipe) rebuilds the venv from scratch.

    Returns:
        The path of the tool venv's Python interpreter.

    Raises:
        ModelBuildError: If creating the venv or a pip install fails.
    """
    venv = tool_venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / STAMP_NAME
    wanted = recipe_hash()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python

    print(f"Building the quantizer's tool venv in {venv} (once, ~1 min)...", flush=True)
    start = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _run_logged([sys.executable, "-m", "venv", str(venv)], f"Creating the venv {venv}")
    lock = venv / "constraints.txt"
    lock.write_text("\n".join(_LOCK) + "\n")
    for i, (what, args) in enumerate(_STEPS, 1):
        print(f"  [{i}/{len(_STEPS)}] pip install {what}", flush=True)
        _run_logged([str(python), "-m", "pip", "install", "--quiet", "--no-input", "-c", str(lock), *args],
                    f"Installing {what} into {venv}")
    stamp.write_text(wanted + "\n")
    print(f"  tool venv ready in {time.perf_counter() - start:.0f} s", flush=True)
    return python


def _check_source(src: Path) -> None:
    """Fail fast, before any install, if `src` is not a model folder the quantizer can read."""
    if not src.is_dir():
        raise ModelBuildError(f"Cannot quantize {src}: no such folder. Build the bf16 course model first.")
    if not (src / "config.json").is_file():
        raise ModelBuildError(
            f"Cannot quantize {src}: it has no config.json. Point src at a Hugging Face model folder "
            "(config.json + *.safetensors + tokenizer files), e.g. the built bf16 course model."
        )
    if not any(src.glob("*.safetensors")):
        raise ModelBuildError(f"Cannot quantize {src}: it has no *.safetensors weights. "
                              "Save the source model with save_pretrained() first.")


def _complete_folder(out: Path, src: Path) -> None:
    """Copy tokenizer/chat/generation files the quantizer dropped, drop its log, check the result."""
    for name in _COPY_IF_MISSING:
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)
    for name in _DROP:
        (out / name).unlink(missing_ok=True)
    cfg_path = out / "config.json"
    if not cfg_path.is_file() or "quantization_config" not in json.loads(cfg_path.read_text()):
        raise ModelBuildError(f"The quantizer wrote no config.json with quantization_config in {out}; "
                              "see the tool log and retry.")
    if not any(out.glob("*.safetensors")):
        raise ModelBuildError(f"The quantizer wrote no *.safetensors weights in {out}; see the tool log.")


def _replace_dir(new: Path, dst: Path) -> None:
    """Move `new` to `dst`, replacing an older `dst` with no moment where a half folder is visible."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    new.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def quantize(method: Method, src: Path, dst: Path) -> dict[str, Any]:
    """Quantize the model folder `src` to 4-bit GPTQ or AWQ (group size 64) into `dst`, on CPU.

    Runs `_quantize_tool.py` in the tool venv (built on first use). The result is written to a
    temporary folder next to `dst` and renamed at the end, so an interrupted build leaves no half
    folder. The tool's full log is kept in `<course home>/logs/quantize-<method>.log`.

    Args:
        method: "gptq" or "awq".
        src: A Hugging Face model folder (config.json, *.safetensors, tokenizer files).
        dst: The folder to create (replaced if it exists).

    Returns:
        The settings used, for a model card: tool, tool_version, method, format, bits, group_size,
        sym, desc_act, calibration_source, calibration_count, seed, seconds (the whole run).

    Raises:
        ModelBuildError: If the method is unknown, `src` is not a model folder, the tool venv cannot
            be built, or the quantizer fails (the message ends with the last lines of its output).
    """
    if method not in METHODS:
        raise ModelBuildError(f"Unknown quantization method {method!r}: use one of {', '.join(METHODS)}.")
    src, dst = Path(src).resolve(), Path(dst).resolve()
    _check_source(src)
    python = ensure_tool_venv()

    start = time.perf_counter()
    log_dir = config.course_home() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"quantize-{method}.log"
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    out, report = work / "model", work / "report.json"
    # TERM=dumb: gptqmodel's progress bars (logbar) log plain lines instead of redrawing (a 3.5 MB log).
    env = dict(os.environ, GPTQMODEL_CPU_WORKERS="2", HF_HUB_OFFLINE="1", PYTHONHASHSEED="0", TERM="dumb",
               # Keep gptqmodel's compiled CPU extension inside the tool venv, not in ~/.cache.
               GPTQMODEL_TORCH_EXTENSIONS_DIR=str(python.parent.parent / "torch_extensions"),
               GPTQMODEL_CACHE_DIR=str(python.parent.parent / "gptqmodel_cache"))
    cmd = [str(python), str(_TOOL_SCRIPT), "--method", method, "--src", str(src),
           "--dst", str(out), "--report", str(report)]
    print(f"Quantizing {src.name} to {method.upper()} 4-bit on CPU (3-7 min on 2 cores); log: {log}", flush=True)
    try:
        with log.open("w") as log_file:
            # cwd: gptqmodel writes its own logs/ folder into the working directory.
            proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        if proc.returncode != 0:
            exc = subprocess.CalledProcessError(proc.returncode, cmd)
            raise ModelBuildError(
                f"{method.upper()} quantization of {src} failed (exit {proc.returncode}); full log in "
                f"{log}. Last lines: {_tail(log.read_text(errors='replace'))}"
            ) from exc
        _complete_folder(out, src)
        settings: dict[str, Any] = json.loads(report.read_text())
        _replace_dir(out, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings["seconds"] = round(time.perf_counter() - start, 1)
    print(f"  {method.upper()} done in {settings['seconds']:.0f} s: {dst}", flush=True)
    return settings
