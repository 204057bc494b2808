"""The course's advice, one line per fault: what went wrong, where, and what to do.

Pure string builders (no I/O): the exception explainer returns course errors with these texts, and
the tests compare what a learner sees against them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import config, formats
from ..machine import QuantSupport
from .files import _OTHER_WEIGHTS
from .gpu import _family

# A course repo of each family, for "load ... instead" advice.
_QUANT_EXAMPLE = {"gptq": config.GPTQ_MODEL, "awq": config.AWQ_MODEL}
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_HUB_START = "start the course hub (`python -m vllm_course hub start`)"
_NET_CHECK = "check your network connection or proxy"


def bad_id_message(model: str) -> str:
    return (f"model={model!r} is neither an existing folder nor a valid Hub repo id: write it as 'org/name' "
            f"(letters, digits, '-', '_', '.'), e.g. {config.BASE_MODEL}, or give the path of a model folder.")


def missing_folder_message(path: str) -> str:
    return f"{path} does not exist: check the path, or pass a Hub repo id such as {config.BASE_MODEL}."


def incomplete_folder_message(path: str, missing: list[str]) -> str:
    return (f"{path} is not a loadable model folder: it lacks {_and(missing)}; copy the whole repo there "
            f"(`hf download <org/name> --local-dir {path}`) or pass the Hub repo id instead.")


def not_found_message(repo: str, endpoint: str, suggestion: str | None = None) -> str:
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return (f"{repo} does not exist on {endpoint} (404 RepoNotFound): check the spelling (course models: "
            f"`python -m vllm_course models list`{hint}) or, for a private repo, log in with `hf auth login`.")


def revision_message(repo: str, revision: str, endpoint: str) -> str:
    return (f"{repo} has no revision {revision!r} on {endpoint} (404 RevisionNotFound): pass a branch, tag or full "
            "40-character commit sha that the repo has, or leave revision= out for 'main'.")


def gated_message(repo: str, endpoint: str, status: int | None) -> str:
    why = "this request sent no token (401" if status != 403 else "the token sent was refused (403"
    return (f"{repo} is gated and {why} on {endpoint}): accept its terms on the repo page, then `hf auth login` "
            "or set HF_TOKEN (course hub: a token listed in the repo's .gated file).")


def not_cached_message(repo: str, revision: str | None, cache: str | os.PathLike[str]) -> str:
    what = f"{repo}@{revision}" if revision and revision != "main" else repo
    return (f"{what} is not in the cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it: download it once "
            f"while online (`hf download {repo}`), or unset HF_HUB_OFFLINE and restart the kernel.")


def partial_message(repo: str, snapshot: Path, missing: list[str]) -> str:
    return (f"{repo} is only partly cached in {snapshot}: it lacks {_and(missing) or 'files'}, and HF_HUB_OFFLINE=1 "
            f"forbids fetching them: run `hf download {repo}` while online, then load again.")


def unreachable_message(endpoint: str, reason: str, repo: str | None = None, *, mid_download: bool = False) -> str:
    fix = _HUB_START if _is_loopback(endpoint) else _NET_CHECK
    if mid_download and repo:
        return (f"HF_ENDPOINT={endpoint} stopped answering while {repo} was downloading ({reason}): no partial file "
                f"was kept; {fix}, then run it again (it starts over: huggingface_hub 2.4 resumes only within one call).")
    return (f"HF_ENDPOINT={endpoint} does not answer ({reason}) and HF_HUB_OFFLINE is not set: {fix}, or set "
            "HF_HUB_OFFLINE=1 before importing vllm/huggingface_hub to load from the cache.")


def weight_format_message(where: str, load_format: str, names: list[str] | tuple[str, ...]) -> str:
    wanted = " or ".join(formats.LOAD_FORMAT_PATTERNS.get(load_format, (load_format,)))
    weights = [n for n in names if Path(n).suffix in formats.WEIGHT_SUFFIXES or n.endswith(_OTHER_WEIGHTS)]
    have = ", ".join(weights) or "no weight files"
    return f"load_format={load_format!r} reads {wanted} but {where} has {have}: use load_format='auto' or convert the weights."


def quantization_message(asked: str, model: str, in_config: str | None) -> str:
    if in_config is None:
        family = _family(asked)
        example = f" such as {_QUANT_EXAMPLE[family]}" if family in _QUANT_EXAMPLE else ""
        return (f"quantization={asked!r} contradicts {model}: its config.json has no quantization_config (an "
                f"unquantized checkpoint): drop quantization= or load a {family or asked} checkpoint{example}.")
    return (f"quantization={asked!r} contradicts {model}: its config.json says quant_method={in_config!r}: drop "
            f"quantization= (vLLM reads it from config.json) or pass quantization={in_config!r}.")


def not_writable_message(cache: Path, reason: str, repo: str) -> str:
    return (f"{cache} is not writable ({reason}), so {repo} cannot be downloaded into the HF cache: point HF_HOME "
            "(or HF_HUB_CACHE) at a writable folder before importing huggingface_hub or vllm, or set HF_HUB_OFFLINE=1 "
            "to use only what is cached.")


def disk_filled_message(repo: str, cache: str | os.PathLike[str]) -> str:
    return (f"The disk of {cache} filled up while downloading {repo} (No space left on device): free space "
            "(cache.plan_not_accessed / plan_keep_latest, lesson 08) or set HF_HUB_CACHE to a bigger disk before "
            "importing huggingface_hub, then download again.")


def missing_kernel_message(model: str, method: str | None, quant: QuantSupport) -> str:
    what = f"{model} ({method} 4-bit)" if method else model
    return (f"{what} cannot run on this {quant.isa} CPU: {quant.why_w4a16} (course.models.quantized = "
            f"{quant.quantized_model} runs here).")


def corrupted_message(what: str, detail: str, fix: str) -> str:
    return f"{what} is corrupted ({detail}): {fix}."


# -- private helpers -------------------------------------------------------------------------------


def _is_loopback(url: str) -> bool:
    return any(f"//{host}" in url for host in _LOOPBACK)


def _and(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]
