"""Start, find and stop course hubs from Python (notebooks, tests) and from the CLI.

A hub always runs in its own process (never a thread of the caller): a Jupyter kernel restart
then cannot leave a half-dead server behind, and vLLM's own threads never share its event loop.
Each hub started on a fixed port records itself in `<course home>/hub/<port>.json` (pid, port,
root, upstream, log file), so `start()` from another process or kernel finds and reuses it.

Example:
    >>> from vllm_course import hub                                   # doctest: +SKIP
    >>> with hub.start() as h, h.activate():                          # doctest: +SKIP
    ...     snapshot_download("course/SmolLM2-135M-Instruct")
    >>> h.stats().full_downloads                                      # doctest: +SKIP
    6
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .. import config
from ..errors import HubError, HubUnreachableError
from .endpoint import EndpointActivation, use_hub
from .log import HubStats
from .repos import RepoStore
from .server import SERVICE

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_SERVE = ["-m", "vllm_course", "hub", "serve"]  # how a hub process is started (and recognised)


def state_dir() -> Path:
    """Folder of the hubs' state and log files: `<course home>/hub/` (VLLM_COURSE_HOME moves it)."""
    return config.course_home() / "hub"


@dataclass
class HubHandle:
    """A running course hub: its URL, what it serves, and how to query or stop it.

    `owned` is True when this handle started the hub; leaving a `with` block stops only owned hubs
    (a hub reused from an earlier `start()` keeps running). `stop()` always stops it.
    """

    url: str
    port: int
    root: Path
    upstream: str | None = None
    pid: int | None = None
    owned: bool = False
    log_file: Path | None = None
    _activations: list[EndpointActivation] = field(default_factory=list, repr=False)

    def health(self) -> dict[str, Any]:
        """Return the hub's `/_course/health` answer.

        Raises:
            HubUnreachableError: the hub does not answer.
        """
        return _health(self.url, timeout=5.0, raise_error=True) or {}

    def is_running(self) -> bool:
        """Whether the hub answers its health check."""
        return is_running(self.url)

    def stats(self) -> HubStats:
        """Return the hub's request counters (see `HubStats`).

        Raises:
            HubUnreachableError: the hub does not answer.
        """
        return stats(self.url)

    def reset_stats(self) -> HubStats:
        """Reset the request counters; return them as they were just before."""
        return stats(self.url, reset=True)

    def activate(self) -> EndpointActivation:
        """Point this process's Hugging Face clients at the hub (see `use_hub`); `.restore()` undoes it."""
        activation = use_hub(self.url)
        self._activations.append(activation)
        return activation

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the hub process and forget its state file; restore any endpoint it activated."""
        while self._activations:
            self._activations.pop().restore()
        _terminate(self.pid, self.url, timeout)
        _remove_state(self.port, self.pid)
        if self.owned and self.log_file is not None and self.log_file.name.startswith("auto-"):
            self.log_file.unlink(missing_ok=True)  # a free-port hub's log has no later use

    def __enter__(self) -> HubHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.stop()
        else:
            while self._activations:
                self._activations.pop().restore()


def start(
    root: str | os.PathLike[str] | None = None,
    port: int | None = None,
    upstream: str | None = None,
    *,
    host: str | None = None,
    throttle_bps: int | None = None,
    cut_after_bytes: int | None = None,
    timeout: float = 30.0,
) -> HubHandle:
    """Start a course hub in a background process, or reuse the one already on that port.

    Without `root`, what the hub serves follows the profile (`VLLM_COURSE_PROFILE`, which
    `course.setup()` sets): offline, the built course models; online, a logging mirror of the real
    Hub (`VLLM_COURSE_UPSTREAM`) that keeps its files under `<course home>/mirror/`. So a lesson's
    `hub.start(port=0)` counts its requests in both profiles. A hub given a `root` is the same in both.

    Args:
        root: folder of `<org>/<name>/` repos (default: the built course models, `repos_dir()`; in
            the online profile `mirror_dir()`, created if missing).
        port: TCP port (default `VLLM_COURSE_HUB_PORT`, 8765; in the online profile, without `root`,
            `VLLM_COURSE_MIRROR_PORT`, 8766); 0 picks a free one: a private hub,
            never reused, that also stops when this process ends. A fixed-port hub outlives it
            (a kernel restart finds and reuses it) until `stop()` or `hub stop`.
        upstream: URL of a hub to mirror (pull-through cache), e.g. the real Hub (default: none; in
            the online profile, without `root`, `VLLM_COURSE_UPSTREAM`).
        host: interface (default `VLLM_COURSE_HUB_HOST`, 127.0.0.1: only this machine can connect).
        throttle_bps: demo setting: cap each file transfer at this many bytes per second.
        cut_after_bytes: demo setting: cut the first full download of each file after this many bytes.
        timeout: seconds to wait for the new hub to answer.

    Returns:
        A `HubHandle`; `owned` tells whether this call started it.

    Raises:
        HubError: the root is missing, the port is taken by something else (or by a hub serving
            another root), or the hub did not come up (its log is quoted).
    """
    mirror = root is None and config.profile() == "online"
    if mirror:
        root, upstream = _mirror_root(), upstream or config.UPSTREAM
    root_path = RepoStore(root if root is not None else config.repos_dir()).root  # fails loudly if missing
    host = host or config.HUB_HOST
    port = (config.MIRROR_PORT if mirror else config.HUB_PORT) if port is None else int(port)
    if port:
        reused = _reuse(host, port, root_path, upstream)
        if reused is not None:
            return reused
    return _spawn(root_path, host, port, upstream, throttle_bps, cut_after_bytes, timeout)


def stop(port: int | None = None, timeout: float = 10.0) -> bool:
    """Stop the hub recorded for `port` (default: the profile's hub, as for `start()`).

    Returns:
        True if a hub was stopped, False if none was recorded or running.
    """
    port = config.hub_port() if port is None else int(port)
    state = _read_state(port)
    if state is None:
        return False
    running = is_running(state["url"])
    _terminate(state.get("pid"), state["url"], timeout)
    _remove_state(port, state.get("pid"))
    return running


def status() -> list[dict[str, Any]]:
    """Every recorded hub: its state (url, port, pid, root, upstream, log) and `running`."""
    out = []
    folder = state_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        state["running"] = is_running(state.get("url", ""))
        out.append(state)
    return out


def stats(url_or_port: str | int | None = None, reset: bool = False) -> HubStats:
    """Return the request counters of a running hub (default: the profile's hub, as for `start()`).

    Args:
        url_or_port: the hub's URL, or a port on 127.0.0.1.
        reset: zero the counters after reading them.

    Raises:
        HubUnreachableError: no hub answers there.
    """
    url = _url(config.hub_port() if url_or_port is None else url_or_port)
    return HubStats.from_dict(_get_json(f"{url}/_course/stats" + ("?reset=1" if reset else "")))


def is_running(url_or_port: str | int) -> bool:
    """Whether a course hub answers at this URL (or on this port of 127.0.0.1), within a second."""
    return _health(_url(url_or_port), timeout=1.0) is not None


# -- private helpers -------------------------------------------------------------------------


def _mirror_root() -> Path:
    """The online profile's mirror folder, created on first use (a mirror starts empty)."""
    folder = config.mirror_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HubError(f"Cannot create the course hub's mirror folder {folder}: {exc}. "
                       "Set VLLM_COURSE_HOME to a writable folder.") from exc
    return folder


def _reuse(host: str, port: int, root: Path, upstream: str | None) -> HubHandle | None:
    url = f"http://{host}:{port}"
    health = _health(url, timeout=1.0)
    if health is None:
        if _port_taken(host, port):
            raise HubError(f"Port {port} on {host} is taken by something that is not a course hub. "
                           "Pass another port (start(port=...), --port) or set VLLM_COURSE_HUB_PORT "
                           "(VLLM_COURSE_MIRROR_PORT for the online profile's hub).")
        return None
    if Path(health.get("root", "")) != root or (health.get("upstream") or None) != (upstream or None):
        raise HubError(
            f"A course hub already runs on port {port} serving {health.get('root')} "
            f"(upstream {health.get('upstream')}), not {root} (upstream {upstream}). Stop it first "
            f"(`python -m vllm_course hub stop --port {port}`) or pass another port."
        )
    state = _read_state(port) or {}
    return HubHandle(url, port, root, upstream, health.get("pid"), False, _opt_path(state.get("log")))


def _spawn(root: Path, host: str, port: int, upstream: str | None, throttle_bps: int | None,
           cut_after_bytes: int | None, timeout: float) -> HubHandle:
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tag = str(port) if port else f"auto-{os.getpid()}-{time.monotonic_ns()}"
    ready, log_file = folder / f"{tag}.ready", folder / f"{tag}.log"
    ready.unlink(missing_ok=True)
    args = [sys.executable, *_SERVE, "--root", str(root), "--host", host, "--port", str(port),
            "--ready-file", str(ready)]
    args += ["--upstream", upstream] if upstream else []
    args += ["--throttle-bps", str(throttle_bps)] if throttle_bps else []
    args += ["--cut-after-bytes", str(cut_after_bytes)] if cut_after_bytes is not None else []
    args += [] if port else ["--exit-with-parent"]  # a private free-port hub ends with its process
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    with open(log_file, "ab") as log:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            _kill_child(child)
            tail = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise HubError(f"The course hub did not start (root {root}, port {port}). Its log {log_file}:\n{tail}")
        time.sleep(0.05)
    port = int(json.loads(ready.read_text(encoding="utf-8"))["port"])
    ready.unlink(missing_ok=True)
    url = f"http://{host}:{port}"
    while _health(url, timeout=1.0) is None:
        if child.poll() is not None or time.monotonic() > deadline:
            _kill_child(child)
            raise HubError(f"The course hub on {url} did not answer its health check; see {log_file}.")
        time.sleep(0.05)
    handle = HubHandle(url, port, root, upstream, child.pid, True, log_file)
    if tag == str(port):
        _write_state(port, {"url": url, "host": host, "port": port, "pid": child.pid, "root": str(root),
                            "upstream": upstream, "log": str(log_file), "started": time.time()})
    return handle


def _health(url: str, timeout: float, raise_error: bool = False) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{url.rstrip('/')}/_course/health", timeout=timeout, trust_env=False)
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        if raise_error:
            raise HubUnreachableError(f"The course hub at {url} does not answer: {exc}. "
                                      "Start it with `python -m vllm_course hub start`.") from exc
        return None
    if not isinstance(data, dict) or data.get("service") != SERVICE:
        if raise_error:
            raise HubUnreachableError(f"{url} answers, but it is not a course hub.")
        return None
    return data


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=10.0, trust_env=False)
        response.raise_for_status()
        return response.json()
    except httpx.HTTPError as exc:
        raise HubUnreachableError(f"The course hub did not answer {url}: {exc}. Is it running?") from exc


def _terminate(pid: int | None, url: str, timeout: float) -> None:
    """SIGTERM the hub (only if it really is a course hub process), then SIGKILL after `timeout`."""
    if pid is None:
        health = _health(url, timeout=1.0)
        pid = health.get("pid") if health else None
    if pid is None or not _is_hub_process(pid):
        return
    child = _CHILDREN.pop(pid, None)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid, child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid, child):
        os.kill(pid, signal.SIGKILL)
        if child is not None:
            child.wait(5)


def _alive(pid: int, child: subprocess.Popen[bytes] | None) -> bool:
    if child is not None:
        return child.poll() is None
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


def _is_hub_process(pid: int) -> bool:
    try:
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())
    except Exception:
        return False
    # the second form: a hub started by a course version before `hub serve` launched them
    return " ".join(_SERVE) in cmdline or "vllm_course.hub.server" in cmdline


def _kill_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait(5)
    _CHILDREN.pop(child.pid, None)


def _port_taken(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _read_state(port: int) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir() / f"{port}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_state(port: int, state: dict[str, Any]) -> None:
    path = state_dir() / f"{port}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _remove_state(port: int, pid: int | None) -> None:
    state = _read_state(port)
    if state is not None and (pid is None or state.get("pid") == pid):
        (state_dir() / f"{port}.json").unlink(missing_ok=True)


def _url(url_or_port: str | int) -> str:
    return f"http://127.0.0.1:{url_or_port}" if isinstance(url_or_port, int) else str(url_or_port).rstrip("/")


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None
