"""The course hub under a class's load: N learners `snapshot_download` the course model at once
through one mirror hub, whose upstream is a second course hub.

Run: .venv/bin/python benchmarks/bench_class_load.py [--clients 100] [--concurrency 50]

Both hubs run on loopback in their own processes (`hub.start(port=0)`): the upstream serves the
built course repos (it stands in for the real Hub); the mirror is `hub serve --upstream <upstream>`
over a new, empty root. Each client is the real huggingface_hub call
`snapshot_download(repo_id, cache_dir=<its own folder>, endpoint=<mirror>)`.

Clients are processes (a fresh interpreter each, its own HF_HOME), `--concurrency` at a time (a
ThreadPoolExecutor of that many threads, each waiting on one process): a learner's kernel is a
process, with its own huggingface_hub HTTP client and connection pool. Threads of one process
were tried first and are not a class: they share one pool, so one learner's request goes out on
a connection another left idle, and 4 of 40 and 25 of 100 thread clients failed with
`RemoteProtocolError: Server disconnected without sending a response` (0 of 40 as processes, the
same hour). A client's seconds are its `snapshot_download` call only (not the interpreter start).

After each client returns, its files are hashed (sha256) and its cache is deleted, so the disk
holds about `--concurrency` copies at a time; that hashing shares the CPUs with the downloads still
running. The per-file counts come from the hubs' own request logs (`/_course/stats`), not from the
clients. Time figures are not asserted anywhere; tests/test_class_load.py runs `measure()` with
20 clients and asserts only correctness.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vllm_course import config, hub
from vllm_course.hub.log import HubStats
from vllm_course.hub.repos import file_hashes

# One learner: a fresh interpreter, its own HF_HOME; prints {"path"|"error", "seconds"} on its last line.
CLIENT_CODE = r"""
import json, sys, time
from huggingface_hub import snapshot_download
start = time.perf_counter()
try:
    out = {"path": snapshot_download(sys.argv[1], cache_dir=sys.argv[2], endpoint=sys.argv[3], token=False)}
except Exception as exc:
    out = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out | {"seconds": time.perf_counter() - start}))
"""
CLIENT_TIMEOUT = 900.0  # seconds before a client process counts as failed


@dataclass(frozen=True)
class ClientRun:
    """One client: its seconds in `snapshot_download`, the sha256 of each file it got, or its error."""

    index: int
    seconds: float
    hashes: dict[str, str]
    error: str | None = None
    retries: int = 0  # huggingface_hub's "Trying to resume download" warnings on its stderr


@dataclass(frozen=True)
class ClassLoad:
    """One class-load run: the clients, the expected files, and what both hubs logged."""

    repo_id: str
    concurrency: int
    seconds: float
    expected: dict[str, str]  # path in the repo -> sha256 of the upstream's file
    sizes: dict[str, int]
    clients: tuple[ClientRun, ...]
    mirror: HubStats
    upstream: HubStats
    mirror_rss_start: int | None  # bytes (VmRSS once the mirror answered), None off Linux
    mirror_rss_peak: int | None  # bytes (VmHWM: the process's peak resident memory)
    hub_log_errors: dict[str, Counter[str]]  # "mirror"/"upstream" -> exception name -> times in its log


    @property
    def errors(self) -> list[ClientRun]:
        return [c for c in self.clients if c.error]

    @property
    def wrong(self) -> list[ClientRun]:
        """Clients that returned, with a file missing, extra, or not the upstream's bytes."""
        return [c for c in self.clients if not c.error and c.hashes != self.expected]

    def error_kinds(self) -> Counter[str]:
        """First line of each client error -> how many clients failed with it."""
        return Counter(c.error.splitlines()[0][:200] for c in self.errors if c.error)

    def upstream_gets(self) -> dict[str, int]:
        """Path -> GETs the upstream answered for that file (whole or ranged), from its own log."""
        return {p: _gets(self.upstream, self.repo_id, p) for p in self.expected}

    def mirror_gets(self) -> dict[str, int]:
        """Path -> GETs the mirror answered for that file, from its own log."""
        return {p: _gets(self.mirror, self.repo_id, p) for p in self.expected}


