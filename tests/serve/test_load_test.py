"""tools/load_test.py against a real server on loopback: counts, percentiles, bad requests each with
their 4xx, memory read from /metrics; and its refusals (non-loopback URLs, unbounded runs)."""

from __future__ import annotations

import pytest

from tests.conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("load_test")


def test_load_with_bad_requests_mixed_in(tool, live_server, tmp_path):
    url = live_server(max_batch=4, max_upload_mb=1.0, api_key="k")
    out = tmp_path / "result.json"
    args = [url, "--concurrency", "3", "--duration", "2", "--warmup", "0.5", "--bad", "12", "--num-images", "3",
            "--max-upload-mb", "1", "--api-key", "k", "--json", str(out)]
    assert tool.main(args) == 0
    import json

    result = json.loads(out.read_text())[url]
    assert result["ok"] == result["requests"] > 0 and result["server_errors_5xx"] == 0
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["bad_sent"] == result["bad_with_expected_4xx"] == 12
    assert set(result["bad_status"]) == {"not_an_image", "truncated", "no_file_field", "bad_option", "too_large",
                                         "wrong_key"}
    assert result["bad_status"]["too_large"] == {"413": 2} and result["bad_status"]["wrong_key"] == {"401": 2}
    assert result["rss_mb_after_warmup"] > 0 and result["rss_mb_after"] > 0


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
