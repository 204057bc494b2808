"""Inspect and clean the Hugging Face cache through huggingface_hub's own scanner and delete strategy.

One import for lessons; the work is split by concern:

- `cache_scan`: `scan()` turns `scan_cache_dir()` into repo and revision rows (a text table, HTML).
- `cache_clean`: `plan_delete()` and the cleaning policies `plan_keep_latest()`,
  `plan_not_accessed()`, `plan_detached()` return a `DeletePlan` built with
  `HFCacheInfo.delete_revisions()`. Printing it is the dry run (bytes it would free); nothing is
  deleted until `.execute()`, which runs the library's `DeleteCacheStrategy` after checking that no
  path lies outside the cache (symlinks pointing out are removed as links, never followed).
- `cache_checks`: `check_free_space()` before a download (sizes from the repo's metadata vs
  `shutil.disk_usage`), and `verify()` (the library's `verify_repo_checksums`, i.e. `hf cache
  verify`, or offline: each blob's sha256 / git-sha1 against its etag file name).

Example:
    >>> from vllm_course import cache                                   # doctest: +SKIP
    >>> print(cache.scan())
    repo         revision  refs  files    size  accessed   modified
    course/tiny  d1088f51  main      5  3.5 MB  0.0 d ago  0.0 d ago
    course/tiny  ea101223  -         5  3.5 MB  0.0 d ago  0.0 d ago
    1 repo(s), 2 revision(s), 3.5 MB on disk in /root/.cache/huggingface/hub
    >>> plan = cache.plan_detached()      # dry run: nothing deleted yet
    >>> plan.expected_freed_size
    216
    >>> plan.execute().freed_bytes
    216
"""

from __future__ import annotations

from .cache_checks import BlobCheck, SpaceCheck, VerifyReport, check_free_space, verify
from .cache_clean import (
    DeletePlan,
    DeleteResult,
    find_revisions,
    plan_delete,
    plan_detached,
    plan_for,
    plan_keep_latest,
    plan_not_accessed,
)
from .cache_scan import DAY, CacheScan, RepoRow, RevisionRow, format_bytes, hub_cache_dir, scan

__all__ = [
    "DAY",
    "BlobCheck",
    "CacheScan",
    "DeletePlan",
    "DeleteResult",
    "RepoRow",
    "RevisionRow",
    "SpaceCheck",
    "VerifyReport",
    "check_free_space",
    "find_revisions",
    "format_bytes",
    "hub_cache_dir",
    "plan_delete",
    "plan_detached",
    "plan_for",
    "plan_keep_latest",
    "plan_not_accessed",
    "scan",
    "verify",
]
