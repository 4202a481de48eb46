"""Checks of untrusted files that never execute them — torch-free, shared by both tiers.

The web tier runs them before anything is stored, the worker again before it loads a file, so
both refuse exactly the same files:

* :mod:`.pickles` — torch pickles checked opcode by opcode (only tensors, no code);
* :mod:`.pt2` — ``torch.export`` archives as a whole;
* :mod:`.checkpoints` — ``.safetensors`` headers and weights-only torch files;
* :mod:`.datasets` — uploaded ``.npz`` arrays and text (numpy only).

Every refusal is a ``workers.errors.ModelError`` with a sentence for the person.
"""
