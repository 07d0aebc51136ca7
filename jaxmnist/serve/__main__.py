"""``python -m jaxmnist.serve RUN_DIR`` (see :func:`jaxmnist.serve.app.main`)."""

from jaxmnist.serve.app import main

raise SystemExit(main())
