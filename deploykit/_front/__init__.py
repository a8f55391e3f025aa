"""The front: one process per deployment name that owns its port and forwards requests to its versions.

Code here runs inside the front (on the host, or alone in the front's container): it imports only the
standard library, its siblings, and ``cryptography`` where signing is needed.
"""
