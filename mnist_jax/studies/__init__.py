"""Studies: grids over config keys and seeds (study.py), hyperparameter searches with successive
halving (search.py), their runner (runner.py) and reports (report.py, search_report.py)."""
