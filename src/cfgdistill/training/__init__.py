"""Training: the shared loop (loop.py), its state on disk (state.py), the run folder (run_folder.py), Accelerate."""
