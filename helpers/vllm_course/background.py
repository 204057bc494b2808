"""GPTQ and AWQ (minutes each) built in the background by `models build --background` (`make lab`);
lessons that need them call `wait_for`, which shows a progress bar until the repo is built."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from . import build, config
from .errors import ModelNotBuiltError

ALL_REPOS = config.COURSE_MODELS  # what `models status` lists, in build order
EXPECTED_SECONDS = {config.GPTQ_MODEL: 600, config.AWQ_MODEL: 400}  # a first AVX2 build (tool venv, then GPTQ)


def log_path() -> Path:
    return config.course_home() / "logs" / "models-build.log"


def pid_path() -> Path:
    return config.course_home() / "logs" / "models-build.pid"


def running_pid() -> int | None:
    """The background build's process id while it runs, else None."""
    try:
        pid = int(pid_path().read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def start(*, awq: bool | None = None) -> int:
    """Start `models build` in a background process (no second one while one runs); return its pid."""
    if (pid := running_pid()) is not None:
        print(f"model build already running (pid {pid}); log: {log_path()}")
        return pid
    log_path().parent.mkdir(parents=True, exist_ok=True)
    flag = [] if awq is None else ["--awq" if awq else "--no-awq"]
    cmd = [sys.executable, "-m", "vllm_course.background", "--run", *flag]
    with log_path().open("w") as log:  # stderr (the tqdm bar) stays on the terminal that started it
        proc = subprocess.Popen(cmd, stdout=log, stderr=None, start_new_session=True)
    pid_path().write_text(str(proc.pid))
    print(f"building GPTQ/AWQ in the background (pid {proc.pid}): `python -m vllm_course models status`; "
          f"log: {log_path()}")
    return proc.pid


def status() -> str:
    """One line per course repo (built / building / not built) and the background build's state."""
    pid = running_pid()
    building = pid is not None or build.build_running()
    lines = []
    for repo_id in ALL_REPOS:
        state = ("built" if build.is_built(repo_id) else
                 "not built: only where 4-bit runs (VLLM_COURSE_BUILD_AWQ=1 make models)"
                 if repo_id == config.AWQ_MODEL and not build.wants_awq() else
                 "building" if building else "not built: `make models`")
        lines.append(f"{repo_id:45s} {state}")
    log = log_path().read_text(errors="replace") if log_path().is_file() else ""
    tail = next((line for line in reversed(log.splitlines()) if line.strip()), "")[:120]  # last non-empty line
    lines.append(f"background build: {'running, pid ' + str(pid) if pid else 'not running'}"
                 + (" (a `make models` build is running)" if building and not pid else "")
                 + (f"; last log line: {tail}" if tail else ""))
    return "\n".join(lines)


def wait_for(repo_id: str, *, timeout: float = 1800) -> Path:
    """A built repo's folder, after a progress bar while it builds (ModelNotBuiltError: no build, or `timeout`)."""
    if build.is_built(repo_id):
        return config.repo_path(repo_id)
    if not build.build_running():
        raise ModelNotBuiltError(f"{repo_id} is not built and no build is running: run `make models` "
                                 "in a terminal (GPTQ and AWQ take a few minutes each), then run this cell again.")
    from tqdm.auto import tqdm
    start = time.monotonic()
    with tqdm(total=EXPECTED_SECONDS.get(repo_id, 240), desc=f"waiting for {repo_id}", unit="s") as bar:
        while not build.is_built(repo_id):
            if not build.build_running() or time.monotonic() - start > timeout:
                raise ModelNotBuiltError(f"the background build stopped before {repo_id} was built: see "
                                         f"{log_path()}, then run `make models`.")
            time.sleep(2)
            bar.n = min(bar.total, int(time.monotonic() - start))
            bar.refresh()
        bar.n = bar.total
    return config.repo_path(repo_id)


def _run(awq: bool | None) -> int:
    """The background process: build everything, one tqdm step per repo on stderr."""
    from tqdm import tqdm
    pid_path().write_text(str(os.getpid()))
    total = len(ALL_REPOS) - (0 if (build.wants_awq() if awq is None else awq) else 1)
    with tqdm(total=total, desc="course models", unit="repo", file=sys.stderr) as bar:
        def log(line: str) -> None:
            print(line, flush=True)
            if line.startswith(("built", "up to date")):
                bar.update(1)
            else:
                bar.set_postfix_str(line.split()[-2] if line.startswith("building") else "")

        try:
            build.build_all(awq=awq, log=log)
        finally:
            pid_path().unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="background course-model build (started by `models build --background`)")
    parser.add_argument("--run", action="store_true", required=True)
    parser.add_argument("--awq", action=argparse.BooleanOptionalAction, default=None)
    sys.exit(_run(parser.parse_args().awq))
