"""The serving runtime: everything the service inside a bento or image imports, and nothing else.

It must not import the notebook side of deploykit (widgets, the Docker SDK, card rendering): the bento
carries a copy of this folder as the top-level package ``deploykit_runtime``, so only relative imports
are used here.
"""
