"""The dataset renderer: object sources → minibatch plans → renderer → generators → writer →
Zarr store, in five layers the folder listing shows, bottom to top (the minibatch plans,
which identity and factor values each image shows, are `dcign.shared.plans`: the test stores
of `dcign.train.synthetic` draw from them too):

    objects/     what is rendered or imported: face models, chairs, mesh folders, Aubry tree
    renderer/    GL platform, poses and lighting, the Renderer, pyrender's patches, shaders
    generators/  the datasets (faces, chairs, the Aubry import) behind one interface
    writer/      runs any generator into a store: shard tasks, workers, resume, history
    cli.py       `dcign-render`

A module imports only its own layer and those below (tests/project/test_module_graph.py checks it).
Never imports torch or dcign.train.
"""
