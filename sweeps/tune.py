"""tune — which optimizer is better for S0's CNN, by how much, and how sure: the tuning protocol.

Command::

    python -m jaxmnist.sweep tune --preset cpu    # reduced: 8,000 images, 9 epochs (~15 min CPU)
    python -m jaxmnist.sweep tune                 # full: 50k / 10k holdout, 10 epochs (~1.5 h CPU)
    python -m jaxmnist.sweep tune --preset cpu --config.final_seeds=0   # phase 1 alone

Phase 1 (issue 30's tuning study): S0's CNN (conv32-pool-conv64-pool-dense128, batch 32) with
Adam, SGD momentum 0.9, RMSprop and Lion, 16 learning rates each drawn log-uniformly from
[1e-5, 1] (scrambled Halton, search_seed 0: the same positions for every optimizer, the same
budget), 64 members in one program, chosen on a holdout validation split, with successive
halving (eta 3 at epochs 1 and 3: 16 -> 6 -> 2 points per optimizer, about 28% of the full
grid's member-epochs). Phase 2 re-runs each optimizer's setting chosen on validation over 10
fresh seeds as one program; phase 3 reports their test accuracy with 95% intervals, the pairwise
probability of improvement and each optimizer's tuning cost (docs/statistics.md).

Optimizers' other hyperparameters: the registry's defaults (Adam's and RMSprop's Keras epsilon
1e-7, Lion's b2 0.99 and weight decay 1e-3). Measured runs: figures/README.md.
"""

import ml_collections

OPTIMIZERS = ("adam", "momentum", "rmsprop", "lion")


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "tune"
    c.title = ("tune: S0's CNN, Adam vs SGD momentum vs RMSprop vs Lion, 16 learning rates each, "
               "successive halving, then 10 fresh seeds")
    c.data = dict(split="holdout", val_size=10000, seed=0)
    c.base = dict(
        model=dict(name="cnn", dropout=0.0),
        optim=dict(name="adam", learning_rate=1e-3),
        train=dict(epochs=10, batch_size=32),
    )
    c.search = {name: dict(optim=dict(learning_rate=("log", 1e-5, 1.0))) for name in OPTIMIZERS}
    c.prune = dict(eta=3, rungs=[1, 3], metric="val_acc", within="family")
    c.seeds = 1
    c.final_seeds = 10
    c.presets = dict(
        # 8,000 training images, 2,000 for validation, 2,000 test images, 9 epochs.
        cpu=dict(data=dict(val_size=2000, train_limit=8000, test_limit=2000),
                 base=dict(train=dict(epochs=9))),
        quick=dict(data=dict(val_size=500, train_limit=1000, test_limit=500), samples=4,
                   final_seeds=5, base=dict(train=dict(epochs=3))),
    )
    return c
