"""The shipped studies, installed as the `mnist_jax.experiments` package, so that
`--study=NAME[:variant]` finds them from any directory."""
