"""Trust boundaries as pure functions: whose an existing object is (reconcile.ownership), where an
API key may go and which Secrets consented (policy). The same rules on the real control plane:
tests/integration/test_trust.py."""

from __future__ import annotations

from typing import Any

import pytest

from nejumi_eval.api.v1alpha1.spec import parse_spec
from nejumi_operator.policy import (
    AWS_S3_HOST,
    DEFAULT_KEY_HOSTS,
    LABEL_USABLE_BY_EVALUATIONS,
    Policy,
    host_matches,
    key_destinations,
    secret_refs,
)
from nejumi_operator.reconcile.job import InvalidEvaluation, validate
from nejumi_operator.reconcile.ownership import Claim, claim

EVALUATION = {"metadata": {"name": "e", "namespace": "ns", "uid": "uid-now"}}


def ref(uid: str, name: str = "e", kind: str = "NejumiEvaluation") -> dict[str, str]:
    return {"apiVersion": "nejumi.wandb.ai/v1alpha1", "kind": kind, "name": name, "uid": uid}


def obj(refs: list[dict[str, str]] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "e-evaluator", **({"ownerReferences": refs} if refs else {}), **meta}}


@pytest.mark.parametrize(
    ("existing", "expected", "owner"),
    [
        (obj([ref("uid-now")]), Claim.OURS, "this evaluation"),
        (obj([ref("uid-old")]), Claim.COLLECTING, "a deleted NejumiEvaluation e (uid uid-old)"),
        (obj([ref("uid-x")], deletionTimestamp="2026-12-05T00:00:00Z"), Claim.COLLECTING, "being deleted"),
        (obj(), Claim.FOREIGN, "no owner"),
        (obj([ref("uid-x", name="other")]), Claim.FOREIGN, "owned by NejumiEvaluation other"),
        (obj([ref("uid-old"), ref("rs", name="r", kind="ReplicaSet")]), Claim.FOREIGN, None),
    ],
)
def test_an_existing_object_is_ours_only_by_owner_uid(
    existing: Any, expected: Claim, owner: str | None
) -> None:
    found, who = claim(existing, EVALUATION)
    assert found is expected
    if owner is not None:
        assert who == owner


def test_a_retained_workspace_is_ours_only_with_our_labels_and_when_asked_for() -> None:
    labels = {"nejumi.wandb.ai/evaluation": "e", "app.kubernetes.io/managed-by": "nejumi-operator"}
    pvc = obj(labels=labels)
    assert claim(pvc, EVALUATION, unowned_labels=labels)[0] is Claim.OURS
    assert claim(pvc, EVALUATION)[0] is Claim.FOREIGN  # the spec does not ask for a retained one
    forged = obj(labels={"nejumi.wandb.ai/evaluation": "e"})
    assert claim(forged, EVALUATION, unowned_labels=labels)[0] is Claim.FOREIGN


@pytest.mark.parametrize(
    ("host", "pattern", "matches"),
    [
        ("api.openai.com", "api.openai.com", True),
        ("api.openai.com.evil.net", "api.openai.com", False),
        ("llm.team.svc", "*.svc", True),
        ("svc", "*.svc", False),
        ("x.svc.cluster.local", "*.svc.cluster.local", True),
        ("eu.openai.azure.com", "*.openai.azure.com", True),
        ("openai.azure.com.example", "*.openai.azure.com", False),
        ("", "*.svc", False),
    ],
)
def test_key_hosts_match_exactly_or_by_suffix(host: str, pattern: str, matches: bool) -> None:
    assert host_matches(host, pattern) is matches


def api_spec(endpoint: str, judge: dict[str, Any] | None = None, **model: Any) -> Any:
    bench: dict[str, Any] = {"mtbench": {"judge": judge}} if judge else {"mtbench": {"enabled": False}}
    return parse_spec(
        {
            "model": {"name": "m", "source": "openai-compatible", "endpoint": endpoint, **model},
            "benchmarks": bench,
        }
    )


KEY = {"name": "db-password", "key": "k"}


def test_a_key_goes_only_to_an_allowed_host() -> None:
    policy = Policy()
    assert policy.violations(api_spec("https://api.openai.com/v1", apiKeySecretRef=KEY)) == []
    assert policy.violations(api_spec("http://vllm.team-a.svc:8000/v1", apiKeySecretRef=KEY)) == []
    assert policy.violations(api_spec("http://attacker.example:8000/v1")) == []  # no key, nothing to leak
    (problem,) = policy.violations(api_spec("http://attacker.example:8000/v1", apiKeySecretRef=KEY))
    assert problem.startswith(
        "spec.model.endpoint: the key in Secret db-password may not be sent to 'attacker.example'"
    )
    assert "policy.keyHosts (allowed: api.openai.com" in problem
    # A judge without an endpoint sends its key to the OpenAI API; with one, to that host.
    assert policy.violations(api_spec("http://m.svc/v1", judge={"apiKeySecretRef": KEY})) == []
    (problem,) = policy.violations(
        api_spec("http://m.svc/v1", judge={"apiKeySecretRef": KEY, "endpoint": "https://10.0.0.9/v1"})
    )
    assert problem.startswith("spec.benchmarks.mtbench.judge.endpoint: the key in Secret db-password")
    assert Policy(enabled=False).violations(api_spec("http://attacker.example/v1", apiKeySecretRef=KEY)) == []


