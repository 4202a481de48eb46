"""Data sets for training jobs: built-in sets, text corpora, user uploads, batching.

Import from the modules: ``datasets`` (containers, Fashion-MNIST, MNIST-1D, the deterministic
batch order that makes paired runs identical), ``text`` (character-level corpora), ``uploads``
(loading uploaded files) and ``checks`` (numpy-only checks of uploads). This package imports
nothing itself, so the web tier can use ``checks`` without loading torch.
"""
