"""Studies: grids over config keys and seeds (study.py), their runner (runner.py) and report."""
