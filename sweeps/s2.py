"""S2 — SqueezeNet optimizer x learning-rate grid (seed 002, Universitas Medan Area).

Command::

    python -m jaxmnist.sweep sweeps/s2.py            # full: 12 models x 3 seeds, 30 epochs
    python -m jaxmnist.sweep sweeps/s2.py --preset cpu  # CPU-sized: full data, 2 epochs, 1 seed
    python -m jaxmnist.sweep sweeps/s2.py --quick    # smoke-sized: 4 epochs on 10,000 images

Reproduces: SqueezeNet adapted to 28x28x1 (see jaxmnist/models/squeezenet.py: stride-1 3x3
stem, v1.1 fire layout, 726,474 params), optimizer {Adam, RMSprop, SGD} x learning rate
{0.1, 0.01, 0.001, 0.0001} = 12 models trained as ONE vmapped group, batch 64, 30 epochs,
random 50,000 train / 10,000 validation holdout (the paper says "10%" and "50,000/10,000";
we use 50k/10k), official 10k test. Published test accuracy: Adam 1e-4 99.11% (best); many
cells collapsed to one class (11.35% = all '1', 10.28% = all '7', 10.09% = all '9'); the
report labels each member ok / collapsed / diverged.

Expected accuracy and runtime per device:
- CPU (2 vCPU), --quick (24 members, 4 epochs on 10,000 images): ~9.5 min of training at
  ~2,150 img/s aggregate (2026-11-21, load 4-8); Adam 1e-4 reaches 74.9 +- 2.8% test accuracy
  on the 2,000-image test slice, the high learning rates collapse or diverge as in the paper.
- CPU, --preset cpu (full data, 2 epochs, 1 seed): epoch 1 of the 12-member group took 11.8 min
  (918 training images/s, 2-core Intel Xeon, 2026-11-30, quiet machine); the measured wall time
  of the whole preset is in figures/README.md.
- CPU, full, 1 seed: finished 2026-12-02 over four sessions; 358-437 s per epoch with 10 of
  12 members training (2-core Intel Xeon, quiet), ~3.2 h for 30 epochs (figures/README.md).
- GPU: not measured yet; `bash scripts/accelerator_run.sh` runs this study in full (1 seed).
"""

import ml_collections

from jaxmnist.config import nested


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "s2"
    c.title = "S2: SqueezeNet, optimizer x learning rate (batch 64, 30 epochs, 50k/10k holdout)"
    c.data = dict(split="holdout", val_size=10_000, seed=0)
    c.base = dict(
        model=dict(name="squeezenet"),
        optim=dict(name="adam", learning_rate=1e-4),
        train=dict(epochs=30, batch_size=64),
    )
    c.grid = nested({
        "optim.name": ["adam", "rmsprop", "sgd"],
        "optim.learning_rate": [0.1, 0.01, 0.001, 0.0001],
    })
    c.seeds = 3
    # quick: a smoke-sized run (10,000 train / 1,000 val / 2,000 test images, 4 epochs, 2 seeds).
    # SqueezeNet with its ReLU'd conv10 starts out predicting one class and needs a few hundred
    # Adam steps at 1e-4 to leave that state: 1,000 images x 2 epochs (32 steps) left every cell
    # collapsed, so it is sized for ~625 steps per member.
    # cpu: the full data (50k/10k holdout, full 10k test set), 1 seed, 2 of the 30 epochs: the
    # 12-member group trained at 918 images/s (11.8 min per epoch, validation included) on the
    # 2-core Intel Xeon of 2026-11-30, so 2 epochs fit the 30-minute budget of a CPU preset;
    # epoch 1 already shows which cells collapse or diverge (figures/README.md).
    c.presets = dict(
        quick=dict(
            data=dict(train_limit=10_000, val_limit=1_000, test_limit=2_000),
            base=dict(train=dict(epochs=4)),
            seeds=2,
        ),
        cpu=dict(base=dict(train=dict(epochs=2)), seeds=1),
    )
    return c
