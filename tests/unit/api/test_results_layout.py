"""The results layout (api.v1alpha1.results): URIs, keys and the manifest, as readers rely on them."""

from __future__ import annotations

import pytest

from nejumi_eval.api.v1alpha1.results import (
    Location,
    Manifest,
    ManifestObject,
    cluster_key,
    local_key,
    manifest_digest,
    sha256_hex,
)
from nejumi_eval.storage.upload import evaluation_ref


def test_a_uri_is_a_bucket_and_a_prefix_without_slashes_at_its_ends() -> None:
    assert Location.parse("s3://results/team-a/") == Location("results", "team-a")
    assert Location.parse("s3://results") == Location("results", "")
    loc = Location.parse("s3://results/base").child("ns/name/3")
    assert loc == Location("results", "base/ns/name/3")
    assert loc.uri == "s3://results/base/ns/name/3/"
    assert loc.object_key("summary.json") == "base/ns/name/3/summary.json"
    assert Location("results").object_key("manifest.json") == "manifest.json"
    assert Location("results").uri == "s3://results/"


@pytest.mark.parametrize("uri", ["http://results/x", "s3://UPPER/x", "s3://ab", "results/x", "s3://"])
def test_anything_but_an_s3_uri_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="s3://bucket"):
        Location.parse(uri)


def test_keys_name_the_evaluation_generation_or_the_model_and_time() -> None:
    assert cluster_key("team-a", "strong-7b", 3) == "team-a/strong-7b/3"
    assert local_key("tiny-random-llama", "20261205T165454Z") == "tiny-random-llama/20261205T165454Z"
    ref = evaluation_ref("team-a/strong-7b/3")
    assert ref is not None and (ref.namespace, ref.name, ref.generation) == ("team-a", "strong-7b", 3)
    assert evaluation_ref("tiny/20261205T165454Z") is None
    assert evaluation_ref(None) is None


def test_the_manifest_round_trips_and_its_digest_is_of_its_bytes() -> None:
    body = b'{"status": "completed"}\n'
    manifest = Manifest(
        key="team-a/strong-7b/3",
        model="org/strong-7b",
        status="completed",
        created_at="2026-12-05T00:00:00+00:00",
        objects=[ManifestObject(path="summary.json", size=len(body), sha256=sha256_hex(body))],
    )
    data = manifest.to_bytes()
    again = Manifest.model_validate_json(data)
    assert again == manifest
    assert again.object("summary.json") is not None and again.object("run.json") is None
    assert manifest_digest(data) == "sha256:" + sha256_hex(data)
    assert b'"apiVersion": "nejumi.wandb.ai/v1alpha1"' in data and b'"kind": "NejumiResults"' in data
