"""Parallel training on a process grid: data, pipeline, spatial and tensor (model) parallelism.

The ranks form one Cartesian grid, ``P = pipeline × data × spatial × tensor``, with one
communicator per axis (:mod:`training.parallel.grid`).  Data parallelism replicates the model
and all-reduces its gradients over the data axis; tensor parallelism splits each layer's
weights over the tensor axis and all-gathers or all-reduces activations; pipeline parallelism
places consecutive layers on consecutive stages of the pipeline axis and passes activations
point to point; spatial parallelism splits each image over the spatial axis and exchanges
halos.  Any axis may have degree 1, so a pure data-parallel run is the grid with every other
degree 1.
"""
