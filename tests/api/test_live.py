"""The live camera page's server side: /v1/cascades and the /v1/live WebSocket, over real sockets, with the
quick demo's real exported ONNX models, and the pages' offline guarantee."""

from __future__ import annotations

import http.client
import json
import re
import uuid
from typing import Any

import cv2
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from visioncascade.demo.scenes import scene


def jpeg(shape: str | None, colour: str | None, seed: int = 0) -> bytes:
    rgb = scene(np.random.default_rng(seed), 160, shape, colour)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


@pytest.fixture
def live_server(quick_demo, sqlite_url: str, server_factory):
    result, _ = quick_demo
    return server_factory(
        sqlite_url,
        cascade_paths=[result.out_dir / "cascade.yaml"],
        rules_path=result.out_dir / "rules.yaml",
        auth_enabled=True,
    )


def ws_url(server) -> str:
    return server.base_url.replace("http://", "ws://") + "/v1/live"


def start(ws, key: str | None, **fields: Any) -> dict[str, Any]:
    message = {
        "type": "start",
        "key": key,
        "cascade": "demo",
        "context": "shapes",
        "device_id": "test-browser",
        "session_id": str(uuid.uuid4()),
        **fields,
    }
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=30))


def test_cascades_are_listed_for_ingest_keys_only(live_server):
    with live_server.client(live_server.key("ingest")) as client:
        (cascade,) = client.get("/v1/cascades").json()
    assert cascade["name"] == "demo" and cascade["contexts"] == ["shapes", "colours"]
    assert cascade["domain"]["labels"] == ["empty", "object"] and cascade["domain"]["threshold"] == 0.5
    assert cascade["specialists"]["shapes"]["labels"] == ["circle", "square", "triangle"]
    assert cascade["specialists"]["colours"]["model"] == "colour" and cascade["min_interval_s"] == 0.5
    with live_server.client() as client:
        assert client.get("/v1/cascades").status_code == 401
    with live_server.client(live_server.key("read")) as client:
        assert client.get("/v1/cascades").status_code == 403


def test_frames_run_the_cascade_and_events_are_stored_with_rule_outputs(live_server):
    with connect(ws_url(live_server)) as ws:
        ready = start(ws, live_server.key("ingest"))
        assert ready["type"] == "ready" and ready["context"] == "shapes"
        assert ready["cascade"]["name"] == "demo"

        ws.send(jpeg(None, None, seed=1))
        empty = json.loads(ws.recv(timeout=30))
        assert empty["decision"] == "filtered" and empty["stages"][0]["top_label"] == "empty"  # continue_on
        assert empty["event"] is None and empty["events_stored"] == 0

        ws.send(jpeg("circle", "red", seed=2))
        first = json.loads(ws.recv(timeout=30))
        assert first["decision"] == "event", first
        domain, shape = first["stages"]
        assert domain["top_label"] == "object" and shape["model"] == "shape"
        assert shape["top_label"] == "circle" and abs(sum(shape["probabilities"]) - 1) < 1e-4
        assert first["event"]["event_id"] and first["event"]["output"]["message"]
        assert first["output"] == first["event"]["output"] and first["events_stored"] == 1

        ws.send(jpeg("circle", "red", seed=2))  # the same decision within min_interval_s: not stored again
        again = json.loads(ws.recv(timeout=30))
        assert again["decision"] == "event" and again["event"] is None and again["events_stored"] == 1
        assert again["output"] == first["output"]  # the last answer stays on screen

        ws.send(json.dumps({"type": "context", "context": "colours"}))
        assert json.loads(ws.recv(timeout=30)) == {"type": "context", "context": "colours"}
        ws.send(jpeg("circle", "red", seed=2))
        colour = json.loads(ws.recv(timeout=30))
        assert colour["specialist"] == "colours" and colour["stages"][1]["top_label"] == "red"
        assert colour["event"] is not None and colour["events_stored"] == 2
        assert colour["rule"] == "red-alert" and "something red in colours" in colour["output"]["message"]
    rows = live_server.query("SELECT device_id, context FROM events ORDER BY id")
    assert [tuple(r) for r in rows] == [("test-browser", "shapes"), ("test-browser", "colours")]


