"""tools/load_test.py against a real server on loopback: counts, percentiles, bad requests each with
their 4xx, memory read from /metrics; and its refusals (non-loopback URLs, unbounded runs)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT, load_tool
from tests.serve.conftest import encode, noise_image


@pytest.fixture(scope="module")
def tool():
    return load_tool("load_test")


def test_load_with_bad_requests_mixed_in(tool, live_server, tmp_path):
    url = live_server(max_batch=4, max_upload_mb=1.0, api_key="k")
    out = tmp_path / "result.json"
    args = [url, "--concurrency", "3", "--duration", "2", "--warmup", "0.5", "--bad", "12", "--num-images", "3",
            "--max-upload-mb", "1", "--api-key", "k", "--json", str(out)]
    assert tool.main(args) == 0
    result = json.loads(out.read_text())[url]
    assert result["ok"] == result["requests"] > 0 and result["server_errors_5xx"] == 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["bad_sent"] == result["bad_with_expected_4xx"] == 12
    assert set(result["bad_status"]) == {"not_an_image", "truncated", "no_file_field", "bad_option", "too_large",
                                         "wrong_key"}
    assert result["bad_status"]["too_large"] == {"413": 2} and result["bad_status"]["wrong_key"] == {"401": 2}
    assert result["rss_mb_after_warmup"] > 0 and result["rss_mb_after"] > 0


def test_images_come_from_the_folder_given(tool, live_server, tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.png").write_bytes(encode(noise_image(40, 60, seed=1)))
    (folder / "sub" / "a.jpg").write_bytes(encode(noise_image(50, 30, seed=2), ".jpg"))
    (folder / "notes.txt").write_text("not an image")
    assert [name for name, _ in tool.load_images(folder, 16)] == ["b.png", "a.jpg"]  # sorted by path
    assert [name for name, _ in tool.load_images(folder, 1)] == ["b.png"]
    url = live_server()
    out = tmp_path / "result.json"
    assert tool.main([url, "--images", str(folder), "--concurrency", "2", "--duration", "1", "--warmup", "0",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())[url]
    assert result["ok"] == result["requests"] > 0


def test_a_folder_without_images_is_refused(tool, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit, match="no image files"):
        tool.load_images(tmp_path, 16)


def test_serve_compares_max_batch_values_in_one_run(tool, checkpoint, tmp_path, monkeypatch, capsys):
    """--serve starts `detect serve` for each --max-batch in turn (the README's measurement of batching)."""
    monkeypatch.chdir(REPO_ROOT)  # the servers run `python -m detect` from here
    out = tmp_path / "result.json"
    args = ["--serve", str(checkpoint), "--max-batch", "1", "--max-batch", "4", "--concurrency", "4",
            "--duration", "1", "--warmup", "0.3", "--bad", "6", "--num-images", "2", "--api-key", "k",
            "--json", str(out)]
    assert tool.main(args) == 0
    results = json.loads(out.read_text())
    assert list(results) == ["max_batch=1", "max_batch=4"]
    for result in results.values():
        assert result["ok"] == result["requests"] > 0 and result["server_errors_5xx"] == 0
        assert result["bad_sent"] == result["bad_with_expected_4xx"] == 6
        assert result["bad_status"]["wrong_key"] == {"401": 1}  # the server was given the key
        assert result["rss_mb_after_warmup"] > 0 and result["rss_mb_after"] > 0
    printed = capsys.readouterr().out
    assert "--max-batch 1:" in printed and "--max-batch 4:" in printed
    assert "max_batch=4 / max_batch=1:" in printed


def test_serve_reports_why_a_server_did_not_start(tool, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit, match="the server exited with 2: error: .*nothing.pt"):
        tool.main(["--serve", str(tmp_path / "nothing.pt"), "--duration", "1"])


def test_max_requests_bounds_the_run(tool, live_server):
    url = live_server()
    host, port = tool.loopback_address(url)
    args = tool.parse_args([url, "--duration", "30", "--warmup", "0", "--max-requests", "5", "--num-images", "1"])
    result = tool.load_test(host, port, args)
    assert result["requests"] == 5 and result["seconds"] < 30


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "https://127.0.0.1:8000", "ftp://localhost/"])
def test_only_loopback_http_is_accepted(tool, url):
    with pytest.raises(SystemExit):
        tool.loopback_address(url)


def test_loopback_names_are_accepted(tool):
    assert tool.loopback_address("http://127.0.0.1:8123") == ("127.0.0.1", 8123)
    assert tool.loopback_address("http://localhost:9000")[1] == 9000


@pytest.mark.parametrize("argv", [
    [], ["http://127.0.0.1:1", "--duration", "0"], ["http://127.0.0.1:1", "--duration", "100000"],
    ["http://127.0.0.1:1", "--concurrency", "0"], ["http://127.0.0.1:1", "--max-batch", "8"],
])
def test_unbounded_or_contradictory_arguments_are_refused(tool, argv):
    with pytest.raises(SystemExit):
        tool.parse_args(argv)
