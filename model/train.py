"""The old name of `python -m experiments.train`: it keeps working, with one deprecation line."""

from infra.cli import run_renamed_module

if __name__ == "__main__":
    run_renamed_module("model.train", "experiments.train")
