"""Real 4-bit GPTQ/AWQ on CPU by `quantize_tool.py` in a tool venv (gptqmodel needs a newer torch than vLLM's)."""

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

from .. import config
from . import installer
from ..errors import ModelBuildError

Method = Literal["gptq", "awq"]
METHODS: tuple[str, ...] = ("gptq", "awq")

TORCH = "torch==2.13.0+cpu"

# gptqmodel WITHOUT its deps (it pins torch>=2.14.1, transformers>=5.20.2), then its light deps at our torch.
_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("torch, transformers, accelerate, safetensors",
     (TORCH, "transformers==5.19.0", "accelerate==1.15.0", "safetensors==0.8.0")),
    ("gptqmodel (without its deps: they would replace torch)", ("--no-deps", "gptqmodel==7.7.0")),
    ("gptqmodel's light deps", (TORCH, "threadpoolctl==3.8.0", "device-smi==0.5.7", "pypcre==0.6.4",
     "logbar==0.4.15", "tokenicer==0.0.14", "defuser==0.0.28", "dill==0.4.1", "jinja2==3.1.6", "ninja==1.13.2",
     "protobuf==7.36.2", "pillow==13.0.0", "requests==2.34.2", "packaging==26.4")))

# Every transitive dependency, pinned (`pip freeze` of a working tool venv), passed as constraints.
_LOCK: tuple[str, ...] = (
    "accelerate==1.15.0", "annotated-doc==0.0.7", "annotated-types==0.8.0", "anyio==4.16.0",
    "certifi==2026.10.19.post1", "charset-normalizer==3.5.3", "click==8.5.1", "defuser==0.0.28",
    "device-smi==0.5.7", "dill==0.4.1", "filelock==4.3.1", "fsspec==2026.9.0", "h11==0.16.0", "hf-xet==1.8.0",
    "httpcore2==2.16.2", "httpx2==2.16.2", "huggingface-hub==2.4.0", "idna==3.20", "jinja2==3.1.6",
    "logbar==0.4.15", "markdown-it-py==4.3.0", "markupsafe==3.0.4", "mdurl==0.1.2", "mpmath==1.3.0",
    "networkx==3.6.1", "ninja==1.13.2", "numpy==2.4.6", "packaging==26.4", "pillow==13.0.0",
    "protobuf==7.36.2", "psutil==7.2.2", "pydantic==2.14.4", "pydantic-core==2.50.5", "pygments==2.21.0",
    "pypcre==0.6.4", "pyyaml==6.0.4", "regex==2026.11.19", "requests==2.34.2", "rich==15.0.0",
    "safetensors==0.8.0", "shellingham==1.5.4", "sympy==1.14.0", "threadpoolctl==3.8.0", "tokenicer==0.0.14",
    "tokenizers==0.23.3", TORCH, "tqdm==4.70.1", "transformers==5.19.0", "truststore==0.10.5",
    "typer==0.29.2", "typing-inspection==0.4.5", "typing-extensions==4.16.0", "urllib3==2.8.0")

STAMP_NAME = ".course-recipe"
_TOOL_SCRIPT = Path(__file__).with_name("quantize_tool.py")  # run by path in the tool venv
# Files a loadable folder needs besides weights and config.json; copied from src if missing.
_COPY_IF_MISSING = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json")


def recipe_hash() -> str:
    """Short hash of the tool venv recipe and this Python's version: a change means a rebuild."""
    recipe = {"python": list(sys.version_info[:2]), "steps": _STEPS, "lock": _LOCK}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_tool_venv() -> Path:
    """Python of `<course home>/tool-venv`, rebuilt unless its stamp is `recipe_hash()` (ModelBuildError)."""
    venv = config.course_home() / "tool-venv"
    python, stamp, wanted = venv / "bin" / "python", venv / STAMP_NAME, recipe_hash()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    print(f"Building the quantizer's tool venv in {venv} (once, ~1 min)...", flush=True)
    start = time.perf_counter()
    if venv.exists():
        shutil.rmtree(venv)
    _check(subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True),
           f"Creating the venv {venv}")
    lock = venv / "constraints.txt"
    lock.write_text("\n".join(_LOCK) + "\n")
    for i, (what, args) in enumerate(_STEPS, 1):
        print(f"  [{i}/{len(_STEPS)}] pip install {what}", flush=True)
        _check(installer.install(python, ["-c", str(lock), *args]), f"Installing {what} into {venv}")
    stamp.write_text(wanted + "\n")
    print(f"  tool venv ready in {time.perf_counter() - start:.0f} s", flush=True)
    return python


