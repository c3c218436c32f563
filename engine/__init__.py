"""The connection engine: the gateway protocol's client side and the worker
that holds every instance's session.

It sits above the domain apps (``instances``, ``campaigns``) and has no
models of its own. :mod:`engine.protocol` is its sans-I/O core.
"""
