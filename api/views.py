"""The tenant REST API and the seed's endpoints.

Views only translate HTTP to calls: every query goes through
``TenantView.instances()`` (scoped to the key's tenant, so another tenant's
instance is a 404 like a missing one) and every change through
``instances.commands`` or ``instances.controls`` (audited with the key as actor).

One module of about 600 lines on purpose: each view is a few lines of HTTP
translation plus its OpenAPI description, and the instance, gateway,
breaker, QR, pairing-code and seed endpoints share ``TenantView``'s scoping. Split by
resource (as ``campaigns/api/`` is), each file would repeat those imports and
that base for four short classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, renderers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.authentication import ApiKeyAuthentication, IsTenantClient, QueryTokenAuthentication, TenantClient
from api.negotiation import FormatParameterNegotiation
from api.pagination import Pagination
from api.serializers import (
    CircuitBreakerSerializer,
    ConnectionEventSerializer,
    ErrorSerializer,
    GatewaySerializer,
    HealthSerializer,
    InstanceListQuerySerializer,
    InstanceSerializer,
    InstanceUpdateSerializer,
    PairCodeRequestSerializer,
    PairCodeSerializer,
    QRCodeSerializer,
    canonical_uuid,
)
from instances import commands, controls
from instances import qr as qr_images
from instances.models import (
    ConnectionEvent,
    Gateway,
    Instance,
    Status,
    Tenant,
)
from monitoring.counts import count_instances

INSTANCE_NOT_FOUND = "No instance with this id."
NOT_AWAITING_QR = "The instance is not awaiting a QR scan: there is no pairing code to show."

# --- schema helpers -----------------------------------------------------------

ERROR_DESCRIPTIONS = {
    400: "Invalid input: field errors ({field: [messages]}) or {detail}.",
    401: "Missing, invalid or revoked API key.",
    404: "No such instance for this key's tenant (another tenant's instance is a 404 too).",
    409: "The command does not apply in the instance's current state.",
    413: "The request body is too large.",
    415: "The body is not JSON.",
    429: "Used on this instance moments ago; see Retry-After.",
    503: "The rate limiter is unavailable.",
}


def errors(*codes: int, descriptions: dict[int, str] | None = None) -> dict[Any, OpenApiResponse]:
    """Documented error responses for ``extend_schema(responses=...)``.

    Always JSON (``application/json``), also on views that answer other
    types when all goes well."""
    documented: dict[Any, OpenApiResponse] = {}
    for code in codes:
        body: Any = OpenApiTypes.OBJECT if code == 400 else ErrorSerializer
        description = (descriptions or ERROR_DESCRIPTIONS)[code]
        documented[(code, "application/json")] = OpenApiResponse(body, description=description)
    return documented


def instance_id_parameter(name: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.UUID,
        OpenApiParameter.PATH,
        description="The instance's public id (`id` in its JSON).",
    )


ID = instance_id_parameter("id")
SEED_ID = instance_id_parameter("instance_id")
# Either the seed's query parameter or the Bearer header.
SEED_AUTH = [{"accessToken": []}, {"apiKey": []}]
SEED_DESCRIPTION = (
    "For clients migrating from the old gateway. Authenticate with `?access_token=<API key>` "
    "(or the Bearer header). Same answer as the /api/v1 endpoint named in the summary."
)

# --- base -----------------------------------------------------------------------


class TenantView(generics.GenericAPIView):  # type: ignore[type-arg]
    """A view for one tenant's API key: its queries are scoped to the tenant."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsTenantClient]
    pagination_class = Pagination
    lookup_url_kwarg = "id"

    @property
    def client(self) -> TenantClient:
        user = self.request.user
        assert isinstance(user, TenantClient)  # guaranteed by IsTenantClient
        return user

    @property
    def tenant(self) -> Tenant:
        return self.client.tenant

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if isinstance(self.request.user, TenantClient):
            context["tenant"] = self.tenant
        return context

    def instances(self) -> QuerySet[Instance]:
        """Every instance this request may see: the tenant's, with their breakers."""
        return Instance.objects.filter(tenant=self.tenant).select_related("breaker")

    def get_instance(self) -> Instance:
        """The instance named in the path, or 404 (malformed id, missing, another tenant's)."""
        key = canonical_uuid(self.kwargs[self.lookup_url_kwarg])
        if key is None:
            raise NotFound(INSTANCE_NOT_FOUND)
        instance = self.instances().filter(key=key).first()
        if instance is None:
            raise NotFound(INSTANCE_NOT_FOUND)
        return instance

    def refetch(self, instance: Instance) -> Instance:
        """The instance reloaded with its breaker, after a command changed it."""
        return self.instances().get(pk=instance.pk)

    def instance_response(self, instance: Instance, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(InstanceSerializer(self.refetch(instance)).data, status=status_code)


# --- gateways -----------------------------------------------------------------


@extend_schema(tags=["gateways"])
class GatewayListView(TenantView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = GatewaySerializer

    def get_queryset(self) -> QuerySet[Gateway]:
        return Gateway.objects.filter(enabled=True).order_by("name", "id")

    @extend_schema(
        operation_id="gateways_list",
        summary="The gateways the tenant may use",
        responses={200: GatewaySerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


@extend_schema(tags=["gateways"])
class GatewayProbeView(TenantView):
    """Probe a down gateway now, instead of at its next scheduled probe."""

    http_method_names = ["post", "options"]
    serializer_class = GatewaySerializer

    @extend_schema(
        operation_id="gateways_probe",
        parameters=[OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The gateway's id.")],
        summary="Probe a down gateway now (rate-limited per gateway, audited)",
        description=(
            "A worker makes one real attempt for one of the gateway's waiting instances within a second; "
            "its answer brings the gateway up and its instances reconnect. 409 when the gateway is up."
        ),
        request=None,
        responses={200: GatewaySerializer, **errors(401, 404, 409, 429, 503)},
    )
    def post(self, request: Request, id: int, **kwargs: Any) -> Response:
        gateway = Gateway.objects.filter(enabled=True, pk=id).first()
        if gateway is None:
            raise NotFound(f"No gateway {id}: GET /api/v1/gateways lists the gateways you may use.")
        gateway = controls.probe_gateway(gateway, actor=self.client.actor)
        return Response(GatewaySerializer(gateway).data)


# --- instances ------------------------------------------------------------------


@extend_schema(tags=["instances"])
class InstanceListView(TenantView, generics.ListCreateAPIView):  # type: ignore[type-arg]
    serializer_class = InstanceSerializer

    def get_queryset(self) -> QuerySet[Instance]:
        queryset = self.instances().select_related("gateway").order_by("name", "id")
        # DRF reads an empty query parameter as an absent one; ?status= is no status.
        if self.request.query_params.get("status", "x") == "":
            raise ValidationError({"status": ["This filter may not be blank."]})
        query = InstanceListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        if "status" in query.validated_data:
            queryset = queryset.filter(status=query.validated_data["status"])
        return queryset

    @extend_schema(
        operation_id="instances_list",
        summary="List instances",
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=Status.values, description="Only this status.")],
        responses={200: InstanceSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="instances_create",
        summary="Create an instance (stopped: POST .../connect starts it)",
        request=InstanceSerializer,
        responses={201: InstanceSerializer, **errors(400, 401, 413, 415)},
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                instance = serializer.save(tenant=self.tenant)
        except IntegrityError:
            # Two creates with one name raced past validate_name.
            raise ValidationError({"name": ["You already have an instance with this name."]}) from None
        return self.instance_response(instance, status.HTTP_201_CREATED)


@extend_schema(tags=["instances"])
class InstanceDetailView(TenantView):
    http_method_names = ["get", "patch", "delete", "head", "options"]
    serializer_class = InstanceSerializer

    @extend_schema(
        operation_id="instances_retrieve",
        parameters=[ID],
        summary="One instance",
        responses={200: InstanceSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, id: str) -> Response:
        return Response(InstanceSerializer(self.get_instance()).data)

    @extend_schema(
        operation_id="instances_update",
        parameters=[ID],
        summary="Rename an instance",
        request=InstanceUpdateSerializer,
        responses={200: InstanceSerializer, **errors(400, 401, 404, 413, 415)},
    )
    def patch(self, request: Request, id: str) -> Response:
        instance = self.get_instance()
        serializer = InstanceUpdateSerializer(
            instance, data=request.data, partial=True, context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                serializer.save()
        except IntegrityError:
            raise ValidationError({"name": ["You already have an instance with this name."]}) from None
        return self.instance_response(instance)

    @extend_schema(
        operation_id="instances_destroy",
        parameters=[ID],
        summary="Delete an instance (its session is closed first)",
        responses={204: None, **errors(401, 404)},
    )
    def delete(self, request: Request, id: str) -> Response:
        instance = self.get_instance()
        commands.disconnect(instance, actor=self.client.actor)
        instance.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class InstanceCommandView(TenantView):
    """POST one command on one instance; answers the instance as it is now."""

    http_method_names = ["post", "options"]
    serializer_class = InstanceSerializer
    # The command a subclass runs: instances.commands or instances.controls.
    command: Callable[..., Instance]

    def post(self, request: Request, **kwargs: Any) -> Response:
        instance = type(self).command(self.get_instance(), actor=self.client.actor)
        return self.instance_response(instance)


@extend_schema(tags=["instances"])
class ConnectView(InstanceCommandView):
    command = staticmethod(controls.connect)

    @extend_schema(
        operation_id="instances_connect",
        parameters=[ID],
        summary="Desired state running: the platform connects the instance and keeps it connected",
        description=(
            "Clears a stopped, logged-out or replaced instance. A forbidden or halted instance stays so "
            "(the desired state is set, no attempt is made): use force-retry for one attempt. "
            "Rate-limited per instance."
        ),
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


@extend_schema(tags=["instances"])
class DisconnectView(InstanceCommandView):
    command = staticmethod(controls.disconnect)

    @extend_schema(
        operation_id="instances_disconnect",
        parameters=[ID],
        summary="Desired state stopped: the session is closed (rate-limited per instance)",
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


@extend_schema(tags=["instances"])
class LogoutView(InstanceCommandView):
    command = staticmethod(controls.logout)

    @extend_schema(
        operation_id="instances_logout",
        parameters=[ID],
        summary="Unlink the account from this instance (the phone's linked device is removed)",
        description=(
            "The instance's worker sends the gateway `logout`; the gateway unlinks the device and closes the "
            "session, and the instance stops as `logged_out`. Connect it again for a new QR code. 409 unless "
            "the instance is connected; rate-limited per instance."
        ),
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 409, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


# --- circuit breaker ------------------------------------------------------------


def breaker_payload(instance: Instance) -> dict[str, Any]:
    return {"instance": instance.key, **commands.breaker_status(instance).as_dict()}


@extend_schema(tags=["circuit breaker"])
class CircuitBreakerView(TenantView):
    http_method_names = ["get", "head", "options"]
    serializer_class = CircuitBreakerSerializer

    @extend_schema(
        operation_id="circuit_breaker_retrieve",
        parameters=[ID],
        summary="Breaker state, failures in the window, cooldown end",
        responses={200: CircuitBreakerSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response(CircuitBreakerSerializer(breaker_payload(self.get_instance())).data)


@extend_schema(tags=["circuit breaker"])
class ForceRetryView(InstanceCommandView):
    command = staticmethod(controls.force_retry)

    @extend_schema(
        operation_id="circuit_breaker_force_retry",
        parameters=[ID],
        summary="One connection attempt now, even while the breaker is open (rate-limited per instance)",
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 409, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


@extend_schema(tags=["circuit breaker"])
class ResetBreakerView(InstanceCommandView):
    command = staticmethod(controls.reset_breaker)

    @extend_schema(
        operation_id="circuit_breaker_reset",
        parameters=[ID],
        summary="Close the breaker and clear its window (rate-limited per instance)",
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


# --- pairing QR -------------------------------------------------------------------


class PNGRenderer(renderers.BaseRenderer):
    media_type = "image/png"
    format = "png"
    charset = None
    render_style = "binary"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else b""


class SVGRenderer(renderers.BaseRenderer):
    media_type = "image/svg+xml"
    format = "svg"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data.encode("utf-8") if isinstance(data, str) else b""


@extend_schema(tags=["instances"])
class QRCodeView(TenantView):
    """The pairing code of an instance awaiting a scan: JSON, or the image itself."""

    http_method_names = ["get", "head", "options"]
    renderer_classes = [renderers.JSONRenderer, PNGRenderer, SVGRenderer]
    content_negotiation_class = FormatParameterNegotiation
    serializer_class = QRCodeSerializer

    @extend_schema(
        operation_id="instances_qr",
        summary="The current pairing code and its image",
        description=(
            "JSON with the code and a PNG data URI by default; `?format=png` (or `Accept: image/png`) "
            "answers the PNG itself, `?format=svg` an SVG document. 404 when the instance is not "
            "awaiting a QR scan."
        ),
        parameters=[
            ID,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "png", "svg"], description="What to answer."),
        ],
        responses={
            (200, "application/json"): QRCodeSerializer,
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/svg+xml"): OpenApiTypes.STR,
            **errors(400, 401, 404),
        },
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        instance = self.get_instance()
        if instance.status != Status.AWAITING_QR or not instance.qr_code:
            raise NotFound(NOT_AWAITING_QR)
        kind = request.accepted_renderer.format
        if kind == "png":
            return Response(qr_images.png(instance.qr_code), content_type="image/png")
        if kind == "svg":
            return Response(qr_images.svg(instance.qr_code), content_type="image/svg+xml")
        payload = {
            "instance": instance.key,
            "code": instance.qr_code,
            "expires_at": instance.qr_expires_at,
            "image": qr_images.png_data_uri(instance.qr_code),
        }
        return Response(QRCodeSerializer(payload).data)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Errors are JSON, whatever image format was asked for.
        if getattr(response, "status_code", 200) >= 400 and getattr(request, "accepted_renderer", None):
            if request.accepted_renderer.format != "json":
                request.accepted_renderer = renderers.JSONRenderer()
                request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


@extend_schema(tags=["instances"])
class PairCodeView(TenantView):
    """Pairing by phone number: ask for a code, then read it here."""

    http_method_names = ["get", "post", "head", "options"]
    serializer_class = PairCodeSerializer

    @extend_schema(
        operation_id="instances_pair_code_retrieve",
        parameters=[ID],
        summary="Where the request for a pairing code stands, and the code once issued",
        responses={200: PairCodeSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response(PairCodeSerializer(self.get_instance()).data)

    @extend_schema(
        operation_id="instances_pair_code",
        parameters=[ID],
        summary="Ask for a pairing code: pair the account by entering it on the phone instead of scanning the QR",
        description=(
            "Accepted (202) while the instance awaits its QR scan and its gateway announced `pair_code`; "
            "the worker sends the request and the code (or the gateway's refusal) appears in "
            "GET .../pair-code. 409 when the instance is not awaiting pairing or its gateway cannot pair "
            "by phone number. Rate-limited per instance."
        ),
        request=PairCodeRequestSerializer,
        responses={202: PairCodeSerializer, **errors(400, 401, 404, 409, 413, 415, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        instance = self.get_instance()
        body = PairCodeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        instance = controls.request_pair_code(instance, body.validated_data["phone"], actor=self.client.actor)
        return Response(PairCodeSerializer(instance).data, status=status.HTTP_202_ACCEPTED)


# --- events -----------------------------------------------------------------------


@extend_schema(tags=["instances"])
class EventListView(TenantView, generics.ListAPIView):  # type: ignore[type-arg]
    serializer_class = ConnectionEventSerializer

    def get_queryset(self) -> QuerySet[ConnectionEvent]:
        return ConnectionEvent.objects.filter(instance=self.get_instance()).order_by("-at", "-id")

    @extend_schema(
        operation_id="instances_events",
        parameters=[ID],
        summary="Connection events, newest first",
        responses={200: ConnectionEventSerializer(many=True), **errors(400, 401, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


# --- health -------------------------------------------------------------------------


def tenant_health(tenant: Tenant) -> dict[str, Any]:
    """The tenant's counts and score, from the platform's own aggregate (one query).

    ``monitoring.counts`` defines *expected* and ``monitoring.scoring`` the
    score, so a tenant reads the same number the platform records for it.
    """
    counts = count_instances(Instance.objects.filter(tenant=tenant))
    return {
        "tenant": tenant.slug,
        "score": counts.score,
        "instances": counts.total,
        "expected": counts.expected,
        "connected": counts.connected,
        "open_breakers": counts.open_breakers,
        "counts": counts.by_status,
        "breakers": counts.breakers,
    }


@extend_schema(tags=["health"])
class HealthView(TenantView):
    http_method_names = ["get", "head", "options"]
    serializer_class = HealthSerializer

    @extend_schema(
        operation_id="tenant_health",
        summary="The tenant's instance counts by status and its health score",
        description=(
            "score = floor(100 * connected / expected - min(20, 50 * open breakers of expected "
            "instances / expected)), clamped to 0-100; 100 when nothing is expected. `expected`: "
            "desired running and not waiting on the owner (awaiting_qr, logged_out, replaced, "
            "forbidden). See docs/API.md."
        ),
        responses={200: HealthSerializer, **errors(401)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return Response(HealthSerializer(tenant_health(self.tenant)).data)


# --- the seed's endpoints ------------------------------------------------------------


class SeedMixin:
    """The seed's paths: ``?access_token=<API key>`` (or the Bearer header)."""

    authentication_classes = [QueryTokenAuthentication]
    lookup_url_kwarg = "instance_id"


@extend_schema(tags=["seed (deprecated)"])
class SeedBreakerStatusView(SeedMixin, CircuitBreakerView):
    @extend_schema(
        operation_id="seed_circuit_breaker_status",
        summary="As GET /api/v1/instances/{id}/circuit-breaker",
        description=SEED_DESCRIPTION,
        deprecated=True,
        auth=SEED_AUTH,
        parameters=[SEED_ID],
        responses={200: CircuitBreakerSerializer, **errors(401, 404)},
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        return super().get(request, **kwargs)


@extend_schema(tags=["seed (deprecated)"])
class SeedForceRetryView(SeedMixin, ForceRetryView):
    @extend_schema(
        operation_id="seed_force_retry",
        summary="As POST /api/v1/instances/{id}/force-retry",
        description=SEED_DESCRIPTION,
        deprecated=True,
        auth=SEED_AUTH,
        parameters=[SEED_ID],
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 409, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


@extend_schema(tags=["seed (deprecated)"])
class SeedResetBreakerView(SeedMixin, ResetBreakerView):
    @extend_schema(
        operation_id="seed_reset_circuit_breaker",
        summary="As POST /api/v1/instances/{id}/reset-circuit-breaker",
        description=SEED_DESCRIPTION,
        deprecated=True,
        auth=SEED_AUTH,
        parameters=[SEED_ID],
        request=None,
        responses={200: InstanceSerializer, **errors(401, 404, 429, 503)},
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        return super().post(request, **kwargs)


# --- anything else under /api/ ----------------------------------------------------------


@csrf_exempt
def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """JSON 404 for every unknown path under ``/api/``, whatever the method.

    CSRF-exempt: it changes nothing, and without the exemption Django's CSRF
    check answered a mistyped POST with an HTML 403 before the route."""
    detail = "No such API endpoint."
    path = request.path
    if path.endswith("/") and path.startswith("/api/v1/"):
        detail += f" Paths take no trailing slash: try {path.rstrip('/')}"
    return JsonResponse({"detail": detail}, status=404)