def test_a_secret_is_usable_only_by_its_consent_or_the_policy() -> None:
    spec = api_spec(
        "http://m.svc/v1",
        judge={"apiKeySecretRef": {"name": "judge-key", "key": "k"}},
        apiKeySecretRef=KEY,
        hfTokenSecretRef={"name": "hf", "key": "t"},
    )
    assert [name for _, name in secret_refs(spec)] == ["db-password", "hf", "judge-key"]
    labels = {"db-password": {}, "hf": {LABEL_USABLE_BY_EVALUATIONS: "true"}, "judge-key": None}
    problems = Policy().secret_problems(spec, labels.get)
    assert problems == [
        "spec.model.apiKeySecretRef: Secret db-password is not usable by evaluations: it has no label "
        f'{LABEL_USABLE_BY_EVALUATIONS}="true" and is not in the operator\'s policy.usableSecrets '
        "(whoever owns the Secret gives that consent)"
    ]  # hf consented; judge-key does not exist (the operator waits for it)
    assert Policy(usable_secrets=["db-password"]).secret_problems(spec, labels.get) == []
    assert Policy(enabled=False).secret_problems(spec, labels.get) == []


@pytest.mark.parametrize("field", ["model", "judge"])
def test_api_key_env_is_refused_in_the_cluster(field: str) -> None:
    spec: dict[str, Any] = {
        "model": {"name": "m", "source": "openai-compatible", "endpoint": "http://m.svc/v1"}
    }
    if field == "model":
        spec["model"]["apiKeyEnv"] = "ADMIN_KEY"
    else:
        spec["benchmarks"] = {"mtbench": {"judge": {"apiKeyEnv": "ADMIN_KEY"}}}
    parse_spec(spec)  # a local run may name one
    with pytest.raises(InvalidEvaluation, match=r"apiKeyEnv is for local runs"):
        validate(spec)


def results_spec(**results: Any) -> Any:
    return parse_spec({"model": {"name": "m"}, "results": {"uri": "s3://nejumi-results/x", **results}})


S3_KEYS = {"name": "s3-creds"}


def test_a_results_store_is_a_key_destination_only_with_credentials() -> None:
    minio = results_spec(endpoint="https://minio.storage.svc:9000", credentialsSecretRef=S3_KEYS)
    assert key_destinations(minio) == [
        ("spec.results.endpoint", "https://minio.storage.svc:9000", "s3-creds")
    ]
    # No endpoint: AWS S3, whatever the region.
    aws = results_spec(region="eu-west-1", credentialsSecretRef=S3_KEYS)
    assert key_destinations(aws) == [("spec.results.endpoint", f"https://{AWS_S3_HOST}", "s3-creds")]
    assert AWS_S3_HOST == "s3.amazonaws.com" and AWS_S3_HOST in DEFAULT_KEY_HOSTS
    # No credentials in the spec, nothing of the cluster's is sent: any endpoint may be named.
    assert key_destinations(results_spec(endpoint="http://attacker.example:9000")) == []
    assert key_destinations(parse_spec({"model": {"name": "m"}})) == []


def test_a_store_key_goes_only_to_an_allowed_host() -> None:
    policy = Policy()
    assert policy.violations(results_spec(credentialsSecretRef=S3_KEYS)) == []  # AWS S3
    assert (
        policy.violations(results_spec(endpoint="http://minio.team-a.svc:9000", credentialsSecretRef=S3_KEYS))
        == []
    )
    assert policy.violations(results_spec(endpoint="http://attacker.example:9000")) == []
    (problem,) = policy.violations(
        results_spec(endpoint="http://attacker.example:9000", credentialsSecretRef=S3_KEYS)
    )
    assert problem.startswith(
        "spec.results.endpoint: the key in Secret s3-creds may not be sent to 'attacker.example'"
    )
    assert "policy.keyHosts (allowed: " in problem
    # `*.amazonaws.com` is not AWS S3: anyone's EC2 instance or load balancer answers there.
    ec2 = results_spec(
        endpoint="https://ec2-203-0-113-9.compute-1.amazonaws.com", credentialsSecretRef=S3_KEYS
    )
    assert len(policy.violations(ec2)) == 1
    # A regional endpoint named explicitly is allowed only when the admin lists it.
    regional = results_spec(endpoint="https://s3.eu-west-1.amazonaws.com", credentialsSecretRef=S3_KEYS)
    assert len(policy.violations(regional)) == 1
    assert Policy(key_hosts=["s3.eu-west-1.amazonaws.com"]).violations(regional) == []
    # An admin who removes AWS S3 from keyHosts refuses it too.
    assert len(Policy(key_hosts=["*.svc"]).violations(results_spec(credentialsSecretRef=S3_KEYS))) == 1


def test_a_store_secret_needs_consent_like_any_other() -> None:
    spec = results_spec(credentialsSecretRef={"name": "platform-s3", "accessKeyIdKey": "id"})
    assert secret_refs(spec) == [("spec.results.credentialsSecretRef", "platform-s3")]
    (problem,) = Policy().secret_problems(spec, {"platform-s3": {}}.get)
    assert problem.startswith(
        "spec.results.credentialsSecretRef: Secret platform-s3 is not usable by evaluations"
    )
    assert Policy().secret_problems(spec, {"platform-s3": {LABEL_USABLE_BY_EVALUATIONS: "true"}}.get) == []
    assert Policy(usable_secrets=["platform-s3"]).secret_problems(spec, {"platform-s3": {}}.get) == []
    # The operator's default destination is not the spec's: its Secret is the admin's to name.
    assert secret_refs(parse_spec({"model": {"name": "m"}})) == []
