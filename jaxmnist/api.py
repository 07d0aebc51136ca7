"""The Python API (``import jaxmnist as jm``): train a grid, run a study, open a run directory.

Every call writes a run directory as ``python -m jaxmnist.sweep`` does (both call
:func:`jaxmnist.runner.run_study`) and resumes it when called again with the same arguments.
Nothing here imports jax until a run trains or a member predicts. Guide: docs/studies.md,
"From Python".
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxmnist.runs import rundir, runview
from jaxmnist.trees import flatten, set_dotted

# jm.grid's split unless ``data`` gives one: 10,000 training images held out for validation (as
# S2), so that best() chooses on validation, never on test (docs/data.md).
GRID_DATA = {"split": "holdout", "val_size": 10_000}


class APIError(ValueError):
    """An argument of the API is not usable (one message saying what and how to fix it)."""


# Models given as objects


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _importable(obj: Any) -> str | None:
    """``"module:qualname"`` when ``obj`` can be imported back by that path, else None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def model_config(model: Any) -> tuple[dict[str, Any], str]:
    """``(model config, note)`` of a ``model=`` argument (docs/studies.md, "From Python").

    Objects are registered for this process; the note says why another process cannot load the
    config from the run directory alone (empty: it can). APIError: not a model.
    """
    from jaxmnist.models import adapters

    if isinstance(model, str):
        return {"name": model}, ""
    if isinstance(model, Mapping):
        return dict(model), ""
    again = "pass it again as model=... to resume or predict in another process"
    if any(c.__module__.split(".")[0] == "flax" for c in type(model).__mro__):
        import flax.linen as nn
        from flax import nnx

        if isinstance(model, nnx.Module):
            raise APIError(
                f"model: an NNX module object ({type(model).__name__}) holds weights drawn from "
                "one seed; pass its class (model=" + type(model).__name__ + ") or a factory "
                "taking rngs (model=lambda rngs: " + type(model).__name__ + "(rngs=rngs)) so "
                "that every member draws its own")
        if isinstance(model, nn.Module):
            cls = type(model)
            fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
                      if f.name not in ("parent", "name") and f.init}
            path, plain = _importable(cls), _json_ready(fields)
            if path and plain:
                return {"name": path, **fields}, ""
            # Not importable by another process: registered here under a name that the same
            # call gives again (so calling again resumes), its fields as keyword arguments.
            name = f"api:{cls.__qualname__}"
            adapters.register(name)(cls if plain else lambda: model)
            why = ("its class is defined in the notebook or script (__main__)" if not path else
                   "its fields are not JSON values")
            return ({"name": name, **(fields if plain else {})},
                    f"model {cls.__qualname__} was passed as an object and {why}: {again}")
    if isinstance(model, tuple | list) and len(model) == 2 and all(map(callable, model)):
        name = f"api:{getattr(model[0], '__qualname__', 'init')}+" \
               f"{getattr(model[1], '__qualname__', 'apply')}"
        adapters.register(name)(lambda: tuple(model))
        return {"name": name}, f"model was passed as an (init, apply) pair: {again}"
    if callable(model):  # an NNX Module class, a linen factory or a factory of pairs
        path = _importable(model)
        if path:
            return {"name": path}, ""
        qual = getattr(model, "__qualname__", type(model).__name__)
        adapters.register(f"api:{qual}")(model)
        return {"name": f"api:{qual}"}, (f"model {qual} is defined in the notebook or script "
                                         f"(__main__): {again}")
    raise APIError(f"model: {type(model).__name__} is not a model; pass a zoo name "
                   "('cnn'), a config dict, an import path ('pkg.nets:make'), a Flax linen "
                   "Module, an NNX Module class or an (init, apply) pair")


# Studies


