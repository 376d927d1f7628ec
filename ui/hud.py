"""The HUD: stats, generation progress, messages, prompt box, POI marker, help and history.

Owns: `HudState` (what to show, filled by the app each frame) and `Hud`, which draws it with
pygame fonts into an RGBA surface, uploads that to a texture only when its content changed,
and blends it over the frame with one textured quad.
Does not own: the numbers it shows (the app and the renderer compute them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import moderngl
import numpy as np
import pygame

from ui.quad import TexturedQuad

FRAGMENT = """
#version 330
uniform sampler2D overlay;
in vec2 uv;
out vec4 color;
void main() { color = texture(overlay, uv); }
"""

WHITE = (235, 238, 245)
DIM = (150, 160, 175)
ACCENT = (255, 196, 64)
ERROR = (255, 110, 100)
PANEL = (12, 14, 20, 170)


@dataclass
class HudState:
    fps: float = 0.0
    frame_ms: float = 0.0
    splats_drawn: int = 0
    splats_resident: int = 0
    level: int = 0
    zoom_factor: float = 1.0
    pixel_scale: float = 0.0
    generation: str = ""  # one line: "optimize 62% (3.1 s) · 1 queued" or ""
    generation_fraction: float | None = None
    messages: list[tuple[str, bool]] = field(default_factory=list)  # (text, is_error)
    prompt: str | None = None  # None: prompt box closed
    poi_px: tuple[float, float] | None = None  # marker position on screen
    show_help: bool = False
    help_lines: list[str] = field(default_factory=list)
    show_history: bool = False
    history_lines: list[str] = field(default_factory=list)
    visible: bool = True
    renderer_path: str = ""  # "cpu" / "gpu": StreamingRenderer.path ("" shows nothing)


def format_zoom(factor: float) -> str:
    if factor >= 1000:
        exponent = int(np.floor(np.log10(factor)))
        return f"x{factor / 10 ** exponent:.1f}e{exponent}"
    return f"x{factor:.1f}" if factor < 100 else f"x{factor:.0f}"


def hud_lines(s: HudState) -> list[str]:
    """The stats panel's lines."""
    renderer = f"  {s.renderer_path} renderer" if s.renderer_path else ""
    return [f"{s.fps:5.1f} FPS  {s.frame_ms:5.1f} ms{renderer}",
            f"splats {s.splats_drawn:,} drawn / {s.splats_resident:,} resident",
            f"level {s.level}   zoom {format_zoom(s.zoom_factor)}   {s.pixel_scale:.2e} /px"]


