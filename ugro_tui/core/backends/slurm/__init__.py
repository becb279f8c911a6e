"""The Slurm backend: sbatch, squeue, sacct and scontrol over the login node's SSH connection."""
