"""nbgrader settings every user of the class shares (read through JUPYTER_CONFIG_PATH, see jupyterhub_config.py).

The course's own nbgrader_config.py (in the instructor's course folder) holds the rest: layout,
gradebook, time limits, feedback without hidden tests.
"""

import os

c = get_config()  # noqa: F821 - traitlets injects get_config into config files

c.CourseDirectory.course_id = "vllm-1.6-model-loading"
# nbgrader's exchange: one folder all users can write to (mode 1777); release, submit, collect and
# feedback go through it. On Kubernetes: a shared volume mounted at the same path in every pod.
c.Exchange.root = os.environ.get("VLLM_CLASS_EXCHANGE", "/srv/nbgrader/exchange")
