"""The first cell of every notebook, `course = setup()`: choose a profile, set the env vars before any import.

Profiles: offline (default), the course models from the course hub; online (a GPU box with internet), the real Hub's
models through the course hub as a logging mirror of $VLLM_COURSE_UPSTREAM. Both use a course-owned HF_HOME."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import config, envvars
from .machine import QuantSupport, has_gpu, quant_support

# Why setup() sets (or unsets) each HF variable; print(course) shows it.
_WHY = {
    "HF_HOME": "huggingface_hub's home: the model cache is its hub/ folder (course-owned, not ~/.cache/huggingface)",
    "HF_ENDPOINT": "where huggingface_hub and vLLM download from: the course hub",
}
_WHY_UNSET = {
    "HF_HUB_CACHE": "so the model cache follows HF_HOME",
    "HF_ENDPOINT": "it named the other profile's course hub, which serves other model ids",
}


@dataclass(frozen=True)
class CourseModels:
    """The model ids a notebook uses; the same names work offline and online."""

    base: str
    bin: str
    pt: str
    gptq: str
    awq: str
    w8a8: str

    @property
    def quantized(self) -> str:
        """The quantized model this machine runs: gptq where vLLM has a 4-bit kernel, else w8a8."""
        return self.gptq if quant_support().w4a16 else self.w8a8


@dataclass(frozen=True)
class Course:
    """What `setup()` configured for this kernel."""

    profile: str
    endpoint: str
    hf_home: Path
    hub_cache: Path
    models: CourseModels
    upstream: str | None = None  # online profile: the hub the course hub mirrors
    environment: tuple[envvars.EnvSetting, ...] = ()  # every env var the course set in this process, with why

    @property
    def device(self) -> str:
        return "cuda" if has_gpu() else "cpu"

    @property
    def quant(self) -> QuantSupport:
        """Which quantized formats vLLM can run here, and why (probed on first use: it imports vllm, ~5 s)."""
        return quant_support()

    def __str__(self) -> str:
        mirrors = f" (mirror of {self.upstream})" if self.upstream and self.upstream != self.endpoint else ""
        env = "".join(f"\n  {setting}" for setting in self.environment)
        return (f"profile   {self.profile}\n"
                f"device    {self.device}\n"
                f"endpoint  {self.endpoint}{mirrors}\n"
                f"HF_HOME   {self.hf_home}\n"
                f"hub cache {self.hub_cache}\n"
                f"model     {self.models.base}\n"
                f"environment set before vllm / huggingface_hub are imported (they read it then):{env}")


def setup(profile: str | None = None, *, fresh_cache: str | None = None, start_hub: bool = True) -> Course:
    """Configure this process for the course (env vars, hub, notebook error advice); call it before importing vllm.

    `profile`: "offline" or "online" (default: $VLLM_COURSE_PROFILE, else "offline"). `fresh_cache`: this notebook's
    own empty HF_HOME, named after it (e.g. "lesson01"). `start_hub=False` leaves HF_ENDPOINT as it is (e.g. a
    private hub). Raises ModelNotBuiltError (offline, models not built), HubError (hub did not start), ValueError."""
    from . import hub
    profile = (profile or config.profile()).lower()
    if profile not in {"offline", "online"}:
        raise ValueError(f"profile={profile!r} is unknown: use 'offline' (course hub) or 'online' (real Hub).")
    ids = {"base": config.BASE_MODEL, "bin": config.BIN_MODEL, "pt": config.PT_MODEL,
           "gptq": config.GPTQ_MODEL, "awq": config.AWQ_MODEL, "w8a8": config.W8A8_MODEL}
    if profile == "offline":
        from .build import require
        require(config.BASE_MODEL)
    else:  # the online models have no -pt variant: the -bin one stands in
        ids = {k: config.ONLINE_MODELS[config.BIN_MODEL if k == "pt" else v] for k, v in ids.items()}
    hf_home = config.course_hf_home()
    if fresh_cache:
        if not (name := "".join(c if c.isalnum() or c in "-_" else "-" for c in fresh_cache)):
            raise ValueError(f"fresh_cache={fresh_cache!r}: use a short name such as 'lesson01'.")
        hf_home = config.course_home() / "scratch" / name / "hf"
        shutil.rmtree(hf_home, ignore_errors=True)
    wanted = {"HF_HOME": str(hf_home)}
    envvars.put("VLLM_COURSE_PROFILE", profile, "which models the course hub serves (hub.start() reads it)")
    drop: tuple[str, ...] = ("HF_HUB_CACHE",)
    other_hub = f"http://{config.HUB_HOST}:{config.MIRROR_PORT if profile == 'offline' else config.HUB_PORT}"
    if start_hub:
        wanted["HF_ENDPOINT"] = hub.start().url
    elif os.environ.get("HF_ENDPOINT") == other_hub:
        drop += ("HF_ENDPOINT",)  # an earlier setup() of the other profile: its hub serves other ids
    _apply(wanted, drop=drop)
    _put_python_bin_on_path()
    from . import cell_errors, engine
    engine.prepare_environment()
    cell_errors.register()  # in a notebook: a failed vLLM / huggingface_hub call gets one line of advice
    return Course(profile=profile, endpoint=os.environ.get("HF_ENDPOINT", "https://huggingface.co"),
                  hf_home=hf_home, hub_cache=hf_home / "hub",  # _apply() set HF_HOME and unset HF_HUB_CACHE
                  models=CourseModels(**ids), upstream=config.UPSTREAM if profile == "online" else None,
                  environment=tuple(envvars.recorded()))


def _apply(wanted: dict[str, str], drop: tuple[str, ...]) -> None:
    """Set env vars; warn when huggingface_hub was imported before with other values."""
    stale = [n for n in drop if n in os.environ] + [n for n, v in wanted.items() if os.environ.get(n) != v]
    for name in drop:
        envvars.remove(name, _WHY_UNSET[name])  # recorded only if it was set
    for name, value in wanted.items():
        envvars.put(name, value, _WHY[name])
    if "huggingface_hub" in sys.modules and stale:
        from huggingface_hub import constants
        if "HF_HOME" in stale and str(constants.HF_HOME) != os.environ.get("HF_HOME"):
            warnings.warn(f"huggingface_hub was imported before setup(), so it keeps HF_HOME={constants.HF_HOME}: "
                          "restart the kernel and run the setup cell first.", stacklevel=3)
        if "HF_ENDPOINT" in wanted:
            from .hub import use_hub
            use_hub(wanted["HF_ENDPOINT"])  # huggingface_hub's copies of the endpoint can be patched


def _put_python_bin_on_path() -> None:
    """Let `!hf ...` cells find the `hf` CLI installed next to this kernel's Python (.venv/bin)."""
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bin_dir not in parts:
        parts = [bin_dir, *[p for p in parts if p]]
    envvars.put("PATH", os.pathsep.join(parts), "`!hf ...` cells find the hf CLI next to this kernel's Python",
                shown="<kernel's bin folder>:$PATH")
