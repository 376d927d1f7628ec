"""The promise at the edges of the command line, one test per class of hostile input: for any
input every command exits 0, or prints exactly one `wonderzoom: error: ...` line and exits 2,
in bounded time and memory, and no world file is left corrupt or half-written.

Classes: deep and wide histories, decode amplification, special files as configs / bindings /
camera paths, text that is not UTF-8, OS errors (a path under a file, a name too long, a full
disk via RLIMIT_FSIZE, a closed pipe), stale temp files, camera extremes, terminal escape
sequences, 16-bit grey photos, and two writers on one world."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.history import History, Step
from saves import WorldWriter, load_world, read_world_info, save_world
from tests.factories import random_camera, random_chunk
from tests.fuzzcases import constant_world, deep_chain, wide_star
from tests.procs import child_env

ROOT = Path(__file__).resolve().parents[1]
FULL_DISK_BYTES = 256 << 10  # RLIMIT_FSIZE of a "full disk" child: writes past it fail


def run(*args, env=None, timeout=120, full_disk=False, input_bytes=None):
    """`wonderzoom ARGS` in a child process (bytes arguments pass through unchanged)."""
    def small_disk() -> None:  # writes past the limit fail with EFBIG instead of killing
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))

    argv = [sys.executable, str(ROOT / "main.py"),
            *(a if isinstance(a, bytes) else str(a) for a in args)]
    return subprocess.run(argv, capture_output=True, env=child_env(**(env or {})),
                          timeout=timeout, preexec_fn=small_disk if full_disk else None,
                          input=input_bytes)


def one_error_line(r) -> str:
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 2, (r.returncode, err[-2000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wonderzoom: error: "), err[-2000:]
    assert "Traceback" not in err
    return lines[0]


def no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    r = run("demo", "--out", out, "--size", 48)
    assert r.returncode == 0, r.stderr
    return out / "demo.wzs"


# ---- deep and wide histories ---------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: deep_chain(3000), lambda: wide_star(3000)],
                         ids=["chain", "star"])
def test_deep_and_wide_histories_need_no_recursion(tmp_path, make):
    """Every history command works with Python's recursion limit at 120 (set once the
    modules are imported): nothing recurses on the depth of the data (a 1,000-step chain
    died with RecursionError before)."""
    world = tmp_path / "h.wzs"
    world.write_bytes(make())
    code = ("import sys; sys.path.insert(0, {root!r}); import cli, saves, json, fcntl; "
            "sys.setrecursionlimit(120); raise SystemExit(cli.main(sys.argv[1:]))"
            ).format(root=str(ROOT))
    for args in (["info", world], ["info", world, "--json"], ["history", world],
                 ["checkout", world, 2]):
        r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                           text=True, env=child_env(), timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(subprocess.run([sys.executable, str(ROOT / "main.py"), "info", world,
                                      "--json"], capture_output=True, text=True,
                                     env=child_env()).stdout)
    assert len(info["steps"]) == 3000 and info["head"] == 2


def test_history_levels_and_tree_are_linear_in_the_steps():
    """Children and depths come from one pass over the steps, cached until one is added."""
    history = History()
    history.add(Step(0, None, "image", ()))
    for i in range(1, 20_000):
        history.add(Step(i, i - 1, "zoom", ()))
    assert history.level_of(19_999) == 19_999 and history.depths()[5] == 5
    tree = history._index()
    assert history._index() is tree  # no rebuild while nothing was added
    history.add(Step(20_000, 0, "zoom", ()))
    assert history.children(0)[-1].id == 20_000 and history.level_of(20_000) == 1
    assert len(history.render_tree().splitlines()) == 20_001


# ---- decode amplification ------------------------------------------------------------------
def test_a_small_file_cannot_decode_to_gigabytes(tmp_path):
    """A 1 MB world of constant, compressed arrays claims ~240 MB of arrays: both readers
    refuse it by the size bound (decoded bytes <= 8x the file + 64 MiB) from the chunk
    headers alone, before any array is decoded, so memory stays small; a world within the
    bound loads."""
    import tracemalloc

    from saves import SaveFormatError

    world = tmp_path / "bomb.wzs"
    world.write_bytes(constant_world(1 << 20))
    for read in (read_world_info, load_world):
        tracemalloc.start()
        with pytest.raises(SaveFormatError, match="decodes to more than"):
            read(world)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 4 * world.stat().st_size + (4 << 20), (read.__name__, peak)
    for command in (("info", world), ("history", world),
                    ("render", world, "--zoom-sweep", "--out", tmp_path / "f")):
        assert "decodes to more than" in one_error_line(run(*command))
    fine = tmp_path / "fine.wzs"
    fine.write_bytes(constant_world(1 << 14, splats=400))
    assert len(load_world(fine).chunks[0]) == 400


# ---- special files as configs, bindings and camera paths -----------------------------------
def test_special_files_are_refused_at_once(tmp_path, demo):
    """A FIFO would block forever and /dev/zero never ends: only regular files under a size
    cap are read, for every file a user can name."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    zero = "/dev/zero"
    cases = [
        ("models", "--config", fifo), ("models", "--config", zero),
        ("play", "--frames", 1, "--bindings", fifo),
        ("render", demo, "--camera-path", fifo, "--out", tmp_path / "o"),
        ("render", demo, "--camera-path", zero, "--out", tmp_path / "o"),
        ("zoom", demo, "--at", "5,5", "--view", fifo),
    ]
    for args in cases:
        line = one_error_line(run(*args, env={"SDL_VIDEODRIVER": "offscreen"}, timeout=60))
        assert "not a regular file" in line, (args, line)
    line = one_error_line(run("models", env={"WONDERZOOM_CONFIG": str(fifo)}, timeout=60))
    assert "not a regular file" in line


