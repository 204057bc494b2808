"""HF_ENDPOINT for this process: point the Hugging Face clients at a hub, check that it answers.

huggingface_hub reads HF_ENDPOINT once, at import, into `constants.ENDPOINT`,
`constants.HUGGINGFACE_CO_URL_TEMPLATE` (hf_hub_download's URLs) and the module-level `HfApi`
(model_info, list_repo_tree): `use_hub()` patches those copies too. HF_HUB_OFFLINE and HF_HOME have
no such fix: set them before importing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ..errors import HubUnreachableError

if TYPE_CHECKING:
    from .control import HubHandle


@dataclass
class EndpointActivation:
    """HF_ENDPOINT pointed at a hub for this process; `restore()` (or leaving `with`) undoes it."""

    url: str
    previous_env: str | None
    active: bool = True

    def restore(self) -> None:
        """Put HF_ENDPOINT (and huggingface_hub's copies of it) back as they were."""
        if self.active:
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


def use_hub(hub: HubHandle | str) -> EndpointActivation:
    """Point this process's Hugging Face clients (huggingface_hub, transformers, vLLM) and its
    subprocesses at a hub: a `HubHandle` or a base URL such as "http://127.0.0.1:8765".

    Returns:
        An `EndpointActivation`; call `.restore()` or use it in a `with` block to undo.
    """
    url = (hub if isinstance(hub, str) else hub.url).rstrip("/")
    activation = EndpointActivation(url, os.environ.get("HF_ENDPOINT"))
    os.environ["HF_ENDPOINT"] = url
    _patch_hf_endpoint(url)
    return activation


def _patch_hf_endpoint(url: str) -> None:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.ENDPOINT = url
        constants.HUGGINGFACE_CO_URL_TEMPLATE = url + "/{repo_id}/resolve/{revision}/{filename}"
    hf_api = sys.modules.get("huggingface_hub.hf_api")
    if hf_api is not None and hasattr(hf_api, "api"):
        hf_api.api.endpoint = url


def check_endpoint(url: str | None = None, timeout: float = 2.0) -> None:
    """Fail fast if `url` (default: HF_ENDPOINT) is a local hub that is down, instead of ~100 s of
    retries (HubUnreachableError, unless HF_HUB_OFFLINE is set). Other URLs are not checked."""
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
