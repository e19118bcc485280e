"""The training harness on toy tasks and the experiments run with it: the positional-encoding sweep and
the train CLI (`python -m experiments.train`). Imports model/; model/ never imports it."""
