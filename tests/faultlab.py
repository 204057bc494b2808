"""Provoke the course's bad inputs and faults for real, and record what the helpers say.

A `Lab` is a hub root (the built course repos, hard-linked, plus a gated copy and two small
synthetic repos), a course hub process serving it, and a fresh HF_HOME per client. Every client
runs in its own interpreter (`Lab.provoke`), because huggingface_hub reads HF_HOME, HF_ENDPOINT and
HF_HUB_OFFLINE once, at import, and the pytest process has already imported it.

The scenario functions at the bottom (`bad_model_id`, `repo_not_found`, ...) make a learner's direct
call and add what the notebook handler adds (`diagnose.advise`); tests/test_bad_inputs.py asserts
each exact message, tests/test_faults.py what each fault leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from vllm_course import config, hub
from vllm_course.build import require
from vllm_course.hub.repos import file_hashes

GATED = f"{config.ORG}/SmolLM2-135M-Instruct-gated"
GATED_TOKEN = "hf_course_lab_token"
TINY = f"{config.ORG}/tiny"  # 256 kB of weights: cache mechanics without the cost
BIG = f"{config.ORG}/tiny-16mb"  # 16 MB of weights: slow enough to interrupt, big enough to fill a disk
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class Outcome:
    """What one provoked call did: its result, or the exception's class, message and cause."""

    ok: bool
    seconds: float
    type: str | None = None
    message: str | None = None
    bases: list[str] = field(default_factory=list)
    cause: str | None = None
    notes: list[str] = field(default_factory=list)
    result: Any = None
    warnings: list[str] = field(default_factory=list)
    stderr: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok ({self.seconds:.1f} s): {self.result}"
        return f"{self.type}: {self.message}"


_PROLOGUE = """
import json, sys, time, warnings
warnings.simplefilter("always")
_t0 = time.perf_counter()
def _restart_clock():  # call after the imports to time only the call itself
    global _t0
    _t0 = time.perf_counter()
def _report(**kw):
    kw["seconds"] = time.perf_counter() - _t0
    kw["warnings"] = [str(w.message) for w in _caught]
    print("@@OUTCOME " + json.dumps(kw, default=str), flush=True)
with warnings.catch_warnings(record=True) as _caught:
    warnings.simplefilter("always")
    try:
        def _body():
{body}
        _result = _body()
    except BaseException as _exc:
        _report(ok=False, type=type(_exc).__name__, message=str(_exc), bases=[c.__name__ for c in type(_exc).__mro__],
                cause=type(_exc.__cause__).__name__ if _exc.__cause__ is not None else None,
                notes=list(getattr(_exc, "__notes__", [])))
    else:
        _report(ok=True, result=_result)
"""


def _code(body: str) -> str:
    return _PROLOGUE.format(body=textwrap.indent(textwrap.dedent(body).strip(), " " * 12))


def _parse(stdout: str, stderr: str, returncode: int | None) -> Outcome:
    lines = [line for line in stdout.splitlines() if line.startswith("@@OUTCOME ")]
    if not lines:
        raise AssertionError(f"the client died (exit {returncode}) before reporting:\n{stderr[-3000:]}")
    data = json.loads(lines[-1].removeprefix("@@OUTCOME "))
    return Outcome(stderr=stderr[-3000:], **data)


