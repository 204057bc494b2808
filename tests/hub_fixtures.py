"""Fixtures and helpers for the course hub tests: tiny synthetic repos, hubs in their own processes,
and real huggingface_hub / hf clients run in subprocesses with their own HF_HOME.

Why subprocesses: huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import,
and this pytest process has already imported it. A fresh interpreter per client call is also what
a learner's second notebook or terminal is.

Test modules import what they use: `from hub_fixtures import tiny_hub, hf_env, run_py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from vllm_course import config, hub
from vllm_course.hub.repos import file_hashes

TINY = "org/tiny"
SECRET = b"TOP-SECRET-5f1c9e outside the hub root"
HF_CLI = str(Path(sys.executable).with_name("hf"))
COURSE_REPOS = config.repos_dir()  # read at import, before any fixture moves VLLM_COURSE_HOME
# A client script: snapshot_download org/tiny and print {"path": <snapshot folder>}.
SNAPSHOT_CODE = """
import json
from huggingface_hub import snapshot_download
print(json.dumps({"path": snapshot_download("org/tiny")}))
"""


def make_tiny_repo(root: Path, repo_id: str = TINY, weight_floats: int = 16_384, seed: int = 0) -> Path:
    """Write a small but real model repo: config.json, model.safetensors, a nested text file and a
    hidden file (which the hub must never list or serve). Returns the repo folder."""
    folder = root / repo_id
    (folder / "extra").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"],
                                                    "hidden_size": 8}), encoding="utf-8")
    rng = np.random.default_rng(seed)
    save_file({"weight": rng.standard_normal(weight_floats).astype(np.float32)}, str(folder / "model.safetensors"))
    (folder / "extra" / "notes.txt").write_text("a nested file\n", encoding="utf-8")
    (folder / ".hidden").write_bytes(b"hidden file: never served\n")
    return folder


def sha256_of(path: Path) -> str:
    return file_hashes(path)[0]


def run_py(code: str, env: dict[str, str], timeout: float = 120, check: bool = True) -> dict:
    """Run `code` in a fresh interpreter with `env`; return the JSON it prints on its last line."""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"client script failed ({done.returncode}):\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"returncode": done.returncode, "stderr": done.stderr}


def download_file(env: dict[str, str], filename: str, repo_id: str = TINY) -> Path:
    """hf_hub_download one file in a fresh interpreter with `env`; return its path in the cache."""
    code = (f"import json; from huggingface_hub import hf_hub_download\n"
            f"print(json.dumps({{'path': hf_hub_download({repo_id!r}, {filename!r})}}))")
    return Path(run_py(code, env)["path"])


def client_env(hf_home: Path, endpoint: str | None) -> dict[str, str]:
    """Environment for a client subprocess: its own HF_HOME/HF_HUB_CACHE, pointed at `endpoint`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_HUB_CACHE=str(hf_home / "hub"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_IMPLICIT_TOKEN="1", NO_COLOR="1")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


@pytest.fixture()
def hub_root(tmp_path: Path) -> Path:
    """A hub root holding `org/tiny`, with a secret file placed just outside it."""
    root = tmp_path / "root"
    make_tiny_repo(root)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return root


@pytest.fixture()
def tiny_hub(hub_root: Path, course_home: Path) -> Iterator[hub.HubHandle]:
    """A course hub process serving `hub_root` on a free port (state files in a scratch home)."""
    with hub.start(root=hub_root, port=0) as handle:
        yield handle


@pytest.fixture()
def hf_env(tmp_path: Path, tiny_hub: hub.HubHandle) -> dict[str, str]:
    """Client environment with a fresh HF cache, pointed at `tiny_hub`."""
    return client_env(tmp_path / "hf", tiny_hub.url)


@pytest.fixture(scope="module")
def course_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[hub.HubHandle, Path]]:
    """A private course hub over the built course models, and a scratch folder for the client's cache."""
    if not (COURSE_REPOS / config.BASE_MODEL / "model.safetensors").is_file():
        pytest.skip(f"{config.BASE_MODEL} is not built in {COURSE_REPOS}: run `make models` (python -m vllm_course models build)")
    scratch = tmp_path_factory.mktemp("course-hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_COURSE_HOME", str(scratch / "course-home"))
        handle = hub.start(root=COURSE_REPOS, port=0)
        try:
            yield handle, scratch
        finally:
            handle.stop()
