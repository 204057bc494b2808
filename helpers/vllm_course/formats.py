"""What weight format a model folder holds, and which files a `load_format` would pick.

The patterns mirror vLLM 0.32's DefaultModelLoader (`_prepare_weights`): for `auto`/`hf` it tries
`*.safetensors`, then `*.bin`, then `*.pt` (the `.pt` fall-back is on for ordinary decoder
models), and stops at the first pattern that matches; `safetensors` takes only `*.safetensors`;
`pt` only `*.pt`; `npcache` only `*.bin`.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import LocalModelError, WeightFormatError

LOAD_FORMAT_PATTERNS: dict[str, tuple[str, ...]] = {
    "auto": ("*.safetensors", "*.bin", "*.pt"),
    "hf": ("*.safetensors", "*.bin", "*.pt"),
    "safetensors": ("*.safetensors",),
    "pt": ("*.pt",),
    "npcache": ("*.bin",),
}
WEIGHT_SUFFIXES = {".safetensors": "safetensors", ".bin": "bin", ".pt": "pt", ".gguf": "gguf"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class FormatReport:
    """The weight files of one model folder, grouped by format."""

    path: Path
    weights: dict[str, tuple[str, ...]]  # format -> file names
    quantization: str | None  # quant_method from config.json, if any

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(sorted(self.weights))

    @property
    def weight_bytes(self) -> int:
        return sum((self.path / name).stat().st_size for names in self.weights.values() for name in names)

    def picks(self, load_format: str = "auto") -> tuple[str, ...]:
        """Return the files vLLM would load with `load_format` (empty: it would fail)."""
        return select_weights([n for names in self.weights.values() for n in names], load_format)

    def __str__(self) -> str:
        parts = ", ".join(f"{fmt}: {', '.join(names)}" for fmt, names in sorted(self.weights.items()))
        quant = f" (quantized: {self.quantization})" if self.quantization else ""
        return f"{self.path.name}: {parts or 'no weight files'}{quant}"


def select_weights(file_names: list[str], load_format: str = "auto") -> tuple[str, ...]:
    """Return the names vLLM's loader keeps from `file_names` for `load_format`.

    Raises:
        WeightFormatError: `load_format` is not one the default loader knows.
    """
    try:
        patterns = LOAD_FORMAT_PATTERNS[load_format]
    except KeyError as exc:
        known = ", ".join(LOAD_FORMAT_PATTERNS)
        raise WeightFormatError(f"load_format={load_format!r} is not a file-based format; use one of {known}.") from exc
    for pattern in patterns:
        found = tuple(sorted(n for n in file_names if fnmatch.fnmatch(Path(n).name, pattern)))
        if found:
            return found
    return ()


def inspect_folder(path: str | Path) -> FormatReport:
    """Group the weight files of a local model folder by format and read its quantization.

    Example:
        >>> print(inspect_folder(models.require("course/SmolLM2-135M-Instruct-bin")))
        SmolLM2-135M-Instruct-bin: bin: pytorch_model.bin
    """
    folder = Path(path)
    weights: dict[str, list[str]] = {}
    for item in sorted(folder.iterdir()):
        fmt = WEIGHT_SUFFIXES.get(item.suffix)
        if fmt and item.is_file():
            weights.setdefault(fmt, []).append(item.name)
    return FormatReport(folder, {k: tuple(v) for k, v in weights.items()}, _quant_method(folder))


def check_load_format(path: str | Path, load_format: str) -> tuple[str, ...]:
    """Return the files `load_format` would load from a folder.

    Raises:
        WeightFormatError: none match; the message lists the weight files that are there.
    """
    report = inspect_folder(path)
    picked = report.picks(load_format)
    if not picked:
        have = ", ".join(n for names in report.weights.values() for n in names) or "no weight files"
        wanted = " or ".join(LOAD_FORMAT_PATTERNS[load_format])
        raise WeightFormatError(
            f"load_format={load_format!r} reads {wanted} but {report.path} has {have}: "
            "use load_format='auto' or convert the weights."
        )
    return picked


def missing_files(path: str | Path) -> list[str]:
    """Name what a local folder lacks for vLLM: config.json, weights, a tokenizer."""
    folder = Path(path)
    if not folder.is_dir():
        return [f"the folder itself ({folder})"]
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any(WEIGHT_SUFFIXES.get(p.suffix) in {"safetensors", "bin", "pt"} for p in folder.iterdir()):
        missing.append("weights (*.safetensors, *.bin or *.pt)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    return missing


def require_complete(path: str | Path) -> Path:
    """Return `path` if vLLM can load it as a local model.

    Raises:
        LocalModelError: something is missing; the message names each missing file.
    """
    missing = missing_files(path)
    if missing:
        raise LocalModelError(f"{path} is not a loadable model folder: missing {', '.join(missing)}.")
    return Path(path)


def _quant_method(folder: Path) -> str | None:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    quant = cfg.get("quantization_config") or {}
    return quant.get("quant_method")


# ---------------------------------------------------------------- safetensors header

# The safetensors layout: 8 bytes (little-endian u64) = N, then N bytes of JSON, then raw data.
_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the format's own limit (safetensors refuses more)


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it; offsets count from the end of the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclass(frozen=True)
class SafetensorsHeader:
    """The header of a .safetensors file: every tensor's name, dtype, shape and byte range."""

    path: Path
    header_bytes: int  # N, the JSON length after the 8-byte prefix
    file_bytes: int
    metadata: dict[str, str]
    tensors: tuple[TensorEntry, ...]  # in file order (by start offset)

    @property
    def data_offset(self) -> int:
        """Where tensor data starts in the file: 8 + header_bytes."""
        return 8 + self.header_bytes

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def dtypes(self) -> dict[str, int]:
        """How many tensors have each dtype."""
        counts: dict[str, int] = {}
        for entry in self.tensors:
            counts[entry.dtype] = counts.get(entry.dtype, 0) + 1
        return dict(sorted(counts.items()))

    def tensor(self, name: str) -> TensorEntry:
        """Return the entry called `name`.

        Raises:
            KeyError: no such tensor; the message names a few that exist.
        """
        for entry in self.tensors:
            if entry.name == name:
                return entry
        sample = ", ".join(t.name for t in self.tensors[:3])
        raise KeyError(f"{name!r} is not in {self.path.name} ({len(self.tensors)} tensors, e.g. {sample}).")

    def __str__(self) -> str:
        dtypes = ", ".join(f"{d}: {n}" for d, n in self.dtypes.items())
        return (f"{self.path.name}: {len(self.tensors)} tensors ({dtypes}), {self.parameters / 1e6:.1f} M parameters, "
                f"header {self.header_bytes:,} B of {self.file_bytes:,} B, metadata {self.metadata}")


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Read a .safetensors file's header (8-byte length + JSON) without reading any tensor data.

    This is what vLLM and `huggingface_hub.get_safetensors_metadata` do before loading: the
    header alone tells every tensor's dtype, shape and byte range.

    Args:
        path: a `.safetensors` file.

    Returns:
        A `SafetensorsHeader`; tensors are in file order.

    Raises:
        LocalModelError: the file does not exist.
        WeightFormatError: the file is not a safetensors file (bad length prefix or header).

    Example:
        >>> header = read_safetensors_header(models.require(BASE) / "model.safetensors")
        >>> header.tensor("model.norm.weight")
        TensorEntry(name='model.norm.weight', dtype='BF16', shape=(576,), start=269028864, end=269030016)
    """
    file = Path(path)
    if not file.is_file():
        raise LocalModelError(f"{file} is not a file: pass the path of a .safetensors file inside a model folder.")
    size = file.stat().st_size
    with file.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 2 <= length <= min(size - 8, _SAFETENSORS_MAX_HEADER):
            raise WeightFormatError(
                f"{file} is not a safetensors file: its first 8 bytes give a header length of {length} "
                f"for a {size}-byte file. Check the format with formats.inspect_folder; .bin/.pt files are pickles."
            )
        raw = handle.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightFormatError(f"{file} is not a safetensors file: its {length}-byte header is not JSON ({exc}).") from exc
    if not isinstance(header, dict):
        raise WeightFormatError(f"{file} is not a safetensors file: its header is a {type(header).__name__}, not a JSON object.")
    metadata = header.pop("__metadata__", None) or {}
    try:
        tensors = tuple(sorted(
            (TensorEntry(name, info["dtype"], tuple(info["shape"]), *info["data_offsets"]) for name, info in header.items()),
            key=lambda t: (t.start, t.name),
        ))
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightFormatError(f"{file} has a malformed safetensors header entry ({exc!r}): re-save the weights.") from exc
    return SafetensorsHeader(file, length, size, dict(metadata), tensors)