def load_study(name_or_path: str | Path, *, preset: str | None = None, quick: bool = False,
               seeds: int | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Loads a study by name (``"s2"``) or ``.py`` file, resolved and validated (a dict).

    The arguments are the command line's (docs/studies.md, "From Python"); ``ConfigError`` lists
    every problem with the study.
    """
    from jaxmnist import config as C  # the study schema imports jax; reading a run does not

    study = C.resolve(C.load_study(name_or_path), preset=preset, quick=quick, seeds=seeds,
                      overrides=overrides)
    C.check(study)
    return study


def grid(*, model: Any, optimizers: Mapping[str, Any] | None = None,
         search: Mapping[str, Any] | None = None, samples: int | None = None,
         search_seed: int | None = None, seeds: int = 1, epochs: int = 1,
         batch_size: int = 64, dataset: str = "mnist", data: Mapping[str, Any] | None = None,
         workdir: str | Path, name: str = "grid", synthetic: bool = False,
         config: Mapping[str, Any] | None = None, progress: bool = True,
         grow: bool = False, prune: Mapping[str, Any] | None = None,
         final_seeds: int = 0) -> Run:
    """Trains ``model`` with every optimizer x learning rate x seed as one grid; the :class:`Run`.

    ``optimizers={"adam": [1e-3, 3e-4], "sgd": 0.1}`` and / or ``search``; every argument:
    docs/studies.md, "From Python". A bad argument (APIError, ConfigError) or data that cannot
    be loaded (DataError) writes nothing.
    """
    from jaxmnist import config as C  # the study schema imports jax; reading a run does not
    from jaxmnist.engine import hostdevices

    hostdevices.configure()  # first: XLA reads its flags once, when a backend starts
    model_cfg, note = model_config(model)
    points = []
    for opt_name, setting in (optimizers or {}).items():
        rates = setting if isinstance(setting, list | tuple) else [setting]
        for lr in rates:
            optim = {"name": opt_name, **(lr if isinstance(lr, Mapping) else {"learning_rate": lr})}
            rate = optim.get("learning_rate")
            label = f"{opt_name} lr={rate:g}" if isinstance(rate, int | float) else opt_name
            points.append({"label": label, "set": {"optim": optim}})
    searched = {k: v for k, v in (("search", search), ("samples", samples),
                                  ("search_seed", search_seed)) if v is not None}
    if not points and not search:
        raise APIError("optimizers: give at least one, e.g. optimizers={'adam': [1e-3]}, or "
                       "a search, e.g. search={'adam': {'optim.learning_rate': "
                       "('log', 1e-4, 1e-1)}}")
    # The base holds only what every optimizer takes: each point's own hyperparameters stay
    # its own (jaxmnist.config.inherit), so Adam's b1 never reaches an SGD point. Without
    # explicit points, the first sampled point (its learning rate) stands for the base.
    sampled = _first_sampled(searched, config or {}) if search else {}
    first = points[0]["set"]["optim"] if points else sampled
    base = {"model": model_cfg,
            "optim": {k: v for k, v in first.items() if k in ("name", "learning_rate")},
            "train": {"epochs": epochs, "batch_size": batch_size}}
    for key, value in (config or {}).items():
        set_dotted(base, key, value)
    families = dict.fromkeys([*(optimizers or {}), *(search if isinstance(search, Mapping)
                                                     else ())])
    study = {"study": name, "title": f"{name}: {model_cfg.get('name')} x {', '.join(families)}",
             "data": {**({} if "split" in (data or {}) else GRID_DATA), "name": dataset,
                      **dict(data or {}),
                      **({"source": "synthetic"} if synthetic else {})},
             "base": base,
             "experiments": [{"name": "main", "title": "", "points": points}] if points else [],
             "seeds": seeds, "notes": note, **searched,
             **({"prune": dict(prune)} if prune else {}), "final_seeds": final_seeds}
    return run(C.resolve(study), workdir=workdir, progress=progress, grow=grow)


def compare(*, model: Any, optimizers: Sequence[str], workdir: str | Path,
            learning_rate: tuple[Any, ...] = ("log", 1e-5, 1.0), samples: int = 16,
            prune: Mapping[str, Any] | None = None, final_seeds: int = 10,
            **grid_args: Any) -> Run:
    """The tuning protocol in one call: which optimizer is better here, by how much, how sure.

    ``samples`` learning rates per optimizer tuned on validation, the choices re-run on
    ``final_seeds`` fresh seeds and compared (:meth:`Run.compare`); anything else is
    :func:`grid`'s (docs/studies.md, "The tuning protocol").
    """
    search = {name: {"optim.learning_rate": tuple(learning_rate)} for name in optimizers}
    return grid(model=model, search=search, samples=samples, prune=prune,
                final_seeds=final_seeds, workdir=workdir, **grid_args)


def _first_sampled(searched: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer and learning rate of a search's first point, the base of the study.

    ConfigError unless each family draws its own learning rate (or ``config`` sets one).
    """
    from jaxmnist import schema
    from jaxmnist import search as S
    from jaxmnist.engine.optim import OPTIMIZERS

    full = schema.with_defaults(searched)
    found = S.problems(full["search"], OPTIMIZERS)
    lacking = [] if found else [f for f, space in full["search"].items()
                                if "optim.learning_rate" not in flatten(space)]
    if lacking and "optim.learning_rate" not in config:
        found.append(f"search: {', '.join(lacking)} sets no optim.learning_rate; give each a "
                     "distribution or a number, or config={'optim.learning_rate': 1e-3}")
    try:  # the first of one sample is the first of any number (jaxmnist.search.points)
        first = {} if found else S.points(full["search"], 1, full["search_seed"])[0][1]
    except ValueError as err:
        found = str(err).split("\n")
    if found:
        raise schema.ConfigError(found, "search")
    return {"name": first["optim.name"], "learning_rate": first.get("optim.learning_rate")}


def run(study: Mapping[str, Any], *, workdir: str | Path, data_dir: str | None = None,
        report: bool = True, callbacks: Sequence[Callable[..., Any]] = (),
        progress: bool = True, grow: bool = False) -> Run:
    """Trains (or resumes, or with ``grow`` grows) a resolved study into ``workdir``; the Run.

    ``study``: from :func:`load_study` or built by :func:`grid`; the other arguments:
    docs/studies.md, "From Python".
    """
    from jaxmnist import config as C  # the study schema imports jax; reading a run does not
    from jaxmnist import runner
    from jaxmnist.engine import hostdevices

    hostdevices.configure()  # before JAX starts a backend: one host device per core on a CPU
    members = C.check(study)  # the run's members, validated: runner.run_study trains these
    runner.run_study(dict(study), Path(workdir), data_dir=data_dir, report=report,
              callbacks=callbacks, progress=progress, members=members, grow=grow)
    return open_run(workdir)


def open_run(workdir: str | Path) -> Run:
    """Opens a run directory, finished or still training, without importing jax (or ReportError)."""
    return Run(Path(workdir))


# Results


def _dynamic(config: Mapping[str, Any]) -> dict[str, Any]:
    """The member settings that vary in grids, flattened (``optim.name``, ``learning_rate``)."""
    flat = flatten({k: v for k, v in config.items() if k != "seed"}, ".")
    return {k: v for k, v in flat.items() if not isinstance(v, list | dict)}


class Run:
    """A run directory as tables, figures and members (re-read on every call)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.view = runview.load(self.path)  # the report's view (points, footers, paper numbers)

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}: study {self.view.study!r}, "
                f"{len(self.view.config['members'])} members, "
                f"{'complete' if self.complete else 'unfinished'})")

    @property
    def complete(self) -> bool:
        """True once every group finished."""
        return bool(self.view.results.get("complete"))

    def table(self):
        """One row per member (a pandas DataFrame): varying settings, seed, status, metrics."""
        import pandas as pd

        configs = [_dynamic(m["config"]) for m in self.view.config["members"]]
        varying = [k for k in sorted({k for c in configs for k in c})
                   if len({json.dumps(c.get(k)) for c in configs}) > 1]
        rows = []
        for point in self.view.points:
            for m in point.members:
                flat = _dynamic(m["config"])
                history = m.get("history") or []
                rows.append({
                    "member": m["member"], "label": point.label,
                    **{k: flat.get(k) for k in varying}, "seed": m["config"]["seed"],
                    "status": m["status"], "test_acc": m["test"].get("acc"),
                    "test_loss": m["test"].get("loss"), "epochs": len(history),
                    "val_acc": history[-1].get("val_acc") if history else None,
                    "diverged_epoch": m.get("diverged_epoch"),
                    "epochs_trained": m.get("epochs_trained"),
                })
        return pd.DataFrame(rows).set_index("member").sort_index()

    def points(self):
        """One row per grid point, its seeds together, best first (columns: docs/statistics.md)."""
        import pandas as pd

        from jaxmnist.engine import metrics
        from jaxmnist.runs import stats

        rows = []
        for p in self.view.ranked():
            mean, std, _ = metrics.mean_std(p.test_acc())
            seeds = stats.describe(p.test_acc())
            rows.append({"label": p.label, "mean_val_acc": metrics.mean_std(p.final("val_acc"))[0],
                         "mean_test_acc": mean, "std_test_acc": std,
                         "mean_test_loss": metrics.mean_std(
                             p.values(lambda m: m["test"].get("loss")))[0],
                         "seeds": len(p.members), "status": p.status(),
                         **{k: seeds[k] for k in ("iqm", "ci_low", "ci_high", "values", "note")}})
        return pd.DataFrame(rows).set_index("label")

    def compare(self):
        """Every pair of optimizers at their settings chosen on validation (docs/statistics.md)."""
        from jaxmnist.runs import stats

        return stats.compare(self.view)

    def history(self, member: int):
        """Per-epoch losses and accuracies of one member (a pandas DataFrame by epoch)."""
        import pandas as pd

        for point in self.view.points:
            for m in point.members:
                if m["member"] == member:
                    return pd.DataFrame(m.get("history") or []).set_index("epoch")
        raise KeyError(f"member {member} is not in {self.path} "
                       f"(members: {sorted(self.table().index)})")

    def plot(self, kind: str = "curves") -> Path | None:
        """Draws ``"curves"`` or ``"heatmap"`` (optimizer x lr) into figures/, shown in notebooks.

        Returns the PNG's path (None: a heatmap of a run that is not a two-axis grid).
        """
        from jaxmnist.runs import figures

        folder = self.path / "figures"
        folder.mkdir(exist_ok=True)
        if kind == "curves":
            path = figures.curves(self.view, [(p.label, p) for p in self.view.points],
                                  folder / "curves.png", self.view.config.get("title", ""))
        elif kind == "heatmap":
            path = figures.heatmap(self.view, folder / "heatmap.png")
        else:
            raise APIError(f"plot: kind {kind!r} is not valid; valid: 'curves', 'heatmap'")
        if path is not None and "IPython" in sys.modules:
            from IPython.display import Image, display

            display(Image(filename=str(path)))
        return path

    def member(self, member: int) -> TrainedMember:
        """One trained member: its config, results and exported parameters."""
        return TrainedMember(self.path, member)

    def best(self) -> TrainedMember:
        """The best member of the best point, both chosen on validation, never on test.

        The same choice as the report and the web demo (:mod:`jaxmnist.ranking`); APIError
        saying why when nothing can be chosen (no validation split, nothing finished).
        """
        member = self.view.best_member()
        if member is None:
            raise APIError(f"{self.path}: {self.view.no_choice()}")
        return self.member(member["member"])


class TrainedMember:
    """One exported member of a run: ``predict`` builds its model on first use."""

    def __init__(self, run_dir: Path, member: int):
        self.run_dir, self.index = Path(run_dir), member
        self.model_config, self.params, self.state = rundir.load_member(run_dir, member)
        self._predict: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"TrainedMember({self.index}, model={self.model_config.get('name')!r})"

    def predict(self, images: Any) -> Any:
        """Class probabilities ``[N, 10]`` (NumPy) of uint8 or [0, 1] images ``[N,28,28(,1)]``."""
        import jax
        import numpy as np

        from jaxmnist import models

        if self._predict is None:
            model = models.build(self.model_config)
            self._predict = jax.jit(
                lambda p, s, x: jax.nn.softmax(model.predict(p, s, x), axis=-1))
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        return np.asarray(self._predict(self.params, self.state, x))
