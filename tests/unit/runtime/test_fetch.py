"""Raw-data acquisition: mirror reads, downloads (against a local HTTP server), verification errors.

The server serves the mirror's files under the URL paths the manifests pin (prefix rewritten from
raw.githubusercontent.com / the chABSA S3 bucket), so a passing download test also shows that the
pinned paths line up with the manifest's local names.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from nejumi_eval.benchmarks.jaster import convert
from nejumi_eval.benchmarks.jaster.sources import RAW_GITHUB, fetch_source, load_manifest
from nejumi_eval.runtime.client.retry import RetryPolicy
from nejumi_eval.runtime.fetch import DataError, RemoteFile, fetch_files, file_digest

FAST = RetryPolicy(max_attempts=3, initial_delay_s=0.0, max_delay_s=0.0)
S3 = "https://s3-ap-northeast-1.amazonaws.com/"


class FakeUpstream:
    """A local HTTP server: URL path → bytes, with scripted failures and a request log."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.fail_first: dict[str, int] = {}  # path → 503 responses to send before serving it
        self.requests: list[str] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.requests.append(self.path)
                if upstream.fail_first.get(self.path, 0) > 0:
                    upstream.fail_first[self.path] -= 1
                    self.send_error(503)
                    return
                body = upstream.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.rewrite = {RAW_GITHUB: f"{self.base}/gh/", S3: f"{self.base}/s3/"}

    def path_of(self, url: str) -> str:
        for prefix, replacement in self.rewrite.items():
            if url.startswith(prefix):
                return urlsplit(replacement + url[len(prefix) :]).path
        raise AssertionError(url)

    def serve_source(self, source: str, mirror: Path) -> None:
        for f in load_manifest(source).files():
            if (mirror / source / f.name).is_file():
                self.routes[self.path_of(f.url)] = (mirror / source / f.name).read_bytes()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def fresh(upstream: FakeUpstream) -> FakeUpstream:
    upstream.routes.clear()
    upstream.fail_first.clear()
    upstream.requests.clear()
    return upstream


