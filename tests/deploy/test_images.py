"""The container images and the compose stack, checked without a Docker daemon: pinned
bases, COPY sources present in the build context, non-root final stages with health
checks, a control image without torch (resolved by pip), and a compose file that only
references services, settings and files that exist."""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from control.config import Settings
from tests.deploy.conftest import DEPLOY, REPO

DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
COMPOSE = DEPLOY / "compose" / "compose.yaml"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile: continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        current += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = [part for part in rest.split() if not part.startswith("--")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def dockerignore_patterns() -> list[tuple[bool, str]]:
    out = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            out.append((negate, line.lstrip("!").strip("/")))
    return out


def _matches(pattern: str, path: str) -> bool:
    regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.fullmatch(regex, path) is not None


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's .dockerignore semantics: a path is left out when it or a parent folder
    matches a pattern; the last matching pattern (``!`` re-includes) wins."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, pattern in patterns:
        if any(_matches(pattern, candidate) for candidate in candidates):
            result = not negate
    return result


def copy_sources(stage: Stage) -> list[str]:
    sources = []
    for keyword, rest in stage.instructions:
        if keyword not in {"COPY", "ADD"}:
            continue
        args = rest.split()
        if any(arg.startswith("--from") for arg in args):
            continue
        args = [arg for arg in args if not arg.startswith("--")]
        sources.extend(args[:-1])
    return sources


def final_stage(path: Path) -> Stage:
    return parse_dockerfile(path)[-1]


def test_the_three_images_exist():
    assert {path.name for path in DOCKERFILES} >= {
        "control.Dockerfile",
        "training.Dockerfile",
        "triton.Dockerfile",
    }


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_base_image_is_pinned_by_tag(path):
    stages = parse_dockerfile(path)
    assert len(stages) >= 2, "multi-stage build expected"
    names = set()
    for stage in stages:
        if stage.base in names:
            continue
        assert "$" not in stage.base, f"{stage.base}: base image from a build argument"
        image = stage.base.split("@")[0]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{stage.base}: no tag"
        assert tag != "latest", f"{stage.base}: latest"
        assert re.search(r"\d", tag), f"{stage.base}: tag {tag!r} is not a version"
        if stage.name:
            names.add(stage.name)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_in_the_build_context(path):
    patterns = dockerignore_patterns()
    sources = [source for stage in parse_dockerfile(path) for source in copy_sources(stage)]
    assert sources
    for source in sources:
        matches = (
            sorted(REPO.glob(source.rstrip("/")))
            if any(c in source for c in "*?[")
            else [REPO / source.rstrip("/")]
        )
        assert matches and all(match.exists() for match in matches), f"{source} missing"
        for match in matches:
            relative = match.relative_to(REPO).as_posix()
            assert not ignored(relative, patterns), f"{source} is excluded by .dockerignore"
            if match.is_dir():
                files = [
                    item.relative_to(REPO).as_posix() for item in match.rglob("*") if item.is_file()
                ]
                assert any(not ignored(item, patterns) for item in files), f"{source}: all ignored"


def test_dockerignore_semantics_on_cases():
    patterns = [
        (False, "web/node_modules"),
        (False, "**/__pycache__"),
        (False, "docs"),
        (True, "docs/keep.md"),
        (False, "model_repository/**/*.onnx"),
    ]
    assert ignored("web/node_modules/react/index.js", patterns)
    assert ignored("control/db/__pycache__/x.pyc", patterns)
    assert ignored("docs/a.md", patterns) and not ignored("docs/keep.md", patterns)
    assert ignored("model_repository/cxr_net/1/model.onnx", patterns)
    assert not ignored("web/src/main.tsx", patterns)


def test_build_context_leaves_out_state_and_weights():
    patterns = dockerignore_patterns()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "var/medvision.db",
        "web/node_modules/x",
        "model_repository/cxr_net/config.pbtxt",
        "model_repository/cxr_net/1/model.onnx",
        "model_repository/ct_head_net/1/model.onnx",
        "model_repository/brats_net/1/model.plan",
    ):
        assert ignored(path, patterns), path


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_a_non_root_user(path):
    users = [rest for keyword, rest in final_stage(path).instructions if keyword == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    keywords = [keyword for keyword, _ in final_stage(path).instructions]
    last_user = len(keywords) - 1 - keywords[::-1].index("USER")
    assert "RUN" not in keywords[last_user:], "RUN after the last USER runs as that user"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_has_a_healthcheck(path):
    checks = [rest for keyword, rest in final_stage(path).instructions if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "CMD" in checks[0] and not checks[0].startswith("NONE")


def test_control_image_checks_health_and_serves_the_built_workstation():
    stage = final_stage(DEPLOY / "docker" / "control.Dockerfile")
    text = " ".join(rest for _, rest in stage.instructions)
    assert "/health" in dict(stage.instructions)["HEALTHCHECK"]
    web_dir = re.search(r"MEDVISION_WEB_DIR=(\S+)", text).group(1)
    assert f"COPY --from=web /src/web/dist {web_dir}" in " ".join(
        f"{k} {v}" for k, v in stage.instructions
    )
    assert "web_dir" in Settings.model_fields


def test_control_image_installs_the_base_distribution_only():
    stages = parse_dockerfile(DEPLOY / "docker" / "control.Dockerfile")
    installs = [
        rest
        for stage in stages
        for keyword, rest in stage.instructions
        if keyword == "RUN" and "pip install" in rest
    ]
    assert len(installs) == 1
    assert re.search(r"pip install \.(\s|$)", installs[0]), installs[0]
    assert "torch" in installs[0] and "find_spec('torch')" in installs[0]


def test_triton_image_is_nvidias_with_numpy_below_2_and_no_weights():
    stages = parse_dockerfile(DEPLOY / "docker" / "triton.Dockerfile")
    assert all(re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", s.base) for s in stages)
    runs = " ".join(
        rest for stage in stages for keyword, rest in stage.instructions if keyword == "RUN"
    )
    version = re.search(r"numpy==(\d+)\.", runs)
    assert version and int(version.group(1)) < 2
    sources = [source for stage in stages for source in copy_sources(stage)]
    assert "model_repository" in sources
    assert not [source for source in sources if source.endswith((".onnx", ".plan"))]


def _python_model_imports() -> set[str]:
    """Top-level modules the committed Triton Python models import (their own sibling files,
    which travel with the model folder, left out)."""
    modules = set()
    paths = list((REPO / "model_repository").glob("*/1/*.py"))
    siblings = {path.stem for path in paths}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return modules - siblings


def test_triton_image_provides_what_the_python_models_import():
    stages = parse_dockerfile(DEPLOY / "docker" / "triton.Dockerfile")
    instructions = [(keyword, rest) for stage in stages for keyword, rest in stage.instructions]
    installed = {
        match.lower()
        for keyword, rest in instructions
        if keyword == "RUN" and "pip install" in rest
        for match in re.findall(r'"([A-Za-z0-9_.-]+)[=<>]', rest)
    }
    copied = {
        rest.split()[-1].rstrip("/").rsplit("/", 1)[-1]
        for keyword, rest in instructions
        if keyword == "COPY" and "/opt/medvision/lib/" in rest
    }
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "PYTHONPATH=/opt/medvision/lib" in env
    provided_by_triton = {"triton_python_backend_utils"}
    imports = _python_model_imports()
    assert {"numpy", "medvision_contract"} <= imports
    missing = {
        module
        for module in imports - set(sys.stdlib_module_names) - provided_by_triton
        if module not in installed and module not in copied
    }
    assert not missing, f"the Triton image lacks {missing}"


def _distribution_packages() -> set[str]:
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    return {pattern.rstrip("*") for pattern in found["find"]["include"]}


@pytest.mark.parametrize("name", ["control.Dockerfile", "training.Dockerfile"])
def test_python_images_copy_every_package_of_the_distribution(name):
    stages = parse_dockerfile(DEPLOY / "docker" / name)
    sources = {source.rstrip("/") for stage in stages for source in copy_sources(stage)}
    packages = _distribution_packages()
    assert {"control", "medvision_contract"} <= packages
    assert packages <= sources, f"{name}: pip install . would miss {packages - sources}"
    assert {"pyproject.toml", "README.md"} <= sources


def test_training_image_has_a_cuda_and_a_cpu_variant():
    text = (DEPLOY / "docker" / "training.Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cu\d+$", text, re.M)
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in text
    assert "--build-arg TORCH_VARIANT=cpu" in text


def test_triton_entrypoint_fetches_then_serves():
    script = (DEPLOY / "docker" / "triton-entrypoint.sh").read_text()
    assert (
        script.startswith("#!/bin/sh")
        and (DEPLOY / "docker" / "triton-entrypoint.sh").stat().st_mode & 0o111
    )
    assert "fetch_models.py" in script and "exec tritonserver" in script
    assert '--model-control-mode="${TRITON_MODEL_CONTROL_MODE:-none}"' in script
    if shutil.which("sh"):
        result = subprocess.run(["sh", "-n", str(DEPLOY / "docker" / "triton-entrypoint.sh")])
        assert result.returncode == 0


def test_control_image_dependency_set_has_no_torch(tmp_path):
    """pip resolves the control image's install (`pip install .`) for an empty Python 3.11
    environment and reports what it would install: no torch, no CUDA, no onnxruntime."""
    target = tmp_path / "empty"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(target / "bin" / "python"),
                "install",
                "--dry-run",
                "--report",
                "-",
                "--quiet",
                "--no-input",
                "--disable-pip-version-check",
                str(REPO),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the package index did not answer within 240 s")
    if result.returncode != 0 and (
        "connection" in result.stderr.lower() or "No matching" in result.stderr
    ):
        pytest.skip(f"package index unreachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in report["install"]}
    assert {"medvision", "litestar", "tritonclient", "prometheus-client"} <= names
    heavy = {
        name
        for name in names
        if name in {"torch", "monai", "onnxruntime", "mlflow", "triton"}
        or name.startswith(("nvidia-", "torch"))
    }
    assert not heavy


# --- compose -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_single_machine_stack(compose):
    assert set(compose["services"]) >= {
        "postgres",
        "redis",
        "minio",
        "triton",
        "api",
        "worker",
        "dicom",
        "prometheus",
        "grafana",
    }


def test_compose_depends_on_existing_services_with_conditions(compose):
    services = compose["services"]
    healthchecked = {
        name
        for name, service in services.items()
        if ("healthcheck" in service and not service["healthcheck"].get("disable"))
        or (
            "build" in service
            and "HEALTHCHECK"
            in (
                REPO
                / "deploy"
                / "compose"
                / service["build"]["context"]
                / service["build"]["dockerfile"]
            )
            .resolve()
            .read_text()
            and not service.get("healthcheck", {}).get("disable")
        )
    }
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} -> {target}"
            assert rule["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if rule["condition"] == "service_healthy":
                assert target in healthchecked, f"{name} waits for {target}'s health: none"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_sets_only_existing_medvision_settings(compose):
    fields = {f"MEDVISION_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key in environment:
            if key.startswith("MEDVISION_"):
                seen.add(key)
                assert key in fields, f"{name}: {key} is not a setting (control/config.py)"
        if "MEDVISION_DATABASE_URL" in environment and name != "migrate":
            assert environment["MEDVISION_MIGRATE_ON_STARTUP"] == "false", name
    assert {
        "MEDVISION_DATABASE_URL",
        "MEDVISION_REDIS_URL",
        "MEDVISION_S3_ENDPOINT",
        "MEDVISION_TRITON_URL",
        "MEDVISION_SECRET_KEY",
    } <= seen


def test_compose_mounts_and_builds_files_that_exist(compose):
    base = COMPOSE.parent
    mounts = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                mounts += 1
                assert (base / source).resolve().exists(), f"{name}: {source}"
        if "build" in service:
            context = (base / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file(), name
    assert mounts >= 4


def test_compose_api_reads_drift_references_from_the_model_store(compose):
    services = compose["services"]
    fetch = services["model-references"]
    assert fetch["entrypoint"] == ["python", "/opt/medvision/bin/fetch_models.py"]
    target = fetch["command"][-1]
    assert fetch["command"][fetch["command"].index("--only") + 1] == "drift_reference.json"
    assert fetch["command"][-2] == services["triton"]["environment"]["MODEL_STORE_URI"]
    api = services["api"]
    assert api["environment"]["MEDVISION_MODEL_REPOSITORY"] == target
    assert f"model-references:{target}:ro" in api["volumes"]
    assert api["depends_on"]["model-references"]["condition"] == "service_completed_successfully"
    assert "model-references" in compose["volumes"]


def test_compose_prometheus_scrapes_the_worker_metrics_port(compose):
    port = compose["services"]["worker"]["environment"]["MEDVISION_WORKER_METRICS_PORT"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    }
    assert f"worker:{port}" in targets


def test_compose_reserves_a_gpu_for_triton(compose):
    devices = compose["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_compose_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service.get("image", "")
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest" and not tag.endswith("latest}"), f"{name}: {image!r}"


def test_compose_prometheus_scrapes_services_and_loads_the_shared_rules(compose):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target.split(":")[0]
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {"api", "triton"} <= targets
    assert targets - {"localhost"} <= set(compose["services"])
    mounts = dict(
        volume.split(":")[:2][::-1] for volume in compose["services"]["prometheus"]["volumes"]
    )
    rules_dir = (COMPOSE.parent / mounts["/etc/prometheus/rules"]).resolve()
    assert any(
        fnmatch.fnmatch(path.name, config["rule_files"][0].rsplit("/", 1)[-1])
        for path in rules_dir.iterdir()
    )


def test_compose_grafana_provisions_the_dashboards(compose):
    mounts = dict(
        volume.split(":")[:2][::-1] for volume in compose["services"]["grafana"]["volumes"]
    )
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "medvision.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert (COMPOSE.parent / mounts[path]).resolve() == (DEPLOY / "grafana" / "dashboards")
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_images_carry_the_model_store_fetch_where_compose_and_the_chart_call_it():
    for name, path in (
        ("control.Dockerfile", "/opt/medvision/bin/fetch_models.py"),
        ("triton.Dockerfile", "/opt/medvision/bin/fetch_models.py"),
    ):
        copies = [
            rest
            for keyword, rest in final_stage(DEPLOY / "docker" / name).instructions
            if keyword == "COPY"
        ]
        assert f"deploy/docker/fetch_models.py {path}" in copies, name
    env = " ".join(
        rest
        for keyword, rest in final_stage(DEPLOY / "docker" / "control.Dockerfile").instructions
        if keyword == "ENV"
    )
    assert "MEDVISION_MODEL_REPOSITORY=/var/lib/medvision/models" in env


TRITON_PYTHON = "3.10"  # the Python of nvcr.io/nvidia/tritonserver:24.10-py3 (Ubuntu 22.04)
IMPORT_CHECK = """
import importlib, pkgutil, py_compile, sys
from pathlib import Path
import medvision_contract
for module in pkgutil.iter_modules(medvision_contract.__path__):
    importlib.import_module("medvision_contract." + module.name)
for path in sorted(Path("model_repository").glob("*/1/*.py")):
    py_compile.compile(str(path), doraise=True, cfile=str(Path(sys.argv[1]) / (path.stem + ".pyc")))
    if path.name != "model.py":
        sys.path.insert(0, str(path.parent))
        importlib.import_module(path.stem)
        sys.path.pop(0)
print(sys.version_info[:2])
"""


def _python(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}")]
    candidates += [
        str(path) for path in Path.home().glob(f".pyenv/versions/{version}.*/bin/python")
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "--version"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.startswith(f"Python {version}."):
            return candidate
    return None


def test_triton_models_and_contract_import_under_the_triton_images_python(tmp_path):
    """The Triton image runs the Python models with its own interpreter (3.10), not the
    project's 3.11: the contract package and the models' numpy modules must import there
    with numpy<2, and every model file must compile."""
    python = _python(TRITON_PYTHON)
    if python is None:
        pytest.skip(f"no Python {TRITON_PYTHON} interpreter here (the Triton image's Python)")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "numpy==1.26.4",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if install.returncode != 0:
        pytest.skip(f"numpy for Python {TRITON_PYTHON} not installable: {install.stderr[-300:]}")
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", IMPORT_CHECK, str(tmp_path)],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "(3, 10)"
