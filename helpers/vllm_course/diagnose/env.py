"""HF_* environment variables changed after huggingface_hub read them (and so ignored).

huggingface_hub reads HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_ENDPOINT once, at import;
`check_env_applied()` finds the ones a notebook changed too late and warns.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

from ..errors import StaleEnvWarning


@dataclass(frozen=True)
class EnvMismatch:
    """An HF_* variable whose current value is not the one huggingface_hub uses."""

    name: str
    env_value: str | None
    in_effect: str

    def __str__(self) -> str:
        now = f"{self.name}={self.env_value} was set" if self.env_value is not None else f"{self.name} was unset"
        verb = "set" if self.env_value is not None else "unset"
        return (f"{now} after huggingface_hub was imported, so it has no effect (huggingface_hub still uses "
                f"{self.in_effect}): restart the kernel and {verb} it before importing vllm or huggingface_hub "
                "(the first cell's course.setup() does).")


def check_env_applied(*, warn: bool = True) -> tuple[EnvMismatch, ...]:
    """Compare HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_ENDPOINT with what huggingface_hub read.

    huggingface_hub reads them once, at import (vLLM imports it), so setting one later in a
    notebook does nothing. Call this after changing one (preflight() does).

    Args:
        warn: also issue a `StaleEnvWarning` per variable that has no effect.

    Returns:
        One `EnvMismatch` per variable whose change has no effect (empty if huggingface_hub is
        not imported yet: the new values will be read at import).
    """
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is None:
        return ()
    env = os.environ
    home = _expand(env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or
                                                      os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"))
    found = []
    if os.path.normpath(home) != os.path.normpath(constants.HF_HOME):
        found.append(EnvMismatch("HF_HOME", env.get("HF_HOME"), str(constants.HF_HOME)))
    elif "HF_HUB_CACHE" in env and os.path.normpath(_expand(env["HF_HUB_CACHE"])) != os.path.normpath(constants.HF_HUB_CACHE):
        found.append(EnvMismatch("HF_HUB_CACHE", env["HF_HUB_CACHE"], str(constants.HF_HUB_CACHE)))
    offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in {"1", "ON", "YES", "TRUE"}
    if offline != bool(constants.HF_HUB_OFFLINE):
        found.append(EnvMismatch("HF_HUB_OFFLINE", env.get("HF_HUB_OFFLINE"), f"HF_HUB_OFFLINE={int(constants.HF_HUB_OFFLINE)}"))
    endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    if endpoint != constants.ENDPOINT:
        found.append(EnvMismatch("HF_ENDPOINT", env.get("HF_ENDPOINT"), constants.ENDPOINT))
    if warn:
        for item in found:
            warnings.warn(StaleEnvWarning(str(item)), stacklevel=2)
    return tuple(found)


# -- private helpers -------------------------------------------------------------------------------


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))
