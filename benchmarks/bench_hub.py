"""Course hub throughput: downloading the course model's weights through the hub vs copying the
same bytes on disk, and metadata requests per second.

Run: .venv/bin/python benchmarks/bench_hub.py [--repeats 3] [--requests 300]

The weights file is read once first, so every measurement starts from the page cache and compares
transport costs, not disk speed. Each figure is the median of `--repeats` runs. Targets: the hub
download should reach at least half the speed of a plain copy. This machine may be shared and
noisy: read ratios, and re-run before quoting a figure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from vllm_course import config, hub

CHUNK = 1024 * 1024
_HF_CHILD = r"""
import json, sys, time
from huggingface_hub import hf_hub_download
t = time.perf_counter()
path = hf_hub_download(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t, "path": path}))
"""


def _python_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)


def _hub_plain(url: str, dst: Path) -> None:
    """GET with the standard library's http.client, read into one reused 1 MiB buffer."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", parts.path)
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"GET {url} answered {response.status}")
    buffer = memoryview(bytearray(CHUNK))
    with open(dst, "wb") as out:
        while n := response.readinto(buffer):
            out.write(buffer[:n])
    conn.close()


def _hub_httpx(url: str, dst: Path) -> None:
    with httpx.Client(trust_env=False, timeout=60) as client, client.stream("GET", url) as response:
        response.raise_for_status()
        with open(dst, "wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)


def _hf_hub_download(endpoint: str, repo_id: str, filename: str, scratch: Path) -> float:
    """Seconds hf_hub_download takes (timed inside a fresh process with an empty HF cache)."""
    cache = Path(tempfile.mkdtemp(dir=scratch))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(cache), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    done = subprocess.run([sys.executable, "-c", _HF_CHILD, repo_id, filename], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"hf_hub_download failed:\n{done.stderr[-2000:]}")
    shutil.rmtree(cache)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def _timed(func, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def _metadata_rate(url: str, repo_id: str, filename: str, requests: int) -> dict[str, float]:
    rates = {}
    with httpx.Client(base_url=url, trust_env=False) as client:
        for label, call in (("GET /api/models/{repo}", lambda: client.get(f"/api/models/{repo_id}")),
                            ("GET /api/models/{repo}/tree/main",
                             lambda: client.get(f"/api/models/{repo_id}/tree/main")),
                            ("HEAD /{repo}/resolve/main/{file}",
                             lambda: client.head(f"/{repo_id}/resolve/main/{filename}"))):
            call().raise_for_status()
            start = time.perf_counter()
            for _ in range(requests):
                call()
            rates[label] = requests / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=config.repos_dir(), help="hub root (default: course models)")
    parser.add_argument("--repo", default=config.BASE_MODEL)
    parser.add_argument("--file", default="model.safetensors")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="metadata requests per kind")
    args = parser.parse_args()

    src = args.root / args.repo / args.file
    if not src.is_file():
        sys.exit(f"{src} not found: build the course models first (`make models`) or pass --root/--repo/--file.")
    size = src.stat().st_size
    mb = size / 1e6
    scratch = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    os.environ["VLLM_COURSE_HOME"] = str(scratch / "course-home")
    try:
        _python_copy(src, scratch / "warm")  # page cache warm-up
        with hub.start(root=args.root, port=0) as h:
            url = f"{h.url}/{args.repo}/resolve/main/{args.file}"
            _hub_plain(url, scratch / "warm")  # hashes the file once (cached by the hub afterwards)
            copy_py = _timed(lambda: _python_copy(src, scratch / "copy"), args.repeats)
            copy_os = _timed(lambda: shutil.copyfile(src, scratch / "copy"), args.repeats)
            plain = _timed(lambda: _hub_plain(url, scratch / "download"), args.repeats)
            via_httpx = _timed(lambda: _hub_httpx(url, scratch / "download"), args.repeats)
            client = statistics.median(_hf_hub_download(h.url, args.repo, args.file, scratch)
                                       for _ in range(args.repeats))
            rates = _metadata_rate(h.url, args.repo, args.file, args.requests)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"Course hub throughput: {args.repo}/{args.file} ({mb:.1f} MB, page cache warm, "
          f"median of {args.repeats})")
    rows = [("plain copy, Python 1 MiB read/write", copy_py), ("plain copy, shutil.copyfile (kernel)", copy_os),
            ("hub -> http.client, 1 MiB readinto, file", plain), ("hub -> httpx iter_bytes, file", via_httpx),
            ("hub -> hf_hub_download (new process)", client)]
    for label, seconds in rows:
        print(f"  {label:42s} {seconds:6.2f} s  {mb / seconds:8.0f} MB/s")
    print(f"  ratio hub download / Python copy:         {copy_py / plain:5.2f}   (target >= 0.5)")
    print(f"  ratio hub download / shutil.copyfile:     {copy_os / plain:5.2f}")
    print(f"  ratio hf_hub_download / Python copy:      {copy_py / client:5.2f}   (client-bound: httpx parsing)")
    print(f"Metadata requests per second (one keep-alive client, {args.requests} each):")
    for label, rate in rates.items():
        print(f"  {label:42s} {rate:8.0f} req/s")


if __name__ == "__main__":
    main()
