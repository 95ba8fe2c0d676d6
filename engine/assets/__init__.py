"""Assets: the inputs every sample is made of.

``images`` reads and validates user backgrounds, foregrounds and depth maps
(``AssetSet``); ``streets`` and ``cars`` draw the built-in procedural assets
(rules shared in ``procedural``), which ``cache`` keeps on disk; ``camera`` is
the ground-plane camera model.
"""
