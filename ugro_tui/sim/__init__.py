"""Simulated GPUs for machines without one. Only the data source is simulated: a stand-in `nvidia-smi`
and a stand-in `pynvml` on the node's PATH/PYTHONPATH; everything above them is the production path."""
