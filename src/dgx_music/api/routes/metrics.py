"""``/metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dgx_music.api.deps import MetricsDep
from dgx_music.api.metrics import CONTENT_TYPE

router = APIRouter(prefix="/metrics", tags=["service"])


@router.get(
    "",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE.split(";")[0]: {}},
            "description": "Prometheus text format 0.0.4: jobs by status, queue depth, "
            "generation-time histograms, GPU memory.",
        }
    },
)
def read_metrics(observed: MetricsDep) -> Response:
    """Metrics in the Prometheus text format; the database being down is a metric, not an error."""
    return Response(observed.render(), media_type=CONTENT_TYPE)
