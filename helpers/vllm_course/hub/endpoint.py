"""HF_ENDPOINT for this process: point the Hugging Face clients at a hub, check it answers.

huggingface_hub reads HF_ENDPOINT once, at import. Setting the env var afterwards changes nothing
for this process (subprocesses do inherit it), so `use_hub()` also patches the copies
huggingface_hub 2.4 made at import. HF_HUB_OFFLINE and HF_HOME have no such fix: set them first.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Protocol

import httpx

from ..errors import HubUnreachableError


class HasUrl(Protocol):
    url: str


@dataclass
class EndpointActivation:
    """HF_ENDPOINT pointed at a hub for this process; `restore()` (or leaving `with`) undoes it.

    huggingface_hub reads HF_ENDPOINT once, at import, into `constants.ENDPOINT`,
    `constants.HUGGINGFACE_CO_URL_TEMPLATE` (which `hf_hub_download` formats its URLs from) and the
    module-level `HfApi` behind `model_info()`/`list_repo_tree()`. When huggingface_hub is already
    imported, those three are patched too; new `HfApi()` objects read `constants.ENDPOINT`.
    HF_HUB_OFFLINE and HF_HOME cannot be switched this way: set them before importing.
    """

    url: str
    previous_env: str | None
    active: bool = True

    def restore(self) -> None:
        """Put HF_ENDPOINT (and huggingface_hub's copies of it) back as they were."""
        if not self.active:
            return
        self.active = False
        if self.previous_env is None:
            os.environ.pop("HF_ENDPOINT", None)
        else:
            os.environ["HF_ENDPOINT"] = self.previous_env
        _patch_hf_endpoint((self.previous_env or "https://huggingface.co").rstrip("/"))

    def __enter__(self) -> EndpointActivation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def use_hub(hub: HasUrl | str) -> EndpointActivation:
    """Point this process's Hugging Face clients (huggingface_hub, transformers, vLLM) at a hub.

    Sets `os.environ["HF_ENDPOINT"]` (inherited by subprocesses) and, if huggingface_hub is already
    imported, the copies it made at import. Best practice is still to set HF_ENDPOINT before the
    first `import huggingface_hub` / `import vllm` (first notebook cell, or the environment).

    Args:
        hub: a `HubHandle` (anything with `.url`) or a base URL such as "http://127.0.0.1:8765".

    Returns:
        An `EndpointActivation`; call `.restore()` or use it in a `with` block to undo.
    """
    url = (hub if isinstance(hub, str) else hub.url).rstrip("/")
    previous = os.environ.get("HF_ENDPOINT")
    os.environ["HF_ENDPOINT"] = url
    _patch_hf_endpoint(url)
    return EndpointActivation(url, previous)


def _patch_hf_endpoint(url: str) -> None:
    """Set huggingface_hub's import-time copies of HF_ENDPOINT, if it is imported."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return
    constants.ENDPOINT = url
    constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    hf_api = sys.modules.get("huggingface_hub.hf_api")
    if hf_api is not None and hasattr(hf_api, "api"):
        hf_api.api.endpoint = url


def check_endpoint(url: str | None = None, timeout: float = 2.0) -> None:
    """Fail fast if HF_ENDPOINT points at a local hub that is down (instead of ~100 s of retries).

    Args:
        url: endpoint to check (default: `os.environ["HF_ENDPOINT"]`); non-loopback URLs are not checked.

    Raises:
        HubUnreachableError: nothing answers there and HF_HUB_OFFLINE is not set.
    """
    url = url or os.environ.get("HF_ENDPOINT")
    if not url or not any(h in url for h in ("127.0.0.1", "localhost", "[::1]")):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return
    try:
        httpx.get(f"{url.rstrip('/')}/_course/health", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise HubUnreachableError(
            f"HF_ENDPOINT={url} does not answer. Start the course hub (`python -m vllm_course hub start`), "
            "or set HF_HUB_OFFLINE=1 before importing vllm/huggingface_hub to load from the cache."
        ) from exc
