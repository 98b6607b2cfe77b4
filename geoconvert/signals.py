"""What the conversion app tells other apps, sent inside the transaction that makes the
change, so that a receiver's writes (a webhook's outbox row) commit with it or not at all.

The conversion app imports none of its receivers; they connect in their own AppConfig.ready.
"""

from django.dispatch import Signal

# A conversion changed state: `task_id`, `transition` (a name of
# geoconvert.services.transitions.TRANSITIONS, or "create"), and `bulk` True when it is one
# of many changed together (a batch's waiting members cancelled): a receiver that acts once
# per change rather than per conversion (the dispatcher) skips those.
conversion_changed = Signal()

# A running conversion entered a new stage: `task_id`, `stage` (a geoconvert.models.Stage),
# `progress`.
conversion_stage_changed = Signal()

# Every member of a batch has finished: `batch_id`, `owner_id`, `summary` (the batch's
# JSON as the API shows it: id, state, total, counts, progress, timestamps).
batch_completed = Signal()
