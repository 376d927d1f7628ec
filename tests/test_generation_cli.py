"""`wonderzoom new` and `wonderzoom zoom`: a small real round trip, and bad input refused with
one line and exit status 2 (the world file untouched)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import main
from generation.image_input import ImageInputError, load_image

FAST_NEW = ["--size", "64", "--iterations", "2", "--set", "aux_views_new=1", "--quiet"]
FAST_ZOOM = ["--size", "64", "--iterations", "2", "--set", "aux_views_zoom=1", "--quiet"]


def run(capsys, *argv):
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, needle):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wonderzoom: error:"), err
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from skimage.data import chelsea

    p = tmp_path_factory.mktemp("img") / "cat.jpg"
    Image.fromarray(chelsea()).save(p)
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory, photo):
    """A 2-level world made by the CLI: new + one zoom (module-scoped: made once)."""
    d = tmp_path_factory.mktemp("world")
    w = d / "cat.wzs"
    assert main.main(["new", str(photo), "-o", str(w), "--prompt", "a cat", *FAST_NEW]) == 0
    assert main.main(["zoom", str(w), "--at", "30,20", "--prompt", "a red flower", "--seed",
                      "3", *FAST_ZOOM]) == 0
    return w


def test_new_then_zoom_makes_a_two_level_world_that_loads(world):
    from engine.lod import LodIndex, LodLinks
    from engine.scene import build_scene
    from saves import load_world

    loaded = load_world(world)
    h = loaded.history
    assert [s.kind for s in h] == ["image", "zoom"] and h.head == 1
    root, zoom = h.steps[0], h.steps[1]
    assert root.camera is not None and root.prompt == "a cat"
    assert zoom.camera is not None and zoom.point is not None and zoom.prompt == "a red flower"
    assert h.level_of(1) == 1
    assert zoom.backend["name"] == "builtin" and zoom.backend["seed"] == 3
    assert zoom.backend["edit"].startswith("flower") and "red" in zoom.backend["understood"]
    assert {"observe", "super_resolve", "edit", "depth", "aux_views", "optimize", "total"} <= \
        set(zoom.timings)
    assert all(loaded.chunks[c].level == 1 for c in zoom.chunk_ids)
    # the new level is 3x+ finer than the root where it was made
    s0 = np.median(np.concatenate([loaded.chunks[c].s_native for c in root.chunk_ids]))
    s1 = np.median(np.concatenate([loaded.chunks[c].s_native for c in zoom.chunk_ids]))
    assert s0 / s1 > 3.0
    # the engine derives the LoD links: root splats inside the patch now fade to the child
    scene = build_scene(h, loaded.chunks)
    index = scene.resource(LodIndex)
    child = np.concatenate([index.links[c].s_child for c in root.chunk_ids])
    assert (child > 0).any() and (child == 0).mean() > 0.5  # only the patch fades
    assert isinstance(index.links[zoom.chunk_ids[0]], LodLinks)


def test_zoom_from_an_explicit_view_and_camera_json(world, capsys, tmp_path):
    import shutil

    from saves import load_world

    w = tmp_path / "copy.wzs"
    shutil.copy(world, w)
    cam = load_world(w).history.steps[0].camera
    (tmp_path / "cam.json").write_text(json.dumps({"camera": cam.to_dict()}))
    code, out, err = run(capsys, "zoom", w, "--at", "10,10", "--view", tmp_path / "cam.json",
                         *FAST_ZOOM)
    assert code == 0, err
    assert "appended step 2 (level 2" in out and "no structure" in out  # empty prompt: refine
    code, out, err = run(capsys, "zoom", w, "--at", "20,12", "--view", "0", "--prompt",
                         "a pebble", *FAST_ZOOM)
    assert code == 0, err
    h = load_world(w).history
    assert h.steps[3].parent == 2 and len(h) == 4  # the head moved to step 2 before step 3


@pytest.mark.parametrize("content, needle", [
    (b"", "the file is empty"),
    (b"hello, I am not an image", "not an image we can read"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image we can read"),
])
def test_new_refuses_bad_images(tmp_path, capsys, content, needle):
    p = tmp_path / "in.jpg"
    p.write_bytes(content)
    code, out, err = run(capsys, "new", p, "-o", tmp_path / "w.wzs", "--quiet")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "w.wzs").exists()


def test_new_refuses_missing_huge_gif_and_bad_options(tmp_path, capsys, photo):
    from PIL import Image

    code, _, err = run(capsys, "new", tmp_path / "nope.png", "-o", tmp_path / "w.wzs")
    assert_one_line_error(code, err, "no such file")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(65 << 20)  # sparse: costs no disk
    code, _, err = run(capsys, "new", huge, "-o", tmp_path / "w.wzs")
    assert_one_line_error(code, err, "too large")
    gif = tmp_path / "a.gif"
    Image.new("RGB", (16, 16)).save(gif)
    code, _, err = run(capsys, "new", gif, "-o", tmp_path / "w.wzs")
    assert_one_line_error(code, err, "GIF images are not supported")
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "w.wzs", "--set", "nope=1")
    assert_one_line_error(code, err, "unknown setting 'nope'")
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "w.wzs", "--backend", "magic")
    assert_one_line_error(code, err, "unknown backend 'magic'")
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "w.txt")
    assert_one_line_error(code, err, "not a world file")
    (tmp_path / "exists.wzs").write_bytes(b"x")
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "exists.wzs")
    assert_one_line_error(code, err, "already exists")


def test_an_output_folder_that_cannot_take_the_world_is_refused_before_the_work(
        tmp_path, capsys, photo, monkeypatch):
    """A missing (or read-only) folder for -o was found only when the world was written,
    after the whole pipeline had run (minutes on a big photo, or with real models)."""
    import cli.new

    def no_work(*a, **k):
        raise AssertionError("the pipeline ran before the output folder was checked")

    monkeypatch.setattr(cli.new, "grow_new", no_work)
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "missing" / "w.wzs")
    assert_one_line_error(code, err, "no folder")
    monkeypatch.setattr("os.access", lambda p, mode: False)  # (root may write anywhere)
    code, _, err = run(capsys, "new", photo, "-o", tmp_path / "w.wzs")
    assert_one_line_error(code, err, "cannot write in")


def test_image_limits_and_formats(tmp_path):
    from PIL import Image

    rgba = tmp_path / "a.png"
    Image.new("RGBA", (20, 10), (255, 0, 0, 0)).save(rgba)
    assert load_image(rgba)[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    webp = tmp_path / "a.webp"
    Image.new("RGB", (20, 10), (0, 128, 0)).save(webp)
    assert load_image(webp).shape == (10, 20, 3)
    with pytest.raises(ImageInputError, match="megapixels"):
        load_image(rgba, max_pixels=100)
    tiny = tmp_path / "t.png"
    Image.new("RGB", (4, 4)).save(tiny)
    with pytest.raises(ImageInputError, match="too small"):
        load_image(tiny)


def test_view_names_a_camera_of_render_s_camera_list(world, capsys, tmp_path):
    """`--view FILE#K`: frame K's camera from the cameras.json `render` writes beside its
    frames, so a zoom can be asked at a pixel of any rendered frame."""
    import shutil

    from cli.common import parse_view
    from engine.camera import Camera
    from engine.errors import UserError
    from saves import load_world

    w = tmp_path / "copy.wzs"
    shutil.copy(world, w)
    history = load_world(w).history
    root = history.steps[0].camera
    frames = tmp_path / "frames"
    assert main.main(["render", str(w), "--zoom-sweep", "--out", str(frames), "--frames", "3",
                      "--width", "64", "--height", "48"]) == 0
    listed = json.loads((frames / "cameras.json").read_text())["cameras"]
    for k in range(3):
        cam = parse_view(f"{frames / 'cameras.json'}#{k}", history)
        assert cam.to_dict() == Camera.from_dict(listed[k]).to_dict()
    assert listed[0] != listed[2]  # the sweep flew in: each K is its own view
    for view, needle in ((frames / "cameras.json", "a list of 3 cameras; name one as"),
                         (f"{frames / 'cameras.json'}#3", "K from 0 to 2"),
                         (f"{frames / 'cameras.json'}#x", "a camera's number")):
        with pytest.raises(UserError, match=needle):
            parse_view(str(view), history)
    (tmp_path / "one.json").write_text(json.dumps(root.to_dict()))
    with pytest.raises(UserError, match="holds one camera"):
        parse_view(f"{tmp_path / 'one.json'}#0", history)
    code, out, err = run(capsys, "zoom", w, "--at", "30,20", "--view",
                         f"{frames / 'cameras.json'}#1", *FAST_ZOOM)
    assert code == 0, err
    assert "appended step 2" in out


@pytest.mark.parametrize("args, needle", [
    (["--at", "abc"], "expected U,V"),
    (["--at", "1,2,3"], "expected U,V"),
    (["--at", "nan,3"], "not finite"),
    (["--at", "5000,10"], "outside the"),
    (["--at", "120%,10%"], "percentage must be in 0..100"),
    (["--at", "50%,x%"], "expected U,V"),
    (["--at", "10,10", "--view", "99"], "no step 99"),
    (["--at", "10,10", "--view", "{not json"], "not valid JSON"),
    (["--at", "10,10", "--view", '{"fx": 1}'], "bad camera"),
    (["--at", "10,10", "--view", "missing.json"], "not a step id"),
    (["--at", "10,10", "--factor", "0.5"], "--factor"),
    (["--at", "10,10", "--set", "zoom_long_side=2"], "outside"),
])
def test_zoom_refuses_bad_arguments_and_leaves_the_world_alone(world, capsys, args, needle):
    before = world.read_bytes()
    code, _, err = run(capsys, "zoom", world, *args, "--quiet")
    assert_one_line_error(code, err, needle)
    assert world.read_bytes() == before


def test_a_pixel_named_by_percentages_of_the_view():
    """`--at 50%,40%` names a point without knowing the size the world's views were made at
    (640 px on a CPU, 1280 on a GPU); numbers and percentages mix; 100% is the last pixel."""
    from cli.common import parse_at, parse_pixel
    from engine.errors import UserError

    assert parse_at("50%,40%", 640, 360) == (320.0, 144.0)
    assert parse_at("0%,100%", 640, 360) == (0.0, 359.5)
    assert parse_at("10,25%", 640, 360) == (10.0, 90.0)
    assert parse_at("12.5,7", 640, 360) == (12.5, 7.0)
    with pytest.raises(UserError, match="expected U,V"):
        parse_pixel("50%,40%")  # no view to take them of


def test_zoom_refuses_missing_and_non_world_files(tmp_path, capsys, photo):
    code, _, err = run(capsys, "zoom", tmp_path / "none.wzs", "--at", "1,1")
    assert_one_line_error(code, err, "no such file")
    code, _, err = run(capsys, "zoom", photo, "--at", "1,1")
    assert_one_line_error(code, err, "not a world file")
    bad = tmp_path / "bad.wzs"
    bad.write_bytes(b"garbage")
    code, _, err = run(capsys, "zoom", bad, "--at", "1,1")
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command, cpu_cap", [("zoom", "CPU_ZOOM_LONG_SIDE"),
                                              ("new", "CPU_NEW_LONG_SIDE")])
def test_help_states_the_working_size_the_level_is_made_at(command, cpu_cap, capsys):
    """`--size`'s default is the size-rule of `generation.sizes`, not a fixed number."""
    from generation import sizes

    with pytest.raises(SystemExit):
        main.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"on a CPU at most {getattr(sizes, cpu_cap)}" in text
    assert "default 320" not in text and "default 384" not in text


