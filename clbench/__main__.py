"""`python -m clbench`: the command line, where the `clbench` script is not on PATH."""
from clbench.cli import main

main()
