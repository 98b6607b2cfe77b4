from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from webhooks import selectors
from webhooks.api.serializers import (
    DeliveryAcceptedOutput,
    DeliveryOutput,
    WebhookCreatedOutput,
    WebhookInput,
    WebhookOutput,
    WebhookSecretOutput,
)
from webhooks.services import delivery, endpoints

DELIVERY_ID = OpenApiParameter("delivery_id", OpenApiTypes.UUID, location=OpenApiParameter.PATH)


class WebhookViewSet(viewsets.GenericViewSet):
    """The caller's webhook endpoints, their deliveries and the log of each attempt."""

    serializer_class = WebhookOutput

    def get_queryset(self):
        return selectors.webhook_endpoint_list(user=self.request.user)

    def _endpoint(self, pk):
        return selectors.webhook_endpoint_get(user=self.request.user, endpoint_id=pk)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookOutput(page, many=True).data)

    @extend_schema(request=WebhookInput, responses={201: WebhookCreatedOutput})
    def create(self, request):
        serializer = WebhookInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = endpoints.webhook_endpoint_create(
            owner=request.user, **serializer.validated_data
        )
        return Response(WebhookCreatedOutput(endpoint).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return Response(WebhookOutput(self._endpoint(pk)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        endpoints.webhook_endpoint_delete(endpoint=self._endpoint(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=WebhookSecretOutput)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        endpoint = endpoints.webhook_endpoint_rotate_secret(endpoint=self._endpoint(pk))
        return Response(WebhookSecretOutput(endpoint).data)

    @extend_schema(request=None, responses={202: DeliveryAcceptedOutput})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        sent = endpoints.webhook_endpoint_test(endpoint=self._endpoint(pk))
        return Response(DeliveryAcceptedOutput(sent).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=DeliveryOutput(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        rows = selectors.webhook_delivery_list(endpoint=self._endpoint(pk))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(DeliveryOutput(page, many=True).data)

    @extend_schema(request=None, parameters=[DELIVERY_ID], responses={202: DeliveryAcceptedOutput})
    @action(
        detail=True,
        methods=["post"],
        url_path=r"deliveries/(?P<delivery_id>[^/.]+)/redeliver",
    )
    def redeliver(self, request, pk=None, delivery_id=None):
        endpoint = self._endpoint(pk)
        original = selectors.webhook_delivery_get(endpoint=endpoint, delivery_id=delivery_id)
        again = delivery.webhook_delivery_redeliver(delivery=original)
        return Response(DeliveryAcceptedOutput(again).data, status=status.HTTP_202_ACCEPTED)
