"""`python -m vllm_course models build|list|status`."""

from __future__ import annotations

import argparse

from .. import background, config
from . import build_all, read_manifest


def add_commands(areas: argparse._SubParsersAction) -> None:
    """Add `models build`, `models list` and `models status` to the CLI."""
    parser = areas.add_parser("models", help="build and list the course model repos")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="build missing or out-of-date course repos")
    build.add_argument("--awq", action=argparse.BooleanOptionalAction, default=None,
                       help="also build the AWQ variant (default: $VLLM_COURSE_BUILD_AWQ, else only where 4-bit runs)")
    build.add_argument("--force", action="store_true", help="rebuild everything")
    build.add_argument("--quick", action="store_true", help="only the repos that take seconds (not GPTQ/AWQ)")
    build.add_argument("--background", action="store_true",
                       help="start the whole build in the background (progress bar here, log in the course home)")
    build.set_defaults(func=_build)
    actions.add_parser("list", help="show built repos with sizes").set_defaults(func=_list)
    actions.add_parser("status", help="built / building / not built, and the background build").set_defaults(
        func=lambda _: print(background.status()))


def _build(args: argparse.Namespace) -> None:
    if args.background:
        background.start(awq=args.awq)
    else:
        build_all(awq=args.awq, force=args.force, quick=args.quick)


def _list(_: argparse.Namespace) -> None:
    for repo_id, entry in sorted(read_manifest().items()):
        folder = config.repo_path(repo_id)
        size = sum((folder / f).stat().st_size for f in entry["files"] if (folder / f).exists())
        print(f"{repo_id:45s} {size / 1e6:8.1f} MB  {folder}")
