"""Solvers over a layer's program or statistics (no nn.Module): ADMM for the l1 program, the
refit on a support, OBS passes (SparseGPT, L-OBS), DC, thresholding."""
