"""Building candidates with `torch.utils.cpp_extension`, in worker processes, with a build cache.

`build.build_candidate` (parent side) starts `compiler.worker` in an isolated process; the worker
imports the candidate with `compiler.loader`'s hooks, which route every `load_inline`/`load` into a
directory under `$KERNELWRIGHT_HOME/builds` keyed by what it compiles, and keep the full log.
`pool.build_many` builds several candidates at once, each in its own worker with its own limit.
"""