def test_toml_nested_three_thousand_deep_is_one_line(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested too deeply" in one_error_line(run("models", "--config", deep))
    bindings = tmp_path / "b.toml"
    bindings.write_text("[keyboard]\nquit = " + "[" * 3000 + "]" * 3000 + "\n")
    one_error_line(run("play", "--frames", 1, "--bindings", bindings,
                       env={"SDL_VIDEODRIVER": "offscreen"}))


# ---- arguments checked before any work -----------------------------------------------------
def test_text_that_cannot_be_stored_is_refused_before_generation(tmp_path, demo):
    """A non-UTF-8 prompt or a seed the file cannot hold used to fail after the whole
    generation; now the command refuses it at once and writes nothing."""
    photo = tmp_path / "p.png"
    _write_png(photo, np.zeros((32, 48, 3), np.uint8))
    size = demo.stat().st_size
    for args in (("zoom", demo, "--at", "5,5", "--prompt", b"bug\xff"),
                 ("zoom", demo, "--at", "5,5", "--seed", str(1 << 63)),
                 ("zoom", demo, "--at", "5,5", "--set", b"edit_size=\xfe"),
                 ("new", photo, "-o", tmp_path / "n.wzs", "--prompt", b"caf\xe9"),
                 ("new", photo, "-o", tmp_path / "n.wzs", "--seed", "-1")):
        line = one_error_line(run(*args, timeout=60))
        assert any(flag in line for flag in ("--prompt", "--seed", "--set")), line
    assert demo.stat().st_size == size and not (tmp_path / "n.wzs").exists()


def test_a_photo_whose_name_is_not_utf8_grows_a_world(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    _write_png(tmp_path / name, _photo())
    out = tmp_path / "w.wzs"
    r = run("new", os.fsencode(str(tmp_path / name)), "-o", out, "--size", 48, "--iterations", 1,
            "--set", "aux_views_new=0", "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert load_world(out).meta["source"] == "caf\ufffd.png"


def test_sixteen_bit_grey_photos_keep_their_tones(tmp_path):
    from PIL import Image

    from generation.image_input import load_image

    ramp = np.linspace(0, 65535, 64 * 96).reshape(64, 96).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.shape == (64, 96, 3) and (rgb[..., 0] == rgb[..., 1]).all()
    np.testing.assert_allclose(rgb[..., 0].astype(float), ramp / 257.0, atol=0.51)
    assert 120 <= rgb[32].mean() <= 135  # mid-grey stays mid-grey (it was white)


# ---- OS errors -----------------------------------------------------------------------------
def test_output_paths_under_a_file_or_too_long_are_one_line(tmp_path, demo):
    ply = tmp_path / "in.ply"
    assert run("export", demo, "--ply", ply).returncode == 0
    long_name = tmp_path / ("x" * 300 + ".wzs")
    cases = [("render", demo, "--zoom-sweep", "--frames", 2, "--out", "/dev/null/x"),
             ("import", ply, "-o", "/dev/null/x.wzs"),
             ("compact", demo, "-o", "/dev/null/x.wzs"),
             ("compact", demo, "-o", long_name),
             ("export", demo, "--ply", "/dev/null/x.ply")]
    for args in cases:
        line = one_error_line(run(*args))
        assert any(s in line for s in ("Not a directory", "File name too long")), line
    no_temp_files(tmp_path)


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(tmp_path, demo):
    """Every write past 256 KiB fails (EFBIG, the child's RLIMIT_FSIZE: a full disk)."""
    ply = tmp_path / "in.ply"
    assert run("export", demo, "--ply", ply).returncode == 0
    outs = tmp_path / "out"
    outs.mkdir()
    for args, target in ((("compact", demo, "-o", outs / "c.wzs"), outs / "c.wzs"),
                         (("import", ply, "-o", outs / "i.wzs"), outs / "i.wzs"),
                         (("export", demo, "--ply", outs / "e.ply"), outs / "e.ply"),
                         (("render", demo, "--zoom-sweep", "--frames", 2, "--width", 2048,
                           "--height", 2048, "--out", outs / "frames"), None)):
        one_error_line(run(*args, full_disk=True))
        if target is not None:
            assert not target.exists()
    no_temp_files(outs)
    if (outs / "frames").exists():
        no_temp_files(outs / "frames")
    # an append that cannot be written is cut back: the world is as it was
    world = tmp_path / "w.wzs"
    _small_world(world)
    before = world.read_bytes()
    code = ("import signal, resource, sys; sys.path.insert(0, {root!r})\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "from saves import WorldWriter\nfrom engine.history import Step\n"
            "import numpy as np\nfrom tests.factories import random_chunk\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, ({n}, {n}))\n"
            "c = random_chunk(np.random.default_rng(1), 20000, level=1)\n"
            "w = WorldWriter.open({p!r})\n"
            "try:\n    w.append_step(Step(1, 0, 'zoom', (9,)), {{9: c}})\n"
            "except OSError as e:\n    print('refused', e.errno)\n").format(
                root=str(ROOT), n=len(before) + 4096, p=str(world))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=child_env(), timeout=60)
    assert "refused" in r.stdout, r.stderr
    assert world.read_bytes() == before and len(load_world(world).history) == 1


def test_output_piped_into_head_ends_quietly(tmp_path):
    world = tmp_path / "h.wzs"
    world.write_bytes(deep_chain(3000))
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "history", str(world)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    p.stdout.readline()
    p.stdout.close()  # `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and err == "", err


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path, demo):
    out = tmp_path / "copy.wzs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".copy.wzs.{dead.pid}.{'ab' * 6}.tmp"
    stale.write_bytes(b"x" * 1000)
    legacy = tmp_path / f".copy.wzs.{'cd' * 6}.tmp"
    legacy.write_bytes(b"y")
    os.utime(legacy, (1, 1))  # written long ago, by a version without pids in the name
    live = tmp_path / f".copy.wzs.{os.getpid()}.{'ef' * 6}.tmp"  # a writer still running
    live.write_bytes(b"z")
    assert run("compact", demo, "-o", out).returncode == 0
    assert not stale.exists() and not legacy.exists() and live.exists()


# ---- camera extremes -----------------------------------------------------------------------
@pytest.mark.parametrize("mutate,expect", [
    (lambda c: c.update(width=32768, height=32768), "larger than 8192"),
    (lambda c: c.update(fx=1e-300), "out of range"),
    (lambda c: c.update(fx="DIGITS"), "not valid JSON"),  # a 5,000-digit integer
    (lambda c: c.update(cx=float("nan")), "not valid JSON"),
])
def test_camera_extremes_are_one_line(tmp_path, demo, mutate, expect):
    cam = random_camera(np.random.default_rng(3)).to_dict()
    mutate(cam)
    digits = "9" * 5000
    path = tmp_path / "path.json"
    text = json.dumps({"version": 1, "cameras": [cam]}, allow_nan=True)
    path.write_text(text.replace('"DIGITS"', digits))
    line = one_error_line(run("render", demo, "--camera-path", path, "--out", tmp_path / "o"))
    assert expect in line, line
    view = tmp_path / "view.json"
    view.write_text(json.dumps(cam, allow_nan=True).replace('"DIGITS"', digits))
    one_error_line(run("zoom", demo, "--at", "5,5", "--view", view))


# ---- what a stranger's file prints ---------------------------------------------------------
def test_prompts_from_a_file_cannot_drive_the_terminal(tmp_path):
    world = tmp_path / "evil.wzs"
    evil = "\x1b]0;pwned\x07\x1b[2J\r* [7] zoom \"fake\"\nline"
    history = History()
    history.add(Step(0, None, "image", (0,), prompt=evil, camera=random_camera(
        np.random.default_rng(0))))
    save_world(world, history, {0: random_chunk(np.random.default_rng(0), 10)})
    for command in ("info", "history"):
        r = run(command, world)
        out = r.stdout.decode()
        assert r.returncode == 0
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out
        assert "\\x1b]0;pwned\\x07" in out and "\\n" in out
        assert len([ln for ln in out.splitlines() if "fake" in ln]) == 1
    bad_name = tmp_path / "\x1b[31mred.wzs"
    line = one_error_line(run("info", bad_name))
    assert "\x1b" not in line and "\\x1b[31mred.wzs" in line


def test_info_json_is_ascii_whatever_the_file_holds(tmp_path):
    """`info --json` prints one line of ASCII: a C1 control (8-bit CSI), a bidi override and
    an escape in a prompt, and a file name that is not UTF-8, come out as JSON escapes."""
    prompt = "\x9b2J\u202ered\x1b[2J\u00e9"
    world = Path(os.fsdecode(bytes(tmp_path) + b"/w\xff.wzs"))
    history = History()
    history.add(Step(0, None, "image", (0,), prompt=prompt))
    save_world(world, history, {0: random_chunk(np.random.default_rng(0), 10)})
    r = run("info", world, "--json")
    assert r.returncode == 0 and r.stdout.isascii() and len(r.stdout.splitlines()) == 1
    info = json.loads(r.stdout)
    assert info["steps"][0]["prompt"] == prompt and info["path"] == str(world)


# ---- two writers ---------------------------------------------------------------------------
def test_an_append_waits_for_another_writer_then_lands_as_a_sibling(tmp_path):
    world = tmp_path / "w.wzs"
    _small_world(world)
    rng = np.random.default_rng(2)
    holder = WorldWriter.open(world)  # another program appending: it holds the lock
    holder.append_step(Step(1, 0, "zoom", (5,), camera=random_camera(rng)),
                       {5: random_chunk(rng, 30, level=1)})
    released = threading.Timer(0.3, holder.close)
    waited = []
    released.start()
    try:
        with WorldWriter.open(world, wait_s=30, on_wait=lambda: waited.append(1)) as writer:
            # our zoom was grown on step 0 while the other writer appended step 1
            step = Step(writer.history.next_id(), 0, "zoom", (6,), camera=random_camera(rng))
            writer.append_step(step, {6: random_chunk(rng, 30, level=1)})
    finally:
        released.join()
    assert waited == [1]
    history = load_world(world).history
    assert {s.id for s in history.children(0)} == {1, 2} and history.head == 2


# ---- helpers -------------------------------------------------------------------------------
def _small_world(path: Path) -> None:
    rng = np.random.default_rng(0)
    history = History()
    history.add(Step(0, None, "image", (0,), camera=random_camera(rng)))
    save_world(path, history, {0: random_chunk(rng, 50)})


def _photo() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4, y * 5, (x + y) * 2], -1).clip(0, 255).astype(np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)
