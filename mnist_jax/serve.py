"""A live draw-a-digit page for trained runs: draw on a canvas, watch every model's probabilities.

  python -m mnist_jax.serve --workdirs=runs/compare/mlp,runs/compare/cnn
  # then open http://127.0.0.1:8000/ in a browser

Each --workdirs entry is a run directory written by `python -m mnist_jax.main`; its best
checkpoint is loaded through mnist_jax.api.load_run. The page (one self-contained HTML file, no
network access needed) sends the drawing to POST /predict while you draw; the server brings it
to MNIST's form (mnist_jax.data.images.to_mnist: grayscale, polarity, 20x20 box, centre of mass)
and answers with each model's 10 probabilities and the 28x28 image the models saw. The request
format is documented in mnist_jax/serving/server.py. The server listens on 127.0.0.1 only,
unless --host says otherwise (e.g. --host=0.0.0.0 to reach it from other machines).
"""

from absl import app, flags, logging

from mnist_jax.core import cli, platform
from mnist_jax.core.errors import UserError
from mnist_jax.serving import server as server_lib

_WORKDIRS = flags.DEFINE_list(
    "workdirs", None, "Comma-separated run directories (from python -m mnist_jax.main) to serve."
)
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: all).")
_PORT = flags.DEFINE_integer("port", 8000, "Port to listen on (0: any free port).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    with platform.user_errors_exit():
        if not _WORKDIRS.value:
            raise UserError("--workdirs is required, e.g. --workdirs=runs/compare/mlp")
        platform.initialize()
        from mnist_jax import api  # lazily: loading models needs JAX, --help does not

        models = [api.load_run(workdir) for workdir in _WORKDIRS.value]
        server = server_lib.make_server(
            server_lib.ModelsPredictor(models), _HOST.value, _PORT.value
        )
        names = ", ".join(server.predictor.names)
        logging.info("Serving %s at %s", names, server.url)
        print(f"Serving {names} at {server.url} (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


if __name__ == "__main__":
    cli.run(main)
