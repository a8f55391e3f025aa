"""Docker: base images, the hermetic wheelhouse, image builds, and the docker target's front.

Notebook side only: nothing here is imported by the served runtime.
"""
