"""`python -m vllm_course hub serve|start|stop|status|watch`: the course hub from the command line."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from .. import config
from ..errors import HubUnreachableError
from .control import start, state_dir, stats, status, stop
from .log import RequestRecord
from .mirror import create_root
from .server import HubConfig, serve


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the `hub` area and its actions to the course CLI."""
    area = subparsers.add_parser("hub", help="run the course hub (a local Hugging Face Hub)")
    actions = area.add_subparsers(dest="action", required=True)
    for name, func, text in (("serve", _serve, "run the hub in the foreground"),
                             ("start", _start, "start the hub in the background (reused if running)")):
        cmd = actions.add_parser(name, help=text)
        cmd.add_argument("--root", type=Path, default=None,
                         help="folder of <org>/<name>/ repos (default: the built course models)")
        cmd.add_argument("--host", default=config.HUB_HOST, help="interface to bind (default %(default)s)")
        port = config.hub_port() if name == "start" else config.HUB_PORT  # online profile: its mirror's
        cmd.add_argument("--port", type=int, default=port, help="port (default %(default)s)")
        cmd.add_argument("--upstream", default=None, help="mirror this hub URL (pull-through cache)")
        cmd.add_argument("--throttle-bps", type=int, default=None, help=argparse.SUPPRESS)
        cmd.add_argument("--cut-after-bytes", type=int, default=None, help=argparse.SUPPRESS)
        cmd.set_defaults(func=func)
    serve_cmd = actions.choices["serve"]  # what `start` passes to the process it launches
    serve_cmd.add_argument("--ready-file", type=Path, default=None, help=argparse.SUPPRESS)
    serve_cmd.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    for name, func, text in (("stop", _stop, "stop the background hub"), ("status", _status, "show recorded hubs"),
                             ("watch", _watch, "print each request the hub answers (Ctrl-C stops)")):
        cmd = actions.add_parser(name, help=text)
        cmd.set_defaults(func=func)
        if name != "status":
            cmd.add_argument("--port", type=int, default=config.hub_port(), help="port (default %(default)s)")
    watch = actions.choices["watch"]
    watch.add_argument("--seconds", type=float, default=None, help="stop after this long (default: never)")
    watch.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)


def _serve(args: argparse.Namespace) -> int:
    root = args.root if args.root is not None else config.repos_dir()
    if args.upstream:
        root = create_root(root)  # a mirror starts empty: its root need not exist yet
    hub = HubConfig(root, args.host, args.port, args.upstream, args.throttle_bps, args.cut_after_bytes)
    with contextlib.suppress(KeyboardInterrupt):
        serve(hub, args.ready_file, os.getppid() if args.exit_with_parent else None)
    return 0


def _start(args: argparse.Namespace) -> int:
    if args.port == 0:
        print("error: `hub start` needs a fixed port (a background hub on a free port could not be found "
              "again): pass --port N, or use `hub serve --port 0` in the foreground.", file=sys.stderr)
        return 2
    handle = start(args.root, args.port, args.upstream, host=args.host, throttle_bps=args.throttle_bps,
                   cut_after_bytes=args.cut_after_bytes)
    print(f"course hub {'started' if handle.owned else 'already running'}: {handle.url} "
          f"(root {handle.root}, pid {handle.pid})")
    print(f"use it with:  export HF_ENDPOINT={handle.url}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    print(f"course hub on port {args.port} stopped" if stop(args.port) else
          f"no running course hub recorded on port {args.port}")
    return 0


def _status(args: argparse.Namespace) -> int:
    hubs = status()
    if not hubs:
        print(f"no course hub recorded in {state_dir()}")
    for h in hubs:
        state = "running" if h["running"] else "not answering"
        print(f"{h['url']}  {state}  pid {h.get('pid')}  root {h.get('root')}  log {h.get('log')}")
    return 0 if any(h["running"] for h in hubs) else 1


def _watch(args: argparse.Namespace) -> int:
    try:
        last = max((r.time for r in stats(args.port).recent), default=0.0)
    except HubUnreachableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"watching the course hub on port {args.port} (Ctrl-C stops)", flush=True)
    end = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        with contextlib.suppress(KeyboardInterrupt):
            while end is None or time.monotonic() < end:
                time.sleep(args.interval)
                for record in stats(args.port).recent:  # the last 500, oldest first; also after a reset
                    if record.time > last:
                        print(_request_line(record), flush=True)
                        last = record.time
    except HubUnreachableError:
        print("the hub stopped answering", file=sys.stderr)
        return 1
    return 0


def _request_line(record: RequestRecord) -> str:
    """`12:00:01  GET  200 download  course/SmolLM2-135M-Instruct  model.safetensors  269.1 MB`."""
    what = f"{record.repo_id}  {record.file}" if record.repo_id and record.file else record.path
    size = f"  {record.bytes_sent / 1e6:.1f} MB" if record.bytes_sent >= 100_000 else \
        (f"  {record.bytes_sent} B" if record.bytes_sent else "")
    ranged = f"  Range {record.range}" if record.range else ""
    stamp = datetime.fromtimestamp(record.time).strftime("%H:%M:%S")
    return f"{stamp}  {record.method:4s} {record.status} {record.kind:9s} {what}{ranged}{size}"
