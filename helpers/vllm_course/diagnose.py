"""Turn what goes wrong around a model load or download into one line of advice: `explain(exc, model=...)`
returns the course error that says what, where and what to do; `advise(exc)` reads the call from the traceback."""

from __future__ import annotations

import contextlib
import difflib
import errno
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from . import config, formats
from .errors import (BadModelIdError, CacheNotWritableError, CorruptedWeightsError, CourseError, GatedModelError,
                     GpuQuantizationError, HubUnreachableError, InsufficientDiskSpaceError, LocalModelError,
                     MissingKernelError, ModelNotFoundError, ModelRevisionError, NotCachedError,
                     PartialSnapshotError, QuantizationMismatchError, WeightFormatError)
from .machine import W4A16_OP, gpu_quantization_problem, quant_family, quant_support

_LIBRARIES = ("vllm", "huggingface_hub", "vllm_course")  # where a learner's call enters them


def advise(exc: BaseException) -> CourseError | None:
    """`explain(exc)` with what the call asked for, from the first library frame of its traceback naming a model."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if str(frame.f_globals.get("__name__", "")).split(".")[0] in _LIBRARIES:
            if found := _frame_context(frame.f_locals):
                return explain(exc, **found)
    return explain(exc)


def explain(exc: BaseException, *, model: str | None = None, revision: str | None = None,
            load_format: str | None = None, quantization: str | None = None, dtype: Any = None) -> CourseError | None:
    """Return the course error that explains `exc`'s whole chain (`raise explain(exc, ...) from exc`), or None."""
    if isinstance(exc, (CourseError, KeyboardInterrupt, SystemExit)):
        return None
    from huggingface_hub import constants
    from huggingface_hub import errors as hf
    chain = _chain(exc)
    endpoint, cache, offline = constants.ENDPOINT, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE
    local = bool(model) and (model.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.expanduser(model)))
    repo = None if local else model
    what = repo or model or "the model"
    text = "\n".join(str(e) for e in chain)

    if local and Path(model).is_dir() and (missing := formats.missing_files(model)):
        return LocalModelError(f"{model} is not a loadable model folder: it lacks {_and(missing)}; copy the whole repo "
                               f"there (`hf download <org/name> --local-dir {model}`) or pass the Hub repo id instead.")
    if (bad := _first(chain, hf.HFValidationError)) is not None:
        if local:
            return LocalModelError(f"{model} does not exist: check the path, or pass a Hub repo id such as "
                                   f"{config.BASE_MODEL}.")
        quoted = re.findall(r"'([^']*)'", str(bad))
        return BadModelIdError(f"model={model or (quoted[-1] if quoted else str(bad))!r} is neither an existing folder "
                               "nor a valid Hub repo id: write it as 'org/name' (letters, digits, '-', '_', '.'), e.g. "
                               f"{config.BASE_MODEL}, or give the path of a model folder.")
    if (gated := _first(chain, hf.GatedRepoError)) is not None:
        status = getattr(getattr(gated, "response", None), "status_code", None)
        why = "this request sent no token (401" if status != 403 else "the token sent was refused (403"
        return GatedModelError(f"{repo or _repo_from_url(gated)} is gated and {why} on {endpoint}): accept its terms "
                               "on the repo page, then `hf auth login` or set HF_TOKEN (course hub: a token listed in "
                               "the repo's .gated file).")
    if (rev := _first(chain, hf.RevisionNotFoundError)) is not None:
        asked = revision or (re.findall(r"/resolve/([^/\s]+)/", str(rev)) or ["?"])[0]
        return ModelRevisionError(f"{repo or _repo_from_url(rev)} has no revision {asked!r} on {endpoint} (404 "
                                  "RevisionNotFound): pass a branch, tag or full 40-character commit sha that the repo "
                                  "has, or leave revision= out for 'main'.")
    if (not_found := _first(chain, hf.RepositoryNotFoundError)) is not None:
        name = repo or _repo_from_url(not_found)
        hint = f"; did you mean {suggestion}?" if (suggestion := _suggest(name)) else ""
        return ModelNotFoundError(f"{name} does not exist on {endpoint} (404 RepoNotFound): check the spelling (course "
                                  f"models: `python -m vllm_course models list`{hint}) or, for a private repo, log in "
                                  "with `hf auth login`.")
    if _first(chain, OSError, errnos=(errno.ENOSPC,)) is not None:
        return InsufficientDiskSpaceError(
            f"The disk of {cache} filled up while downloading {what} (No space left on device): free space "
            "(lesson 08's clean-up, or `hf cache prune`) or set HF_HUB_CACHE to a bigger disk before "
            "importing huggingface_hub, then download again.")
    denied = _first(chain, OSError, errnos=(errno.EROFS, errno.EACCES, errno.EPERM))
    if denied is not None and _in_hf_home(denied):
        folder = next((p for p in (Path(cache), *Path(cache).parents) if p.is_dir()), Path(os.sep))
        return CacheNotWritableError(
            f"{folder} is not writable ({os.strerror(denied.errno)}), so {what} cannot be downloaded into the HF "
            "cache: point HF_HOME (or HF_HUB_CACHE) at a writable folder before importing huggingface_hub or vllm, "
            "or set HF_HUB_OFFLINE=1 to use only what is cached.")
    if (incomplete := _first(chain, hf.IncompleteSnapshotError)) is not None and offline:
        snap = Path(incomplete.snapshot_path)
        return PartialSnapshotError(f"{repo or 'the model'} is only partly cached in {snap}: it lacks "
                                    f"{_and(_missing_in(snap)) or 'files'}, and HF_HUB_OFFLINE=1 forbids fetching "
                                    f"them: run `hf download {repo or 'the model'}` while online, then load again.")
    if (transport := _transport_error(chain)) is not None and not offline:
        fix = ("start the course hub (`python -m vllm_course hub start`)"
               if any(f"//{host}" in endpoint for host in ("127.0.0.1", "localhost", "[::1]"))
               else "check your network connection or proxy")
        reason = _transport_reason(transport)
        if repo and any("peer closed connection without sending complete message body" in str(e) for e in chain):
            return HubUnreachableError(f"HF_ENDPOINT={endpoint} stopped answering while {repo} was downloading "
                                       f"({reason}): no partial file was kept; {fix}, then run it again (it starts "
                                       "over: huggingface_hub 2.4 resumes only within one call).")
        return HubUnreachableError(f"HF_ENDPOINT={endpoint} does not answer ({reason}) and HF_HUB_OFFLINE is not "
                                   f"set: {fix}, or set HF_HUB_OFFLINE=1 before importing vllm/huggingface_hub to "
                                   "load from the cache.")
    if _first(chain, hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled) is not None and offline:
        asked = f"{what}@{revision}" if revision and revision != "main" else what
        return NotCachedError(
            f"{asked} is not in the cache {cache} and HF_HUB_OFFLINE=1 forbids downloading it: download it once "
            f"while online (`hf download {what}`), or unset HF_HUB_OFFLINE and restart the kernel.")
    if isinstance(exc, AttributeError) and W4A16_OP in str(exc):
        quant, method = quant_support(), quant_family(quantization) or quantization
        return MissingKernelError(
            f"{model or 'this model'}{f' ({method} 4-bit)' if method else ''} cannot run on this {quant.isa} CPU: "
            f"{quant.why_w4a16} (course.models.quantized = {quant.quantized_model} runs here).")
    if "Cannot find any model weights" in text:
        return _explain_weights(model, revision, load_format or "auto")
    if m := re.search(r"Quantization method specified in the model config \(([\w-]+)\) does not match "
                      r"the quantization method specified in the `quantization` argument \(([\w-]+)\)", text):
        return QuantizationMismatchError(quantization_message(m.group(2), model or "the model", m.group(1)))
    if m := re.search(r"Cannot find the config file for ([\w-]+)", text):
        return QuantizationMismatchError(quantization_message(m.group(1), model or "the model", None))
    if (gpu := _explain_gpu(text, quantization, dtype)) is not None:
        return GpuQuantizationError(gpu)
    if re.search(r"SafetensorError|Error while deserializing header|PytorchStreamReader failed", text) or \
            any(type(e).__name__ == "SafetensorError" for e in chain):
        first_line = text.strip().splitlines()[0][:160] if text.strip() else "unreadable"
        return CorruptedWeightsError(_explain_corrupted(model, revision, first_line))
    return None


