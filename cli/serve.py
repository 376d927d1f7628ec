"""`wonderzoom serve WORLD_OR_DIR [--port P] [--host H]`: show a world in a browser.

A `.wzs` file is exported to a temporary folder first (removed when the server stops); a
folder made by `export --web` is served as it is. The server is read-only and serves only
that folder (`ui.web.serve`).
"""

from __future__ import annotations

import argparse
import signal
import tempfile
from pathlib import Path

from cli.common import load, step_arg
from engine.errors import UserError
from engine.history import printable


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("serve", help="show a world (or a web export folder) in a browser",
                       description="Serve a world as a web page: a .wzs file is exported to a "
                                   "temporary folder first; a folder made by export --web is "
                                   "served as it is. Read-only; only that folder is served.")
    p.add_argument("world", metavar="WORLD_OR_DIR", help="world file (.wzs) or web export folder")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; "
                        "0.0.0.0 lets other devices on your network, e.g. a phone, open it: "
                        "anyone on that network can then see the world)")
    p.add_argument("--step", type=int, default=None,
                   help="for a .wzs: the step to show (default: the head)")
    return p


def run(args: argparse.Namespace) -> int:
    from ui.web.export import export_web, is_web_export
    from ui.web.serve import make_server

    if not 0 <= args.port <= 65535:
        raise UserError("--port must be in 0..65535")
    source = Path(args.world)
    temp = None
    previous = _stop_on_termination()
    try:
        if source.is_dir():
            if not is_web_export(source):
                raise UserError(f"{printable(str(source))}: not a folder made by export --web")
            folder = source
        else:
            loaded = load(args.world)
            step = step_arg(loaded.history, args.step)
            temp = tempfile.TemporaryDirectory(prefix="wonderzoom-web-")
            folder = Path(temp.name) / "world"
            result = export_web(loaded.history, loaded.chunks, folder, step, title=source.name)
            print(f"exported {result.splats:,} splats of step {step} "
                  f"({result.bytes_per_splat:.1f} bytes a splat)")
        server = make_server(folder, host=args.host, port=args.port)
        print(f"serving {printable(str(folder))} at {server.url}", flush=True)
        if server.lan_url:
            print(f"on your network: {server.lan_url}  (every device on this network can open it)")
        print("press Ctrl+C to stop", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        if temp is not None:
            temp.cleanup()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _stop_on_termination() -> dict:
    """SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) stop the server
    as Ctrl+C does, so the temporary export is removed; returns the handlers they had."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, stop)
    return previous
