"""Start, find and stop course hubs, each in its own process (a kernel restart leaves no half-dead server; vLLM's
threads never share its event loop); one on a fixed port is recorded in `<course home>/hub/<port>.json`. `use_hub()`
also patches huggingface_hub's import-time copies of HF_ENDPOINT; set HF_HUB_OFFLINE and HF_HOME before importing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from .. import config
from ..errors import HubError, HubUnreachableError
from .log import HubStats
from .mirror import create_root
from .repos import RepoStore, read_json, write_json
from .server import SERVICE

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # hubs this process started, reaped when stopped
_SERVE = ["-m", "vllm_course", "hub", "serve"]  # how a hub process is started (and recognised)


def state_dir() -> Path:
    """Folder of the hubs' state and log files: `<course home>/hub/` (VLLM_COURSE_HOME moves it)."""
    return config.course_home() / "hub"


@dataclass
class HubHandle(AbstractContextManager["HubHandle"]):
    """A running course hub; leaving a `with` block stops it only if `owned` (this handle started it)."""

    url: str
    port: int
    root: Path
    upstream: str | None = None
    pid: int | None = None
    owned: bool = False
    log_file: Path | None = None
    _activations: list[EndpointActivation] = field(default_factory=list, repr=False)

    def is_running(self) -> bool:
        """Whether the hub answers its health check within a second."""
        return is_running(self.url)

    def stats(self) -> HubStats:
        """The hub's request counters (HubUnreachableError if it does not answer)."""
        return stats(self.url)

    def reset_stats(self) -> HubStats:
        """Zero the request counters; return them as they were just before."""
        return stats(self.url, reset=True)

    def activate(self) -> EndpointActivation:
        """Point this process's Hugging Face clients at the hub (`use_hub`); `.restore()` undoes it."""
        self._activations.append(use_hub(self.url))
        return self._activations[-1]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the hub process, forget its state file, and restore any endpoint it activated."""
        self._restore()
        _terminate(self.port, self.pid, self.url, timeout)
        if self.owned and self.log_file is not None and self.log_file.name.startswith("auto-"):
            self.log_file.unlink(missing_ok=True)  # a free-port hub's log has no later use

    def _restore(self) -> None:
        while self._activations:
            self._activations.pop().restore()

    def __exit__(self, *exc: object) -> None:
        self.stop() if self.owned else self._restore()


def start(root: str | os.PathLike[str] | None = None, port: int | None = None, upstream: str | None = None, *,
          host: str | None = None, throttle_bps: int | None = None, cut_after_bytes: int | None = None,
          timeout: float = 30.0) -> HubHandle:
    """Start a course hub in a background process, or reuse the one already on that port (then not `owned`).

    Without `root` (a folder of `<org>/<name>/` repos) it serves the built course models, or with the online profile
    mirrors `VLLM_COURSE_UPSTREAM` into `mirror_dir()` (port `VLLM_COURSE_MIRROR_PORT`, else `VLLM_COURSE_HUB_PORT`);
    `port` 0 picks a free one: a private hub, never reused, that stops with this process. `timeout`: seconds a new
    hub may take to answer. HubError: the root is missing, the port is taken (by something else or a hub serving
    another root), or the hub did not come up (its log is quoted)."""
    mirror = root is None and config.profile() == "online"
    if mirror:  # a mirror starts empty: its folder is created on first use
        root = create_root(config.mirror_dir(), "Set VLLM_COURSE_HOME to a writable folder.")
        upstream = upstream or config.UPSTREAM
    elif upstream is not None and root is not None:  # a mirror starts empty: its root need not exist yet
        root = create_root(root)
    root = RepoStore(root if root is not None else config.repos_dir()).root  # fails loudly if missing
    host = host or config.HUB_HOST
    port = (config.MIRROR_PORT if mirror else config.HUB_PORT) if port is None else int(port)
    reused = _reuse(host, port, root, upstream) if port else None
    return reused or _spawn(root, host, port, upstream, throttle_bps, cut_after_bytes, timeout)


def stop(port: int | None = None, timeout: float = 10.0) -> bool:
    """Stop the hub recorded for `port` (default: the profile's); False if none was recorded or running."""
    port = config.hub_port() if port is None else int(port)
    if (state := _read_state(port)) is None:
        return False
    running = is_running(state["url"])
    _terminate(port, state.get("pid"), state["url"], timeout)
    return running


def status() -> list[dict[str, Any]]:
    """Every recorded hub: its state (url, port, pid, root, upstream, log) and `running`."""
    states = [s for s in map(read_json, sorted(state_dir().glob("*.json"))) if s is not None]
    return [s | {"running": is_running(s.get("url", ""))} for s in states]


def stats(url_or_port: str | int | None = None, reset: bool = False) -> HubStats:
    """The request counters of a hub (default: the profile's), zeroed after reading if `reset`; HubUnreachableError."""
    url = _url(config.hub_port() if url_or_port is None else url_or_port)
    return HubStats.from_dict(_get_json(f"{url}/_course/stats" + ("?reset=1" if reset else ""), 10.0))


def is_running(url_or_port: str | int) -> bool:
    """Whether a course hub answers at this URL (or on this port of 127.0.0.1) within a second."""
    return _health(_url(url_or_port), timeout=1.0) is not None


@dataclass
class EndpointActivation(AbstractContextManager["EndpointActivation"]):
    """HF_ENDPOINT pointed at a hub for this process; `restore()` (or leaving `with`) undoes it."""

    url: str
    previous_env: str | None
    active: bool = True

    def restore(self) -> None:
        """Put HF_ENDPOINT (and huggingface_hub's copies of it) back as they were."""
        if self.active:
            self.active = False
            if self.previous_env is None:
                os.environ.pop("HF_ENDPOINT", None)
            else:
                os.environ["HF_ENDPOINT"] = self.previous_env
            _patch_hf_endpoint((self.previous_env or "https://huggingface.co").rstrip("/"))

    def __exit__(self, *exc: object) -> None:
        self.restore()


def use_hub(hub: HubHandle | str) -> EndpointActivation:
    """Point this process's Hugging Face clients and its subprocesses at a hub; `.restore()` or `with` undoes it."""
    url = (hub if isinstance(hub, str) else hub.url).rstrip("/")
    activation = EndpointActivation(url, os.environ.get("HF_ENDPOINT"))
    os.environ["HF_ENDPOINT"] = url
    _patch_hf_endpoint(url)
    return activation


def _patch_hf_endpoint(url: str) -> None:
    if (constants := sys.modules.get("huggingface_hub.constants")) is not None:
        constants.ENDPOINT = url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"  # hf_hub_download
    if (hf_api := sys.modules.get("huggingface_hub.hf_api")) is not None and hasattr(hf_api, "api"):
        hf_api.api.endpoint = url


def check_endpoint(url: str | None = None, timeout: float = 2.0) -> None:
    """Fail fast if `url` (default: HF_ENDPOINT) is a local hub that is down, instead of ~100 s of
    retries (HubUnreachableError, unless HF_HUB_OFFLINE is set). Other URLs are not checked."""
    url = url or os.environ.get("HF_ENDPOINT")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or not url or not any(h in url for h in ("127.0.0.1", "localhost", "[::1]")):
        return
    try:
        httpx.get(f"{url.rstrip('/')}/_course/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise HubUnreachableError(f"HF_ENDPOINT={url} does not answer. Start the course hub (`python -m vllm_course "
                                  "hub start`), or set HF_HUB_OFFLINE=1 before importing vllm/huggingface_hub to load "
                                  "from the cache.") from exc


def _reuse(host: str, port: int, root: Path, upstream: str | None) -> HubHandle | None:
    """The hub already on `port` if it serves the same root and upstream; None if the port is free."""
    url = f"http://{host}:{port}"
    health = _health(url, timeout=1.0)
    if health is None:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                raise HubError(f"Port {port} on {host} is taken by something that is not a course hub. "
                               "Pass another port (start(port=...), --port) or set VLLM_COURSE_HUB_PORT "
                               "(VLLM_COURSE_MIRROR_PORT for the online profile's hub).")
        return None
    if Path(health.get("root", "")) != root or (health.get("upstream") or None) != (upstream or None):
        raise HubError(f"A course hub already runs on port {port} serving {health.get('root')} (upstream "
                       f"{health.get('upstream')}), not {root} (upstream {upstream}). Stop it first "
                       f"(`python -m vllm_course hub stop --port {port}`) or pass another port.")
    log = (_read_state(port) or {}).get("log")
    return HubHandle(url, port, root, upstream, health.get("pid"), False, Path(log) if log else None)


def _spawn(root: Path, host: str, port: int, upstream: str | None, throttle_bps: int | None,
           cut_after_bytes: int | None, timeout: float) -> HubHandle:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tag = str(port) if port else f"auto-{os.getpid()}-{time.monotonic_ns()}"
    ready, log_file = folder / f"{tag}.ready", folder / f"{tag}.log"
    ready.unlink(missing_ok=True)
    options = {"--root": root, "--host": host, "--port": port, "--ready-file": ready, "--upstream": upstream or None,
               "--throttle-bps": throttle_bps or None, "--cut-after-bytes": cut_after_bytes}
    args = [sys.executable, *_SERVE, *(str(x) for k, v in options.items() if v is not None for x in (k, v))]
    args += [] if port else ["--exit-with-parent"]  # a private free-port hub ends with its process
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    env.pop("HF_HUB_OFFLINE", None)  # a learner's offline mode is for clients: a mirror still fetches from its upstream
    with open(log_file, "ab") as log:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + timeout
    _wait_for(ready.exists, child, deadline, f"did not start (root {root}, port {port})", log_file)
    port = int(read_json(ready)["port"])
    ready.unlink(missing_ok=True)
    url = f"http://{host}:{port}"
    _wait_for(lambda: is_running(url), child, deadline, f"on {url} did not answer its health check", log_file)
    if tag == str(port):
        write_json(folder / f"{tag}.json", {"url": url, "host": host, "port": port, "pid": child.pid, "root": str(root),
                                            "upstream": upstream, "log": str(log_file), "started": time.time()})
    return HubHandle(url, port, root, upstream, child.pid, True, log_file)


def _wait_for(ready: Callable[[], bool], child: subprocess.Popen[bytes], deadline: float, what: str,
              log_file: Path) -> None:
    while not ready():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            child.wait(5)
            _CHILDREN.pop(child.pid, None)
            tail = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise HubError(f"The course hub {what}. Its log {log_file}:\n{tail}")
        time.sleep(0.05)


def _health(url: str, timeout: float) -> dict[str, Any] | None:
    """The health answer of the course hub at `url`; None if nothing, or something else, answers."""
    try:
        data = _get_json(f"{url.rstrip('/')}/_course/health", timeout)
    except HubUnreachableError:
        return None
    return data if isinstance(data, dict) and data.get("service") == SERVICE else None


def _get_json(url: str, timeout: float) -> Any:
    try:
        response = httpx.get(url, timeout=timeout, trust_env=False)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise HubUnreachableError(f"The course hub did not answer {url}: {exc}. "
                                  "Start it with `python -m vllm_course hub start`.") from exc


def _terminate(port: int, pid: int | None, url: str, timeout: float) -> None:
    """SIGTERM the hub (if it really is a course hub process), SIGKILL after `timeout`; forget its state."""
    real_pid = pid if pid is not None else (_health(url, timeout=1.0) or {}).get("pid")
    try:
        is_hub = real_pid is not None and " ".join(_SERVE) in " ".join(psutil.Process(real_pid).cmdline())
    except psutil.Error:
        is_hub = False
    if is_hub:
        child = _CHILDREN.pop(real_pid, None)
        os.kill(real_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(real_pid, child) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(real_pid, child):
            os.kill(real_pid, signal.SIGKILL)
            if child is not None:
                child.wait(5)
    if (state := _read_state(port)) is not None and (pid is None or state.get("pid") == pid):
        (state_dir() / f"{port}.json").unlink(missing_ok=True)


def _alive(pid: int, child: subprocess.Popen[bytes] | None) -> bool:
    """Whether the process still runs (a zombie another process has yet to reap counts as gone)."""
    if child is not None:
        return child.poll() is None
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _read_state(port: int) -> dict[str, Any] | None:
    return read_json(state_dir() / f"{port}.json")


def _url(url_or_port: str | int) -> str:
    return f"http://127.0.0.1:{url_or_port}" if isinstance(url_or_port, int) else str(url_or_port).rstrip("/")
