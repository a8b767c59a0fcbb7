"""Object sources, the bottom layer: what is rendered or imported, before any scene or GL.

Face models (`face_model`: the morphable model class; `embedded_face`, `basel`: its sources;
`face_loader`: which source a path names), procedural chairs (`chair_parts`, `chair_model`),
the chair mesh every chair source gives (`chair_mesh`), the user's mesh folders
(`mesh_folder`), the Aubry renders' tree (`aubry_tree`) and mesh geometry (`geometry`).
Nothing here imports a layer above it.
"""
