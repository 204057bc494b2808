"""`pip install`, done by uv where it can: pip's own settings become uv's flags, and pip runs where uv cannot.

uv (seconds instead of pip's minutes) reads neither pip.conf nor PIP_*: they come from `pip config list`. Runs by path
before the course package is installed (`python installer.py --python PY -- ARGS`), and imported."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

# pip setting -> uv flag (each value of a space-separated list gets its own flag).
_FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
          "constraint": "--constraint", "trusted-host": "--allow-insecure-host"}
# pip setting -> environment variable uv reads.
_ENV = {"cert": "SSL_CERT_FILE", "default-timeout": "UV_HTTP_TIMEOUT", "timeout": "UV_HTTP_TIMEOUT",
        "proxy": "HTTPS_PROXY"}
_NO_EFFECT = {"disable-pip-version-check", "no-input", "progress-bar", "quiet", "verbose", "root-user-action",
              "no-cache-dir", "cache-dir", "retries", "no-color", "no-warn-script-location"}


def uv_command(python: Path) -> tuple[list[str], dict[str, str]] | None:
    """`uv pip install` into `python`'s venv with pip's settings, and its environment; None where pip must run.
    uv is looked for beside `python`, then beside this interpreter (the course venv, for the tool venv)."""
    uv = next((p for p in (Path(python).parent / "uv", Path(sys.executable).parent / "uv") if p.is_file()), None)
    if uv is None:
        return None
    listed = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True, text=True)
    if listed.returncode != 0:
        return None
    cmd = [str(uv), "pip", "install", "--python", str(python), "--index-strategy", "unsafe-best-match",
           "--compile-bytecode"]  # as pip does; else imports compile (each time, under PYTHONDONTWRITEBYTECODE)
    settings: dict[str, str] = {}  # listed from the files up to PIP_* variables: the last one wins, as in pip
    for line in listed.stdout.splitlines():  # e.g. global.find-links='/opt/wheels'  :env:.no-index='1'
        key, _, value = line.partition("=")
        settings[key.rsplit(".", 1)[-1]] = " ".join(shlex.split(value))
    env = dict(os.environ)
    for key, value in settings.items():
        if key in _FLAGS:
            for item in value.split():
                cmd += [_FLAGS[key], item]
        elif key in _ENV:
            env[_ENV[key]] = value
        elif key == "no-index" and value.lower() in {"1", "true", "yes", "on"}:
            cmd.append("--no-index")
        elif key not in _NO_EFFECT:
            print(f"pip setting {key!r} has no uv equivalent here: installing with pip.", flush=True)
            return None
    return cmd, env


def install(python: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Install `args` (pip's syntax: requirements, -e, -c, --no-deps) into `python`'s venv; output captured."""
    if (found := uv_command(python)) is not None:
        cmd, env = found
        proc = subprocess.run([*cmd, "--quiet", *args], capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            return proc
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"uv could not install ({last}): installing with pip.", flush=True)
    return subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-input", *args],
                          capture_output=True, text=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", type=Path, required=True, help="the venv's python")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="pip install arguments, after --")
    ns = parser.parse_args()
    done = install(ns.python, ns.args[1:] if ns.args[:1] == ["--"] else ns.args)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    sys.exit(done.returncode)
