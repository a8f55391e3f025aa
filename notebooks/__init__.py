"""Tutorial notebooks; a package only so that notebooks/conftest.py is imported as notebooks.conftest, not as a second top-level `conftest`."""
