"""The dataset renderer: object models → one-factor minibatch scenes → pyrender → Zarr store.

Never imports torch or dcign.train.
"""
