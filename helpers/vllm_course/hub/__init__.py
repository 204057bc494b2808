"""The course hub: a small local server that speaks the Hugging Face Hub protocol.

It serves the course model repos from a folder (`vllm_course.config.repos_dir()` by default, laid
out `<org>/<name>/<files>`) so `snapshot_download`, `hf download` and
`LLM(model="course/SmolLM2-135M-Instruct")` work with no internet; it counts every request
(`stats()`), and it can mirror an upstream hub (`upstream=`: a pull-through cache).

    >>> from vllm_course import hub                                   # doctest: +SKIP
    >>> h = hub.start()             # own process on 127.0.0.1:8765; reused if already running
    >>> h.activate()                # HF_ENDPOINT -> the hub, for this process (see below)
    >>> before = h.stats()
    >>> ...                         # load a model
    >>> h.stats().since(before).weight_downloads()
    0
    >>> h.stop()

Facts a lesson relies on:
- huggingface_hub reads HF_ENDPOINT once, at import. Set it before `import huggingface_hub` /
  `import vllm`; `use_hub()` / `HubHandle.activate()` also patch an already-imported
  huggingface_hub (`constants.ENDPOINT`, `constants.HUGGINGFACE_CO_URL_TEMPLATE`, and the
  module-level `HfApi`), which is enough for hf_hub_download, snapshot_download, model_info and
  vLLM. HF_HUB_OFFLINE and HF_HOME cannot be switched after the import.
- Each repo's commit sha is derived from its id and its files' (path, sha256) list: stable on
  every machine, and unique per repo as on the real Hub. Revisions: `main` and that sha.
- A file `.gated` in a repo folder gates it (401/403 `GatedRepo`); its lines are accepted tokens.
  Dotfiles are never listed or served; nothing outside the root is ever served.
- Counters: `GET /_course/stats` (add `?reset=1` to zero them after reading), `GET /_course/health`.
- Background hubs on a fixed port are recorded in `<course home>/hub/<port>.json`.

CLI (`hub/cli.py`): `python -m vllm_course hub serve|start|stop|status|watch`; `start` runs `hub serve`
in a background process.
"""

from .control import HubHandle, is_running, start, state_dir, stats, status, stop
from .endpoint import EndpointActivation, check_endpoint, use_hub
from .log import FileStats, HubStats, RequestRecord
from .repos import RepoStore
from .server import HubConfig, serve

__all__ = [
    "EndpointActivation",
    "FileStats",
    "HubConfig",
    "HubHandle",
    "HubStats",
    "RepoStore",
    "RequestRecord",
    "check_endpoint",
    "is_running",
    "serve",
    "start",
    "state_dir",
    "stats",
    "status",
    "stop",
    "use_hub",
]
