"""S0 — CNN with backpropagation (seed 000, IPB University).

Command::

    python -m jaxmnist.sweep sweeps/s0.py            # full: 10 epochs, 60k/10k, 3 seeds
    python -m jaxmnist.sweep sweeps/s0.py --quick    # smoke-sized: 3 epochs on 6,000 images

Reproduces: conv32-pool-conv64-pool-dense128-softmax (225,034 params), Adam lr 1e-3 (Keras
default), sparse categorical cross-entropy, batch 32 (Keras default), 10 epochs, MNIST 60k
train / 10k test, no validation split. Published: test accuracy 0.9909, test loss 0.0371.

Expected accuracy and runtime per device (GPU: not measured yet; scripts/accelerator_run.sh
measures S0's time to 99 %):
- CPU (2 shared vCPUs), full study, 3 seeds, commit 7bdb1e0, 2026-11-30: test acc
  0.9905 +- 0.0020 (seeds 0.9890 / 0.9897 / 0.9928), test loss 0.0419 +- 0.0096. Wall 20 min
  21 s (1,205 s training, compile 3 s; 722 s CPU) while the load average rose from 2 to 17
  (other work): epochs 1-3 took 33-37 s each at load ~3 (all 3 seeds at once), the last
  210 s, so ~6 min for the study on a quiet machine.
- CPU, --quick: test acc 0.9655 +- 0.0032 (3 seeds); 61 s training, 69 s with the report
  (load ~7).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.study = "s0"
    c.title = "S0: CNN with backpropagation (Adam 1e-3, batch 32, 10 epochs, 60k/10k)"
    c.data = dict(split="none", seed=0)
    c.base = dict(
        model=dict(name="cnn", dropout=0.0),
        optim=dict(name="adam", learning_rate=1e-3),
        train=dict(epochs=10, batch_size=32),
    )
    c.seeds = 3
    # quick: a smoke-sized run: 10% of the training images, 3 epochs; the full 10k test set.
    c.presets = dict(quick=dict(data=dict(train_limit=6000), base=dict(train=dict(epochs=3))))
    return c
