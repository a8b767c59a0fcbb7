"""What the renderer and the trainer agree on: the factor vocabulary and the Zarr store schema.

Nothing here imports torch or OpenGL.
"""
