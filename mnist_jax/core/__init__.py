"""What every binary and library module shares: errors and value checks, config files, the
command-line conventions (one-line errors, help), process set-up, logging and provenance.

errors.py         the exception types a user's mistake raises (one line, exit status 1), and
                  full or read-only disks as one of them
checks.py         value checks that name the bad value and the valid ones
configuration.py  config and study files, and the shipped ones by name
cli.py            absl flags with one-line errors, help, exit statuses
lifeline.py       a launcher's children die with it
platform.py       process set-up: jax.distributed, the compilation cache, signals
logs.py           absl logging to stderr, progress heartbeats
provenance.py     what produced a result: versions, devices, CPU kind, git commit
"""
