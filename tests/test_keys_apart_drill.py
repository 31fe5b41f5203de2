"""Drill (issue 15, part 3): VIGIE_HOME served over HTTP by mistake yields nothing decryptable.

A real demo installation (`vigie demo --no-serve`: a database, hundreds of sealed PDFs); then
what a maintenance session does, `python3 -m http.server` started in VIGIE_HOME on loopback;
a stranger walks the directory listings and downloads everything reachable; then tries,
offline and with Vigie's own vault code, to decrypt a patient's PDF from those files alone.

Before the keys left the data tree the stranger got `keyring/keyring.json`, `secret_key` and
`audit-signing.key` with the blobs and this test failed at its first assertion (run against
80d29f0: the mirror held the keyring and a PDF was decrypted).
"""

from __future__ import annotations

import html.parser
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VIGIE
from vigie import vault
from vigie.vault.store import FilesystemBlobStore

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

KEY_FILE_NAMES = {"keyring.json", "secret_key", "audit-signing.key"}


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return bytes(response.read())
    except urllib.error.HTTPError:
        return None


def _mirror(base: str, into: Path) -> list[str]:
    """Download everything reachable from `base` by following the directory listings."""
    fetched: list[str] = []
    todo = ["/"]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        body = _get(base + path)
        if body is None:
            continue
        if path.endswith("/"):
            parser = _Links()
            parser.feed(body.decode("utf-8", "replace"))
            for href in parser.hrefs:
                target = urllib.parse.urljoin(path, href)
                if target.startswith(path) and target != path:
                    todo.append(target)
            continue
        local = into / urllib.parse.unquote(path).lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(body)
        local.chmod(0o600)  # as the stranger would, so the vault's mode check is no obstacle
        fetched.append(urllib.parse.unquote(path))
    return fetched


@pytest.fixture
def served_home(bare_env: dict[str, str]) -> Iterator[tuple[dict[str, str], str]]:
    env = {**bare_env, "VIGIE_MODE": "demo"}
    seeded = subprocess.run(
        [*VIGIE, "demo", "--no-serve"], env=env, capture_output=True, text=True, timeout=600
    )
    assert seeded.returncode == 0, seeded.stderr
    home = Path(env["VIGIE_HOME"])
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while _probe(base) is False:
            assert time.monotonic() < deadline, "http.server did not start"
            time.sleep(0.05)
        yield env, base
    finally:
        server.terminate()
        server.wait(timeout=10)


def _probe(base: str) -> bool:
    try:
        return _get(base + "/") is not None
    except OSError:
        return False


def _documents(database: Path) -> list[tuple[str, str, bytes]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT id, kek_id, wrapped_key FROM records_document").fetchall()
    return [(str(i), str(k), bytes(w)) for i, k, w in rows]


def _decrypt_with(mirror: Path, ring_path: Path, document: tuple[str, str, bytes]) -> bytes:
    ring = vault.Keyring.load(ring_path)
    store = FilesystemBlobStore(mirror / "blobs")
    with vault.open(*document, store=store, keyring=ring) as stream:
        return b"".join(stream)


def test_attack_serving_vigie_home_yields_nothing_decryptable(
    served_home: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, base = served_home
    mirror = tmp_path / "stranger"
    started = time.perf_counter()
    fetched = _mirror(base, mirror)
    seconds = time.perf_counter() - started
    print(f"\nstranger fetched {len(fetched)} files from VIGIE_HOME in {seconds:.1f} s")

    # The stranger did get the data: the database and the sealed blobs.
    assert "/vigie.sqlite3" in fetched
    documents = _documents(mirror / "vigie.sqlite3")
    assert len(documents) >= 300
    assert sum(1 for path in fetched if path.startswith("/blobs/")) >= len(documents)

    # But no key: neither by name nor by content (every fetched file tried as a keyring).
    opened: list[str] = []
    for path in fetched:
        try:
            plaintext = _decrypt_with(mirror, mirror / path.lstrip("/"), documents[0])
        except vault.VaultError:
            continue
        opened.append(f"{path} decrypted {documents[0][0]}: {plaintext[:5]!r}...")
    assert opened == []
    names = {Path(path).name for path in fetched}
    assert names.isdisjoint(KEY_FILE_NAMES), names & KEY_FILE_NAMES

    # Nor by climbing out of the served folder to the keys beside it.
    keys_dir = Path(env["VIGIE_KEYS_DIR"])
    assert (keys_dir / "keyring.json").is_file()  # the keys exist, only not there
    for probe in (
        f"/../{keys_dir.name}/keyring.json",
        f"/%2e%2e/{keys_dir.name}/keyring.json",
        f"/..%2f{keys_dir.name}%2fkeyring.json",
    ):
        assert _get(base + probe) is None, probe

    # The control: with the keyring (what the old layout served) the same code decrypts the
    # same document from the same fetched files — the test above is not vacuous.
    plaintext = _decrypt_with(mirror, keys_dir / "keyring.json", documents[0])
    assert plaintext.startswith(b"%PDF")
