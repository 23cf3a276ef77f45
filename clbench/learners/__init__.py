"""Built-in learners, one readable file each. Resolve them by name with `clbench.registry`."""
