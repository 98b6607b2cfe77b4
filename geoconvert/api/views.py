from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from geoconvert import health, selectors
from geoconvert.api.filters import TaskFilter
from geoconvert.api.serializers import (
    BatchAcceptedOutput,
    BatchOutput,
    BatchRetryOutput,
    CancelOutput,
    ConvertAcceptedOutput,
    ConvertInput,
    HealthOutput,
    ItemConversionStatusOutput,
    TaskListOutput,
    TaskStatusOutput,
)
from geoconvert.api.throttles import ConvertRateThrottle
from geoconvert.models import Priority
from geoconvert.services import batches, conversions
from tagger.api.schema import ErrorOutput
from tagger.selectors import item_get


class ConvertItemView(APIView):
    throttle_classes = (ConvertRateThrottle,)

    @extend_schema(
        request=ConvertInput,
        description=(
            "A file: one conversion. A folder: a batch converting each file of its subtree "
            "that is neither converted nor converting (answered with its batch_id)."
        ),
        responses={
            202: PolymorphicProxySerializer(
                "ConvertAccepted",
                serializers=[ConvertAcceptedOutput, BatchAcceptedOutput],
                resource_type_field_name=None,
            ),
            409: OpenApiResponse(ErrorOutput, description="Already converted."),
            503: OpenApiResponse(ErrorOutput, description="The task queue is unavailable."),
        },
    )
    def post(self, request, item_id):
        item = item_get(user=request.user, item_id=item_id)
        serializer = ConvertInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        recursive = data.pop("recursive")
        if item.is_folder:
            data.setdefault("priority", Priority.LOW)
            batch = batches.batch_start(folder=item, recursive=recursive, **data)
            if batch.total:  # a folder whose files are all converted or converting is free
                ConvertRateThrottle.count_started(request, self)
            return Response(BatchAcceptedOutput(batch).data, status=status.HTTP_202_ACCEPTED)
        conversion, created = conversions.conversion_start(item=item, **data)
        if created:
            ConvertRateThrottle.count_started(request, self)
        return Response(ConvertAcceptedOutput(conversion).data, status=status.HTTP_202_ACCEPTED)


class BatchViewSet(viewsets.GenericViewSet):
    """The caller's folder batches."""

    serializer_class = BatchOutput

    def get_queryset(self):
        return selectors.batch_list(user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(selectors.batch_summaries(batches=page))

    @extend_schema(responses=BatchOutput)
    def retrieve(self, request, pk=None):
        batch = selectors.batch_get(user=request.user, batch_id=pk)
        return Response(selectors.batch_summary(batch=batch))

    @extend_schema(
        request=None,
        responses={
            200: BatchOutput,
            409: OpenApiResponse(ErrorOutput, description="The batch has already finished."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        batch = selectors.batch_get(user=request.user, batch_id=pk)
        batch = batches.batch_cancel(batch=batch)
        return Response(selectors.batch_summary(batch=batch))

    @extend_schema(
        request=None,
        responses={
            200: BatchRetryOutput,
            409: OpenApiResponse(ErrorOutput, description="The batch was cancelled."),
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        batch = selectors.batch_get(user=request.user, batch_id=pk)
        batch, retried = batches.batch_retry(batch=batch)
        return Response({**selectors.batch_summary(batch=batch), "retried": retried})


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
