"""The SGD engine: Numba kernels, the roofline that measures them, and (to come) the parallel trainers."""