def test_bad_frames_and_contexts_answer_errors_and_keep_the_socket(live_server):
    with connect(ws_url(live_server)) as ws:
        start(ws, live_server.key("ingest"))
        ws.send(b"not an image")
        bad = json.loads(ws.recv(timeout=30))
        assert bad["type"] == "error" and "not a decodable JPEG" in bad["detail"]
        ws.send(b"")
        assert "empty" in json.loads(ws.recv(timeout=30))["detail"]
        ws.send(json.dumps({"type": "context", "context": "kitchen"}))
        unknown = json.loads(ws.recv(timeout=30))
        assert unknown["type"] == "error" and "unknown context 'kitchen'" in unknown["detail"]
        ws.send(json.dumps({"type": "context"}))
        assert "context" in json.loads(ws.recv(timeout=30))["detail"]
        ws.send(jpeg("square", "blue", seed=3))  # still working
        assert json.loads(ws.recv(timeout=30))["type"] == "result"


def test_a_phone_jpeg_decodes_upright_as_training_reads_it(tmp_path):
    """A photo with an EXIF orientation tag: the live page's decoder and ``read_image`` (training,
    evaluation, image-folder sources) give the same upright pixels, so the models see what they learned."""
    from PIL import Image

    from visioncascade.api.live import decode_frame
    from visioncascade.data import read_image

    stored = np.ascontiguousarray(scene(np.random.default_rng(5), 96, "square", "red")[:, :64])  # 96 x 64
    img = Image.fromarray(stored)
    tags = img.getexif()
    tags[0x0112] = 8  # "rotate 90 degrees counter-clockwise to display"
    path = tmp_path / "phone.jpg"
    img.save(path, "JPEG", quality=95, exif=tags.tobytes())
    frame = decode_frame(path.read_bytes())
    assert frame.shape == (64, 96, 3)
    np.testing.assert_array_equal(frame[..., ::-1], read_image(path))


def test_a_16_bit_grayscale_png_is_scaled_by_its_type_not_its_own_maximum(tmp_path):
    """A dark 16-bit image stays dark (``round(v / 257)``), and the live page's decoder and ``read_image``
    (watch, predict, training) give the same pixels for it."""
    from visioncascade.api.live import decode_frame
    from visioncascade.data import read_image

    values = np.linspace(0, 25_443, 48 * 64).reshape(48, 64).astype(np.uint16)  # at most 39 % of the range
    path = tmp_path / "dark16.png"
    assert cv2.imwrite(str(path), values)
    expected = np.rint(values / 257.0).astype(np.uint8)
    read = read_image(path)
    assert read.dtype == np.uint8 and read.shape == (48, 64) and read.max() == 99
    np.testing.assert_array_equal(read, expected)
    frame = decode_frame(path.read_bytes())
    assert frame.shape == (48, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(frame[..., channel], expected)


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and header, without pixel data: what a frame's size is told by."""
    import struct
    import zlib

    header = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
    return (
        b"\x89PNG\r\n\x1a\n" + ihdr + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    )


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [
        (5000, 3000, "the frame is 5000×3000 px; send at most 4096 px a side"),
        (30000, 30000, "the frame has more pixels than Pillow decodes; send at most 4096 px a side"),
    ],
)
def test_a_frame_too_large_is_refused_from_its_header_before_decoding(width, height, words):
    """Only the header is there: the size refuses the frame before any pixel would be decoded (a 900 KB PNG
    can hold 30000×30000 pixels, 5 GB decoded)."""
    from visioncascade.api.live import decode_frame
    from visioncascade.errors import DataError

    with pytest.raises(DataError, match=f"^{re.escape(words)}$"):
        decode_frame(_png_header(width, height))


