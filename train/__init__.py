"""The DC-IGN trainer: Zarr loader → network with clamping → checkpoints and metrics.

Never imports pyrender or dcign.render.
"""
