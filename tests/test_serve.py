"""The draw-a-digit server: in-process HTTP tests, a load test, and a real headless browser.

The models are two small real classifiers fitted on the MNIST training set with numpy
(tests/simple_models.py), served through the same ModelsPredictor the binary uses.
"""

import http.client
import json
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from simple_models import LeastSquares, NearestCentroid

from mnist_jax.data import images, load_mnist
from mnist_jax.serving import server as server_lib
from tests import loadtest
from tests.conftest import run_module

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def start_in_thread(server: server_lib.DigitServer) -> threading.Thread:
    """Serves in a daemon thread; stop with server.shutdown()."""
    thread = threading.Thread(target=server.serve_forever, name="digit-server", daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


@pytest.fixture(scope="module")
def models(mnist):
    train, _ = mnist
    return [
        NearestCentroid(train.images, train.labels),
        LeastSquares(train.images[:20000], train.labels[:20000]),
    ]


@pytest.fixture(scope="module")
def server(models):
    server = server_lib.make_server(server_lib.ModelsPredictor(models), "127.0.0.1", 0)
    thread = start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _request(server, method, path, body=b"", headers=None):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _post_json(server, payload) -> tuple[int, dict]:
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    status, _, data = _request(
        server, "POST", "/predict", body, {"Content-Type": "application/json"}
    )
    return status, json.loads(data)


def _raw(server, request: bytes) -> tuple[int, dict]:
    """Sends bytes as they are (for headers http.client would fix) and reads one response."""
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_page_is_one_self_contained_file(server):
    status, headers, page = _request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = page.decode()
    assert "http://" not in text and "https://" not in text
    assert " src=" not in text and "<link" not in text and "@import" not in text
    assert 'const MODEL_NAMES = ["centroid", "linear"];' in text
    for element in ('id="pad"', 'id="clear"', 'id="preview"', "pointermove", "/predict"):
        assert element in text
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, body = _request(server, "HEAD", "/")
    assert status == 200 and body == b""


def test_predict_real_digits_drawn_at_canvas_size(server, models, mnist):
    _, test = mnist
    centroid = models[0]
    chosen = np.flatnonzero(centroid.predict(test.images[:40]) == test.labels[:40])[:20]
    right = 0
    for index in chosen:
        body = loadtest.drawing_body(test.images[index])  # black on a white 280x280 canvas
        status, _, data = _request(
            server, "POST", "/predict", body, {"Content-Type": "application/json"}
        )
        assert status == 200
        result = json.loads(data)
        seen = np.array(result["image"], dtype=np.uint8)
        request = json.loads(body)
        drawing = np.array(request["pixels"], dtype=np.float64).reshape(280, 280)
        assert np.array_equal(seen, images.to_mnist(drawing / 255.0))  # the shared preprocessing
        assert [m["name"] for m in result["models"]] == ["centroid", "linear"]
        for model, reply in zip(models, result["models"], strict=True):
            expected = model.predict_proba(seen[None])[0]
            np.testing.assert_allclose(reply["probabilities"], expected, atol=1e-6)
            assert reply["top"] == int(np.argmax(reply["probabilities"]))
        right += result["models"][0]["top"] == test.labels[index]
        assert result["ms"] > 0
    assert right >= 18, right  # of 20 digits the centroid model gets right as 28x28 originals


def _body(width=28, height=28, pixels=None) -> dict:
    return {
        "width": width,
        "height": height,
        "pixels": [0] * (width * height) if pixels is None else pixels,
    }


MALFORMED_JSON = {
    "not JSON": b"{width: 28",
    "not UTF-8": b'{"width": "\xff\xfe"}',
    "a list": b"[1, 2, 3]",
    "missing pixels": b'{"width": 28, "height": 28}',
    "width zero": json.dumps(_body(width=0, pixels=[])).encode(),
    "width too large": json.dumps(_body(width=5000, pixels=[])).encode(),
    "width a string": json.dumps({"width": "28", "height": 28, "pixels": [0] * 784}).encode(),
    "width a float": json.dumps({"width": 28.0, "height": 28, "pixels": [0] * 784}).encode(),
    "width a bool": json.dumps({"width": True, "height": 28, "pixels": [0] * 784}).encode(),
    "too few pixels": json.dumps(_body(pixels=[0] * 783)).encode(),
    "pixels not a list": json.dumps(_body(pixels="0" * 784)).encode(),
    "nested pixels": json.dumps(_body(pixels=[[0] * 28] * 28)).encode(),
    "a string pixel": json.dumps(_body(pixels=["1"] + [0] * 783)).encode(),
    "a null pixel": json.dumps(_body(pixels=[None] + [0] * 783)).encode(),
    "a bool pixel": json.dumps(_body(pixels=[True] + [0] * 783)).encode(),
    "pixel above 255": json.dumps(_body(pixels=[256] + [0] * 783)).encode(),
    "negative pixel": json.dumps(_body(pixels=[-1] + [0] * 783)).encode(),
    "NaN pixel": b'{"width": 8, "height": 8, "pixels": [NaN' + b", 0" * 63 + b"]}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "a 4,000-digit pixel": b'{"width": 8, "height": 8, "pixels": ['
    + b"9" * 4000
    + b", 0" * 63
    + b"]}",
    "a 5,000-digit pixel": b'{"width": 8, "height": 8, "pixels": ['
    + b"9" * 5000
    + b", 0" * 63
    + b"]}",
    "1e400 pixel": b'{"width": 8, "height": 8, "pixels": [1e400' + b", 0" * 63 + b"]}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED_JSON))
def test_malformed_json_is_400_with_a_message(server, name):
    status, reply = _post_json(server, MALFORMED_JSON[name])
    assert status == 400, (name, reply)
    assert isinstance(reply["error"], str) and reply["error"], name


def test_http_level_errors(server):
    json_type = {"Content-Type": "application/json"}
    body = json.dumps(_body()).encode()
    cases = [
        (404, "GET", "/nowhere", b"", {}),
        (404, "POST", "/nowhere", body, json_type),
        (405, "GET", "/predict", b"", {}),
        (405, "POST", "/", body, json_type),
        (405, "PUT", "/predict", body, json_type),
        (405, "DELETE", "/", b"", {}),
        (415, "POST", "/predict", body, {"Content-Type": "text/plain"}),
        (415, "POST", "/predict", body, {}),
    ]
    for expected, method, path, data, headers in cases:
        status, response_headers, reply = _request(server, method, path, data, headers)
        assert status == expected, (method, path, status)
        assert json.loads(reply)["error"], (method, path)
        if expected == 405:
            assert response_headers["Allow"] in ("GET, HEAD", "POST")
    no_length = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
    assert _raw(server, no_length)[0] == 411
    # The server refuses from the header alone: the 3 MB body is never sent.
    too_large = no_length[:-2] + b"Content-Length: 6000000\r\n\r\n"
    status, reply = _raw(server, too_large)
    assert status == 413 and str(server_lib.MAX_BODY) in reply["error"]
    for length in ("-5", "\u00b2", "\u0663"):  # '²' and an Arabic-Indic 3 pass str.isdigit()
        bad_length = no_length[:-2] + f"Content-Length: {length}\r\n\r\n".encode()
        assert _raw(server, bad_length)[0] == 400, length
    # A body cut short (the client stops sending) answers 400 and frees the thread.
    short = no_length[:-2] + b'Content-Length: 100\r\n\r\n{"width": 8'
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(short)
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 400
    assert _request(server, "GET", "/health")[0] == 200


def test_stalled_body_times_out_with_408(server, monkeypatch):
    monkeypatch.setattr(server_lib, "BODY_SECONDS", 0.5)  # for the whole body
    request = (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"width": 8'
    )
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(request)  # and then nothing more, connection left open
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408 and "did not arrive" in json.loads(response.read())["error"]


def test_a_trickled_body_meets_a_deadline_for_the_whole_body(server, monkeypatch):
    """A byte every 0.2 s: each read arrives in time, the body does not (it used to be read
    for as long as the client kept it trickling)."""
    monkeypatch.setattr(server_lib, "BODY_SECONDS", 1.0)
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n")  # fmt: skip
    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.2)
        status = None
        for _ in range(50):
            try:
                sock.sendall(b" ")
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            status = int(data.split()[1])
            break
    assert status == 408


def test_the_largest_drawing_fits_and_many_clients_are_all_answered(server, mnist):
    """A 1024x1024 drawing of 3-digit values (5 MB of JSON) is read, not refused with 413;
    40 clients at once each get an answer (at most MAX_ACTIVE are served together, the listen
    queue holds the rest), none a reset connection."""
    side = server_lib.MAX_SIDE
    status, reply = _post_json(server, _body(width=side, height=side, pixels=[255] * side**2))
    assert status == 422 and reply["empty"]  # all white: read in full, and no digit in it
    _, test = mnist
    body = loadtest.drawing_body(test.images[0])
    statuses, errors = [], []

    def post() -> None:
        try:
            connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            statuses.append(connection.getresponse().status)
            connection.close()
        except OSError as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=post) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and statuses == [200] * 40, (errors, statuses)


