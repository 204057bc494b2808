"""JupyterHub for a class of the course: one instructor, many learners, one course hub, nbgrader's exchange.

Run from a folder for JupyterHub's state, with this repository's venv after `make class` (it installs
jupyterhub into the venv, which has nbgrader, and configurable-http-proxy under deploy/node_modules):

    cd /srv/jupyterhub && /path/to/course/.venv/bin/jupyterhub -f /path/to/course/deploy/jupyterhub_config.py

What it sets up (tests/test_classroom.py runs this file as it is):
- users are real OS users, spawned with JupyterHub's default LocalProcessSpawner, each server
  running this venv's `jupyterhub-singleuser` in the user's home;
- the course hub (`python -m vllm_course hub serve`) as a JupyterHub managed service, and its
  URL as HF_ENDPOINT in every user's server, so every download in the class goes through it;
- nbgrader: every user reads deploy/jupyter/nbgrader_config.py (course id, the exchange folder);
  the instructor also reads the course's own nbgrader_config.py (layout, gradebook, limits);
- each user's course home links `repos` to the built course models (read-only for learners).

Settings, from the environment of the `jupyterhub` process (defaults suit one server):
    VLLM_CLASS_PORT         public port of the proxy (8000); the hub uses +1, the proxy API +2,
                            the course hub +3, all on 127.0.0.1 except the public one
    VLLM_CLASS_IP           interface of the public port (127.0.0.1; 0.0.0.0 behind TLS)
    VLLM_CLASS_INSTRUCTOR   the instructor's user name ("instructor")
    VLLM_CLASS_COURSE       the instructor's course folder (~instructor/course): a copy of
                            nbgrader_config.py, solutions/ and notebooks/ of this repository
    VLLM_CLASS_MODELS       the built course models (`python -m vllm_course models build`
                            of the hub's user: its course home's repos/)
    VLLM_CLASS_EXCHANGE     nbgrader's exchange folder (/srv/nbgrader/exchange, mode 1777)
    VLLM_CLASS_PYTHON_BIN   the bin folder users' servers run from (this venv's); every user must be
                            able to execute it (a venv under /root is not: see docs/classroom.md)
    VLLM_CLASS_ADMIN_TOKEN  if set: a `class-admin` service with this token may create users,
                            tokens and servers through JupyterHub's REST API (scripts, tests)
"""

import os
import pwd
import sys
from pathlib import Path

from vllm_course import config as course_config

c = get_config()  # noqa: F821 - traitlets injects get_config into config files

DEPLOY = Path(__file__).resolve().parent
# The users' bin folder: jupyterhub-singleuser, python, nbgrader. Default: the venv JupyterHub runs in.
VENV_BIN = Path(os.environ.get("VLLM_CLASS_PYTHON_BIN") or Path(sys.executable).parent)
PORT = int(os.environ.get("VLLM_CLASS_PORT", "8000"))
INSTRUCTOR = os.environ.get("VLLM_CLASS_INSTRUCTOR", "instructor")
MODELS = Path(os.environ.get("VLLM_CLASS_MODELS") or course_config.repos_dir())
EXCHANGE = os.environ.get("VLLM_CLASS_EXCHANGE", "/srv/nbgrader/exchange")
COURSE_HUB_URL = f"http://127.0.0.1:{PORT + 3}"

# ---------------------------------------------------------------- JupyterHub and its proxy
c.JupyterHub.bind_url = f"http://{os.environ.get('VLLM_CLASS_IP', '127.0.0.1')}:{PORT}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{PORT + 1}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
_PROXY = DEPLOY / "node_modules" / ".bin" / "configurable-http-proxy"
if _PROXY.exists():  # `make class`; otherwise configurable-http-proxy from PATH
    c.ConfigurableHTTPProxy.command = [str(_PROXY)]
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"  # in the folder jupyterhub runs in
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"

# ---------------------------------------------------------------- users and their servers
c.JupyterHub.spawner_class = "localprocess"  # real OS users: each server runs as its user
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {
    "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",  # kernels find this venv's tools
    "HF_ENDPOINT": COURSE_HUB_URL,  # every download of the class goes through the course hub
    "VLLM_CLASS_EXCHANGE": EXCHANGE,
}
c.Spawner.http_timeout = 60  # a first server start imports JupyterLab and nbgrader: slow on 2 cores
c.Spawner.start_timeout = 120


def _pre_spawn(spawner) -> None:
    """Per user: nbgrader's config folders, and a course home whose `repos` is the built models."""
    name = spawner.user.name
    entry = pwd.getpwnam(name)
    shared = str(DEPLOY / "jupyter")
    if name == INSTRUCTOR:
        course = os.environ.get("VLLM_CLASS_COURSE") or os.path.join(entry.pw_dir, "course")
        spawner.environment["JUPYTER_CONFIG_PATH"] = os.pathsep.join([course, shared])
    else:
        spawner.environment["JUPYTER_CONFIG_PATH"] = shared
    home = Path(entry.pw_dir) / ".cache" / "vllm-course"
    if not (home / "repos").exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "repos").symlink_to(MODELS, target_is_directory=True)
        for path in (home.parent, home, home / "repos"):
            os.lchown(path, entry.pw_uid, entry.pw_gid)


c.Spawner.pre_spawn_hook = _pre_spawn

# ---------------------------------------------------------------- the course hub, a managed service
c.JupyterHub.services = [{
    "name": "course-hub",
    "url": COURSE_HUB_URL,
    "command": [sys.executable, "-m", "vllm_course", "hub", "serve", "--host", "127.0.0.1",
                "--port", str(PORT + 3), "--root", str(MODELS)],
}]

if os.environ.get("VLLM_CLASS_ADMIN_TOKEN"):
    c.JupyterHub.services.append({"name": "class-admin", "api_token": os.environ["VLLM_CLASS_ADMIN_TOKEN"]})
    c.JupyterHub.load_roles = [{
        "name": "class-admin",
        "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:users"],
        "services": ["class-admin"],
    }]
