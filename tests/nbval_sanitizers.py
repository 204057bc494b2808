"""Print the nbval sanitizers for this machine: the course home first, then tests/nbval_sanitize.cfg.

Also drops log lines that a library prints only on some runs (see DROPPED).

The committed outputs show the course home as <COURSE_HOME>. The static file recognises the default
(`.../vllm-course`); a learner or CI with `VLLM_COURSE_HOME=/somewhere/else` needs that exact path
replaced before the generic /tmp and home-folder rules see it. `make test` writes this to
`.venv/nbval_sanitize.cfg`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vllm_course import config

STATIC = Path(__file__).with_name("nbval_sanitize.cfg")
# Lines a library prints only sometimes, removed whole (an empty replacement needs the trailing space
# nbval's format asks for, which is why they are written here and not in the static file).
DROPPED = {
    # huggingface_hub's WeakFileLock logs this when two download threads race for
    # <local-dir>/.cache/huggingface/.gitignore.lock (a 0.1 s timeout): `hf download --local-dir`.
    "hf-lock-wait": r"Still waiting to acquire lock on [^\n]*\n",
    # Lesson 09's server gets --dtype where machine_kwargs() sets one (AVX2, AMX): its log of the flags.
    "serve-dtype-arg": r"'dtype': '\w+',\s",
}


def sanitizers() -> str:
    homes = sorted({str(config.course_home()), str(config.course_home().resolve())}, key=len, reverse=True)
    first = "[course-home-here]\nregex: " + "|".join(re.escape(h) for h in homes) + "\nreplace: <COURSE_HOME>\n\n"
    dropped = "".join(f"[{name}]\nregex: {regex}\nreplace: \n\n" for name, regex in DROPPED.items())
    return first + dropped + STATIC.read_text(encoding="utf-8")


if __name__ == "__main__":
    sys.stdout.write(sanitizers())
