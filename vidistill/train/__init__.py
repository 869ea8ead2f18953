"""Training: the loop, schedules, distributed set-up, checkpoints, logging."""


def train(cfg):
    """Train (or resume) a run; see :func:`vidistill.train.trainer.train`."""
    from vidistill.train.trainer import train as _train

    return _train(cfg)


__all__ = ["train"]
