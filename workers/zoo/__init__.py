"""The model zoo: builders of the catalog's architectures (torchvision and built-in families).

The catalog itself (names, arguments, input shapes) is ``workers.catalog.models``, torch-free;
the modules here (``builtin``, ``build``, ``make_catalog``) import torch and run on workers.
"""
