"""The web demo, ``python -m jaxmnist.serve RUN_DIR``.

:mod:`~jaxmnist.serve.app`: app, predictor, command line; :mod:`~jaxmnist.serve.preprocess`: an
upload to a 28x28 digit; ``static/``: the page.
"""
