"""``atrous serve``: the request handler, the Gradio API (gradio_client) and the page in a real
headless browser (Debian's chromium through Selenium), all on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")

from atrous.errors import AtrousError  # noqa: E402
from atrous.serve import EXAMPLES, build_app, check_upload, load_predictor, segment  # noqa: E402


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path):
    return load_predictor(str(tiny_checkpoint))


def test_segment_gives_overlay_legend_table_and_png(predictor):
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    overlay, legend, rows, png, notice = segment(predictor, image, "1.0", False, False)
    assert overlay.shape == (50, 70, 3) and notice == ""
    assert sum(r[1] for r in rows) == 50 * 70 and "<span" in legend
    with Image.open(png) as labels:
        assert labels.size == (70, 50) and labels.mode == "P"
    big = np.zeros((1500, 600, 3), np.uint8)
    overlay, *_, notice = segment(predictor, big, "0.75, 1.0, 1.25", True, False)
    assert overlay.shape == (1024, 410, 3) and "resized to 410x1024" in notice
    with pytest.raises(ValueError, match="upload an image"):
        segment(predictor, None, "1.0", False, False)
    with pytest.raises(ValueError, match="not an RGB image"):
        segment(predictor, np.zeros((4, 4, 7), np.uint8), "1.0", False, False)


def test_missing_or_foreign_files_are_one_clear_error(tmp_path: Path):
    with pytest.raises(AtrousError, match="no such checkpoint"):
        load_predictor(str(tmp_path / "none.pt"))
    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(b"not a checkpoint")
    with pytest.raises(AtrousError, match="foreign.pt is a text file, not a model"):
        load_predictor(str(foreign))
    unknown = tmp_path / "unknown.pt"
    unknown.write_bytes(bytes(range(7, 64)))  # no format's signature: the checkpoint reader's say
    with pytest.raises(AtrousError, match="not a readable checkpoint"):
        load_predictor(str(unknown))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx at all")
    with pytest.raises(AtrousError, match="not a readable ONNX file"):
        load_predictor(str(corrupt))
    with pytest.raises(AtrousError, match="no such checkpoint"):
        load_predictor(str(tmp_path))  # a folder


def test_an_argmax_only_onnx_is_one_clear_error(tiny_checkpoint: Path, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from atrous.export import export_onnx
    from atrous.loader import load_model

    model, state = load_model(tiny_checkpoint)
    meta = {key: state[key] for key in ("classes", "palette", "mean", "std", "model_spec")}
    out = export_onnx(model, tmp_path / "labels.onnx", height=48, width=48, with_argmax=True,
                      metadata=meta)  # fmt: skip
    with pytest.raises(AtrousError, match="needs logits"):
        load_predictor(str(out))


def test_bad_uploads_get_a_clear_message(tmp_path: Path, monkeypatch):
    import atrous.serve

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="the upload is empty"):
        check_upload(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not an image"):
        check_upload(text)
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    check_upload(big)
    monkeypatch.setattr(atrous.serve, "MAX_UPLOAD_PIXELS", 50_000)
    with pytest.raises(ValueError, match=r"300x200 .* downscale it"):
        check_upload(big)
    assert len(list(EXAMPLES.glob("*.jpg"))) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(predictor):
    app = build_app(predictor)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_api_with_gradio_client(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    example = sorted(EXAMPLES.glob("*.jpg"))[0]
    overlay, legend, table, png, notice = client.predict(
        handle_file(str(example)), "1.0", False, False, api_name="/segment"
    )
    with Image.open(overlay) as image, Image.open(example) as source:
        assert image.size == source.size
    assert Path(png).is_file() and "span" in legend


def test_a_bad_upload_through_the_api_is_a_clear_error(server, tmp_path: Path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(text)), "1.0", False, False, api_name="/segment")
    import atrous.serve

    assert not Path(atrous.serve.__file__).with_suffix(".pyi").exists()  # no stub left behind


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def test_the_page_in_a_real_browser(server, tmp_path: Path):
    from selenium.webdriver.common.by import By

    driver = _browser()
    try:
        driver.get(server)
        deadline = time.time() + 60
        while not driver.find_elements(By.CSS_SELECTOR, "#input-image input[type=file]"):
            assert time.time() < deadline, "the page did not load"
            time.sleep(0.5)
        example = sorted(EXAMPLES.glob("*.jpg"))[1]
        driver.find_element(By.CSS_SELECTOR, "#input-image input[type=file]").send_keys(
            str(example)
        )
        time.sleep(1.0)
        driver.find_element(By.CSS_SELECTOR, "#segment").click()
        deadline = time.time() + 90
        while not driver.find_elements(By.CSS_SELECTOR, "#overlay img"):
            assert time.time() < deadline, "no overlay appeared"
            time.sleep(0.5)
        time.sleep(1.0)
        shot = tmp_path / "page.png"
        driver.save_screenshot(str(shot))
        image = driver.find_element(By.CSS_SELECTOR, "#overlay img")
        natural = driver.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", image
        )
        with Image.open(example) as source:
            assert natural == [source.width, source.height]
        pixels = np.asarray(Image.open(shot).convert("L"))
        assert pixels.std() > 5  # the page is not blank
        legend = driver.find_element(By.CSS_SELECTOR, "#legend").text
        assert legend.strip()  # the classes present are named
    finally:
        driver.quit()
