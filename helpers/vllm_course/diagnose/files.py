"""What is on disk around a load: local model folders, weight files and cached snapshots.

Private helpers of the exception explainer (`explainer.py`) and its messages: does a model
argument name a folder, which snapshot of a repo is cached and what it lacks, is a .safetensors
file whole, and the nearest existing folder of a path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
from pathlib import Path

from .. import formats

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Weight-like files a load does not download (other frameworks' formats).
_OTHER_WEIGHTS = (".h5", ".msgpack", ".onnx", ".ckpt", ".pth", ".gguf", ".ot", ".tflite")


# -- private helpers -------------------------------------------------------------------------------


def _looks_local(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model))


def _cached_snapshot(repo: str, revision: str | None) -> Path | None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = revision if revision and _COMMIT.match(revision) else None
    if commit is None:
        with contextlib.suppress(OSError):
            commit = (folder / "refs" / (revision or "main")).read_text(encoding="utf-8").strip()
    snap = folder / "snapshots" / commit if commit else None
    return snap if snap is not None and snap.is_dir() else None


def _missing_in_snapshot(snapshot: Path) -> list[str]:
    """Files a load needs that a cached snapshot lacks: its cached tree listing, else config/weights/tokenizer."""
    tree = snapshot.parent.parent / "trees" / f"{snapshot.name}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
        listed = json.loads(tree.read_text(encoding="utf-8"))["files"]
        return sorted(name for name in listed if not (snapshot / name).is_file())
    return formats.missing_files(snapshot) if snapshot.is_dir() else [f"the snapshot itself ({snapshot})"]


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (None if its header covers the file exactly)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > min(size - 8, 100 * 2**20):
                return f"header length {length} B does not fit in the {size} B file"
            header = json.loads(fh.read(length))
    except (OSError, struct.error, ValueError) as exc:
        return f"unreadable header: {type(exc).__name__}"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    expected = 8 + length + max(ends, default=0)
    if expected != size:
        return f"{size} B on disk, its header describes {expected} B: truncated or padded"
    return None


def _existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(os.path.abspath(os.sep))
