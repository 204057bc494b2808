"""course.setup(): the first cell's profile switch, run in fresh interpreters (env vars are read at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from vllm_course import config

_SCRIPT = r"""
import json, sys
from vllm_course.course import setup
seen = []
for profile in sys.argv[1:]:
    c = setup(profile, start_hub=False)
    imported = "vllm" in sys.modules  # before anything asks what vLLM can run
    seen.append({"endpoint": c.endpoint, "hf_home": str(c.hf_home), "base": c.models.base, "vllm_imported": imported,
                 "quantized": c.models.quantized, "gptq": c.models.gptq, "w8a8": c.models.w8a8,
                 "w4a16": c.quant.w4a16, "device": c.device})
print(json.dumps(seen))
"""


def _run(*profiles: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "VLLM_COURSE_PROFILE"}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, *profiles], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class TestProfiles:
    def test_does_offline_use_the_course_hf_home_and_course_models(self, base_model):
        """Does the offline profile point HF_HOME at the course's own folder and name course/ models?"""
        (offline,) = _run("offline")
        assert offline["hf_home"] == str(config.course_hf_home())
        assert offline["base"] == config.BASE_MODEL

    def test_does_switching_to_online_keep_the_course_hf_home_and_name_online_models(self, base_model):
        """After setup() then setup('online') in one process (no hub started), is the endpoint the real
        Hub, HF_HOME still the course's own (never the learner's ~/.cache/huggingface), the ids online?"""
        _, online = _run("offline", "online")
        assert online["endpoint"] == "https://huggingface.co"
        assert online["hf_home"] == str(config.course_hf_home())
        assert online["base"] == config.ONLINE_MODELS[config.BASE_MODEL]

    def test_is_vllm_probed_only_when_asked_and_the_quantized_model_the_one_it_runs(self, base_model):
        """Does setup() leave vLLM unimported (a notebook that never loads an engine does not pay ~5 s), and is
        `models.quantized` GPTQ where vLLM's kernels run 4-bit here and W8A8 elsewhere, in either profile?"""
        offline, online = _run("offline", "online")
        assert offline["vllm_imported"] is False  # the online one follows this one's probe, in one process
        for seen in (offline, online):
            assert seen["quantized"] == (seen["gptq"] if seen["w4a16"] else seen["w8a8"])
            assert seen["device"] in ("cpu", "cuda")

    def test_is_an_unknown_profile_refused_in_one_line(self):
        """Does a typo in the profile name give a one-line error naming the valid profiles?"""
        proc = subprocess.run([sys.executable, "-c", "from vllm_course.course import setup; setup('ofline')"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "profile='ofline' is unknown: use 'offline' (course hub) or 'online' (real Hub)." in proc.stderr


_ENV_SCRIPT = r"""
import json, os, sys
before = dict(os.environ)
if sys.argv[1] == "vllm-only":  # what importing vLLM sets by itself (vllm/env_override.py), not the course
    import vllm
    text = ""
else:
    from vllm_course.course import setup
    text = str(setup(sys.argv[1], start_hub=False))
after = dict(os.environ)
changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
print(json.dumps({"text": text, "changed": {k: after.get(k) for k in changed}}))
"""


def _setup_env(profile: str, **extra: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """Run setup() in a learner-like fresh interpreter (no HF_*/VLLM_* settings but the course home, and a
    PATH without the venv's bin folder, as a kernel started by Jupyter has it); return the env block
    `print(course)` showed (name -> rest of line) and what really changed, less what `import vllm` sets by
    itself in the same environment."""
    keep = ("VLLM_COURSE_HOME", "VLLM_COURSE_HUB_PORT", "VLLM_COURSE_MIRROR_PORT")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "VLLM_", "TOKENIZERS_")) or k in keep} | extra
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    runs = {}
    for arg in (profile, "vllm-only"):
        out = subprocess.run([sys.executable, "-c", _ENV_SCRIPT, arg], env=env, capture_output=True, text=True,
                             timeout=120, check=True)
        runs[arg] = json.loads(out.stdout.strip().splitlines()[-1])
    found, vllm_only = runs[profile], runs["vllm-only"]["changed"]
    found["changed"] = {k: v for k, v in found["changed"].items() if vllm_only.get(k, 0) != v}
    block = found["text"].split("(they read it then):\n", 1)[1].splitlines()
    shown = {}
    for line in block:
        assert line.startswith("  ") and "  # " in line, line
        setting, why = line.strip().split("  # ", 1)
        assert len(why) > 10, line
        name = setting.split("=", 1)[0].removesuffix(" (unset)")
        shown[name] = setting
    return shown, found["changed"]


class TestEnvironmentShown:
    def test_does_print_course_list_exactly_the_variables_setup_changed_with_their_values(self, base_model):
        """Is every env var setup() set or unset listed by print(course) with its value, and nothing else?"""
        shown, changed = _setup_env("offline")
        assert set(shown) == set(changed), (sorted(shown), sorted(changed))
        for name, value in changed.items():
            if name == "PATH":
                assert shown[name] == "PATH=<kernel's bin folder>:$PATH"
                assert value.split(os.pathsep)[0] == os.path.dirname(sys.executable)
            else:
                assert shown[name] == f"{name}={value}", shown[name]
        assert {"HF_HOME", "VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_LOGGING_CONFIG_PATH",
                "VLLM_CPU_KVCACHE_SPACE"} <= set(changed)
        assert changed["HF_HOME"] == str(config.course_hf_home())

    def test_is_a_learners_own_value_kept_and_shown_and_a_dropped_one_shown_unset(self, base_model):
        """With VLLM_CPU_KVCACHE_SPACE=2 and HF_HUB_CACHE set beforehand: is 2 kept and shown, HF_HUB_CACHE unset and shown so?"""
        shown, changed = _setup_env("offline", VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_CACHE="/elsewhere/hub")
        assert shown["VLLM_CPU_KVCACHE_SPACE"] == "VLLM_CPU_KVCACHE_SPACE=2"
        assert "VLLM_CPU_KVCACHE_SPACE" not in changed
        assert shown["HF_HUB_CACHE"] == "HF_HUB_CACHE (unset)"
        assert changed["HF_HUB_CACHE"] is None
