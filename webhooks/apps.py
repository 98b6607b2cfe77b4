from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        # The conversion app sends these inside the transaction of each change; the outbox
        # writes its rows there. It knows nothing of this app.
        from geoconvert.signals import (
            batch_completed,
            conversion_changed,
            conversion_stage_changed,
            conversions_changed,
        )
        from webhooks.services import outbox

        conversion_changed.connect(outbox.on_conversion_changed, dispatch_uid="webhooks.conversion")
        conversions_changed.connect(
            outbox.on_conversions_changed, dispatch_uid="webhooks.conversions"
        )
        conversion_stage_changed.connect(
            outbox.on_conversion_stage_changed, dispatch_uid="webhooks.stage"
        )
        batch_completed.connect(outbox.on_batch_completed, dispatch_uid="webhooks.batch")
