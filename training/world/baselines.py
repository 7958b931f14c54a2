"""``python -m training.world.baselines``: the former name of ``python -m training.world.template_priors``, kept
for the commands written with it."""

from training.world.template_priors import main

if __name__ == "__main__":
    main()
