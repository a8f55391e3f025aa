"""The front (router) of a deployment: one per deployment name, on every target.

It runs in its own process (local target) or container (docker target) and imports only the standard
library, uvicorn, httptools and uvloop, and its siblings here: the docker front image copies this folder
alone. Host-side code talks to it over its admin API (``deploykit._targets.front``).

    routes       the routing table: which version answers, where it listens
    upstream     pooled HTTP/1.1 connections to the versions
    metrics      the front's Prometheus series
    capture      recording served predictions in the deployment's capture database, off the request path
    app          the ASGI app: forwarding, retries, headers, metrics, the admin API
    supervisor   the local target's version processes
    serve        the entry point: python -I -m deploykit._front.serve
"""
