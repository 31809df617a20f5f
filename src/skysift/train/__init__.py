"""The shared trainer: one entry point for every task, on CPU, GPU and SLURM clusters."""
