"""The renderer layer: grayscale images of one mesh at a time, through pyrender offscreen.

`platform` chooses the GL platform (before PyOpenGL is first imported), `poses` holds the
object and light poses and the fixed lighting, `offscreen` the `Renderer`, and
`pyrender_patches` every use of pyrender's private state, checked when a Renderer is built.
The shaders that stand in for pyrender's are in `shaders/`.
"""
