"""A campaign's report, as JSON (counts, progress, throughput, failures)
or as CSV of every message (:mod:`campaigns.reports`)."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import renderers, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.negotiation import FormatParameterNegotiation
from campaigns import reports
from campaigns.api.base import CAMPAIGN_ID, CampaignsView, errors
from campaigns.models import Campaign, CampaignStatus


class ReportSerializer(serializers.Serializer[Any]):
    """``GET /api/v1/campaigns/{id}/report`` (campaigns.reports.report)."""

    class ProgressSerializer(serializers.Serializer[Any]):
        done = serializers.IntegerField(help_text="Messages in a final status (sent, delivered, read, failed).")
        remaining = serializers.IntegerField()
        percent = serializers.FloatField()
        expanded = serializers.BooleanField(help_text="Every contact has its message row.")

    class RepliesSerializer(serializers.Serializer[Any]):
        messages = serializers.IntegerField(help_text="Replies received.")
        recipients = serializers.IntegerField(help_text="Recipients who replied.")
        rate_percent = serializers.FloatField(allow_null=True, help_text="Recipients who replied, of those sent to.")

    class SkippedSerializer(serializers.Serializer[Any]):
        total = serializers.IntegerField(help_text="Recipients never tried: opted out or not on WhatsApp.")
        by_reason = serializers.DictField(
            child=serializers.IntegerField(), help_text="opted_out, not_on_network (number check)."
        )

    class InstanceShareSerializer(serializers.Serializer[Any]):
        instance = serializers.UUIDField()
        name = serializers.CharField()
        status = serializers.CharField(help_text="The instance's status now.")
        queued = serializers.IntegerField()
        sent = serializers.IntegerField()
        failed = serializers.IntegerField()
        moved_in = serializers.IntegerField(help_text="Messages it took over from a stopped instance.")
        moved_out = serializers.IntegerField(help_text="Messages that moved off it when it stopped.")

    class ThroughputSerializer(serializers.Serializer[Any]):
        sent = serializers.IntegerField(help_text="Messages accepted by the network so far.")
        first_sent_at = serializers.DateTimeField(allow_null=True)
        last_sent_at = serializers.DateTimeField(allow_null=True)
        per_minute_overall = serializers.FloatField(
            allow_null=True,
            help_text=(
                "Sends per minute from the first send to now (to the last send once completed or cancelled), "
                "over at least one minute; null before the first send."
            ),
        )
        per_minute_last_10_min = serializers.FloatField(
            allow_null=True,
            help_text=(
                "Sends per minute over the last 10 minutes of that same span (since the first send if that is "
                "more recent), over at least one minute; null before the first send."
            ),
        )
        sent_last_hour = serializers.IntegerField(help_text="Sends in the hour before now.")
        estimated_completion_at = serializers.DateTimeField(allow_null=True)
        queued = serializers.IntegerField()

    campaign = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=CampaignStatus.choices)
    pause_reason = serializers.CharField(allow_blank=True)
    status_message = serializers.CharField(allow_blank=True)
    recipients = serializers.IntegerField(help_text="Contacts the campaign covers.")
    messages = serializers.IntegerField(help_text="Message rows created so far.")
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="Messages by status.")
    progress = ProgressSerializer()
    throughput = ThroughputSerializer()
    failures = serializers.DictField(child=serializers.IntegerField(), help_text="Failed messages by reason.")
    skipped = SkippedSerializer(help_text="Recipients skipped without a send (counted in failures too).")
    replies = RepliesSerializer(help_text="Inbound messages that replied to the campaign's messages.")
    instances = InstanceShareSerializer(many=True, help_text="Each instance's share of the campaign.")
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    cancelled_at = serializers.DateTimeField(allow_null=True)
    generated_at = serializers.DateTimeField()


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else str(data or "").encode()


def csv_response(campaign: Campaign) -> StreamingHttpResponse:
    response = StreamingHttpResponse(reports.csv_lines(campaign), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.key}.csv"'
    return response


class JsonErrorsMixin:
    """Errors are JSON, whatever format was asked for (as the QR view does)."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(response, "status_code", 200) >= 400 and getattr(request, "accepted_renderer", None):
            if request.accepted_renderer.format != "json":
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]


@extend_schema(tags=["campaigns"])
class CampaignReportView(JsonErrorsMixin, CampaignsView):
    http_method_names = ["get", "head", "options"]
    renderer_classes = [renderers.JSONRenderer, CSVRenderer]
    content_negotiation_class = FormatParameterNegotiation
    serializer_class = ReportSerializer

    @extend_schema(
        operation_id="campaigns_report",
        summary="Counts by status, progress, throughput, failures by reason",
        description="`?format=csv` (or GET .../report.csv) answers every message of the campaign as CSV.",
        parameters=[
            CAMPAIGN_ID,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"], description="What to answer."),
        ],
        responses={
            (200, "application/json"): ReportSerializer,
            (200, "text/csv"): OpenApiTypes.STR,
            **errors(400, 401, 404),
        },
    )
    def get(self, request: Request, id: str) -> Any:
        campaign = self.campaign()
        if request.accepted_renderer.format == "csv":
            return csv_response(campaign)
        return Response(ReportSerializer(reports.report(campaign, timezone.now())).data)


@extend_schema(tags=["campaigns"])
class CampaignReportCsvView(JsonErrorsMixin, CampaignsView):
    http_method_names = ["get", "head", "options"]
    # CSV only (errors are still JSON, see JsonErrorsMixin): no ?format= here.
    renderer_classes = [CSVRenderer]
    serializer_class = ReportSerializer

    @extend_schema(
        operation_id="campaigns_report_csv",
        summary="Every message of the campaign as CSV",
        description=(
            "One line per message (docs/CAMPAIGNS.md, Report), streamed. Errors are JSON, as everywhere in the API."
        ),
        parameters=[CAMPAIGN_ID],
        responses={(200, "text/csv"): OpenApiTypes.STR, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Any:
        return csv_response(self.campaign())