class Hud:
    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]) -> None:
        if not pygame.font.get_init():
            pygame.font.init()
        self.ctx = ctx
        self.font = pygame.font.Font(None, 22)
        self.small = pygame.font.Font(None, 18)
        self.big = pygame.font.Font(None, 28)
        self.quad = TexturedQuad(ctx, FRAGMENT, rows_down=True)  # a pygame surface: row 0 on top
        self.texture: moderngl.Texture | None = None
        self.surface: pygame.Surface | None = None
        self._signature: tuple | None = None
        self.resize(size)

    def resize(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.surface = pygame.Surface(self.size, pygame.SRCALPHA, 32)
        if self.texture is not None:
            self.texture.release()
        self.texture = self.ctx.texture(self.size, 4)
        self.texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._signature = None

    # ---- drawing ------------------------------------------------------------------------
    def _text(self, text: str, pos: tuple[int, int], color=WHITE, font=None) -> pygame.Rect:
        img = (font or self.font).render(text, True, color)
        return self.surface.blit(img, pos)

    def _panel(self, rect: pygame.Rect) -> None:
        panel = pygame.Surface(rect.size, pygame.SRCALPHA)
        panel.fill(PANEL)
        self.surface.blit(panel, rect.topleft)

    def compose(self, s: HudState) -> pygame.Surface:
        """Draw the state into the overlay surface (also used directly for tests)."""
        surf = self.surface
        surf.fill((0, 0, 0, 0))
        if s.poi_px is not None:  # the marker stays even with the HUD hidden: it is in the world
            x, y = int(s.poi_px[0]), int(s.poi_px[1])
            pygame.draw.circle(surf, ACCENT, (x, y), 11, 2)
            pygame.draw.circle(surf, (0, 0, 0, 200), (x, y), 13, 1)
            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                pygame.draw.line(surf, ACCENT, (x + dx * 5, y + dy * 5), (x + dx * 17, y + dy * 17), 2)
        if not s.visible:
            return surf
        w, h = self.size
        lines = hud_lines(s)
        self._panel(pygame.Rect(6, 6, 330, 8 + 20 * len(lines)))
        for i, line in enumerate(lines):
            self._text(line, (12, 10 + 20 * i))
        self._text("F1 help", (w - 70, 10), DIM, self.small)
        y = h - 30
        if s.generation:
            # the panel fits the line and the bar after it (the line names the level's size)
            width = min(w - 12, max(520, 12 + self.font.size(s.generation)[0] + 140))
            self._panel(pygame.Rect(6, y - 6, width, 28))
            self._text(s.generation, (12, y), ACCENT)
            if s.generation_fraction is not None:
                bar = pygame.Rect(width - 130, y + 2, 120, 10)
                pygame.draw.rect(surf, DIM, bar, 1)
                fill = bar.inflate(-2, -2)
                fill.width = int(fill.width * max(0.0, min(1.0, s.generation_fraction)))
                pygame.draw.rect(surf, ACCENT, fill)
            y -= 32
        for text, is_error in s.messages[-3:][::-1]:
            self._panel(pygame.Rect(6, y - 4, min(w - 12, 12 + self.font.size(text)[0]), 24))
            self._text(text, (12, y), ERROR if is_error else WHITE)
            y -= 28
        if s.prompt is not None:
            box = pygame.Rect(w // 2 - 260, h // 2 + 60, 520, 40)
            self._panel(box.inflate(8, 8))
            pygame.draw.rect(surf, ACCENT, box, 2)
            self._text("Prompt (Enter to grow, Esc to cancel):", (box.x, box.y - 26), DIM, self.small)
            self._text(s.prompt + "_", (box.x + 10, box.y + 10), WHITE, self.big)
        if s.show_history and s.history_lines:
            rows = s.history_lines[-20:]
            rect = pygame.Rect(w - 380, 34, 372, 12 + 18 * len(rows))
            self._panel(rect)
            for i, line in enumerate(rows):
                self._text(line[:58], (rect.x + 8, rect.y + 6 + 18 * i), ACCENT if line.startswith("*") else WHITE, self.small)
        if s.show_help:
            rows = ["WonderZoom controls"] + s.help_lines
            rect = pygame.Rect(40, 40, w - 80, min(h - 80, 16 + 19 * len(rows)))
            self._panel(rect)
            for i, line in enumerate(rows):
                if 8 + 19 * (i + 1) > rect.height:
                    break
                self._text(line, (rect.x + 12, rect.y + 8 + 19 * i), ACCENT if i == 0 else WHITE, self.small)
        return surf

    def draw(self, state: HudState, framebuffer: moderngl.Framebuffer) -> None:
        signature = (round(state.fps), round(state.frame_ms), state.splats_drawn, state.splats_resident,
                     state.level, round(state.zoom_factor, 2), state.generation,
                     None if state.generation_fraction is None else round(state.generation_fraction, 2),
                     tuple(state.messages[-3:]), state.prompt, state.poi_px and tuple(map(int, state.poi_px)),
                     state.show_help, state.show_history, tuple(state.history_lines), state.visible,
                     state.renderer_path)
        if signature != self._signature:
            self.compose(state)
            self.texture.write(pygame.image.tobytes(self.surface, "RGBA", False))
            self._signature = signature
        framebuffer.use()
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.quad.draw(self.texture)

    def release(self) -> None:
        self.quad.release()
        self.texture.release()
