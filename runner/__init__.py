"""Process isolation: workers with deadlines, the sandbox they run in, killing process trees.

Imports nothing of the stages (compiler, verifier, profiler, agents, store) nor the loop: every
stage may use it, and it stays small enough to be read as a whole when judging what a candidate
can reach.
"""
