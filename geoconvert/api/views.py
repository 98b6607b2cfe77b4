from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from geoconvert import health, selectors
from geoconvert.api.filters import TaskFilter
from geoconvert.api.serializers import (
    CancelOutput,
    ConvertAcceptedOutput,
    ConvertInput,
    HealthOutput,
    ItemConversionStatusOutput,
    TaskListOutput,
    TaskStatusOutput,
)
from geoconvert.api.throttles import ConvertRateThrottle
from geoconvert.services import conversions
from tagger.api.schema import ErrorOutput
from tagger.selectors import item_get


class ConvertItemView(APIView):
    throttle_classes = (ConvertRateThrottle,)

    @extend_schema(
        request=ConvertInput,
        responses={
            202: ConvertAcceptedOutput,
            409: OpenApiResponse(ErrorOutput, description="Already converted."),
            503: OpenApiResponse(ErrorOutput, description="The task queue is unavailable."),
        },
    )
    def post(self, request, item_id):
        item = item_get(user=request.user, item_id=item_id)
        serializer = ConvertInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversion, created = conversions.conversion_start(item=item, **serializer.validated_data)
        if created:
            ConvertRateThrottle.count_started(request, self)
        return Response(ConvertAcceptedOutput(conversion).data, status=status.HTTP_202_ACCEPTED)


class ItemConversionStatusView(APIView):
    @extend_schema(responses=ItemConversionStatusOutput)
    def get(self, request, item_id):
        item = selectors.item_with_latest_conversion(user=request.user, item_id=item_id)
        return Response(ItemConversionStatusOutput(item).data)


class TaskViewSet(viewsets.GenericViewSet):
    """The caller's conversion tasks."""

    serializer_class = TaskListOutput
    filterset_class = TaskFilter

    def get_queryset(self):
        return selectors.conversion_list(user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TaskListOutput(page, many=True).data)

    @extend_schema(responses=TaskStatusOutput)
    def retrieve(self, request, pk=None):
        return self.status(request, pk)

    @extend_schema(responses=TaskStatusOutput)
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        conversion = selectors.conversion_get(user=request.user, task_id=pk)
        return Response(TaskStatusOutput(conversion).data)

    @extend_schema(
        request=None,
        responses={
            200: CancelOutput,
            409: OpenApiResponse(ErrorOutput, description="The task has already finished."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        conversion = selectors.conversion_get(user=request.user, task_id=pk)
        conversion = conversions.conversion_cancel(conversion=conversion)
        return Response(CancelOutput(conversion).data)


class HealthView(APIView):
    """Liveness for load balancers and compose health checks; open to anyone."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    @extend_schema(responses={200: HealthOutput, 503: HealthOutput})
    def get(self, request):
        body = health.service_health()
        if body["status"] == "unavailable":
            body = {"code": "unavailable", "message": "The database or the broker is down.", **body}
            return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response(body)
