"""The model zoo: a catalog of buildable architectures (torchvision and built-in families).

``workers.zoo.catalog`` is pure Python and safe to import from the web tier; the modules that
build models (``builtin``, ``build``, ``make_catalog``) import torch and are only used by workers.
Keep this file free of imports so importing the catalog never pulls torch in.
"""
