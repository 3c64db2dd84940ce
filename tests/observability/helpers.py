"""Shared helpers of the observability tests: uploads and findings written straight to the
database (the drift and metrics figures are derived from stored findings, no Triton needed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from litestar import Litestar
from litestar.testing import AsyncTestClient

from control.db.models import (
    Decision,
    DecisionAction,
    Finding,
    FindingKind,
    InferenceJob,
    JobStatus,
)
from tests.conftest import Account
from tests.fixtures.dx import chest_dx


async def upload_chest(client: AsyncTestClient[Litestar], account: Account, seed: int = 0) -> str:
    """Upload one synthetic chest radiograph; its case id."""
    files = [("files", ("chest.dcm", chest_dx(64, seed=seed)))]
    response = await client.post("/api/studies", files=files, headers=account.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["case_ids"][0])


async def add_findings(
    app: Litestar,
    case_id: str,
    model: str,
    version: str,
    samples: Sequence[Mapping[str, Mapping[str, float]]],
    *,
    decision: DecisionAction | None = None,
) -> None:
    """One done job on ``case_id`` holding a finding per sample (keys ``probabilities``,
    ``volumes_ml``, ``input_stats``), each optionally with a radiologist decision."""
    now = datetime.now(UTC)
    async with app.state.session_factory() as session:
        job = InferenceJob(
            case_id=uuid.UUID(case_id),
            pipeline=model,
            status=JobStatus.DONE,
            attempts=1,
            max_attempts=3,
            available_at=now,
            finished_at=now,
        )
        session.add(job)
        await session.flush()
        for index, sample in enumerate(samples):
            probabilities = dict(sample.get("probabilities", {}))
            finding = Finding(
                id=uuid.uuid4(),
                case_id=uuid.UUID(case_id),
                job_id=job.id,
                subject=f"s{index}",
                kind=FindingKind.CLASSIFICATION if probabilities else FindingKind.SEGMENTATION,
                model_name=model,
                network_name=f"{model}_net",
                model_version=version,
                labels=[label for label, p in probabilities.items() if p >= 0.5],
                probabilities=probabilities,
                thresholds={},
                volumes_ml=dict(sample.get("volumes_ml", {})),
                artifacts={},
                input_sha256="0" * 64,
                output_sha256="0" * 64,
                latency_ms=1.0,
                input_stats=dict(sample.get("input_stats", {})),
                decisions=[],
                created_at=now - timedelta(seconds=len(samples) - index),
            )
            session.add(finding)
            if decision is not None:
                await session.flush()
                session.add(
                    Decision(
                        finding_id=finding.id,
                        case_id=uuid.UUID(case_id),
                        sequence=1,
                        action=decision,
                        username="rad1",
                    )
                )
        await session.commit()


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by sample name, parsed with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def exposed_names(text: str) -> set[str]:
    """Every metric family name in an exposition (``# TYPE`` lines, samples or not)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name.removesuffix("_total") + "_total")
    return names
