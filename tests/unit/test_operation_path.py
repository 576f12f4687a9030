import pytest

from conveyor.domain.operation_path import (
    UnsafeOperationPath,
    normalize_operation_path,
    split_operation_path,
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("lists/abc/members", "/lists/abc/members"),
        ("/lists/abc/members/", "/lists/abc/members"),
        ("/3.0/lists/abc/members", "/lists/abc/members"),
        ("3.0/lists", "/lists"),
        ("/lists", "/lists"),
        (
            "lists/abc/members/5d41402abc4b2a76b9719d911017c592",
            "/lists/abc/members/5d41402abc4b2a76b9719d911017c592",
        ),
        ("/lists/abc/members/a%40example.com", "/lists/abc/members/a@example.com"),
        ("/lists/abc/members/a+b@example.com", "/lists/abc/members/a+b@example.com"),
        ("/lists/abc/members/ren%C3%A9@example.com", "/lists/abc/members/rené@example.com"),
        ("/3.0x/lists", "/3.0x/lists"),
        ("/lists/.../x", "/lists/.../x"),
    ],
)
def test_good_paths(path: str, expected: str) -> None:
    assert normalize_operation_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/3.0",
        "/3.0/",
        "http://evil",
        "https://evil.com/lists",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//evil.com/x",
        "/lists//members",
        "/lists/../batches",
        "/lists/./members",
        "..",
        "/lists/%2e%2e/batches",
        "%2e%2e/x",
        "/lists/%2E/x",
        "/lists/a%2Fb",
        "/lists/a%2fb",
        "/lists/a%5Cb",
        "/lists/%252e%252e",
        "/lists/%zz",
        "/lists/%ff",
        "batches/abc",
        "/batches",
        "/3.0/batches",
        "/batch-webhooks",
        "batch-webhooks/123",
        "/Batches",
        "lists\\x",
        "lists/ x",
        "lists/x ",
        " lists",
        "lists\tx",
        "lists/\nx",
        "lists/%0Ax",
        "lists/%20x",
        "lists/\u200bx",
        "/lists#frag",
        "/lists?count=1",
        "x" * 3000,
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(UnsafeOperationPath) as info:
        normalize_operation_path(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.reason
    assert info.value.reason.endswith(".")


def test_batch_endpoint_message() -> None:
    with pytest.raises(UnsafeOperationPath, match="batch endpoints"):
        normalize_operation_path("/batches/abc")


def test_split_query() -> None:
    assert split_operation_path("/lists/abc/members?count=10&offset=0") == (
        "/lists/abc/members",
        {"count": "10", "offset": "0"},
    )
    assert split_operation_path("lists?fields=a&fields=b&q=a%20b+c&empty=") == (
        "/lists",
        {"fields": "a,b", "q": "a b c", "empty": ""},
    )
    assert split_operation_path("lists/") == ("/lists", {})
    assert split_operation_path("/3.0/lists?") == ("/lists", {})


@pytest.mark.parametrize(
    "path",
    ["/batches?count=1", "/lists/../x?a=1", "lists?a=%ff", "lists?a=1#x", "lists?a= 1", ""],
)
def test_split_rejects_unsafe(path: str) -> None:
    with pytest.raises(UnsafeOperationPath):
        split_operation_path(path)


def test_split_limits_query_fields() -> None:
    with pytest.raises(UnsafeOperationPath):
        split_operation_path("lists?" + "&".join(f"k{i}=1" for i in range(500)))
