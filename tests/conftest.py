"""Headless defaults for every test: SDL draws offscreen, no audio device, and joystick
events arrive even though no window has focus."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("SDL_JOYSTICK_ALLOW_BACKGROUND_EVENTS", "1")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def ctx():
    """A headless (EGL) moderngl context; the test is skipped where none can be made."""
    pytest.importorskip("moderngl")
    from engine.render.gl import HeadlessContextError, create_headless_context

    try:
        context = create_headless_context()
    except HeadlessContextError as exc:
        pytest.skip(str(exc))
    yield context
    context.release()
