"""The front (router) process of a deployment. Standard library only: see FRONT-CONTRACT in the docs."""
