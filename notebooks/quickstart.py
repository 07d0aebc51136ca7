# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
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
# program), and shows its grid heatmap, learning curves and per-class table. At the end it
# trains a Flax model you write yourself in a grid of its own.
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
# Install jaxmnist: from this checkout when the notebook runs inside the repository, else
# (Colab) from the repository URL. Skipped when this kernel already imports the checkout.
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
if checkout is not None and installed == checkout:
    print(f"jaxmnist from this checkout: {checkout}")
else:
    target = ["-e", str(checkout)] if checkout is not None else [f"git+{REPO_URL}"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *target], check=True)
    print("installed jaxmnist from", target[-1])
if checkout is not None:
    os.chdir(checkout)  # run directories go to the checkout's runs/

# %%
import jax

print("JAX", jax.__version__, "| backend:", jax.default_backend())
for device in jax.devices():
    print(" ", device.platform, device.device_kind, device)

# %% [markdown]
# ## The S2 grid
#
# One call trains the grid and writes a run directory (config, metrics, checkpoints, results,
# TensorBoard events, tables and figures). The progress bar shows epochs, images/s and the best
# validation accuracy so far. Running the cell again resumes the same run.

# %%
from jaxmnist import sweep

SIZE = os.environ.get("JAXMNIST_NOTEBOOK_SIZE") or (
    "full" if jax.default_backend() in ("gpu", "tpu") else "cpu")
study = "s2"  # the studies ship with jaxmnist: `python -m jaxmnist.sweep --list` lists them
args = {
    "full": [],
    "cpu": ["--preset", "quick"],
    # CI: SqueezeNet's compile alone takes minutes on a CPU, so the 12 grid members are MLPs.
    "tiny": ["--synthetic", "--seeds", "1", "--config.base.model.name=mlp",
             "--config.base.train.epochs=1",
             "--config.data.train_limit=512", "--config.data.val_limit=128",
             "--config.data.test_limit=256"],
}[SIZE]
RUNS = Path(os.environ.get("JAXMNIST_NOTEBOOK_RUNS", "runs"))  # where run directories go
run_dir = RUNS / f"s2-notebook-{SIZE}"
print(f"SIZE={SIZE}: python -m jaxmnist.sweep {study} {' '.join(args)} --workdir {run_dir}")
assert sweep.main([study, *args, "--workdir", str(run_dir)]) == 0

# %% [markdown]
# ## Results
#
# The figures and tables are files in the run directory (`python -m jaxmnist.report RUN`
# makes them again from the files alone). Collapsed members (one class predicted for every
# image) and diverged ones are labelled, as in the paper.

# %%
from IPython.display import Image, Markdown, display

figures = run_dir / "figures"
display(Image(str(figures / "grid_heatmap.png")))
display(Image(str(figures / "curves.png")))

# %%
display(Markdown((run_dir / "tables" / "summary.md").read_text()))
display(Markdown((run_dir / "tables" / "per_class.md").read_text()))

# %% [markdown]
# ## Watch it in TensorBoard
#
# Every member is a TensorBoard run of its own (`<run>/tensorboard/m<k>_<label>`), with
# its hyperparameters in the HParams tab. In Colab: `%load_ext tensorboard` then
# `%tensorboard --logdir runs`. On your machine: `pip install tensorboard` and
# `tensorboard --logdir runs/`.

# %%
print(sorted(p.name for p in (run_dir / "tensorboard").iterdir())[:4], "...")

# %% [markdown]
# ## Your own Flax model in a grid
#
# Any `flax.linen` module (or Flax NNX module, or a plain `(init, apply)` pair) trains through
# the same engine. Register a factory under a name, then name it in a study: here a small CNN
# over three learning rates and two seeds, six models in one program.

# %%
import flax.linen as nn

from jaxmnist import models


class SmallCNN(nn.Module):
    """Two 3x3 convolutions with max-pooling, then a dense layer."""

    width: int = 16

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.max_pool(nn.relu(nn.Conv(self.width, (3, 3))(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(2 * self.width, (3, 3))(x)), (2, 2), (2, 2))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


models.register("small_cnn")(lambda width=16: SmallCNN(width=width))

STUDY = """
import ml_collections
from jaxmnist.config import nested


def get_config():
    c = ml_collections.ConfigDict()
    c.study = "own_model"
    c.title = "A user-defined Flax CNN: Adam x 3 learning rates x 2 seeds"
    c.data = dict(split="holdout", val_size=1000, seed=0, train_limit=TRAIN, val_limit=None,
                  test_limit=2000, source=SOURCE, val_fraction=None, test_fraction=None)
    c.base = dict(model=dict(name="small_cnn", width=8),
                  optim=dict(name="adam", learning_rate=0.001, momentum=0.9),
                  reg=dict(l1=0.0, l2=0.0), loss="xent", train=dict(epochs=EPOCHS, batch_size=64))
    c.grid = nested({"optim.learning_rate": [0.01, 0.003, 0.001]})
    c.experiments = []
    c.seeds = 2
    c.baseline = ""
    return c
"""
train_n, epochs, source = {"full": (None, 5, "auto"), "cpu": (10_000, 1, "auto"),
                           "tiny": (512, 1, "synthetic")}[SIZE]
own_study = RUNS / "own_model_study.py"
own_study.parent.mkdir(parents=True, exist_ok=True)
own_study.write_text(STUDY.replace("TRAIN", repr(train_n)).replace("EPOCHS", str(epochs))
                     .replace("SOURCE", repr(source)))
own_dir = RUNS / f"own-model-{SIZE}"
assert sweep.main([str(own_study), "--workdir", str(own_dir)]) == 0
display(Markdown((own_dir / "tables" / "summary.md").read_text()))
display(Image(str(own_dir / "figures" / "curves.png")))
