"""What a model folder holds: weight files by format, what a `load_format` picks (as vLLM 0.32's
DefaultModelLoader: `auto`/`hf` stop at the first pattern that matches)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightFormatError

LOAD_FORMAT_PATTERNS: dict[str, tuple[str, ...]] = {
    "auto": ("*.safetensors", "*.bin", "*.pt"),
    "hf": ("*.safetensors", "*.bin", "*.pt"),
    "safetensors": ("*.safetensors",),
    "pt": ("*.pt",),
    "npcache": ("*.bin",),
}
WEIGHT_SUFFIXES = {".safetensors": "safetensors", ".bin": "bin", ".pt": "pt", ".gguf": "gguf"}
WEIGHT_FILES = (*WEIGHT_SUFFIXES, ".pth")  # what a download of weights ends with (vLLM does not load .pth)
# Weight files of other frameworks, which no load_format reads (named in messages all the same).
OTHER_WEIGHT_SUFFIXES = (".h5", ".msgpack", ".onnx", ".ckpt", ".pth", ".gguf", ".ot", ".tflite")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class FormatReport:
    """The weight files of one model folder, grouped by format."""

    path: Path
    weights: dict[str, tuple[str, ...]]  # format -> file names
    quantization: str | None  # quant_method from config.json, if any

    @property
    def weight_bytes(self) -> int:
        return sum((self.path / name).stat().st_size for names in self.weights.values() for name in names)

    def picks(self, load_format: str = "auto") -> tuple[str, ...]:
        """Return the files vLLM would load with `load_format` (empty: it would fail)."""
        if load_format not in LOAD_FORMAT_PATTERNS:
            raise WeightFormatError(f"load_format={load_format!r} is not a file-based format; "
                                    f"use one of {', '.join(LOAD_FORMAT_PATTERNS)}.")
        names = [n for names in self.weights.values() for n in names]
        for pattern in LOAD_FORMAT_PATTERNS[load_format]:
            if found := tuple(sorted(fnmatch.filter(names, pattern))):
                return found
        return ()

    def __str__(self) -> str:
        parts = ", ".join(f"{fmt}: {', '.join(names)}" for fmt, names in sorted(self.weights.items()))
        quant = f" (quantized: {self.quantization})" if self.quantization else ""
        return f"{self.path.name}: {parts or 'no weight files'}{quant}"


def inspect_folder(path: str | Path) -> FormatReport:
    """Group the weight files of a local model folder by format and read its quantization from config.json."""
    folder = Path(path)
    weights: dict[str, list[str]] = {}
    for item in sorted(folder.iterdir()):
        if (fmt := WEIGHT_SUFFIXES.get(item.suffix)) and item.is_file():
            weights.setdefault(fmt, []).append(item.name)
    quant = None
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        quant = (json.loads((folder / "config.json").read_text()).get("quantization_config") or {}).get("quant_method")
    return FormatReport(folder, {k: tuple(v) for k, v in weights.items()}, quant)


def weight_format_message(where: str, load_format: str, names: list[str] | tuple[str, ...]) -> str:
    """The advice when `load_format` matches none of `names`, the files of `where` (a folder or a repo)."""
    wanted = " or ".join(LOAD_FORMAT_PATTERNS.get(load_format, (load_format,)))
    have = ", ".join(n for n in names if Path(n).suffix in WEIGHT_SUFFIXES or n.endswith(OTHER_WEIGHT_SUFFIXES))
    return (f"load_format={load_format!r} reads {wanted} but {where} has {have or 'no weight files'}: use "
            "load_format='auto' or convert the weights.")


def missing_files(path: str | Path) -> list[str]:
    """Name what a local folder lacks for vLLM: config.json, weights, a tokenizer."""
    folder = Path(path)
    if not folder.is_dir():
        return [f"the folder itself ({folder})"]
    present = {"config.json": (folder / "config.json").is_file(),
               "weights (*.safetensors, *.bin or *.pt)":
                   any(WEIGHT_SUFFIXES.get(p.suffix) in {"safetensors", "bin", "pt"} for p in folder.iterdir()),
               "a tokenizer (tokenizer.json, tokenizer.model or vocab.json)":
                   any((folder / name).is_file() for name in TOKENIZER_FILES)}
    return [name for name, found in present.items() if not found]


def model_folder(model: str, revision: str | None = None) -> Path | None:
    """The folder a load of `model` reads: the folder itself, or the repo's cached snapshot (None: neither)."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import try_to_load_from_cache
    with contextlib.suppress(Exception):  # an id the cache cannot hold is simply not cached
        if isinstance(found := try_to_load_from_cache(model, "config.json", revision=revision), str):
            return Path(found).parent
    return None
