"""The datasets, one generator each, all run by the same writer: `faces` (morphable-model
faces), `chairs` (procedural chairs or a folder of meshes) and `aubry` (the "Seeing 3D
chairs" renders, imported rather than rendered). `base` states what the writer needs of
them."""
