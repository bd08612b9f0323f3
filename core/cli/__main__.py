"""`python -m kernelwright.cli`: the command line, as the `kernelwright` script runs it."""

from kernelwright.cli import main

main()