def test_a_client_that_leaves_early_is_no_error(server, caplog):
    request = json.dumps(_body(width=280, height=280, pixels=[0] * 280 * 280)).encode()
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(request))  # fmt: skip
    for _ in range(3):
        with socket.create_connection(server.server_address[:2], timeout=30) as sock:
            sock.sendall(head + request[: len(request) // 2])  # half a body, then gone
    assert _request(server, "GET", "/health")[0] == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_empty_drawing_says_draw_a_digit(server):
    status, reply = _post_json(server, _body(width=280, height=280, pixels=[255] * 280 * 280))
    assert status == 422 and reply["empty"] is True
    assert reply["error"].startswith("draw a digit")


def test_keep_alive_connection_survives_bad_requests(server, mnist):
    _, test = mnist
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    good = loadtest.drawing_body(test.images[0], size=56)
    for body, expected in ((good, 200), (b"{oops", 400), (good, 200), (b"[]", 400), (good, 200)):
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == expected
        json.loads(response.read())
    connection.close()


def test_server_helpers_reject_bad_setup(models, server):
    with pytest.raises(server_lib.UserError, match="share the name"):
        server_lib.ModelsPredictor([models[0], models[0]])
    predictor = server_lib.ModelsPredictor(models)
    with pytest.raises(server_lib.UserError, match="port"):
        server_lib.make_server(predictor, "127.0.0.1", 70000)
    busy = server.server_address[1]
    with pytest.raises(server_lib.UserError, match=f"cannot listen on 127.0.0.1:{busy}"):
        server_lib.make_server(predictor, "127.0.0.1", busy)


def test_binary_help_and_missing_workdirs():
    result = run_module("mnist_jax.serve", "--help", timeout=120)
    assert result.returncode == 0 and "--workdirs" in result.stdout and "--port" in result.stdout
    result = run_module("mnist_jax.serve", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --workdirs is required")


@pytest.mark.slow
def test_load(server, mnist):
    _, test = mnist
    body = loadtest.drawing_body(test.images[0])
    host, port = server.server_address[:2]
    result = loadtest.run_load_test(host, port, body, requests=200, threads=4)
    print(f"\nload test: {result}")
    assert result.errors == 0 and result.requests_per_s > 0
    assert result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]


# --- A real browser -------------------------------------------------------------------------

SCALE = 10  # canvas pixels per MNIST pixel (the canvas is 280x280)
PEN = 12  # canvas pixels; a little over SCALE so neighbouring rows of strokes overlap


def _strokes(digit: np.ndarray) -> list[list[tuple[float, float]]]:
    """The digit's ink as pen strokes on the canvas: one horizontal stroke per run of ink
    pixels (>= 128) in each row, through the pixel centres, split into 20 px steps so the page
    gets pointermove events along the way."""
    strokes = []
    for row, line in enumerate(digit >= 128):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            y = (row + 0.5) * SCALE
            x0, x1 = (start + 0.5) * SCALE, (stop - 0.5) * SCALE
            steps = max(1, int(np.ceil((x1 - x0) / 20)))
            strokes.append([(x0 + (x1 - x0) * k / steps, y) for k in range(steps + 1)])
    return strokes


def _render(strokes) -> np.ndarray:
    """What the page's canvas shows after `strokes` (black, round caps, on white)."""
    canvas = Image.new("L", (28 * SCALE, 28 * SCALE), 255)
    draw = ImageDraw.Draw(canvas)
    r = PEN / 2
    for stroke in strokes:
        draw.line(stroke, fill=0, width=PEN)
        for x, y in (stroke[0], stroke[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    return np.asarray(canvas)


def _pick_digits(test, models, labels=(0, 1, 7)) -> list[int]:
    """The first test digit of each label that both models get right once drawn as strokes."""
    chosen = []
    for label in labels:
        for index in np.flatnonzero(test.labels == label)[:50]:
            seen = images.to_mnist(_render(_strokes(test.images[index])))[None]
            if all(m.predict_proba(seen)[0].argmax() == label for m in models):
                chosen.append(int(index))
                break
    assert len(chosen) == len(labels)
    return chosen


@pytest.fixture
def browser(tmp_path, monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "needs Debian's Chromium and its driver: "
            "`apt-get install -y chromium chromium-driver` (as root)"
        )
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,800",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.mark.slow
def test_drawing_in_a_real_browser(server, models, mnist, browser):
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, test = mnist
    browser.get(server.url)
    pad = browser.find_element(By.ID, "pad")
    browser.execute_script(f"document.getElementById('pen').value = {PEN};")
    left, top = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left + 1, r.top + 1];", pad
    )  # +1: the canvas' border
    # Count the page's requests: never two in flight, and at most one per THROTTLE_MS.
    browser.execute_script(
        """
        window.requests = {starts: [], inFlight: 0, maxInFlight: 0};
        const original = window.fetch;
        window.fetch = async (...args) => {
          const r = window.requests;
          r.starts.push(performance.now());
          r.maxInFlight = Math.max(r.maxInFlight, ++r.inFlight);
          try { return await original(...args); } finally { r.inFlight--; }
        };
        """
    )
    moves = 0
    kinds = (interaction.POINTER_MOUSE, interaction.POINTER_PEN, interaction.POINTER_TOUCH)
    for index, kind in zip(_pick_digits(test, models), kinds, strict=True):
        browser.find_element(By.ID, "clear").click()
        actions = ActionBuilder(browser, mouse=PointerInput(kind, kind), duration=5)
        for stroke in _strokes(test.images[index]):
            x, y = stroke[0]
            actions.pointer_action.move_to_location(round(left + x), round(top + y))
            actions.pointer_action.pointer_down()
            for x, y in stroke[1:]:
                actions.pointer_action.move_to_location(round(left + x), round(top + y))
                moves += 1
            actions.pointer_action.pointer_up()
        actions.perform()
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script(
                "const d = document.body.dataset; return d.shown === d.drawn;"
            )
        )
        label = int(test.labels[index])
        for m, model in enumerate(models):
            shown = browser.find_element(By.ID, f"top-{m}")
            assert shown.get_attribute("data-model") == model.name
            assert shown.get_attribute("data-digit") == str(label), (model.name, index)
            assert float(shown.get_attribute("data-prob")) > 0.1
        # The preview shows exactly what the server made of the canvas the page sent.
        canvas, preview = browser.execute_script(
            """
            const read = (id) => {
              const c = document.getElementById(id);
              return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data);
            };
            return [read('pad'), read('preview')];
            """
        )
        rgba = np.array(canvas, dtype=np.float64).reshape(280, 280, 4)
        expected = images.to_mnist(np.rint(rgba[..., :3] @ images.LUMA) / 255.0)
        preview = np.array(preview, dtype=np.uint8).reshape(28, 28, 4)[..., 0]
        assert preview.sum() > 0 and np.array_equal(preview, expected)
    requests = browser.execute_script("return window.requests;")
    gaps = np.diff(requests["starts"])
    print(f"\n{len(gaps) + 1} requests for {moves} pointer moves, gaps >= {gaps.min():.0f} ms")
    assert requests["maxInFlight"] == 1 and 3 <= len(requests["starts"]) < moves
    assert gaps.min() >= 75, gaps.min()  # THROTTLE_MS = 80, less timer rounding
    if os.environ.get("MNIST_JAX_SCREENSHOT"):
        browser.find_element(By.TAG_NAME, "main").screenshot(os.environ["MNIST_JAX_SCREENSHOT"])
    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "top-0").get_attribute("data-digit") == ""
