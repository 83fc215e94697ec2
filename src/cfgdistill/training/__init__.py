"""Training: the loop shared by every objective (loop.py), its state on disk (state.py), Accelerate set-up."""