def quantization_message(asked: str, model: str, in_config: str | None) -> str:
    if in_config is None:
        family = quant_family(asked)
        example = {"gptq": f" such as {config.GPTQ_MODEL}", "awq": f" such as {config.AWQ_MODEL}"}.get(family, "")
        return (f"quantization={asked!r} contradicts {model}: its config.json has no quantization_config (an "
                f"unquantized checkpoint): drop quantization= or load a {family or asked} checkpoint{example}.")
    return (f"quantization={asked!r} contradicts {model}: its config.json says quant_method={in_config!r}: drop "
            f"quantization= (vLLM reads it from config.json) or pass quantization={in_config!r}.")


def _frame_context(local: dict[str, Any]) -> dict[str, Any]:
    """model, revision, load_format, quantization, dtype from one library frame's locals ({}: no model)."""
    kwargs = local.get("kwargs") if isinstance(local.get("kwargs"), dict) else {}
    model = local.get("model", local.get("repo_id"))
    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    found = {"model": model if isinstance(model, str) else None,
             **{k: local.get(k, kwargs.get(k)) for k in ("revision", "load_format", "quantization", "dtype")}}
    model_config = getattr(local.get("self"), "model_config", None)  # a method of LLM: its engine's config
    if found["model"] is None and isinstance(getattr(model_config, "model", None), str):
        found.update(model=model_config.model, revision=model_config.revision,
                     quantization=model_config.quantization, dtype=str(model_config.dtype))
    if found["model"] is None:
        return {}
    return {k: (v if isinstance(v, str) or v is None else str(v)) for k, v in found.items()}