def quantize(method: Method, src: Path, dst: Path) -> dict[str, Any]:
    """Quantize the model folder `src` to 4-bit into `dst` (replaced whole); return the settings used.
    Log: `<course home>/logs/quantize-<method>.log`; ModelBuildError ends with its last lines."""
    if method not in METHODS:
        raise ModelBuildError(f"Unknown quantization method {method!r}: use one of {', '.join(METHODS)}.")
    src, dst = Path(src).resolve(), Path(dst).resolve()
    _check_source(src)
    python = ensure_tool_venv()
    start = time.perf_counter()
    log = config.course_home() / "logs" / f"quantize-{method}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    out, report = work / "model", work / "report.json"
    # TERM=dumb: logbar logs plain lines, not a 3.5 MB redraw; compiled extension and cache in the tool venv.
    env = dict(os.environ, GPTQMODEL_CPU_WORKERS="2", HF_HUB_OFFLINE="1", PYTHONHASHSEED="0", TERM="dumb",
               GPTQMODEL_TORCH_EXTENSIONS_DIR=str(python.parent.parent / "torch_extensions"),
               GPTQMODEL_CACHE_DIR=str(python.parent.parent / "gptqmodel_cache"))
    cmd = [str(python), str(_TOOL_SCRIPT), "--method", method, "--src", str(src),
           "--dst", str(out), "--report", str(report)]
    print(f"Quantizing {src.name} to {method.upper()} 4-bit on CPU (minutes); log: {log}", flush=True)
    try:
        with log.open("w") as log_file:  # cwd: gptqmodel writes its own logs/ folder there
            proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
        if proc.returncode != 0:
            raise ModelBuildError(f"{method.upper()} quantization of {src} failed (exit {proc.returncode}); full log in "
                                  f"{log}. Last lines: {_tail(log.read_text(errors='replace'))}"
                                  ) from subprocess.CalledProcessError(proc.returncode, cmd)
        _complete_folder(out, src)
        settings: dict[str, Any] = json.loads(report.read_text())
        if dst.exists():  # moved aside whole, then removed with `work`: no half folder is ever visible at dst
            dst.rename(work / "old")
        out.rename(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings["seconds"] = round(time.perf_counter() - start, 1)
    print(f"  {method.upper()} done in {settings['seconds']:.0f} s: {dst}", flush=True)
    return settings


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    """ModelBuildError naming `what` and the last lines of its output, if `proc` failed."""
    if proc.returncode != 0:
        raise ModelBuildError(f"{what} failed (exit {proc.returncode}); check network access to the package index "
                              f"and disk space, then retry. Last output: {_tail(proc.stderr or proc.stdout)}"
                              ) from subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)


def _tail(text: str, lines: int = 5) -> str:
    """The last non-empty lines of `text` on one line, without ANSI colours or pip's location warnings."""
    clean = [re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", l).strip() for l in text.splitlines()]
    clean = [l for l in clean if l and not l.startswith("WARNING: Location")]
    return " | ".join(clean[-lines:]) or "(no output)"


def _check_source(src: Path) -> None:
    """Fail fast, before any install, if `src` is not a model folder the quantizer can read."""
    if not src.is_dir():
        raise ModelBuildError(f"Cannot quantize {src}: no such folder. Build the bf16 course model first.")
    if not (src / "config.json").is_file():
        raise ModelBuildError(f"Cannot quantize {src}: it has no config.json. Point src at a Hugging Face model folder "
                              "(config.json + *.safetensors + tokenizer files), e.g. the built bf16 course model.")
    if not any(src.glob("*.safetensors")):
        raise ModelBuildError(f"Cannot quantize {src}: it has no *.safetensors weights. "
                              "Save the source model with save_pretrained() first.")


def _complete_folder(out: Path, src: Path) -> None:
    """Copy the files the quantizer dropped, delete its per-layer timing log, check the result."""
    for name in _COPY_IF_MISSING:
        if (src / name).is_file() and not (out / name).exists():
            shutil.copy2(src / name, out / name)
    (out / "quant_log.csv").unlink(missing_ok=True)
    cfg_path = out / "config.json"
    if not cfg_path.is_file() or "quantization_config" not in json.loads(cfg_path.read_text()):
        raise ModelBuildError(f"The quantizer wrote no config.json with quantization_config in {out}; "
                              "see the tool log and retry.")
    if not any(out.glob("*.safetensors")):
        raise ModelBuildError(f"The quantizer wrote no *.safetensors weights in {out}; see the tool log.")
