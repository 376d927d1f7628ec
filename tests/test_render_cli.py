"""`wonderzoom render`: PNG frames of a world along a camera path or a zoom sweep, headless
(EGL), on a demo world and on an imported PLY world; bad camera-path files are refused with
one line and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import main
from engine.render.headless import read_png, read_png_size
from tests.procs import child_env

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("moderngl")


def _egl_or_skip():
    from engine.render.gl import HeadlessContextError, create_headless_context

    try:
        create_headless_context().release()
    except HeadlessContextError as exc:
        pytest.skip(str(exc))


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          capture_output=True, text=True, env=child_env(), timeout=120)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    _egl_or_skip()
    out = tmp_path_factory.mktemp("demo")
    assert main.main(["demo", "--out", str(out), "--size", "64"]) == 0
    return out


def _pixels(path: Path) -> np.ndarray:
    return read_png(path)


def test_zoom_sweep_writes_frames_and_a_reusable_camera_file(demo, tmp_path):
    frames = tmp_path / "sweep"
    r = run("render", demo / "demo.wzs", "--zoom-sweep", "--out", frames, "--frames", 4,
            "--width", 80, "--height", 60)
    assert r.returncode == 0, r.stderr
    pngs = sorted(frames.glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:04d}.png" for i in range(4)]
    assert all(read_png_size(p) == (80, 60) for p in pngs)
    first, last = _pixels(pngs[0]), _pixels(pngs[-1])
    assert first.mean() > 10 and not np.array_equal(first, last)  # something, and it moves
    # the written cameras are a valid camera path: rendering them again gives the same frames
    again = tmp_path / "again"
    assert main.main(["render", str(demo / "demo.wzs"), "--camera-path",
                      str(frames / "cameras.json"), "--out", str(again)]) == 0
    for a, b in zip(pngs, sorted(again.glob("frame_*.png"))):
        assert np.abs(_pixels(a).astype(int) - _pixels(b)).max() <= 1


def test_keyframe_path_at_a_step(demo, tmp_path):
    path = tmp_path / "path.json"
    path.write_text(json.dumps({
        "version": 1, "width": 48, "height": 32, "frames": 3,
        "keyframes": [{"eye": [0, 0, -4], "target": [0, 0, 0], "fov_y_deg": 50},
                      {"eye": [0.1, 0, -3], "target": [0, 0, 0], "up": [0, -1, 0],
                       "fov_y_deg": 20, "near": 1e-3}]}))
    out = tmp_path / "frames"
    assert main.main(["render", str(demo / "demo.wzs"), "--camera-path", str(path),
                      "--out", str(out), "--step", "0"]) == 0
    pngs = sorted(out.glob("frame_*.png"))
    assert len(pngs) == 3 and read_png_size(pngs[0]) == (48, 32)
    # --width/--height override the file's size
    assert main.main(["render", str(demo / "demo.wzs"), "--camera-path", str(path),
                      "--out", str(out), "--width", "20", "--height", "10",
                      "--frames", "2"]) == 0
    assert read_png_size(out / "frame_0001.png") == (20, 10)


def test_render_an_imported_ply_world(demo, tmp_path, capsys):
    """An import has no cameras: the start camera frames the splats' bounding box."""
    ply, world = tmp_path / "level0.ply", tmp_path / "imported.wzs"
    assert main.main(["export", str(demo / "demo.wzs"), "--ply", str(ply), "--step", "0"]) == 0
    assert main.main(["import", str(ply), "-o", str(world)]) == 0
    out = tmp_path / "frames"
    assert main.main(["render", str(world), "--zoom-sweep", "--out", str(out), "--frames", "2",
                      "--width", "64", "--height", "48", "--mp4"]) == 0
    pngs = sorted(out.glob("frame_*.png"))
    assert len(pngs) == 2 and _pixels(pngs[0]).mean() > 5
    printed = capsys.readouterr().out
    assert "wrote 2 frames" in printed
    assert f"wrote {out / 'render.mp4'}" in printed  # make installs the video extra


