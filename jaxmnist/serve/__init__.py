"""The web demo, ``python -m jaxmnist.serve RUN_DIR``: ``app``, ``preprocess``, ``static/``."""
