"""The notebook side of deploykit's security: API keys, the audit trail, package signing.

What runs inside the front lives in :mod:`deploykit._front` (``auth``, ``audit``); what the served
runtime checks lives in :mod:`deploykit._runtime.signature`. The modules here manage keys and files on
the host and read the formats those define; see ``docs/security.md``.
"""
