"""S1 — CNN with dropout (seed 001, Universitas Darussalam Gontor).

Command::

    python -m jaxmnist.sweep sweeps/s1.py            # full: 10 epochs, 48k/12k/10k, 3 seeds
    python -m jaxmnist.sweep sweeps/s1.py --quick    # smoke-sized: 3 epochs on 6,000 images

Reproduces: S0's CNN with Dropout(0.25) after the second pooling and Dropout(0.5) after
Dense(128) (225,034 params), Adam lr 1e-3, categorical cross-entropy on one-hot labels, batch 64,
10 epochs, Keras ``validation_split=0.2`` (the LAST 12,000 training images, unshuffled).
Published per-epoch log for epochs 1-6 (train acc/loss, val acc/loss); e6 val acc 0.9907.

Expected accuracy and runtime per device (GPU: not measured yet):
- CPU (2 shared vCPUs), full study, 3 seeds, commit 7bdb1e0, 2026-11-30: test acc
  0.9924 +- 0.0005, val acc at epoch 6 0.9905 +- 0.0013 (paper 0.9907), at epoch 10
  0.9919 +- 0.0005. Wall 37 min 4 s (2,207 s training, compile 32 s; 837 s CPU) at load
  average 15-19 (other work): epochs took 138-258 s; figures/s1/history.md has every epoch.
- CPU, --quick: test acc 0.9637 +- 0.0008, val acc 0.9523 +- 0.0008 at epoch 3 (3 seeds);
  70 s training, 75 s with the report (load ~7).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "s1"
    c.title = "S1: CNN with dropout (Adam 1e-3, batch 64, 10 epochs, keras split 0.2)"
    c.data = dict(split="keras", val_fraction=0.2, seed=0)
    c.base = dict(
        model=dict(name="cnn", dropout=[0.25, 0.5]),
        optim=dict(name="adam", learning_rate=1e-3),
        loss="xent_onehot",
        train=dict(epochs=10, batch_size=64),
    )
    c.seeds = 3
    # quick: a smoke-sized run (first 6,000 training and 2,000 validation images, 3 epochs).
    c.presets = dict(
        quick=dict(data=dict(train_limit=6000, val_limit=2000), base=dict(train=dict(epochs=3)))
    )
    return c
