"""``python -m jaxmnist.data`` (see :mod:`jaxmnist.data.cli`)."""

from jaxmnist.data.cli import main

raise SystemExit(main())
