"""Making a dataset: plan, depth, compositing, and the ``generate`` run.

``plan`` maps a sample index to its placement; ``depth`` and ``teacher``
give each sample's depth; ``compositor`` (CPU) and ``compositor_cuda`` (GPU)
paste foregrounds in batches; ``generate`` drives them into a store.
"""
