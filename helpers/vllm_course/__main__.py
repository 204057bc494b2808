"""Command line: `python -m vllm_course <area> <action>`."""

from __future__ import annotations

import argparse
import sys

from .errors import CourseError


def main(argv: list[str] | None = None) -> int:
    from . import envcheck, grade_cli
    from .build import cli as build_cli
    from .hub import cli as hub_cli
    parser = argparse.ArgumentParser(prog="python -m vllm_course", description=__doc__.splitlines()[0])
    areas = parser.add_subparsers(dest="area", required=True)
    for area in (build_cli, hub_cli, envcheck, grade_cli):
        area.add_commands(areas)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
