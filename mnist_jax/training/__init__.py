"""Training: the trainer builder, the per-device steps, how they run on devices, and the loop.

trainer.py    config -> model, optimizer, train state and compiled programs (one builder)
steps.py      the per-device train and eval programs (one each, named batch axis)
parallel.py   devices; a per-device function as a pmap or jit(shard_map) program
evaluator.py  a whole split on all devices, last batch padded and masked
train.py      the loop: train_and_evaluate(config, workdir)
optim.py      Optax optimizers and schedules named in the config
checkpoint.py verified Orbax checkpoints; rundir.py the run directory's files and lock
guards.py     stop signals (preemption) and the divergence check; progress.py progress lines
"""
