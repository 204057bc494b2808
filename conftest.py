"""pytest-xdist workers (`make test` runs two) each get their own CPU cores and course hub ports.

vLLM binds its compute threads to the cores its process may use, and child processes (engines, notebook
kernels, grading probes) inherit the mask: without it, two workers' engines spin on the same cores and each
runs several times slower than alone. Notebooks start the course hub on a fixed port (`setup()`): each
worker's kernels get their own, so two lessons never race for one.
"""

from __future__ import annotations

import os


def _isolate_xdist_worker() -> None:
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2:
        return
    index = int(worker.removeprefix("gw"))
    for name, default in (("VLLM_COURSE_HUB_PORT", 8765), ("VLLM_COURSE_MIRROR_PORT", 8766)):  # config.py
        os.environ[name] = str(int(os.environ.get(name, default)) + 2 * (index + 1))
    from vllm_course.machine import core_share  # after the ports: vllm_course.config reads them at import

    if cores := core_share(index, count):
        os.sched_setaffinity(0, cores)


_isolate_xdist_worker()
