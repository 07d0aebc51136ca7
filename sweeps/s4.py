"""S4 — CNN depth study (seed 004, Politeknik Negeri Sriwijaya).

Command::

    python -m jaxmnist.sweep sweeps/s4.py            # full: L1-L4, 40 epochs, 3 seeds
    python -m jaxmnist.sweep sweeps/s4.py --preset cpu  # CPU-sized: full data, 3 epochs, 1 seed
    python -m jaxmnist.sweep sweeps/s4.py --quick    # smoke-sized: 2 epochs on 1,000 images

Reproduces: L1 conv64 -> dense64; L2 conv64, conv128 -> dense128; L3 conv64, conv128, conv512 ->
dense512; L4 conv64, conv128, conv512, conv1024 -> dense512; 3x3 convs, ReLU, 2x2 max-pool,
dropout 0.25, softmax head, 40 epochs. The paper's Kaggle set (14,843 images at 150x150x3) is
not available: we use MNIST 28x28x1 with "same" padding (28 -> 14 -> 7 -> 3 -> 1 fits four
pools), a random 48,000 / 12,000 train / validation holdout of the official training set (the
paper split 80/20) and the official 10k test set. The paper states no optimizer or batch size:
we use Keras' defaults, Adam lr 1e-3 and batch 32. Published (train / val acc at epoch 40):
L1 .4941/.4312, L2 .6777/.6585, L3 .8903/.8843, L4 .9241/.9133; L4 precision = recall = F1 =
0.935. On MNIST every depth is expected to do far better than on the paper's photographs.

Expected accuracy and runtime per device. GPU: not measured yet.
- CPU (2 vCPUs), --preset cpu (full data, 3 epochs, 1 seed): measured wall time and accuracies
  in figures/README.md. (An earlier 5-epoch run at load 15-19: L1 val acc 0.9737 after epoch 1
  and 0.9841 after epoch 5, L2 0.9886 after epoch 4.)
- CPU, full (40 epochs, 1 seed): started 2026-11-30 at the lowest priority, hours.
- CPU, --quick: test acc L1 0.844, L2 0.889, L3 0.900, L4 0.862 (2 seeds); 236 s training,
  248 s with the report (load ~7).
"""

import ml_collections

from jaxmnist.config import nested


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "s4"
    c.title = "S4: CNN depth L1-L4 (Adam 1e-3, batch 32, 40 epochs, 48k/12k holdout)"
    c.data = dict(split="holdout", val_size=12_000, seed=0)
    c.base = dict(
        model=dict(name="cnn_depth", depth=4, dropout=0.25, padding="same"),
        optim=dict(name="adam", learning_rate=1e-3),
        train=dict(epochs=40, batch_size=32),
    )
    c.grid = nested({"model.depth": [1, 2, 3, 4]})
    c.seeds = 3
    # quick: a smoke-sized run (1,000 train / 500 val / 1,000 test images, 2 epochs, 2 seeds).
    # cpu: the full data (48k/12k holdout, full 10k test set), 1 seed, 3 of the 40 epochs, sized
    # for the 30-minute budget of a CPU preset on the 2-core machine (its measured wall time is
    # in figures/README.md).
    c.presets = dict(
        quick=dict(
            data=dict(train_limit=1000, val_limit=500, test_limit=1000),
            base=dict(train=dict(epochs=2)),
            seeds=2,
        ),
        cpu=dict(base=dict(train=dict(epochs=3)), seeds=1),
    )
    return c