def expected_files(repo_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Given a repo folder, return (path -> sha256, path -> size) of the files a hub serves (no dotfiles)."""
    hashes, sizes = {}, {}
    for path in sorted(repo_dir.rglob("*")):
        rel = path.relative_to(repo_dir)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            hashes[rel.as_posix()] = file_hashes(path)[0]
            sizes[rel.as_posix()] = path.stat().st_size
    return hashes, sizes


@contextmanager
def hub_pair(repos: Path, work: Path) -> Iterator[tuple[hub.HubHandle, hub.HubHandle]]:
    """Start an upstream hub over `repos` and a mirror of it over the new folder `work/mirror-root`;
    yield (upstream, mirror); stop both."""
    with hub.start(root=repos, port=0) as upstream:
        with hub.start(root=work / "mirror-root", port=0, upstream=upstream.url) as mirror:  # start() creates it
            yield upstream, mirror


def run_clients(endpoint: str, repo_id: str, clients: int, concurrency: int, work: Path) -> tuple[list[ClientRun], float]:
    """Run `clients` snapshot_download processes, `concurrency` at a time, each in `work/client-NNN`;
    return each client's run and the total seconds."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="learner") as pool:
        runs = list(pool.map(lambda i: _one_client(i, endpoint, repo_id, work / f"client-{i:03d}"), range(clients)))
    return runs, time.perf_counter() - start


def measure(repos: Path, repo_id: str, clients: int, concurrency: int, work: Path) -> ClassLoad:
    """Start the pair of hubs, run the clients through the mirror, read both hubs' logs; stop the hubs.

    Args:
        repos: the upstream hub's root (built course repos, `<org>/<name>/`).
        repo_id: the repo every client downloads.
        clients: how many snapshot_downloads in all.
        concurrency: how many run at the same time.
        work: an empty scratch folder (the mirror's root and the clients' caches go there).
    """
    expected, sizes = expected_files(repos / repo_id)
    with hub_pair(repos, work) as (upstream, mirror):
        rss_start = _proc_status_bytes(mirror.pid, "VmRSS")
        runs, seconds = run_clients(mirror.url, repo_id, clients, concurrency, work)
        rss_peak = _proc_status_bytes(mirror.pid, "VmHWM")
        mirror_stats, upstream_stats = mirror.stats(), upstream.stats()
        logged = {"mirror": _log_errors(mirror.log_file), "upstream": _log_errors(upstream.log_file)}
    return ClassLoad(repo_id, concurrency, seconds, expected, sizes, tuple(runs), mirror_stats, upstream_stats,
                     rss_start, rss_peak, logged)


def report(load: ClassLoad) -> str:
    """The figures of a run as a text table."""
    n = len(load.clients)
    times = sorted(c.seconds for c in load.clients if not c.error) or [float("nan")]
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    total_mb = sum(load.sizes.values()) / 1e6
    up, down = load.upstream_gets(), load.mirror_gets()
    lines = [
        f"{n} snapshot_download clients of {load.repo_id} ({len(load.expected)} files, {total_mb:.1f} MB), "
        f"{load.concurrency} at a time (processes), {os.cpu_count()} CPUs",
        f"total              {load.seconds:8.1f} s   {n / load.seconds:.2f} clients/s, "
        f"{load.mirror.bytes_sent / 1e6 / load.seconds:.0f} MB/s served by the mirror",
        f"per client (s)     min {times[0]:.1f}  median {statistics.median(times):.1f}  p95 {p95:.1f}  max {times[-1]:.1f}",
        f"mirror RSS         {_mib(load.mirror_rss_start)} MiB once started, peak {_mib(load.mirror_rss_peak)} MiB (VmHWM)",
        f"errors             {len(load.errors)} of {n} clients; answers >= 400: mirror {load.mirror.errors}, "
        f"upstream {load.upstream.errors}",
        "hub log errors     " + "; ".join(_named_counts(name, c) for name, c in load.hub_log_errors.items()),
        f"client retries     {sum(c.retries for c in load.clients)} (huggingface_hub's 'Trying to resume download')",
        f"sha256             {'all right' if not load.wrong and not load.errors else 'WRONG'}: "
        f"{n - len(load.wrong) - len(load.errors)} of {n} clients got every file with the upstream's sha256",
        f"upstream metadata  {load.upstream.metadata_requests} requests (the mirror's listings of the repo)",
        "",
        f"{'file':28s} {'bytes':>11s} {'upstream GETs':>13s} {'mirror GETs':>11s} {'mirror upstream fetches':>23s}",
    ]
    for path in load.expected:
        fetched = load.mirror.file(load.repo_id, path).upstream_fetches
        lines.append(f"{path:28s} {load.sizes[path]:11d} {up[path]:13d} {down[path]:11d} {fetched:23d}")
    for kind, count in load.error_kinds().most_common():
        lines.append(f"{count:3d} clients failed with: {kind}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100, help="snapshot_downloads in all (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=50, help="at the same time (default %(default)s)")
    parser.add_argument("--repo", default=config.BASE_MODEL, help="repo to download (default %(default)s)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    from vllm_course.build import require

    require(args.repo)
    work = Path(tempfile.mkdtemp(prefix="class-load-", dir=args.work))
    try:
        print(report(measure(config.repos_dir(), args.repo, args.clients, args.concurrency, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _one_client(index: int, endpoint: str, repo_id: str, folder: Path) -> ClientRun:
    """One learner: snapshot_download in its own process and cache, hash what it got, delete the folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(folder / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1",
               NO_COLOR="1")
    command = [sys.executable, "-c", CLIENT_CODE, repo_id, str(folder / "hub"), endpoint]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
        retries = done.stderr.count("Trying to resume download")
        lines = done.stdout.strip().splitlines()
        out = json.loads(lines[-1]) if lines else {"error": f"exit {done.returncode}: {done.stderr[-500:]}"}
        if "error" in out:
            return ClientRun(index, out.get("seconds", time.perf_counter() - start), {}, out["error"], retries)
        snapshot = Path(out["path"])
        hashes = {p.relative_to(snapshot).as_posix(): file_hashes(p)[0]
                  for p in sorted(snapshot.rglob("*")) if p.is_file()}
        return ClientRun(index, out["seconds"], hashes, None, retries)
    except (subprocess.TimeoutExpired, OSError, ValueError) as exc:  # a client's failure is a figure of the run
        return ClientRun(index, time.perf_counter() - start, {}, f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _log_errors(log_file: Path | None) -> Counter[str]:
    """Exception name -> how many exception lines of that name a hub's log holds (chained ones too)."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace") if log_file else ""
    except OSError:
        return Counter()
    return Counter(m.group(1) for m in _EXCEPTION_LINE.finditer(text))


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Timeout|Exit)\w*)(?::|$)", re.MULTILINE)


def _named_counts(name: str, counts: Counter[str]) -> str:
    kinds = ", ".join(f"{kind} x{n}" for kind, n in counts.most_common())
    return f"{name} {sum(counts.values())}" + (f" ({kinds})" if kinds else "")


def _gets(stats: HubStats, repo_id: str, path: str) -> int:
    counts = stats.file(repo_id, path)
    return counts.full_downloads + counts.ranged_reads


def _proc_status_bytes(pid: int | None, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in bytes; None where there is no /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**20:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