def test_a_new_sample_recipe_removes_the_worlds_older_recipes_cached(tmp_path, monkeypatch):
    """Each recipe change grows a new ~50 MB sample world; the ones before it are dead weight
    in the user's data folder and go once the new one is there (other files stay)."""
    from cli import sample

    monkeypatch.setattr(sample, "data_dir", lambda: tmp_path)
    current = sample.sample_path()
    old = [tmp_path / "sample-coffee-v1.wzs", tmp_path / "sample-coffee-v2.wzs"]
    keep = [tmp_path / "my-world.wzs", tmp_path / "sample-notes.txt"]
    for p in old + keep:
        p.write_bytes(b"x")
    grown = []

    def fake_grow(path, quiet=False):
        grown.append(path)
        path.write_bytes(b"a world")

    monkeypatch.setattr(sample, "grow_sample", fake_grow)
    assert sample.ensure_sample_world(quiet=True) == current
    assert grown == [current] and current.is_file()
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in keep)


def test_a_photo_with_a_colour_profile_is_read_in_srgb(tmp_path):
    """A phone's Display P3 photo read as if it were sRGB comes out duller; its profile is
    applied (checked against the matrix maths), an sRGB or a broken profile changes nothing."""
    from PIL import Image, ImageCms

    from tests.factories import matrix_icc_profile

    p3 = np.array([[0.5151, 0.2920, 0.1571], [0.2412, 0.6922, 0.0666],
                   [-0.0011, 0.0419, 0.7841]])  # Display P3 primaries, XYZ adapted to D50
    srgb = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606],
                     [0.0139, 0.0971, 0.7141]])
    pixel = np.array([200, 100, 100])
    tagged = tmp_path / "p3.png"
    Image.new("RGB", (16, 12), tuple(pixel)).save(
        tagged, icc_profile=matrix_icc_profile(p3, 2.2, "Display P3 (test)"))
    linear = np.clip(np.linalg.solve(srgb, p3 @ (pixel / 255.0) ** 2.2), 0, 1)
    want = 255 * np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    got = load_image(tagged)
    assert got.shape == (12, 16, 3)
    assert np.abs(got[5, 5] - want).max() <= 2, (got[5, 5], want)
    assert got[5, 5, 0] > pixel[0] + 10  # more saturated than the numbers read as sRGB

    as_srgb = tmp_path / "srgb.jpg"
    builtin = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (16, 12), tuple(pixel)).save(as_srgb, quality=100, icc_profile=builtin)
    assert np.abs(load_image(as_srgb)[5, 5].astype(int) - pixel).max() <= 2
    broken = tmp_path / "broken.png"
    Image.new("RGB", (16, 12), tuple(pixel)).save(broken, icc_profile=b"\0" * 200)
    assert load_image(broken)[5, 5].tolist() == pixel.tolist()
    with_alpha = tmp_path / "p3_alpha.png"
    Image.new("RGBA", (16, 12), (*pixel, 255)).save(
        with_alpha, icc_profile=matrix_icc_profile(p3, 2.2, "Display P3 (test)"))
    assert np.abs(load_image(with_alpha)[5, 5] - want).max() <= 2


def test_an_imported_level_keeps_about_the_native_scale_it_was_made_at(tmp_path, capsys,
                                                                        photo):
    """A plain 3DGS PLY has no native scale; import estimates it from each splat's size. Our
    splats are surfels (flat), as trained 3DGS splats mostly are: the estimate must follow
    their extent across the surface, or a zoom into the import sees its splats as far finer
    than they are (it came out "x1.00 finer", the pipeline's floor)."""
    from saves import load_world

    world, ply, back = tmp_path / "w.wzs", tmp_path / "w.ply", tmp_path / "back.wzs"
    assert run(capsys, "new", photo, "-o", world, *FAST_NEW)[0] == 0
    assert run(capsys, "export", world, "--ply", ply)[0] == 0
    assert run(capsys, "import", ply, "-o", back)[0] == 0
    made = np.concatenate([c.s_native for c in load_world(world).chunks.values()])
    guessed = np.concatenate([c.s_native for c in load_world(back).chunks.values()])
    assert len(made) == len(guessed)
    ratio = np.median(guessed) / np.median(made)
    assert 0.7 < ratio < 1.4, ratio
