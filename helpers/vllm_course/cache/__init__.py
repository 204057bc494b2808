"""The Hugging Face cache, on top of huggingface_hub's own scanner and delete strategy.

Lessons read the cache with `scan_cache_dir()` and write their cleaning policies as comprehensions
over it; this package adds only what the library lacks:

- `scan`: `table()` prints a scan with ages in days, the same on every run.
- `clean`: `safe_delete_revisions()`, the library's `DeleteCacheStrategy` minus any path outside the cache.
- `checks`: `check_free_space()` before a download, `verify()` (offline checksums) after it.

Siblings (widgets, plots, diagnose, grading) import from here, never from the modules inside.

Example:
    >>> from huggingface_hub import scan_cache_dir                      # doctest: +SKIP
    >>> from vllm_course import cache
    >>> info = scan_cache_dir()
    >>> print(cache.table(info))
    repo         revision  refs  files    size  accessed   modified
    course/tiny  d1088f51  main      5  3.5 MB  0.0 d ago  0.0 d ago
    course/tiny  ea101223  -         5  3.5 MB  0.0 d ago  0.0 d ago
    1 repo(s), 2 revision(s), 3.5 MB on disk in /root/.cache/huggingface/hub
    >>> detached = [rev for repo in info.repos for rev in repo.revisions if not rev.refs]
    >>> strategy = cache.safe_delete_revisions(info, *detached)         # a dry run until .execute()
    >>> strategy.expected_freed_size_str
    '216.0'
"""

from __future__ import annotations

from .checks import SpaceCheck, check_free_space, verify
from .clean import safe_delete_revisions
from .scan import format_bytes, hub_cache, revisions, table

__all__ = [
    "SpaceCheck",
    "check_free_space",
    "format_bytes",
    "hub_cache",
    "revisions",
    "safe_delete_revisions",
    "table",
    "verify",
]
