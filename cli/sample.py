"""The sample world `play` opens by default: a photo grown into a world by three zooms.

Owns: the recipe (the bundled photo `assets/coffee.jpg`, CC0 by Rachel Michetti, shipped in
scikit-image's sample data; `new`, then three prompted zooms, each at the centre of the
previous level's view, so every inserted structure holds the next one: a red flower on the
crema, a ladybug on the flower, a dew drop on the ladybug), growing it once with progress
bars, and caching the file in the platform's data folder (`platformdirs`; on Linux
`$XDG_DATA_HOME/wonderzoom`, else `~/.local/share/wonderzoom`) so later runs open it at once;
once a new recipe's world is grown, the files earlier recipes left there (~50 MB each) go.
Does not own: the pipeline (`generation`) or the file format (`saves`).
"""

from __future__ import annotations

from pathlib import Path

PHOTO = Path(__file__).with_name("assets") / "coffee.jpg"
# change when the recipe changes: the cache then grows it anew (v3: the default working sizes
# follow the screen and new levels are harmonized with their parents, issue 21; v4: E0 has
# the far side under its depth edges; v5: the dew drop is water)
RECIPE = "coffee-v5"
NEW_PROMPT = "an espresso cup on a wooden table"
FIRST_ZOOM_AT = (0.48, 0.36)  # fraction of the root view: the crema in the cup
ZOOMS = ("a red flower", "a ladybug", "a dew drop")


def data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("wonderzoom", appauthor=False))


def sample_path() -> Path:
    return data_dir() / f"sample-{RECIPE}.wzs"


def ensure_sample_world(quiet: bool = False) -> Path:
    """The cached sample world, grown first if it is missing or unreadable."""
    from saves import SaveFormatError, load_world

    path = sample_path()
    if path.is_file():
        try:
            load_world(path)
            return path
        except SaveFormatError:
            pass  # damaged: grow it again
    grow_sample(path, quiet)
    remove_old_samples(path)
    return path


def remove_old_samples(current: Path) -> list[Path]:
    """Delete the sample worlds earlier recipes cached beside `current` (the file names this
    module gives, `sample-<photo>-v<N>.wzs`, other than `current`'s); returns what went."""
    gone = []
    for old in current.parent.glob("sample-*-v*.wzs"):
        if old.name != current.name and old.is_file():
            try:
                old.unlink()
                gone.append(old)
            except OSError:
                pass  # in use or read-only: it only costs disk space
    return gone


def grow_sample(path: Path, quiet: bool = False) -> None:
    """Grow the sample into `path` (a temp file renamed at the end: never half a world)."""
    import os

    from cli.genargs import config_from_sample
    from cli.new import grow_new
    from cli.zoom import grow_zoom
    from generation.image_input import load_image
    from generation.pipeline import request_at_pixel
    from saves import load_world

    path.parent.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"Growing the sample world once (a photo and {len(ZOOMS)} zooms, a few minutes "
              f"on 2 cores); it is kept in {path}")
    work = path.with_name(f".{path.name}.{os.getpid()}.growing.wzs")
    try:
        grow_new(load_image(str(PHOTO)), NEW_PROMPT, 0, config_from_sample("new"), work,
                 source=PHOTO.name, quiet=quiet, title=f"1/{len(ZOOMS) + 1} the photo")
        for k, prompt in enumerate(ZOOMS, start=1):
            loaded = load_world(work)
            view = loaded.history.steps[loaded.history.head].camera
            at = FIRST_ZOOM_AT if k == 1 else (0.5, 0.5)
            pixel = (at[0] * view.width, at[1] * view.height)
            request = request_at_pixel(loaded.history, loaded.chunks, view, pixel, prompt,
                                       factor=4.0, seed=k)
            grow_zoom(request, config_from_sample("zoom"), work, quiet=quiet,
                      title=f"{k + 1}/{len(ZOOMS) + 1} zoom: {prompt}")
        os.replace(work, path)
    finally:
        work.unlink(missing_ok=True)
