"""Architecture graphs extracted from PyTorch models (module level, JSON-able)."""
