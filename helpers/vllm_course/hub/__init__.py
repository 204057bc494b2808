"""The course hub: a small local server that speaks the Hugging Face Hub protocol.

It serves the course model repos from a folder (`vllm_course.config.repos_dir()` by default) so
`snapshot_download`, `hf download` and `LLM(model="course/...")` work offline, counts every request
(`stats()`), and can mirror an upstream hub (pull-through cache).

    >>> from vllm_course import hub                                   # doctest: +SKIP
    >>> h = hub.start()             # background process on 127.0.0.1:8765, reused if running
    >>> h.activate()                # HF_ENDPOINT -> the hub, for this process
    >>> h.stats().weight_downloads()
    0
    >>> h.stop()

CLI: `python -m vllm_course hub serve|start|stop|status`.
"""

from .control import (
    EndpointActivation, HubHandle, check_endpoint, is_running, start, state_dir, stats, status, stop, use_hub,
)
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
