"""The real-time splat renderer and its numpy oracle.

- `engine.render.prepare`: CPU culling, camera-relative packing and back-to-front sorting.
- `engine.render.reference`: the numpy rasterizer every GPU path is checked against.
- `engine.render.gl`: the moderngl renderer (`splats.glsl`), one instanced draw per frame.

Import the submodules directly (`from engine.render.prepare import prepare`); this package
imports none of them, so the CPU parts load without moderngl.
Does not own: streaming (which chunks are visible), the frame loop, windows or input.
"""