def _explain_weights(model: str | None, revision: str | None, load_format: str) -> WeightFormatError:
    if model and Path(model).is_dir():  # a complete folder (explain() named what an incomplete one lacks)
        names = sorted(p.name for p in Path(model).iterdir() if p.is_file())
        return WeightFormatError(formats.weight_format_message(model, load_format, names))
    from huggingface_hub import HfApi, constants
    names, where = [], f"{model} on {constants.ENDPOINT}"
    with contextlib.suppress(Exception):
        if constants.HF_HUB_OFFLINE:
            where, snap = f"the cached {model}", formats.model_folder(model or "", revision)
            names = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file()) if snap else []
        else:
            info = HfApi().model_info(model or "", revision=revision, timeout=3)
            names = sorted(s.rfilename for s in info.siblings or ())
    return WeightFormatError(formats.weight_format_message(where, load_format, names))


def _explain_gpu(text: str, quantization: str | None, dtype: Any) -> str | None:
    if m := re.search(r"The quantization method ([\w-]+) is not supported for the current GPU\. Minimum capability: "
                      r"(\d+)\. Current capability: (\d+)", text):
        method, need, have = m.group(1), int(m.group(2)), int(m.group(3))
        return gpu_quantization_problem(method, dtype, have) or (
            f"quantization={method!r} needs compute capability {need // 10}.{need % 10} or higher but this GPU is "
            f"{have // 10}.{have % 10}: load the unquantized model ({config.BASE_MODEL}) or use a newer GPU.")
    if m := re.search(r"torch\.(\w+) is not supported for quantization method ([\w-]+)", text):
        # vLLM names its own class (auto_gptq); the learner knows the checkpoint's method (gptq)
        return gpu_quantization_problem(quantization or quant_family(m.group(2)) or m.group(2), m.group(1), 999)
    if "Failed to find a kernel that can implement the WNA16 linear layer" in text:
        with contextlib.suppress(Exception):
            if (quant := quant_support()).capability is not None:
                return gpu_quantization_problem(quantization, dtype, quant.capability, quant.library)
    return None


