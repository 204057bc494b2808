"""The course hub: a local server that speaks the Hugging Face Hub protocol.

It serves the course repos of `config.repos_dir()` (`<org>/<name>/<files>`) with no internet, counts every request
and can mirror an upstream hub: after `h = hub.start(); h.activate(); before = h.stats()` and loading a model,
`h.stats().since(before).weight_downloads()` counts the weight files that load downloaded."""

from .control import HubHandle, check_endpoint, is_running, start, stats, stop, use_hub
from .log import FileStats, HubStats
from .server import HubConfig

__all__ = ["FileStats", "HubConfig", "HubHandle", "HubStats", "check_endpoint", "is_running", "start", "stats",
           "stop", "use_hub"]