def run_outcome(body: str, env: dict[str, str], timeout: float = 180) -> Outcome:
    """Run `body` (a function body: `return` a JSON-able result) in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _code(body)], env=env, capture_output=True, text=True, timeout=timeout)
    return _parse(done.stdout, done.stderr, done.returncode)


class Running:
    """A client started in the background (`start_outcome`); `finish()` waits and returns its Outcome."""

    def __init__(self, body: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _code(body)], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def finish(self, timeout: float = 120) -> Outcome:
        out, err = self.proc.communicate(timeout=timeout)
        return _parse(out, err, self.proc.returncode)

    def stop(self) -> None:
        """Kill it if it is still running (a test failed before `finish()`)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def wait_for(predicate, timeout: float, what: str, every: float = 0.02) -> None:
    """Poll `predicate()` until true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def client_env(hf_home: Path, endpoint: str | None, *, offline: bool = False, **extra: str) -> dict[str, str]:
    """Environment for a client: its own HF_HOME, pointed at `endpoint`, no progress bars, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1", NO_COLOR="1", TOKENIZERS_PARALLELISM="false")
    env.pop("TRANSFORMERS_OFFLINE", None)
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if "HF_TOKEN" in extra:
        env.pop("HF_HUB_DISABLE_IMPLICIT_TOKEN")  # a learner's token is sent with every request
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port nothing listens on right now (for 'the hub is down' and restart-on-the-same-port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- building the hub root -------------------------------------------------------------------------


def link_repo(src: Path, dst: Path) -> Path:
    """Hard-link (or copy, across devices) a built repo's files into a hub root."""
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file() and not item.name.startswith("."):
            target = dst / item.name
            if not target.exists():
                try:
                    os.link(item, target)
                except OSError:
                    shutil.copy2(item, target)
    return dst


def make_small_repo(root: Path, repo_id: str, floats: int, tokenizer_from: Path | None = None) -> Path:
    """A small real repo: the course config.json, one safetensors file of `floats` float32s, tokenizer files."""
    folder = root / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((tokenizer_from / "config.json").read_text()) if tokenizer_from else {"model_type": "llama"}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    rng = np.random.default_rng(floats)
    save_file({"weight": rng.standard_normal(floats).astype(np.float32)}, str(folder / "model.safetensors"))
    for name in TOKENIZER_FILES:
        if tokenizer_from and (tokenizer_from / name).is_file():
            shutil.copy2(tokenizer_from / name, folder / name)
    return folder


def build_root(root: Path) -> Path:
    """The lab's hub root: the built course repos (linked), a gated copy of the base model, TINY and BIG."""
    base = require(config.BASE_MODEL)
    for repo_id in (config.BASE_MODEL, config.BIN_MODEL, config.PT_MODEL, config.GPTQ_MODEL):
        with contextlib.suppress(Exception):
            link_repo(require(repo_id), root / repo_id)
    gated = link_repo(base, root / GATED)
    (gated / ".gated").write_text(f"# tokens allowed to download\n{GATED_TOKEN}\n", encoding="utf-8")
    make_small_repo(root, TINY, 65_536, base)
    make_small_repo(root, BIG, 4_000_000, base)
    return root


class Lab:
    """A hub root, a course hub serving it, and fresh HF_HOMEs under one scratch folder."""

    def __init__(self, workdir: Path, root: Path | None = None, **hub_options: Any) -> None:
        self.workdir = workdir
        self.root = root or build_root(workdir / "root")
        self.hub = self.start_hub(**hub_options)
        self._homes = 0

    def start_hub(self, port: int = 0, **hub_options: Any) -> hub.HubHandle:
        """Start a hub on this root; its state and log files stay in the lab's folder."""
        saved = os.environ.get("VLLM_COURSE_HOME")
        os.environ["VLLM_COURSE_HOME"] = str(self.workdir / "course-home")
        try:
            return hub.start(root=self.root, port=port, **hub_options)
        finally:
            if saved is None:
                os.environ.pop("VLLM_COURSE_HOME", None)
            else:
                os.environ["VLLM_COURSE_HOME"] = saved

    def home(self, name: str) -> Path:
        self._homes += 1
        return self.workdir / f"hf-{self._homes:02d}-{name}"

    def env(self, name: str, *, offline: bool = False, endpoint: str | None = None, hf_home: Path | None = None,
            **extra: str) -> dict[str, str]:
        """A client environment with a fresh HF_HOME (or `hf_home`), pointed at this lab's hub."""
        return client_env(hf_home or self.home(name), endpoint or self.hub.url, offline=offline, **extra)

    def provoke(self, body: str, env: dict[str, str], timeout: float = 180) -> Outcome:
        return run_outcome(body, env, timeout)

    def close(self) -> None:
        self.hub.stop()


# -- real small filesystems ------------------------------------------------------------------------


class MountError(RuntimeError):
    """This sandbox cannot mount a tmpfs (not root, or no CAP_SYS_ADMIN)."""


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """Mount a real tmpfs of `size` (e.g. "8m") on `path` for the block; read-only if asked.

    Raises:
        MountError: mounting is not allowed here (the tests skip).
    """
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755"
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    except OSError as exc:  # no mount(8) here
        raise MountError(f"cannot run mount: {exc}") from exc
    if done.returncode != 0:
        raise MountError(f"cannot mount a tmpfs on {path}: {done.stderr.strip() or done.returncode}")
    try:
        if read_only:
            (path / "hf").mkdir()
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def cache_layout(hf_home: Path, repo_id: str) -> dict[str, Any]:
    """What a repo's cache folder holds: snapshot entries (and broken links), blobs, .incomplete files."""
    folder = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snaps = sorted((folder / "snapshots").glob("*/**/*")) if (folder / "snapshots").is_dir() else []
    blobs = sorted(p.name for p in (folder / "blobs").iterdir()) if (folder / "blobs").is_dir() else []
    return {
        "snapshot_files": sorted(p.name for p in snaps if not p.is_dir()),
        "broken_links": sorted(str(p) for p in snaps if p.is_symlink() and not p.exists()),
        "incomplete_in_snapshots": sorted(p.name for p in snaps if p.name.endswith(".incomplete")),
        "blobs": [b for b in blobs if not b.endswith(".incomplete")],
        "incomplete_blobs": [b for b in blobs if b.endswith(".incomplete")],
    }


# -- the scenarios (each returns the Outcome of one real provocation) ------------------------------

# The learner's direct call, and what the notebook handler adds to its failure: `advise(exc)`, the
# course error whose message is the advice line (raised here, the original chained, so an Outcome
# records both).
ADVISED = """
from huggingface_hub import snapshot_download
from vllm_course.diagnose import advise
_restart_clock()
try:
    return {call}
except Exception as exc:
    course_error = advise(exc)
    if course_error is None:
        raise
    raise course_error from exc
"""


def _advised(lab: Lab, env: dict[str, str], call: str) -> Outcome:
    return lab.provoke(ADVISED.format(call=call), env)


def bad_model_id(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("bad-id"), "snapshot_download('course//SmolLM2 135M')")


def repo_not_found(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("not-found"), "snapshot_download('course/SmolLM2-135M-Instrukt')")


def revision_not_found(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("revision"), f"snapshot_download({config.BASE_MODEL!r}, revision='v2.0')")


def gated_no_token(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("gated"), f"snapshot_download({GATED!r})")


def gated_wrong_token(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("gated-wrong", HF_TOKEN="hf_not_this_one"), f"snapshot_download({GATED!r})")


def gated_right_token(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("gated-right", HF_TOKEN=GATED_TOKEN), f"snapshot_download({GATED!r})")


def offline_not_cached(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("offline", offline=True), f"snapshot_download({config.BASE_MODEL!r})")


def hub_unreachable(lab: Lab) -> Outcome:
    return _advised(lab, lab.env("hub-down", endpoint=f"http://127.0.0.1:{free_port()}"),
                    f"snapshot_download({config.BASE_MODEL!r})")


def cache_not_writable(lab: Lab) -> Outcome:
    """HF_HOME on a read-only tmpfs, straight into snapshot_download: the real EROFS OSError advised."""
    with tmpfs(lab.workdir / "read-only-disk", "1m", read_only=True) as disk:
        return _advised(lab, lab.env("", hf_home=disk / "hf"), f"snapshot_download({config.BASE_MODEL!r})")


VLLM_CASES = (
    ("bad id", "course//SmolLM2 135M", {}),
    ("missing path", "/no/such/model-folder", {}),
    ("not found", "course/SmolLM2-135M-Instrukt", {}),
    ("revision", config.BASE_MODEL, {"revision": "v2.0"}),
    ("gated", GATED, {}),
    ("load_format", config.BIN_MODEL, {"load_format": "pt"}),
    ("quantization", config.BASE_MODEL, {"quantization": "gptq"}),
)
# Only once `make models` has built the GPTQ repo (real GPTQ checks, provoked on CPU too).
GPTQ_VLLM_CASES = (
    ("awq on gptq", config.GPTQ_MODEL, {"quantization": "awq"}),
    ("gptq float32", config.GPTQ_MODEL, {"dtype": "float32"}),
)


def gptq_built() -> bool:
    return (config.repo_path(config.GPTQ_MODEL) / "config.json").is_file()


def through_vllm(lab: Lab, cases: tuple) -> Outcome:
    """Call the real `LLM(...)` for each case: what advice does the notebook handler add to it?"""
    return lab.provoke(f"""
        from vllm_course import engine
        from vllm_course.diagnose import advise
        from vllm import LLM
        seen = {{}}
        for name, model, kwargs in {list(cases)!r}:
            try:
                with engine.load_report(quiet=True):
                    LLM(model=model, **engine.machine_kwargs(**kwargs))
                seen[name] = ["loaded", ""]
            except Exception as exc:
                course_error = advise(exc)
                seen[name] = [type(course_error).__name__, str(course_error), type(exc).__name__]
        return seen
    """, lab.env("vllm"), timeout=400)


# -- faults (each returns what happened, for tests/test_faults.py) ----------------------------

DOWNLOAD = ADVISED.format(call="snapshot_download({repo!r})")


def _weights_incomplete(hf_home: Path, repo_id: str, min_bytes: int):
    """Predicate: the weights' temporary download file (named after the 64-hex etag) has `min_bytes`."""
    blobs = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"

    def check() -> bool:
        return any(len(p.name.split(".")[0]) == 64 and p.stat().st_size >= min_bytes
                   for p in (blobs.glob("*.incomplete") if blobs.is_dir() else ()))
    return check


def _kill_hub(handle: hub.HubHandle) -> None:
    """SIGKILL the hub process (a crash, not a shutdown) and reap it."""
    os.kill(handle.pid, 9)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(handle.pid, 0)


def hub_dies_mid_download(root: Path, workdir: Path, *, comes_back: bool) -> dict[str, Any]:
    """Kill the hub while BIG's weights stream (4 MB/s); restart it on the same port at once or only
    after the client gave up. Returns the outcomes, the cache layout and the hub's counters."""
    port = free_port()
    lab = Lab(workdir, root, port=port, throttle_bps=4_000_000)
    home = lab.home("hub-dies")
    env = lab.env("", hf_home=home)
    running = Running(DOWNLOAD.format(repo=BIG), env)
    try:
        wait_for(_weights_incomplete(home, BIG, 2 << 20), 60, "the weights download to start")
        _kill_hub(lab.hub)
        if comes_back:
            lab.hub = lab.start_hub(port=port)
        first = running.finish()
        found: dict[str, Any] = {"first": first, "layout_after_first": cache_layout(home, BIG)}
        if not comes_back:
            lab.hub = lab.start_hub(port=port)
            found["second"] = run_outcome(DOWNLOAD.format(repo=BIG), env)
        found["stats"] = lab.hub.stats().file(BIG, "model.safetensors")
        found["ranges"] = [r.range for r in lab.hub.stats().recent if r.kind == "range"]
        found["layout"] = cache_layout(home, BIG)
        found["blob_sha256"] = _sha256(home, BIG)
        found["source_sha256"] = file_hashes(root / BIG / "model.safetensors")[0]
        return found
    finally:
        running.stop()
        lab.close()


def disk_fills_during_download(root: Path, workdir: Path) -> dict[str, Any]:
    """HF_HOME on a real 24 MB tmpfs: pre-flight passes (BIG needs ~20 MB), then another writer fills
    the disk while the weights stream. Then the filler is removed and the download retried."""
    lab = Lab(workdir, root, throttle_bps=4_000_000)
    try:
        with tmpfs(workdir / "filling-disk", "24m") as disk:
            home = disk / "hf"
            env = lab.env("", hf_home=home)
            running = Running(DOWNLOAD.format(repo=BIG), env)
            try:
                wait_for(_weights_incomplete(home, BIG, 2 << 20), 60, "the weights download to start")
                filler = disk / "someone-elses-file.bin"
                with contextlib.suppress(OSError), open(filler, "wb") as fh:
                    while True:
                        fh.write(b"\0" * (1 << 20))
                        fh.flush()
                first = running.finish()
            finally:
                running.stop()
            found: dict[str, Any] = {"first": first, "layout_after_first": cache_layout(home, BIG)}
            filler.unlink()
            found["second"] = run_outcome(DOWNLOAD.format(repo=BIG), env)
            found["layout"] = cache_layout(home, BIG)
            found["blob_sha256"] = _sha256(home, BIG)
            found["source_sha256"] = file_hashes(root / BIG / "model.safetensors")[0]
            return found
    finally:
        lab.close()


INTERRUPT_LOAD = r'''
import gc, os, re, signal, sys, threading, time
from vllm import LLM, SamplingParams
from vllm_course import engine
from vllm.distributed import parallel_state
from vllm.v1.engine.llm_engine import LLMEngine

def interrupt_when_logged(pattern):
    first = len(engine._LOG_LINES)
    def watch():
        while not any(re.search(pattern, line) for line in engine._LOG_LINES[first:]):
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C / the notebook's stop button sends
    threading.Thread(target=watch, daemon=True).start()

gc.collect()
rss0 = engine.rss_bytes()
found = {"interrupted": False}
interrupt_when_logged(r"KV cache size")  # weights loaded, KV cache being allocated: mid-load
try:
    with engine.load_report():
        llm = LLM(model=MODEL, **engine.machine_kwargs())
    engine.release(llm)
except KeyboardInterrupt as exc:
    found.update(interrupted=True, notes=list(getattr(exc, "__notes__", [])))
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__  # Jupyter keeps these
gc.collect()
found["rss_growth_gib"] = (engine.rss_bytes() - rss0) / 2**30
found["live_engines"] = sum(isinstance(o, LLMEngine) for o in gc.get_objects())
found["process_groups_left"] = parallel_state._WORLD is not None
with engine.load_report():
    llm = LLM(model=MODEL, **engine.machine_kwargs())
out = llm.generate(["The capital of France is"], SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
found["answer"] = out[0].outputs[0].text
engine.release(llm)
return found
'''


def interrupt_during_load(workdir: Path) -> Outcome:
    """A real SIGINT mid-way through `LLM(...)` in `engine.load_report()` of the base model, then a second load in the
    same process: is the first engine freed and does the second answer?"""
    model = str(require(config.BASE_MODEL))
    body = INTERRUPT_LOAD.replace("MODEL", repr(model))
    return run_outcome(body, client_env(workdir / "hf-interrupt", None), timeout=400)


def _sha256(hf_home: Path, repo_id: str) -> str | None:
    snaps = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    found = sorted(snaps.glob("*/model.safetensors")) if snaps.is_dir() else []
    return file_hashes(found[0])[0] if found and found[0].exists() else None
