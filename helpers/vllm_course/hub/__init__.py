"""The course hub: a local server that speaks the Hugging Face Hub protocol.

It serves the course model repos from a folder (`config.repos_dir()`, laid out `<org>/<name>/<files>`)
so `snapshot_download`, `hf download` and `LLM(model="course/SmolLM2-135M-Instruct")` work with no
internet; it counts every request (`stats()`), and it can mirror an upstream hub (`upstream=`).

    >>> from vllm_course import hub                                   # doctest: +SKIP
    >>> h = hub.start()             # own process on 127.0.0.1:8765; reused if already running
    >>> h.activate()                # HF_ENDPOINT -> the hub, also for an imported huggingface_hub
    >>> before = h.stats()
    >>> ...                         # load a model
    >>> h.stats().since(before).weight_downloads()
    0
    >>> h.stop()
"""

from .control import HubHandle, is_running, start, state_dir, stats, status, stop
from .control import EndpointActivation, check_endpoint, use_hub
from .log import FileStats, HubStats, RequestRecord
from .repos import RepoStore
from .server import HubConfig, serve

__all__ = ["EndpointActivation", "FileStats", "HubConfig", "HubHandle", "HubStats", "RepoStore", "RequestRecord",
           "check_endpoint", "is_running", "serve", "start", "state_dir", "stats", "status", "stop", "use_hub"]
