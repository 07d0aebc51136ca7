# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # jaxmnist quickstart: the S2 optimizer × learning-rate grid
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/jaxmnist/jaxmnist/blob/main/notebooks/quickstart.ipynb)
#
# This notebook installs jaxmnist, shows which accelerator JAX sees, trains the S2 study
# (SqueezeNet × {Adam, RMSprop, SGD} × 4 learning rates, all 12 models in one compiled
# program) with the Python API (`import jaxmnist as jm`), and shows its grid heatmap,
# learning curves and tables. At the end it trains a Flax model you write yourself in a grid
# of its own, and asks the best member for predictions.
#
# How big a run it starts depends on the machine:
#
# | `SIZE` | when | what |
# | --- | --- | --- |
# | `full` | a GPU/TPU runtime (Colab: *Runtime → Change runtime type*) | the published study: 30 epochs, 3 seeds |
# | `cpu` | no accelerator | the study's `quick` preset: 10,000 images, 4 epochs, 2 seeds (~10 min on 2 cores) |
# | `tiny` | CI (`JAXMNIST_NOTEBOOK_SIZE=tiny`) | the same 12-member grid of small MLPs, 512 synthetic digits, 1 epoch: checks the notebook runs |
#
# MNIST is downloaded once (four files, checksummed) into `~/.cache/jaxmnist`.

# %%
# Install jaxmnist unless this kernel already has it: from this checkout when the notebook
# runs inside the repository, else (Colab) from the repository URL.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_URL = "https://github.com/jaxmnist/jaxmnist"  # where Colab installs jaxmnist from

here = Path.cwd().resolve()
checkout = next((p for p in (here, *here.parents)
                 if (p / "pyproject.toml").is_file() and (p / "jaxmnist").is_dir()), None)
spec = importlib.util.find_spec("jaxmnist")
installed = Path(spec.origin).resolve().parent.parent if spec and spec.origin else None
if spec is not None and (checkout is None or installed == checkout):
    print(f"jaxmnist already installed: {installed}")
else:
    target = ["-e", str(checkout)] if checkout is not None else [f"git+{REPO_URL}"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *target], check=True)
    print("installed jaxmnist from", target[-1])

# %%
import jax

import jaxmnist as jm

print("JAX", jax.__version__, "| backend:", jax.default_backend())
for device in jax.devices():
    print(" ", device.platform, device.device_kind, device)

# %% [markdown]
# ## The S2 grid
#
# `jm.load_study` reads a study that ships with jaxmnist (`python -m jaxmnist.sweep --list`
# lists them) with a preset and overrides; `jm.run` trains it into a run directory (config,
# metrics, checkpoints, results, TensorBoard events, tables and figures) and returns a `Run`.
# The progress bar shows epochs, images/s and the best validation accuracy so far. Running the
# cell again resumes the same run.

# %%
SIZE = os.environ.get("JAXMNIST_NOTEBOOK_SIZE") or (
    "full" if jax.default_backend() in ("gpu", "tpu") else "cpu")
RUNS = Path(os.environ.get("JAXMNIST_NOTEBOOK_RUNS", "runs"))  # where run directories go
load = {
    "full": dict(),
    "cpu": dict(preset="quick"),
    # CI: SqueezeNet's compile alone takes minutes on a CPU, so the 12 grid members are MLPs.
    "tiny": dict(seeds=1, overrides=["base.model.name=mlp", "base.train.epochs=1",
                                     "data.source=synthetic", "data.train_limit=512",
                                     "data.val_limit=128", "data.test_limit=256"]),
}[SIZE]
study = jm.load_study("s2", **load)
run = jm.run(study, workdir=RUNS / f"s2-notebook-{SIZE}")
print(run)

# %% [markdown]
# ## Results
#
# One row per grid point, best first (mean ± std over the seeds, as scikit-learn's
# `cv_results_`; the IQM and a bootstrap interval from 5 seeds on), then the optimizers compared
# in pairs (each at its learning rate chosen on validation, paired over seeds: with fewer than 5
# seeds no difference is claimed; docs/statistics.md), then one row per member. Collapsed
# members (one class predicted for every image) and diverged ones are labelled, as in the
# paper. The heatmap and the curves are figures in the run directory (`python -m
# jaxmnist.report RUN` makes them again from the files alone; `jm.open_run(RUN)` reads them
# without training anything).

# %%
run.points()

# %%
run.compare()

# %%
run.table().head(12)

# %%
run.plot("heatmap")
run.plot("curves")

# %% [markdown]
# ## Watch it in TensorBoard
#
# Every member is a TensorBoard run of its own (`<run>/tensorboard/m<k>_<label>`), with
# its hyperparameters in the HParams tab. In Colab: `%load_ext tensorboard` then
# `%tensorboard --logdir runs`. On your machine: `pip install tensorboard` and
# `tensorboard --logdir runs/`.

# %%
print(sorted(p.name for p in (run.path / "tensorboard").iterdir())[:4], "...")

# %% [markdown]
# ## Your own Flax model in a grid
#
# Any `flax.linen` module object, Flax NNX module class (BatchNorm and dropout included), or
# plain `(init, apply)` pair trains through the same engine: `jm.grid` takes the model and the
# optimizers with their learning rates, here a small CNN with Adam at three learning rates and
# SGD at one, two seeds each: eight models in one program.

# %%
import flax.linen as nn


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with max-pooling, then a dense layer."""

    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.max_pool(nn.relu(nn.Conv(self.width, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(2 * self.width, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


train_n, epochs = {"full": (None, 5), "cpu": (10_000, 1), "tiny": (512, 1)}[SIZE]
own = jm.grid(model=SmallCNN(width=8), optimizers={"adam": [0.01, 0.003, 0.001], "sgd": [0.1]},
              seeds=2, epochs=epochs, batch_size=64,
              data={"split": "holdout", "val_size": 1000, "train_limit": train_n,
                    "test_limit": 2000},
              synthetic=SIZE == "tiny", workdir=RUNS / f"own-model-{SIZE}", name="own_model")
own.points()

# %%
best = own.best()
images = own.view.samples["test_x"][:5]
print(best, "predicts", best.predict(images).argmax(-1), "for", own.view.samples["test_y"][:5])
own.plot("curves")
