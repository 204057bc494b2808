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
    seen.append({"endpoint": c.endpoint, "hf_home": str(c.hf_home), "base": c.models.base})
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

    def test_is_an_unknown_profile_refused_in_one_line(self):
        """Does a typo in the profile name give a one-line error naming the valid profiles?"""
        proc = subprocess.run([sys.executable, "-c", "from vllm_course.course import setup; setup('ofline')"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "profile='ofline' is unknown: use 'offline' (course hub) or 'online' (real Hub)." in proc.stderr