def _explain_corrupted(model: str | None, revision: str | None, detail: str) -> str:
    local = bool(model) and Path(model).is_dir()
    folder = formats.model_folder(model, revision) if model else None
    for path in sorted(folder.rglob("*.safetensors")) if folder else ():
        if problem := _safetensors_problem(path):
            if local:
                return f"{path} is corrupted ({problem}): copy or convert the model into that folder again."
            name = path.relative_to(folder).as_posix()
            return (f"{model}'s cached {name} is corrupted ({problem}): download it again (`hf download {model} "
                    f"{name} --force-download`); `hf cache verify {model}` checks every file.")
    if local:
        return f"a weight file in {model} is corrupted ({detail}): copy or convert the model into that folder again."
    return (f"a weight file of {model} is corrupted ({detail}): `hf cache verify {model}` finds it; download it "
            "again with --force-download.")


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (None if its header covers the file exactly)."""
    try:
        size = path.stat().st_size  # a link to a deleted blob fails here, as an unreadable file
        with path.open("rb") as fh:  # 8 bytes of header length N, N bytes of JSON, then the tensors
            length = int.from_bytes(fh.read(8), "little")
            if not 2 <= length <= size - 8:
                return f"unreadable header: it gives a header length of {length} for a {size}-byte file"
            header = json.loads(fh.read(length))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"unreadable header: {type(exc).__name__}"
    if 8 + length + end != size:
        return f"{size} B on disk, its header describes {8 + length + end} B: truncated or padded"
    return None


def _missing_in(snapshot: Path) -> list[str]:
    """Files a load needs that a cached snapshot lacks: its cached tree listing, else config/weights/tokenizer."""
    tree = snapshot.parent.parent / "trees" / f"{snapshot.name}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
        listed = json.loads(tree.read_text(encoding="utf-8"))["files"]
        return sorted(name for name in listed if not (snapshot / name).is_file())
    return formats.missing_files(snapshot) if snapshot.is_dir() else [f"the snapshot itself ({snapshot})"]


def _chain(exc: BaseException) -> list[BaseException]:
    seen, todo = [], [exc]
    while todo and len(seen) < 30:
        item = todo.pop(0)
        if item is not None and not any(item is s for s in seen):
            seen.append(item)
            todo += [item.__cause__, item.__context__]
    return seen


def _first(chain: list[BaseException], *types: type[BaseException], errnos: tuple[int, ...] = ()) -> Any:
    return next((e for e in chain if isinstance(e, types) and (not errnos or e.errno in errnos)), None)


def _transport_error(chain: list[BaseException]) -> BaseException | None:
    kinds = tuple(module.TransportError for name in ("httpx", "httpx2") if (module := sys.modules.get(name)))
    return next((e for e in chain if isinstance(e, (*kinds, ConnectionError, TimeoutError))
                 and not isinstance(e, CourseError)), None)


def _transport_reason(exc: BaseException) -> str:
    for item in _chain(exc):
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, TimeoutError) or "Timeout" in type(item).__name__:
            return "timed out"
        if "Name or service not known" in str(item) or "nodename nor servname" in str(item):
            return "unknown host"
    return type(exc).__name__


def _repo_from_url(exc: BaseException) -> str:
    m = re.search(r"https?://[^/\s]+/(?:api/models/)?([\w.-]+/[\w.-]+)", str(exc))
    return m.group(1) if m else "the repo"


def _suggest(repo: str) -> str | None:
    """A repo of the same org on the hub whose name is close (typo help), if the hub says so quickly."""
    from huggingface_hub import HfApi
    if "/" not in repo:
        return None
    with contextlib.suppress(Exception):  # a suggestion is optional
        names = [m.id for m in HfApi().list_models(author=repo.split("/")[0], limit=200)]
        return next(iter(difflib.get_close_matches(repo, names, n=1, cutoff=0.75)), None)
    return None


def _in_hf_home(exc: OSError) -> bool:
    """Whether the failed path lies in (or above) HF_HOME or the hub cache."""
    from huggingface_hub import constants
    target = os.path.abspath(str(exc.filename or ""))
    roots = {os.path.abspath(constants.HF_HOME), os.path.abspath(constants.HF_HUB_CACHE)}
    return bool(exc.filename) and any(target == r or target.startswith(r + os.sep) or r.startswith(target + os.sep)
                                      for r in roots)


def _and(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]
