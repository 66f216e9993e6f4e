"""Offline checks of deploy/: Kubernetes schemas (strict), the PaddleJob CRD schema, hardening rules
(checkov, plus our own invariants), shell scripts (shellcheck), and the rendered copies being current."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir())
RENDERED = DEPLOY / "k8s" / "rendered"
CHECKOV = ROOT / ".venv-deploy" / "bin" / "checkov"
SCRIPTS = [*sorted(DEPLOY.glob("*.sh")), ROOT / "scripts" / "serve_demo.sh"]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize_v5() -> str | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True).stdout
    return kubectl if re.search(r"Kustomize Version: v5\.", out) else None


def test_every_overlay_has_a_rendered_copy():
    assert OVERLAYS == sorted(p.stem for p in RENDERED.glob("*.yaml"))
    assert {"x86-64", "arm64", "loong64", "ascend", "kunlun", "cluster"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_copy_is_current(overlay):
    kubectl = kustomize_v5()
    if kubectl is None:
        pytest.skip(
            "no kubectl with kustomize v5 here: the committed rendered copies are validated below, "
            "but cannot be re-rendered to check they are current"
        )
    fresh = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    committed = (RENDERED / f"{overlay}.yaml").read_text().split("\n", 1)[1]
    assert fresh == committed, f"re-render: kubectl kustomize deploy/k8s/overlays/{overlay} (see the file's header)"


def test_kubernetes_validate_strict():
    tool = Path(sys.executable).parent / "kubernetes-validate"
    files = [str(p) for p in sorted(RENDERED.glob("*.yaml"))]
    proc = subprocess.run([str(tool), "--strict", "--quiet", "-k", "1.30.0", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubernetes_validate_catches_a_typo(tmp_path):
    bad = (RENDERED / "x86-64.yaml").read_text().replace("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1)
    (tmp_path / "bad.yaml").write_text(bad)
    tool = Path(sys.executable).parent / "kubernetes-validate"
    proc = subprocess.run(
        [str(tool), "--strict", "--quiet", str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "readOnlyRootFileSystem" in proc.stdout + proc.stderr


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields refused, as the API server's strict field validation does."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def paddlejob_validator():
    import jsonschema

    schema = json.loads((DEPLOY / "paddlejob" / "paddlejob-v1.schema.json").read_text())
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(strict(schema))


def test_paddlejob_matches_the_crd_schema():
    (job,) = docs(DEPLOY / "paddlejob" / "paddlejob.yaml")
    assert job["apiVersion"] == "batch.paddlepaddle.org/v1" and job["kind"] == "PaddleJob"
    errors = [f"{list(e.path)}: {e.message}" for e in paddlejob_validator().iter_errors(job)]
    assert not errors, errors
    args = job["spec"]["worker"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["tools/train.py", "-c", "configs/quickstart.yml"] and (ROOT / args[2]).is_file()


@pytest.mark.parametrize("edit", ["typo", "type"])
def test_paddlejob_schema_check_can_fail(edit):
    (job,) = docs(DEPLOY / "paddlejob" / "paddlejob.yaml")
    if edit == "typo":
        job["spec"]["worker"]["replica"] = job["spec"]["worker"].pop("replicas")
    else:
        job["spec"]["withGloo"] = "yes"
    assert list(paddlejob_validator().iter_errors(job))


def _containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hardening_invariants(overlay):
    objs = docs(RENDERED / f"{overlay}.yaml")
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for needed in [
        ("Deployment", "paddle-mm"),
        ("Service", "paddle-mm"),
        ("HorizontalPodAutoscaler", "paddle-mm"),
        ("PodDisruptionBudget", "paddle-mm"),
        ("NetworkPolicy", "default-deny"),
        ("ServiceAccount", "paddle-mm"),
    ]:
        assert needed in kinds, needed
    assert any(k == "Secret" for k, _ in kinds) and any(k == "ConfigMap" for k, _ in kinds)
    deny = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "default-deny")
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    sa = next(o for o in objs if o["kind"] == "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    dep = next(o for o in objs if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    for c in _containers(dep):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], c["name"]
        assert DIGEST.search(c["image"]), c["image"]
        assert "env" not in c or all("secretKeyRef" not in json.dumps(e) for e in c["env"])
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 30
    arch = pod["nodeSelector"]["kubernetes.io/arch"]
    assert arch == {"x86-64": "amd64", "cluster": "amd64", "kunlun": "amd64"}.get(
        overlay, overlay.replace("ascend", "arm64")
    )
    limits = pod["containers"][0]["resources"]["limits"]
    assert ("huawei.com/Ascend910" in limits) == (overlay == "ascend")
    assert ("kunlunxin.com/xpu" in limits) == (overlay == "kunlun")


def test_the_service_config_in_the_configmap_builds():
    from paddle_mm.serving.config import build_serving_config

    cfg = yaml.safe_load((DEPLOY / "k8s" / "base" / "serve.yml").read_text())
    built = build_serving_config(cfg)
    assert built["Model"]["package"] == "/models/package" and built["Audit"]["path"].startswith("/var/log/")


@pytest.mark.parametrize("framework, target", [("kubernetes", RENDERED), ("dockerfile", DEPLOY / "docker")])
def test_checkov(framework, target):
    if not CHECKOV.exists():
        pytest.fail(
            f"{CHECKOV} missing: scripts/setup.sh --tests creates .venv-deploy with checkov (kept apart from the "
            "pinned stack, whose versions it would change)"
        )
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(target), "--framework", framework, "--skip-download", "--compact", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{c['check_id']} {c['file_path']}" for r in reports for c in r["results"].get("failed_checks", [])]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert not failed and passed > 100, failed
    for r in reports:  # every skip carries its reason inline (# checkov:skip=ID: why)
        for c in r["results"].get("skipped_checks", []):
            assert len(c.get("check_result", {}).get("suppress_comment", "")) > 30, c["check_id"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck(script):
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck missing: scripts/setup.sh --tests installs it (Debian package shellcheck)")
    proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
