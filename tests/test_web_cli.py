"""`wonderzoom export --web` and `wonderzoom serve` from the command line: the folder, the
server's URL, what it serves, Ctrl+C, and the one-line refusals (the page itself is tested in
a real browser by tests/test_web.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.procs import child_env

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          capture_output=True, text=True, env=child_env(), timeout=timeout)


def test_export_web_writes_a_static_folder(tmp_path):
    assert run("demo", "--out", tmp_path, "--size", 32).returncode == 0
    site = tmp_path / "site"
    r = run("export", tmp_path / "demo.wzs", "--web", site)
    assert r.returncode == 0, r.stderr
    assert f"wonderzoom serve {site}" in r.stdout
    manifest = json.loads((site / "manifest.json").read_text())
    assert (site / "index.html").is_file() and (site / "viewer").is_dir() and manifest
    r = run("export", tmp_path / "demo.wzs", "--web", site, "--with-levels")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def _ctrl_c_stops() -> None:
    """In the child: Ctrl+C (SIGINT) and a closed terminal (SIGHUP) act as in a terminal,
    whatever this test runner was started with (a shell's background job ignores SIGINT,
    `nohup` SIGHUP, and children inherit that: serve then never saw the test's signal, as
    it should not, since whoever started it asked for it to be ignored)."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["ctrl_c", "term", "hangup"])
def test_serve_a_world_until_stopped(tmp_path, stop):
    """Ctrl+C, a service manager's SIGTERM or a closed terminal's SIGHUP all stop the server
    and remove the temporary export (the last two left it behind: 13 MB for the sample)."""
    assert run("demo", "--out", tmp_path, "--size", 32).returncode == 0
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "serve",
                             str(tmp_path / "demo.wzs"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(), preexec_fn=_ctrl_c_stops)
    try:
        url = None
        for line in proc.stdout:  # ends when the server prints its address (or dies)
            found = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if found:
                url = found.group(0)
                break
        assert url is not None, proc.stderr.read()
        folder = Path(re.search(r"serving (\S+) at", line).group(1))
        # (deadlines only catch a hang: under a load of 10 on 2 cores, 30 s was not enough)
        with urllib.request.urlopen(url + "manifest.json", timeout=120) as resp:
            assert resp.status == 200 and json.loads(resp.read())
        try:
            urllib.request.urlopen(url + "..%2f..%2fetc%2fpasswd", timeout=120)
            raise AssertionError("a path outside the folder was served")
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 404)
        proc.send_signal(stop)
        assert proc.wait(timeout=120) == 0
        assert not folder.exists()  # the temporary export is removed
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_refuses_what_it_cannot_show(tmp_path):
    (tmp_path / "plain").mkdir()
    for args in (("serve", tmp_path / "plain"), ("serve", tmp_path / "missing.wzs"),
                 ("serve", tmp_path / "x.wzs", "--port", 70000)):
        r = run(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
