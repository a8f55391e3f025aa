"""Where a package runs: each target starts, checks and stops one version of a service."""
