"""Build `config.COURSE_MODELS` by `recipes.py`; `manifest.json` (sha256s, recipe version) skips up-to-date repos."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import config
from ..errors import ModelBuildError, ModelNotBuiltError
from ..machine import core_share, cpu_isa, has_gpu
from ..hub.repos import file_hashes
from . import quantize, recipes

RECIPE_VERSION = "2"  # bump when a build step changes what it writes (2: 32 calibration texts, W8A8)


@dataclass(frozen=True)
class BuiltRepo:
    """One course model repo on disk."""

    repo_id: str
    path: Path
    files: dict[str, str]  # file name -> sha256
    rebuilt: bool


def require(repo_id: str) -> Path:
    """Return the folder of a built course repo (ModelNotBuiltError, saying how to build it, if not)."""
    path = config.repo_path(repo_id)
    if not (path / "config.json").is_file():
        raise ModelNotBuiltError(f"{repo_id} is not built in {config.repos_dir()}: run `make models` "
                                 "(or `python -m vllm_course models build`).")
    return path


def build_all(*, awq: bool | None = None, force: bool = False, quick: bool = False,
              log: Callable[[str], None] = print) -> list[BuiltRepo]:
    """Build the repos missing or out of date (`force`: all; `quick`: `config.QUICK_MODELS`; `awq`: default
    `wants_awq()`) and return them all; GPTQ and AWQ build side by side. Raises ModelBuildError naming the step."""
    awq = wants_awq() if awq is None else awq
    wanted = config.QUICK_MODELS if quick else [r for r in config.COURSE_MODELS if awq or r != config.AWQ_MODEL]
    with _build_lock(log):
        manifest, written = read_manifest(), threading.Lock()
        stale = [r for r in wanted if force or not _up_to_date(r, manifest.get(r))]

        def build(repo_id: str, cores: list[int] | None = None) -> None:
            if cores:  # this thread's cores: the quantizer process it starts inherits them
                os.sched_setaffinity(0, cores)
            log(f"building    {repo_id} ...")
            entry = _build_into_place(repo_id)
            with written:  # manifest.json written whole, then renamed into place
                manifest[repo_id] = entry
                tmp = config.repos_dir() / "manifest.tmp"
                tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
                tmp.replace(tmp.with_suffix(".json"))
            log(f"built       {repo_id} in {entry['provenance']['build_seconds']:.0f} s")

        quantized = [r for r in stale if r not in config.QUICK_MODELS]
        with ThreadPoolExecutor(1) as venv_pool:  # the quantizer's tool venv installs while the quick repos build
            tool_venv = venv_pool.submit(quantize.ensure_tool_venv) if quantized else None
            for repo_id in wanted:
                if repo_id not in stale:
                    _readable_by_all(config.repo_path(repo_id))  # builds before fd1eb9c left some weights at 0600
                    log(f"up to date  {repo_id}")
                elif repo_id in config.QUICK_MODELS:
                    build(repo_id)
            if tool_venv:
                tool_venv.result()  # its error, if any, raised here
        # gptqmodel gains little from a second core (2-core Xeon: GPTQ 123 s on both, 83 s on one while AWQ ran on
        # the other): side by side the two took 112 s, one after the other 222 s.
        if quantized:
            with ThreadPoolExecutor(len(quantized)) as pool:
                for done in [pool.submit(build, r, core_share(n, len(quantized))) for n, r in enumerate(quantized)]:
                    done.result()  # the first build error, raised here
    return [BuiltRepo(r, config.repo_path(r), manifest[r]["files"], rebuilt=r in stale) for r in wanted]


def wants_awq() -> bool:
    """Build AWQ? `VLLM_COURSE_BUILD_AWQ` when set, else only where vLLM can run 4-bit (no AVX2 CPU)."""
    return config.BUILD_AWQ if config.BUILD_AWQ is not None else (has_gpu() or cpu_isa() != "AVX2")


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
    return False  # closing the file released the lock


def is_built(repo_id: str) -> bool:
    """True when the manifest records `repo_id` at the current recipe with all its files."""
    return _up_to_date(repo_id, read_manifest().get(repo_id))


def read_manifest() -> dict:
    """`manifest.json`: repo id -> {recipe, files (name -> sha256), provenance}; {} before any build."""
    try:
        return json.loads((config.repos_dir() / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@contextlib.contextmanager
def _build_lock(log: Callable[[str], None]) -> Iterator[None]:
    """Hold the build lock for the whole build (closing the file releases it); wait while another holds it."""
    path = build_lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting     for another model build to finish (`python -m vllm_course models status`)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _up_to_date(repo_id: str, entry: dict | None) -> bool:
    """Recipe unchanged and every recorded file present with its recorded size."""
    if not entry or entry.get("recipe") != RECIPE_VERSION:
        return False
    folder = config.repo_path(repo_id)
    on_disk = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return on_disk == set(entry["files"]) and all(
        (folder / n).stat().st_size == entry["provenance"]["sizes"][n] for n in entry["files"])


def _build_into_place(repo_id: str) -> dict:
    start, dst = time.perf_counter(), config.repo_path(repo_id)
    tmp = dst.with_name(f".{dst.name}.partial")  # hidden: the hub does not list it as a repo
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if repo_id == config.BASE_MODEL:
            provenance = recipes.build_base(tmp)
        else:
            step, *args = {config.BIN_MODEL: (recipes.build_single_file, "pytorch_model.bin"),
                           config.PT_MODEL: (recipes.build_single_file, "model.pt"),
                           config.W8A8_MODEL: (recipes.build_w8a8,), config.SHARDED_MODEL: (recipes.build_sharded,),
                           config.GPTQ_MODEL: (recipes.build_quantized, "gptq"),
                           config.AWQ_MODEL: (recipes.build_quantized, "awq")}[repo_id]
            provenance = step(tmp, require(config.BASE_MODEL), *args)
        (tmp / "README.md").write_text(recipes.model_card(repo_id, provenance))
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, ModelBuildError):
            raise
        raise ModelBuildError(f"building {repo_id} failed: {exc}. Fix the cause and run `make models` again.") from exc
    _readable_by_all(tmp)
    files = {p.name: file_hashes(p)[0] for p in sorted(tmp.iterdir())}
    provenance["sizes"] = {p.name: p.stat().st_size for p in tmp.iterdir()}
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    provenance["build_seconds"] = round(time.perf_counter() - start, 1)
    return {"recipe": RECIPE_VERSION, "files": files, "provenance": provenance}


def _readable_by_all(folder: Path) -> None:
    """Make a repo's files readable by every user (some writers use private 0600 temp files)."""
    for p in folder.iterdir():
        if p.is_file() and p.stat().st_mode & 0o444 != 0o444:
            p.chmod(p.stat().st_mode | 0o444)