def test_render_writes_an_mp4_of_its_frames_at_an_odd_size(demo, tmp_path, capsys):
    """--mp4 encodes the frames it wrote (H.264 wants even sizes: an odd one is padded)."""
    import imageio.v2 as imageio

    out = tmp_path / "frames"
    assert main.main(["render", str(demo / "demo.wzs"), "--zoom-sweep", "--out", str(out),
                      "--frames", "3", "--width", "65", "--height", "49", "--mp4",
                      "--fps", "12"]) == 0
    assert f"wrote {out / 'render.mp4'}" in capsys.readouterr().out
    with imageio.get_reader(str(out / "render.mp4")) as reader:
        frames = [np.asarray(f) for f in reader]
        assert reader.get_meta_data()["fps"] == 12
    assert len(frames) == 3 and frames[0].shape[:2] == (50, 66)
    first = _pixels(out / "frame_0000.png").astype(float)
    assert np.abs(frames[0][:49, :65].astype(float) - first).mean() < 8  # lossy, same picture


def test_the_start_camera_of_a_one_chunk_import_looks_at_it_from_outside(tmp_path):
    """A small import is one chunk, and a streamed world's start camera is framed from its
    chunks' boxes: from their centres alone it framed one point and stood inside the splats."""
    from cli.common import open_file
    from engine.render.headless import start_camera
    from engine.scene import build_streamed_scene, close_scene
    from saves.ply import export_ply
    from tests.factories import random_chunk

    chunk = random_chunk(np.random.default_rng(4), 3000, origin=np.array([5.0, -2.0, 30.0]))
    ply, world_path = tmp_path / "blob.ply", tmp_path / "blob.wzs"
    export_ply(ply, [chunk])
    assert main.main(["import", str(ply), "-o", str(world_path)]) == 0
    source = open_file(str(world_path))
    try:
        world = build_streamed_scene(source.history, source.source)
        try:
            camera = start_camera(world, 160, 120)
        finally:
            close_scene(world)
    finally:
        source.close()
    uv, depth = camera.project(chunk.world_positions())
    seen = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 160) & (uv[:, 1] >= 0) & (uv[:, 1] < 120)
    assert seen.mean() > 0.95


BAD_PATHS = {
    "missing": None,
    "not_json": "{ version: 1,",
    "not_an_object": "[1, 2, 3]",
    "wrong_version": {"version": 7, "keyframes": [{"eye": [0, 0, -1], "target": [0, 0, 0]}]},
    "unknown_key": {"version": 1, "keyframe": []},
    "missing_eye": {"version": 1, "keyframes": [{"target": [0, 0, 0]}]},
    "eye_is_target": {"version": 1, "keyframes": [{"eye": [0, 0, 0], "target": [0, 0, 0]}]},
    "nan": '{"version": 1, "keyframes": [{"eye": [NaN, 0, -1], "target": [0, 0, 0]}]}',
    "huge_number": '{"version": 1, "keyframes": [{"eye": [1e999, 0, -1], "target": [0, 0, 0]}]}',
    "string_fov": {"version": 1, "keyframes": [{"eye": [0, 0, -1], "target": [0, 0, 0],
                                                 "fov_y_deg": "50"}]},
    "bad_fov": {"version": 1, "keyframes": [{"eye": [0, 0, -1], "target": [0, 0, 0],
                                              "fov_y_deg": 180}]},
    "bad_frames": {"version": 1, "frames": 0,
                   "keyframes": [{"eye": [0, 0, -1], "target": [0, 0, 0]}]},
    "bad_camera": {"version": 1, "cameras": [{"T_world_camera": [[1, 0], [0, 1]], "fx": 1}]},
    "both": {"version": 1, "cameras": [], "keyframes": []},
}


