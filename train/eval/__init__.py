"""Everything that judges a trained network, and never imports the training loop.

    trained.py          a checkpoint as a network in eval mode; checked against a store; sweeps
    encoding.py         a store's split → posterior means; the test ELBO; correlations
    held_out.py         the trainer's end-of-run check (held_out.json, two figures)
    measures.py         what dcign-eval measures: reconstruction, tied latents, inferred vs true
    disentanglement.py  MIG, DCI, SAP, FactorVAE: on arrays, or on a store with any encoder
    figures.py          every figure: reconstructions, traversals, scatters, novel views
    report.py           the report folder: report.json, report.html, the terminal table
    cli.py              dcign-eval
    rerender.py         dcign-rerender: the decoder as a graphics engine
"""
