"""The web demo: ``python -m jaxmnist.serve RUN_DIR``.

* :mod:`~jaxmnist.serve.app` -- the FastAPI app, the members' predictor, the command line.
* :mod:`~jaxmnist.serve.preprocess` -- an upload (photo, scan, drawing) to a 28x28 MNIST digit.
* ``static/`` -- the page.
"""