@pytest.mark.parametrize("case", sorted(BAD_PATHS))
def test_bad_camera_path_files_get_one_line_and_exit_2(demo, tmp_path, capsys, case):
    content = BAD_PATHS[case]
    path = tmp_path / "path.json"
    if content is not None:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    out = tmp_path / "frames"
    code = main.main(["render", str(demo / "demo.wzs"), "--camera-path", str(path),
                      "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("wonderzoom: error: ") and "Traceback" not in err
    assert not list(out.glob("*.png")) if out.exists() else True


def test_bad_arguments_are_user_errors(demo, capsys):
    world = str(demo / "demo.wzs")
    for args in (["--zoom-sweep", "--out", "x", "--at", "3"],
                 ["--zoom-sweep", "--out", "x", "--width", "0"],
                 ["--zoom-sweep", "--out", "x", "--at", "1e9,1e9"]):
        assert main.main(["render", world, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("wonderzoom: error: ")


def test_default_zoom_sweep_ends_at_the_deepest_zooms_own_scale(tmp_path):
    """The sweep flies down the world's chain of zooms and ends where the deepest zoom's
    camera saw its target: that level's native scale, even where the splats nearest the
    target in 3D belong to a coarser level (a structure raised over the point)."""
    from PIL import Image
    from skimage.data import chelsea

    from engine.camera import Camera
    from saves import load_world

    _egl_or_skip()
    photo, w = tmp_path / "cat.png", tmp_path / "cat.wzs"
    Image.fromarray(chelsea()[::4, ::4]).save(photo)
    fast = ["--size", "160", "--iterations", "1", "--set", "aux_views_zoom=1", "--quiet"]
    assert main.main(["new", str(photo), "-o", str(w), *fast]) == 0
    for at in ("80,50", "80,53"):  # a zoom, then one into it: a drop raised over the point
        assert main.main(["zoom", str(w), "--at", at, "--prompt", "a huge dew drop",
                          "--set", "edit_size=0.5", *fast]) == 0
    deepest = load_world(w).history.steps[2]
    point = np.asarray(deepest.point, float)
    want = float(deepest.camera.pixel_scale(point[None])[0])
    out = tmp_path / "sweep"
    assert main.main(["render", str(w), "--zoom-sweep", "--out", str(out), "--frames", "3",
                      "--width", "64", "--height", "48"]) == 0
    cams = json.loads((out / "cameras.json").read_text())["cameras"]
    last = Camera.from_dict(cams[-1])
    assert float(last.pixel_scale(point[None])[0]) == pytest.approx(want, rel=0.02)


def test_the_cpu_and_gpu_render_paths_give_the_same_frames(demo, tmp_path):
    """`--renderer gpu` (cull, sort and draw on the GPU; llvmpipe runs its compute shaders)
    and `--renderer cpu` write the same zoom sweep within the reference tolerance."""
    from engine.render.gl import create_headless_context
    from engine.render.gpu_driven import gpu_support

    ctx = create_headless_context()
    try:
        if not gpu_support(ctx).available:
            pytest.skip("this GL context cannot run the GPU path (no compute shaders)")
    finally:
        ctx.release()
    frames = {}
    for path in ("cpu", "gpu"):
        out = tmp_path / path
        r = run("render", demo / "demo.wzs", "--zoom-sweep", "--frames", 4, "--width", 160,
                "--height", 120, "--out", out, "--renderer", path)
        assert r.returncode == 0, r.stderr
        assert f"{path} renderer" in r.stdout
        frames[path] = [read_png(out / f"frame_{i:04d}.png").astype(float) for i in range(4)]
    for cpu, gpu in zip(frames["cpu"], frames["gpu"]):
        diff = np.abs(cpu - gpu)
        assert diff.mean() <= 0.5 and np.percentile(diff, 99.9) <= 8, (diff.mean(), diff.max())


def test_frames_default_to_the_size_play_opens_and_levels_are_made_for(demo, tmp_path):
    """`render` shows a world as `play`'s window does, the size `new` and `zoom` make levels
    for (issue 21: a level made for 1280 px and rendered at 640 is seen at half its detail)."""
    from engine.camera import DEFAULT_VIEW_SIZE
    from generation.sizes import DISPLAY_LONG_SIDE
    from ui.app import AppConfig

    assert main.main(["render", str(demo / "demo.wzs"), "--zoom-sweep", "--frames", "1",
                      "--out", str(tmp_path / "f")]) == 0
    size = read_png_size(tmp_path / "f" / "frame_0000.png")
    assert size == DEFAULT_VIEW_SIZE == (AppConfig().width, AppConfig().height)
    assert max(size) == DISPLAY_LONG_SIDE
