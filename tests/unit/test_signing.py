from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.domain.signing import (
    DownloadCheck,
    build_download_url,
    sign_download,
    verify_download,
)

SECRET = b"s3cret-key-for-tests"
NOW = 1_700_000_000.5


def _query(url: str) -> tuple[str, str]:
    query = parse_qs(urlsplit(url).query)
    return query["expires"][0], query["signature"][0]


def test_url_shape() -> None:
    url = build_download_url("https://conveyor.example/", SECRET, "1234ab56cd", NOW)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "conveyor.example")
    assert parts.path == "/3.0/batches/1234ab56cd-response.tar.gz"
    expires, signature = _query(url)
    assert expires == str(int(NOW) + 600)
    assert signature == sign_download(SECRET, "1234ab56cd", int(NOW) + 600)
    assert len(signature) == 64


def test_valid_until_expiry() -> None:
    expires, signature = _query(build_download_url("http://h", SECRET, "abc", NOW, ttl_seconds=60))
    assert verify_download(SECRET, "abc", expires, signature, NOW) is DownloadCheck.OK
    assert verify_download(SECRET, "abc", expires, signature, NOW + 59) is DownloadCheck.OK
    assert verify_download(SECRET, "abc", expires, signature.upper(), NOW) is DownloadCheck.OK


def test_expired() -> None:
    expires, signature = _query(build_download_url("http://h", SECRET, "abc", NOW))
    assert verify_download(SECRET, "abc", expires, signature, NOW + 600) is DownloadCheck.EXPIRED
    assert verify_download(SECRET, "abc", expires, signature, NOW + 9e6) is DownloadCheck.EXPIRED


def test_tampered_values_are_invalid() -> None:
    expires, signature = _query(build_download_url("http://h", SECRET, "abc", NOW))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    assert verify_download(SECRET, "abc", expires, flipped, NOW) is DownloadCheck.INVALID
    assert verify_download(SECRET, "abd", expires, signature, NOW) is DownloadCheck.INVALID
    later = str(int(expires) + 3600)
    assert verify_download(SECRET, "abc", later, signature, NOW) is DownloadCheck.INVALID
    assert verify_download(b"other", "abc", expires, signature, NOW) is DownloadCheck.INVALID


def test_an_expired_forgery_is_invalid_not_expired() -> None:
    assert verify_download(SECRET, "abc", "1", "0" * 64, NOW) is DownloadCheck.INVALID


@pytest.mark.parametrize(
    ("expires", "signature"),
    [
        ("", "0" * 64),
        ("soon", "0" * 64),
        ("-5", "0" * 64),
        ("1e9", "0" * 64),
        ("\uff11\uff12\uff13", "0" * 64),  # fullwidth digits: str.isdigit() accepts them
        ("9" * 40, "0" * 64),
        ("1700000600", ""),
        ("1700000600", "zz" * 32),
        ("1700000600", "é" * 64),
        ("1700000600", "0" * 63),
    ],
)
def test_garbage_input_is_invalid_without_raising(expires: str, signature: str) -> None:
    assert verify_download(SECRET, "abc", expires, signature, NOW) is DownloadCheck.INVALID


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        sign_download(b"", "abc", 1)
    with pytest.raises(ValueError):
        build_download_url("http://h", SECRET, "abc", NOW, ttl_seconds=0)
    assert verify_download(b"", "abc", "1700000600", "0" * 64, NOW) is DownloadCheck.INVALID
