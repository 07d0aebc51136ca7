"""jaxmnist: MNIST studies re-run in JAX."""

__version__ = "0.1.0"
