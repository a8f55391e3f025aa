"""Kubernetes and KServe: manifests rendered from ``templates/kubernetes/`` and an apply path.

    manifests   Settings, rendering and writing the YAML files (``deploykit.manifests``)
    apply       applying them with the ``kubernetes`` client, waiting for the rollout; status, stop, logs
    push        pushing the model image to the user's registry with the Docker SDK
"""
