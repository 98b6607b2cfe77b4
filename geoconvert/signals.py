"""What the conversion app tells other apps, sent inside the transaction that makes the
change, so that a receiver's writes (a webhook's outbox row) commit with it or not at all.

The conversion app imports none of its receivers; they connect in their own AppConfig.ready.
"""

from django.dispatch import Signal

# A conversion changed state: `task_id`, `transition` (a name of
# geoconvert.services.transitions.TRANSITIONS, or "create").
conversion_changed = Signal()

# Many conversions of one user changed state together, in one bulk transition (a batch's
# waiting members cancelled): `owner_id`, `task_ids`, `transition`. Not also sent one by
# one: a receiver that tells each conversion reads them in bulk.
conversions_changed = Signal()

# A running conversion entered a new stage: `task_id`, `stage` (a geoconvert.models.Stage),
# `progress`.
conversion_stage_changed = Signal()

# Every member of a batch has finished: `batch_id`, `owner_id`, `summary` (the batch's
# JSON as the API shows it: id, state, total, counts, progress, timestamps).
batch_completed = Signal()
