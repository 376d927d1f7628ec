"""The wonderzoom CLI as a user runs it: real subprocesses, one-line errors, fast start-up."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.procs import child_env

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=child_env(), timeout=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = run("demo", "--out", out, "--size", 64)
    assert r.returncode == 0, r.stderr
    return out / "demo.wzs"


def test_help_and_info_do_not_import_heavy_libraries(demo):
    code = ("import sys, cli\n"
            "cli.build_parser().format_help()\n"
            f"cli.main(['info', {str(demo)!r}, '--json'])\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'moderngl', 'pygame') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_info_json_lists_one_entry_per_level(demo):
    r = run("info", demo, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert [lv["level"] for lv in info["levels"]] == [0, 1, 2]
    assert all(lv["splats"] == 64 * 64 for lv in info["levels"])
    assert info["valid"] and info["head"] == 2 and info["head_path"] == [0, 1, 2]
    from saves import load_world

    head = load_world(demo).history.steps[2].camera
    assert info["head_view"] == [head.width, head.height]  # what zoom --at counts in
    text = run("info", demo)
    assert "level 2" in text.stdout and text.returncode == 0
    assert f"head view: {head.width}x{head.height} pixels" in text.stdout


def test_checkout_history_and_export_at_a_step(demo, tmp_path):
    world = tmp_path / "w.wzs"
    world.write_bytes(demo.read_bytes())
    size_before = world.stat().st_size
    assert run("checkout", world, 1).returncode == 0
    assert world.stat().st_size - size_before < 256  # moving the head appends a tiny record
    hist = run("history", world)
    assert "* " in hist.stdout and hist.stdout.count("[") == 3
    head_line = [ln for ln in hist.stdout.splitlines() if ln.startswith("*")][0]
    assert "[1]" in head_line
    ply = tmp_path / "at1.ply"
    r = run("export", world, "--ply", ply, "--with-levels")
    assert r.returncode == 0, r.stderr
    from saves.ply import import_ply_levels
    assert [len(c) for c in import_ply_levels(ply)] == [64 * 64, 64 * 64]


def test_import_of_a_multi_level_export_asks_for_a_level(demo, tmp_path):
    ply = tmp_path / "all.ply"
    assert run("export", demo, "--ply", ply, "--with-levels").returncode == 0  # levels 0, 1, 2
    world = tmp_path / "one.wzs"
    r = run("import", ply, "-o", world)
    assert r.returncode == 2 and not world.exists()
    assert "3 levels (0, 1, 2)" in r.stderr and "--level" in r.stderr
    assert "import_ply_levels" not in r.stderr and "Traceback" not in r.stderr
    r = run("import", ply, "-o", world, "--level", 5)
    assert r.returncode == 2 and "no splats of level 5" in r.stderr and not world.exists()
    r = run("import", ply, "-o", world, "--level", 1)
    assert r.returncode == 0, r.stderr
    info = json.loads(run("info", world, "--json").stdout)
    assert [lv["splats"] for lv in info["levels"]] == [64 * 64]
    from saves.ply import import_ply, import_ply_levels
    ply1 = tmp_path / "one.ply"
    assert run("export", world, "--ply", ply1).returncode == 0
    level1 = import_ply_levels(ply)[1]
    assert np.array_equal(import_ply(ply1).positions, level1.positions)


def test_import_export_round_trip_through_the_cli(demo, tmp_path):
    ply = tmp_path / "a.ply"
    assert run("export", demo, "--ply", ply, "--step", 0).returncode == 0
    world = tmp_path / "b.wzs"
    r = run("import", ply, "-o", world)
    assert r.returncode == 0, r.stderr
    ply2 = tmp_path / "c.ply"
    assert run("export", world, "--ply", ply2).returncode == 0
    from saves.ply import import_ply
    a, b = import_ply(ply), import_ply(ply2)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.s_native, b.s_native)
    assert run("import", ply, "-o", world).returncode == 2  # refuses to overwrite


@pytest.mark.parametrize("make_args", [
    lambda t: ("info", t / "missing.wzs"),
    lambda t: ("info", t / "photo.jpg"),
    lambda t: ("info", t / "corrupt.wzs"),
    lambda t: ("info", t / "empty.wzs"),
    lambda t: ("history", t / "corrupt.wzs"),
    lambda t: ("export", t / "missing.wzs", "--ply", t / "x.ply"),
    lambda t: ("import", t / "corrupt.ply", "-o", t / "new.wzs"),
    lambda t: ("import", t / "missing.ply", "-o", t / "new.wzs"),
    lambda t: ("checkout", t / "corrupt.wzs", "3"),
])
def test_user_mistakes_print_one_line_and_exit_2(tmp_path, make_args):
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff not really")
    (tmp_path / "corrupt.wzs").write_bytes(b"WZS garbage" * 50)
    (tmp_path / "empty.wzs").write_bytes(b"")
    (tmp_path / "corrupt.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 99\nend_header\n")
    r = run(*make_args(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("wonderzoom: error:")


def test_checkout_unknown_step_is_a_user_error(demo, tmp_path):
    world = tmp_path / "w.wzs"
    world.write_bytes(demo.read_bytes())
    r = run("checkout", world, 42)
    assert r.returncode == 2 and "no step 42" in r.stderr


def test_a_finest_ply_looks_in_other_viewers_as_the_app_does_zoomed_in(demo, tmp_path):
    """Other viewers draw every level of a PLY at once, so the coarse levels show through
    where they were zoomed into; --finest drops the coarse splats a finer level covers. Drawn
    without the modulation (an import is one level), it matches the world at its finest scale,
    and the plain export does not."""
    from engine.render.headless import read_png

    frames = tmp_path / "world"
    assert run("render", demo, "--zoom-sweep", "--frames", 3, "--width", 96, "--height", 64,
               "--out", frames).returncode == 0
    plain = run("export", demo, "--ply", tmp_path / "all.ply")
    assert plain.returncode == 0 and "--finest keeps the finest" in plain.stdout
    finest = run("export", demo, "--ply", tmp_path / "finest.ply", "--finest")
    assert finest.returncode == 0 and "note:" not in finest.stdout
    diffs = {}
    for name in ("all", "finest"):
        assert run("import", tmp_path / f"{name}.ply", "-o", tmp_path / f"{name}.wzs"
                   ).returncode == 0
        assert run("render", tmp_path / f"{name}.wzs", "--camera-path", frames / "cameras.json",
                   "--out", tmp_path / name).returncode == 0
        ours = read_png(frames / "frame_0002.png").astype(float)
        theirs = read_png(tmp_path / name / "frame_0002.png").astype(float)
        diffs[name] = np.abs(ours - theirs).mean()
    kept = int(re.search(r"wrote ([\d,]+) splats", finest.stdout).group(1).replace(",", ""))
    assert kept < 3 * 64 * 64
    assert diffs["finest"] < 0.5 * diffs["all"] and diffs["finest"] < 2.0, diffs
    assert run("export", demo, "--web", tmp_path / "site", "--finest").returncode == 2
