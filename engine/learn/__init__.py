"""Learning from a store: the coarse/fine depth network and its training.

``data`` loads splits and batches from a store (through ``engine.store``,
never ``engine.compose``); ``model`` is the network, ``metrics`` the loss and
depth metrics shared by ``train`` and ``evaluate``; ``checkpoint`` and
``plots`` save what a run produced.
"""