@pytest.mark.parametrize(
    ("key", "fields", "code", "words"),
    [
        (None, {}, 4401, "missing API key"),
        ("not-a-key", {}, 4401, "invalid or revoked"),
        ("read", {}, 4403, "needs scope 'ingest'"),
        ("ingest", {"cascade": "nope"}, 4404, "unknown cascade 'nope'; this server runs: demo"),
        ("ingest", {"context": "kitchen"}, 4422, "unknown context 'kitchen'"),
        ("ingest", {"device_id": ""}, 4400, "invalid start message: device_id"),
    ],
)
def test_start_is_refused_with_a_reason_and_a_close_code(live_server, key, fields, code, words):
    if key in ("read", "ingest"):
        key = live_server.key(key)
    with connect(ws_url(live_server)) as ws:
        answer = start(ws, key, **fields)
        assert answer["type"] == "error" and words in answer["detail"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == code


def test_a_key_revoked_while_the_socket_is_open_stops_storing_events(quick_demo, sqlite_url, server_factory):
    """The key is checked again for every frame (here not cached: key_cache_seconds=0)."""
    from visioncascade.api.storage import Database, revoke_api_key

    result, _ = quick_demo
    server = server_factory(
        sqlite_url,
        cascade_paths=[result.out_dir / "cascade.yaml"],
        auth_enabled=True,
        key_cache_seconds=0,
    )
    key = server.key("ingest")
    with connect(ws_url(server)) as ws:
        assert start(ws, key)["type"] == "ready"
        ws.send(jpeg("circle", "red", seed=2))
        assert json.loads(ws.recv(timeout=30))["events_stored"] == 1
        db = Database(sqlite_url)
        try:
            assert revoke_api_key(db, key.split("_")[1]) == 1
        finally:
            db.dispose()
        ws.send(jpeg("square", "blue", seed=3))  # another decision: would be stored
        answer = json.loads(ws.recv(timeout=30))
        assert answer["type"] == "error" and answer["status"] == 401
        assert "invalid or revoked" in answer["detail"]
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 4401
    assert server.query("SELECT count(*) FROM events")[0][0] == 1


def test_a_frame_before_the_start_message_is_refused(live_server):
    with connect(ws_url(live_server)) as ws:
        ws.send(jpeg("square", "green"))
        answer = json.loads(ws.recv(timeout=30))
        assert answer["status"] == 400 and "first message must be the JSON start message" in answer["detail"]


def test_a_server_without_cascades_says_how_to_add_one(sqlite_url, server_factory):
    server = server_factory(sqlite_url, auth_enabled=False)
    with server.client() as client:
        assert client.get("/v1/cascades").json() == []
    with connect(ws_url(server)) as ws:
        answer = start(ws, None)
        assert answer["status"] == 404 and "visioncascade serve --cascade" in answer["detail"]


def test_pages_load_nothing_from_outside_the_server(sqlite_url, server_factory):
    server = server_factory(sqlite_url)
    with server.client() as client:
        for path in ("/", "/dashboard"):
            page = client.get(path)
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp
            assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
            for asset in assets:
                assert asset.startswith(("/", "data:")), f"{path} refers to {asset} outside the server"
                if asset.startswith("/static/"):
                    body = client.get(asset)
                    assert body.status_code == 200, asset
                    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", body.text), asset
    for raw in ("/static/../routes/live.py", "/static/%2e%2e/settings.py"):  # sent as is, not normalised
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", raw)
        assert conn.getresponse().status == 404, raw
        conn.close()


def test_two_cascade_files_with_one_name_are_refused(quick_demo):
    from visioncascade.api.live import LiveCascades
    from visioncascade.errors import ConfigError

    result, _ = quick_demo
    first = result.out_dir / "cascade.yaml"
    second = result.out_dir / "cascade-copy.yaml"
    second.write_text(first.read_text())
    try:
        with pytest.raises(ConfigError, match="both named 'demo'; give each cascade file a unique `name`"):
            LiveCascades([first, second])
    finally:
        second.unlink()