def chabsa_zip(mirror: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A zip shaped like the official one, built from the mirror's extracted files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("chABSA-dataset/", b"")
        for path in sorted((mirror / "chabsa" / "chABSA-dataset").glob("*.json")):
            zf.write(path, f"chABSA-dataset/{path.name}")
        zf.writestr("chABSA-dataset/README.md", b"not data")  # not *.json: ignored
        zf.writestr("__MACOSX/chABSA-dataset/._e00008_ann.json", b"resource fork")  # outside the folder
        for name, body in (extra or {}).items():
            zf.writestr(name, body)
    return buf.getvalue()


# ---- pinned URLs -------------------------------------------------------------------------------


def test_urls_are_commit_pinned() -> None:
    urls = {s: [f.url for f in load_manifest(s).files()] for s in ("jamp", "jnli", "jsquad", "wiki")}
    assert urls["jamp"] == [
        f"{RAW_GITHUB}tomo-ut/temporalNLI_dataset/f578b5daac7bff3855d238c032a60fd047cddd9c/dataset/train_all.tsv",
        f"{RAW_GITHUB}tomo-ut/temporalNLI_dataset/f578b5daac7bff3855d238c032a60fd047cddd9c/dataset/test_2.tsv",
    ]
    # JGLUE: tag v1.1.0's commit (protocol §2.2), also for the train file the mirror lacks.
    jglue = f"{RAW_GITHUB}yahoojapan/JGLUE/6791a5003e6deaa6fb2458bcb3aa1f58dc52ef33/datasets/"
    assert urls["jnli"] == [f"{jglue}jnli-v1.1/valid-v1.1.json", f"{jglue}jnli-v1.1/train-v1.1.json"]
    assert urls["jsquad"][1] == f"{jglue}jsquad-v1.1/train-v1.1.json"
    wiki = f"{RAW_GITHUB}ku-nlp/WikipediaAnnotatedCorpus/2cd67648ba6c85cd64bb2c465069ae6cd8cdece9/"
    assert urls["wiki"][0] == f"{wiki}id/train.id"
    assert f"{wiki}knp/wiki0006/wiki00060003.knp" in urls["wiki"]
    assert len(urls["wiki"]) == 3 + 1517 + 100 + 200
    assert all("/main/" not in u and "/master/" not in u for us in urls.values() for u in us)


def test_missing_jglue_train_files_are_checked_by_git_blob_sha1() -> None:
    train = {f.name: f for f in load_manifest("jnli").files()}["train-v1.1.json"]
    assert (train.sha256, train.git_blob_sha1, train.mirror_optional) == (
        None,
        "14d9948a80dc585cfd53eb358594b0722b937802",
        True,
    )
    assert {f.name: f for f in load_manifest("jsquad").files()}["train-v1.1.json"].git_blob_sha1 == (
        "20ce716ee531e3e23088f5840a3b0751ae803424"
    )


def test_git_blob_sha1_matches_git(data_mirror: Path) -> None:
    manifest = load_manifest("jamp")
    path = data_mirror / "jamp" / "train_all.tsv"
    blob = RemoteFile(name="train_all.tsv", url="u", git_blob_sha1=manifest.git_blob_sha1["train_all.tsv"])
    kind, actual, expected = file_digest(path, blob)
    assert kind == "git blob SHA-1"
    assert (
        actual == expected == hashlib.sha1(b"blob %d\0" % path.stat().st_size + path.read_bytes()).hexdigest()
    )


# ---- mirror ------------------------------------------------------------------------------------


def test_mirror_is_read_in_place(data_mirror: Path, tmp_path: Path) -> None:
    folder = fetch_source("jamp", mirror_dir=data_mirror, cache_dir=tmp_path)
    assert folder == data_mirror / "jamp"
    assert not (tmp_path / "raw").exists()


def copy_source(data_mirror: Path, tmp_path: Path, source: str) -> Path:
    mirror = tmp_path / "mirror"
    shutil.copytree(data_mirror / source, mirror / source)
    return mirror


def test_wrong_hash_in_mirror_names_dataset_file_and_remedy(data_mirror: Path, tmp_path: Path) -> None:
    mirror = copy_source(data_mirror, tmp_path, "jamp")
    with (mirror / "jamp" / "test_2.tsv").open("ab") as f:
        f.write(b"x")
    with pytest.raises(DataError) as err:
        fetch_source("jamp", mirror_dir=mirror, cache_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("jamp: test_2.tsv")
    assert "sha256" in message and load_manifest("jamp").sha256["test_2.tsv"] in message
    assert "f578b5daac7bff3855d238c032a60fd047cddd9c/dataset/test_2.tsv" in message  # where to get it
    assert "NEJUMI_DATA_MIRROR" in message


def test_missing_file_in_mirror_names_dataset_file_and_remedy(data_mirror: Path, tmp_path: Path) -> None:
    mirror = copy_source(data_mirror, tmp_path, "jsem")
    (mirror / "jsem" / "Verbs.xml").unlink()
    with pytest.raises(DataError, match=r"^jsem: Verbs\.xml is missing from .*mirror.*data/v1\.0/Verbs\.xml"):
        fetch_source("jsem", mirror_dir=mirror, cache_dir=tmp_path)


def test_missing_source_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^janli: janli\.tsv is missing"):
        fetch_source("janli", mirror_dir=tmp_path, cache_dir=tmp_path)


def test_mirror_may_lack_the_jglue_train_file(data_mirror: Path, tmp_path: Path) -> None:
    assert fetch_source("jnli", mirror_dir=data_mirror, cache_dir=tmp_path) == data_mirror / "jnli"


def test_jglue_train_file_in_mirror_is_checked(data_mirror: Path, tmp_path: Path) -> None:
    mirror = copy_source(data_mirror, tmp_path, "jnli")
    (mirror / "jnli" / "train-v1.1.json").write_text("{}\n")
    with pytest.raises(DataError, match=r"^jnli: train-v1\.1\.json .* git blob SHA-1 .*14d9948a80dc"):
        fetch_source("jnli", mirror_dir=mirror, cache_dir=tmp_path)


# ---- downloads ---------------------------------------------------------------------------------


def test_download_verifies_caches_and_reuses(fresh: FakeUpstream, data_mirror: Path, tmp_path: Path) -> None:
    fresh.serve_source("jamp", data_mirror)
    folder = fetch_source("jamp", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert folder == tmp_path / "raw" / "jamp"
    for name in ("train_all.tsv", "test_2.tsv"):
        assert (folder / name).read_bytes() == (data_mirror / "jamp" / name).read_bytes()
    assert sorted(fresh.requests) == sorted(
        f"/gh/tomo-ut/temporalNLI_dataset/f578b5daac7bff3855d238c032a60fd047cddd9c/dataset/{n}"
        for n in ("train_all.tsv", "test_2.tsv")
    )
    fresh.requests.clear()
    fetch_source("jamp", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert fresh.requests == []  # served from the cache
    (folder / "test_2.tsv").write_bytes(b"damaged")
    fetch_source("jamp", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert [p.rsplit("/", 1)[1] for p in fresh.requests] == ["test_2.tsv"]  # only the damaged file again
    assert (folder / "test_2.tsv").read_bytes() == (data_mirror / "jamp" / "test_2.tsv").read_bytes()


def test_download_retries_server_errors(fresh: FakeUpstream, data_mirror: Path, tmp_path: Path) -> None:
    fresh.serve_source("jemhopqa", data_mirror)
    flaky = fresh.path_of(load_manifest("jemhopqa").per_file_download_url["dev.json"])
    fresh.fail_first[flaky] = 2
    fetch_source("jemhopqa", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert fresh.requests.count(flaky) == 3
    assert (
        convert.jemhopqa(tmp_path / "raw" / "jemhopqa")["test"][0]["output"] == "ファイナルファンタジーXIII"
    )


def test_download_with_wrong_bytes_is_fatal(fresh: FakeUpstream, data_mirror: Path, tmp_path: Path) -> None:
    fresh.serve_source("janli", data_mirror)
    path = fresh.path_of(load_manifest("janli").per_file_download_url["janli.tsv"])
    fresh.routes[path] = fresh.routes[path].replace(b"entailment", b"ENTAILMENT", 1)
    with pytest.raises(DataError) as err:
        fetch_source("janli", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    message = str(err.value)
    assert message.startswith("janli: janli.tsv") and "sha256" in message
    assert "do not edit the manifest hash" in message
    assert list((tmp_path / "raw" / "janli").iterdir()) == []  # nothing kept, not even a temp file


def test_download_of_missing_jglue_train_file_is_checked(
    fresh: FakeUpstream, data_mirror: Path, tmp_path: Path
) -> None:
    fresh.serve_source("jnli", data_mirror)
    train = {f.name: f for f in load_manifest("jnli").files()}["train-v1.1.json"]
    fresh.routes[fresh.path_of(train.url)] = b'{"sentence1": "a"}\n'
    with pytest.raises(DataError, match=r"^jnli: train-v1\.1\.json .*git blob SHA-1"):
        fetch_source("jnli", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)


def test_http_404_names_dataset_file_and_remedy(fresh: FakeUpstream, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        fetch_source("niilc", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    message = str(err.value)
    assert message.startswith("niilc: NIILC-ECQA2015_")
    assert "HTTP 404" in message and "NEJUMI_DATA_MIRROR" in message and "network" in message


def test_unreachable_host_names_dataset_file_and_remedy(tmp_path: Path) -> None:
    dead = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = dead.server_address[1]
    dead.server_close()  # nothing listens there any more
    with pytest.raises(DataError) as err:
        fetch_source(
            "mawps",
            mirror_dir=None,
            cache_dir=tmp_path,
            url_rewrite={RAW_GITHUB: f"http://127.0.0.1:{port}/"},
            retry=FAST,
        )
    message = str(err.value)
    assert message.startswith("mawps: ") and ".json could not be downloaded" in message
    assert "after 3 attempts" in message and "NEJUMI_DATA_MIRROR" in message


def test_parallel_download_of_wiki_files(fresh: FakeUpstream, data_mirror: Path, tmp_path: Path) -> None:
    fresh.serve_source("wiki", data_mirror)
    files = load_manifest("wiki").files()[:3] + load_manifest("wiki").files()[-60:]
    folder = fetch_files("wiki", files, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert len(fresh.requests) == len(files)
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == {
        f.name for f in files
    }
    assert (folder / "id" / "train.id").read_bytes() == (
        data_mirror / "wiki" / "id" / "train.id"
    ).read_bytes()


# ---- chABSA: official zip or extracted folder -------------------------------------------------


def test_chabsa_zip_download(fresh: FakeUpstream, data_mirror: Path, tmp_path: Path) -> None:
    zip_path = fresh.path_of(load_manifest("chabsa").chabsa_zip_url)
    assert zip_path == "/s3/dev.tech-sketch.jp/chakki/public/chABSA-dataset.zip"
    fresh.routes[zip_path] = chabsa_zip(data_mirror)
    folder = fetch_source(
        "chabsa", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST
    )
    assert folder == tmp_path / "raw" / "chabsa"
    assert len(list((folder / "chABSA-dataset").glob("*.json"))) == 230
    assert not (folder / "chABSA-dataset" / "README.md").exists() and not (folder / "__MACOSX").exists()
    assert convert.chabsa(folder) == convert.chabsa(data_mirror / "chabsa")
    fresh.requests.clear()
    fetch_source("chabsa", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert fresh.requests == []


def test_chabsa_zip_with_changed_member_is_reported(
    fresh: FakeUpstream, data_mirror: Path, tmp_path: Path
) -> None:
    buf = io.BytesIO(chabsa_zip(data_mirror))
    members = {}
    with zipfile.ZipFile(buf) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["chABSA-dataset/e00008_ann.json"] += b"\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    fresh.routes[fresh.path_of(load_manifest("chabsa").chabsa_zip_url)] = out.getvalue()
    with pytest.raises(DataError, match=r"^chabsa: chABSA-dataset/e00008_ann\.json .*sha256.*report it"):
        fetch_source("chabsa", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)


def test_chabsa_zip_with_unknown_json_is_reported(
    fresh: FakeUpstream, data_mirror: Path, tmp_path: Path
) -> None:
    body = chabsa_zip(data_mirror, extra={"chABSA-dataset/e99999_ann.json": b"{}"})
    fresh.routes[fresh.path_of(load_manifest("chabsa").chabsa_zip_url)] = body
    with pytest.raises(DataError, match=r"e99999_ann\.json.*report it"):
        fetch_source("chabsa", mirror_dir=None, cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)


def test_chabsa_zip_in_mirror(data_mirror: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "chabsa").mkdir(parents=True)
    (mirror / "chabsa" / "chABSA-dataset.zip").write_bytes(chabsa_zip(data_mirror))
    folder = fetch_source("chabsa", mirror_dir=mirror, cache_dir=tmp_path / "cache")
    assert folder == tmp_path / "cache" / "raw" / "chabsa"
    assert len(convert.chabsa(folder)["test"]) == 322


def test_chabsa_missing_from_mirror(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^chabsa: neither .*chABSA-dataset.zip.*NEJUMI_DATA_MIRROR"):
        fetch_source("chabsa", mirror_dir=tmp_path, cache_dir=tmp_path)


# ---- MT-bench files through the same machinery -------------------------------------------------


def test_mtbench_files_download_from_pinned_urls(
    fresh: FakeUpstream, data_mirror: Path, tmp_path: Path
) -> None:
    from nejumi_eval.benchmarks.mtbench.data import _manifest, download_pinned, load_variant

    mt_mirror = data_mirror.parent / "mt_bench_ja"
    for f in _manifest().values():
        if (mt_mirror / f.path).is_file():
            fresh.routes[fresh.path_of(f.url)] = (mt_mirror / f.path).read_bytes()
    folder = download_pinned(cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST)
    assert folder == tmp_path / "raw" / "mt_bench_ja"
    assert len(load_variant("neo", folder).questions) == 80
    assert len(load_variant("head", folder).references) == 80
    # five files: questions + references of both variants, and the judge prompts
    assert len(fresh.requests) == 5 and all(r.startswith("/gh/") for r in fresh.requests)
    assert download_pinned(cache_dir=tmp_path, url_rewrite=fresh.rewrite, retry=FAST) == folder
    assert len(fresh.requests) == 5  # cached: nothing fetched again

    judge = next(
        f for f in _manifest().values() if f.path.endswith("judge_prompts.jsonl") and "nejumi" in f.path
    )
    fresh.routes[fresh.path_of(judge.url)] = b'{"name": "tampered"}\n'
    with pytest.raises(DataError, match=r"judge_prompts\.jsonl"):
        download_pinned(cache_dir=tmp_path / "other", url_rewrite=fresh.rewrite, retry=FAST)


def test_mtbench_folder_defaults_beside_the_jaster_mirror(
    monkeypatch: pytest.MonkeyPatch, data_mirror: Path
) -> None:
    from nejumi_eval.benchmarks.mtbench.data import MIRROR_ENV, default_mirror

    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setenv("NEJUMI_DATA_MIRROR", str(data_mirror))
    assert default_mirror() == data_mirror.parent / "mt_bench_ja"
    monkeypatch.setenv(MIRROR_ENV, "/somewhere/else")
    assert default_mirror() == Path("/somewhere/else")


# ---- an unreachable upstream fails fast ---------------------------------------------------------


def refused_url() -> str:
    """A local port nothing listens on: connecting is refused at once."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the retry loop asked for, without waiting them."""
    import time

    delays: list[float] = []
    monkeypatch.setattr(time, "sleep", delays.append)
    return delays


@pytest.mark.parametrize("kind", ["refused", "no-dns"])
def test_mtbench_download_without_network_fails_fast_naming_both_mirrors(
    kind: str, tmp_path: Path, slept: list[float]
) -> None:
    from nejumi_eval.benchmarks.mtbench.data import download_pinned

    base = refused_url() if kind == "refused" else "http://nonexistent.invalid/"  # .invalid never resolves
    with pytest.raises(DataError) as err:
        download_pinned(cache_dir=tmp_path, url_rewrite={RAW_GITHUB: base})  # the default policy
    message = str(err.value)
    assert message.startswith("mt_bench_ja: ") and f"could not be downloaded from {base}" in message
    assert "after 2 attempts" in message and "ConnectError" in message  # one quick retry, no backoff
    assert "NEJUMI_MTBENCH_MIRROR" in message and "NEJUMI_DATA_MIRROR" in message
    # files download in parallel: at most one quick retry each
    assert 1 <= len(slept) <= 5 and all(d <= 0.5 for d in slept)


def counting_client(error: Exception | None = None, status: int = 503) -> tuple[httpx.Client, list[str]]:
    """An httpx client whose every request raises ``error`` (or answers ``status``), counted."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if error is not None:
            raise error
        return httpx.Response(status)

    return httpx.Client(transport=httpx.MockTransport(handler)), calls


def dns_failure() -> httpx.ConnectError:
    import socket

    try:
        raise socket.gaierror(-2, "Name or service not known")
    except socket.gaierror as cause:
        try:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from cause
        except httpx.ConnectError as err:
            return err


@pytest.mark.parametrize(
    ("make_client", "attempts"),
    [
        (lambda: counting_client(dns_failure()), 2),
        (lambda: counting_client(httpx.ConnectTimeout("connect timed out")), 6),
        (lambda: counting_client(httpx.ReadTimeout("read timed out")), 6),
        (lambda: counting_client(httpx.ConnectError("connection reset")), 6),
        (lambda: counting_client(status=503), 6),
        (lambda: counting_client(status=429), 6),
    ],
    ids=["dns", "connect-timeout", "read-timeout", "other-connect-error", "503", "429"],
)
def test_only_unreachable_hosts_skip_the_normal_retry_policy(
    make_client, attempts: int, tmp_path: Path, slept: list[float]
) -> None:
    from nejumi_eval.runtime.fetch import download

    client, calls = make_client()
    with client, pytest.raises(DataError, match=f"after {attempts} attempts") as err:
        download(client, "http://upstream.invalid/f", tmp_path / "f", RetryPolicy(), what="src: f")
    assert len(calls) == attempts and len(slept) == attempts - 1
    assert str(err.value).startswith("src: f could not be downloaded from http://upstream.invalid/f")
    assert "NEJUMI_DATA_MIRROR" in str(err.value)
    assert list(tmp_path.iterdir()) == []
