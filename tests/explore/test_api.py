"""The page's API, called directly: scenes in, views and verdicts out; every request names its own model (two pages
never mix); bad uploads, unknown models and malformed requests get one-line JSON errors and the server goes on."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the explore extra (pip install 'patchscope[explore]') is not installed")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from patchscope.explore.app import MAX_UPLOAD, STATIC, ExploreSettings, create_app  # noqa: E402
from patchscope.runs.store import RunStore  # noqa: E402
from tests.explore.conftest import MODEL, PATCH  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = tmp_path_factory.mktemp("store") / "runs.db"
    return TestClient(create_app(ExploreSettings(model=MODEL, data="demo", store=store)), base_url="http://127.0.0.1")


def scene(stop_index: int, **changes: object) -> dict[str, object]:
    home = {"row": 18 / 32, "col": 14 / 32}  # the small ViT patch's own place (its location (12, 8), 12 px)
    return {"model": MODEL, "image": f"data:{stop_index}", "patch": PATCH, "placement": home} | changes


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 200 if mode == "L" else (200, 30, 30, 255)[: len(mode)]).save(out, format="PNG")
    return out.getvalue()


def test_the_page_and_its_files_are_served_from_the_package(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    for name in ("app.js", "style.css"):
        served = client.get(f"/static/{name}")
        assert served.status_code == 200 and served.text == (STATIC / name).read_text()
    for text in (page.text, *(p.read_text() for p in STATIC.iterdir())):  # offline: nothing from another site
        assert not re.search(r"https?:|(src|href)=[\"']//|url\(\s*[\"']?//", text)
    options = client.get("/api/options").json()
    assert options["model"] == MODEL and PATCH[4:] in options["patches"] and "gtsrb-cnn" in options["models"]


def test_the_zoo_patch_flips_the_stop_sign_at_its_place_and_not_in_a_corner(client: TestClient, stop_index: int):
    home = client.post("/api/look", json=scene(stop_index)).json()
    assert home["clean_top"][0]["name"] == "stop" and home["patched_top"][0]["name"] == "yield" and home["flipped"]
    assert home["patched"].startswith("data:image/png;base64,") and home["heatmap"] == "rollout"
    assert home["label"] == {"id": 14, "name": "stop"} and home["footprint_side"] == 12 and len(home["layers"]) == 7
    corner = client.post("/api/look", json=scene(stop_index, placement={"row": 27 / 32, "col": 27 / 32})).json()
    assert corner["patched_top"][0]["name"] == "stop" and not corner["flipped"]


def test_the_certificate_comes_from_its_own_request(client: TestClient, stop_index: int):
    r = client.post("/api/certify", json=scene(stop_index) | {"k": 3}).json()
    assert r["label"]["name"] == "stop" and r["patch_side"] == 12 and r["masks"] == 9
    assert r["certified"] in (True, False) and (r["broken_by"] is None) == r["certified"]
    assert r["case"] in ("agree", "one mask", "majority") and r["recovered"] == (r["defended"]["id"] == 14)
    moved = client.post("/api/certify", json=scene(stop_index, placement={"row": 0.4, "col": 0.5}) | {"k": 3}).json()
    assert moved["kept"] and not r["kept"] and moved["certified"] == r["certified"]  # the clean view did not change
    assert moved["passes"] < r["passes"]


def test_two_pages_with_two_models_do_not_mix(client: TestClient, stop_index: int):
    cnn = scene(stop_index, model="gtsrb-cnn", patch="zoo:gtsrb-cnn/stop-yield", placement={"row": 0.5, "col": 0.5})
    vit = scene(stop_index)
    answers = [client.post("/api/look", json=body).json() for body in (cnn, vit, cnn, vit)]
    assert [a["heatmap"] for a in answers] == ["gradcam", "rollout", "gradcam", "rollout"]
    assert (
        answers[0]["patched_top"] == answers[2]["patched_top"]
        and answers[1]["patched_top"] == answers[3]["patched_top"]
    )
    assert answers[0]["patched_top"] != answers[1]["patched_top"]


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"model": "no-such-model"}, 400, "unknown model 'no-such-model'"),
        ({"image": "data:99999"}, 400, "holds 1110 images"),
        ({"image": "../etc/passwd"}, 400, "use data:INDEX or upload:TOKEN"),
        ({"patch": "zoo:nope/nope"}, 400, "unknown zoo patch"),
        ({"patch": "upload:image-0000"}, 400, "upload it again"),
        ({"placement": {"scale": 100}}, 400, "scale must be in [0.1, 8]"),
        ({"camera": {"yaw": "steep"}}, 422, "bad request: camera.yaw"),
    ],
)
def test_bad_requests_get_one_line_json_errors(client: TestClient, stop_index: int, change, status, words):
    r = client.post("/api/look", json=scene(stop_index, **change))
    assert r.status_code == status and words in r.json()["error"] and "\n" not in r.json()["error"]


def test_bad_uploads_are_refused_and_the_server_keeps_serving(client: TestClient, stop_index: int):
    text = client.post("/api/upload/image", files={"file": ("notes.txt", b"not a picture at all", "text/plain")})
    assert text.status_code == 400 and "not a picture" in text.json()["error"]
    huge = client.post("/api/upload/image", files={"file": ("big.png", b"\0" * (50 * 2**20), "image/png")})
    assert huge.status_code == 413 and f"limit of {MAX_UPLOAD // 2**20} MB" in huge.json()["error"]
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # a few kB that decode to 400 million pixels
    refused = client.post("/api/upload/image", files={"file": ("bomb.png", bomb.getvalue(), "image/png")})
    assert refused.status_code == 400 and "limit" in refused.json()["error"], refused.json()
    large = io.BytesIO()
    Image.new("1", (8_000, 6_000)).save(large, format="PNG")  # 48 million pixels: under Pillow's limit, over ours
    refused = client.post("/api/upload/image", files={"file": ("large.png", large.getvalue(), "image/png")})
    assert refused.status_code == 400 and "8000x6000 pixels, over the explorer's limit" in refused.json()["error"]
    assert client.post("/api/upload/image", files={"file": ("e.png", b"", "image/png")}).status_code == 400
    assert client.post("/api/upload/other", files={"file": ("a.png", png((4, 4)), "image/png")}).status_code == 400
    assert client.post("/api/look", json=scene(stop_index)).json()["flipped"]  # still serving


def test_an_uploaded_image_and_patch_are_used_by_reference(client: TestClient):
    image = client.post("/api/upload/image", files={"file": ("sign.png", png((64, 48)), "image/png")}).json()["ref"]
    patch = client.post("/api/upload/patch", files={"file": ("p.png", png((6, 6), "RGBA"), "image/png")}).json()["ref"]
    r = client.post("/api/look", json={"model": "gtsrb-cnn", "image": image, "patch": patch})
    assert r.status_code == 200 and r.json()["footprint_side"] == 6 and r.json()["label"] is None
    shown = client.get("/api/source", params={"model": "gtsrb-cnn", "image": image})
    assert shown.headers["content-type"] == "image/png" and Image.open(io.BytesIO(shown.content)).size == (32, 32)


def test_an_unexpected_failure_is_a_json_error_and_the_server_goes_on(
    client: TestClient, stop_index: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import patchscope.explore.app as app_module

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a model that breaks")

    monkeypatch.setattr(app_module, "look", broken)
    r = client.post("/api/look", json=scene(stop_index))
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: a model that breaks"}
    assert capsys.readouterr().err.strip() == "patchscope explore: /api/look: RuntimeError: a model that breaks"
    monkeypatch.undo()
    assert client.post("/api/look", json=scene(stop_index)).json()["flipped"]


def test_another_host_name_is_refused(client: TestClient):
    assert client.get("/api/options", headers={"host": "attacker.example"}).status_code == 400


def _wait(client: TestClient, job: str) -> dict[str, object]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        r = client.get(f"/api/optimise/{job}").json()
        if r["state"] != "running":
            return r
        time.sleep(0.1)
    raise AssertionError("the optimisation did not finish")


def test_optimise_here_stops_when_asked_and_is_saved_as_a_run(client: TestClient, stop_index: int):
    body = scene(stop_index, model="gtsrb-cnn", patch="blank") | {"target": 13, "steps": 2000, "views": 2}
    started = client.post("/api/optimise", json=body).json()
    assert started["state"] == "running"
    assert client.post(f"/api/optimise/{started['job']}/save").status_code == 400  # not finished yet
    deadline = time.monotonic() + 300
    while "step" not in client.get(f"/api/optimise/{started['job']}").json() and time.monotonic() < deadline:
        time.sleep(0.05)  # its first step is done
    client.post(f"/api/optimise/{started['job']}/stop")
    done = _wait(client, started["job"])
    assert done["state"] == "stopped" and 0 < done["step"] < 2000 and done["patch"] == f"job:{started['job']}"
    seen = client.post("/api/look", json=scene(stop_index, model="gtsrb-cnn", patch=done["patch"])).json()
    assert seen["footprint_side"] == 10
    saved = client.post(f"/api/optimise/{started['job']}/save").json()
    store = RunStore(client.app.state.settings.store)  # type: ignore[attr-defined]
    run = store.get(saved["run"])
    assert run.kind == "attack" and run.config["command"] == "explore" and run.config["target"] == "yield"
    assert Path(saved["folder"]).parent == store.path.parent / "explore"
    assert saved["commands"][0].startswith("patchscope explore --model gtsrb-cnn --data demo --patch ")
