"""The layers of docs/architecture.md, as import-linter's contracts in pyproject.toml.

The first test checks the code as it is; the others break each contract on purpose, in a
copy of the code, to show that the check notices.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("config", "tagger", "geoconvert", "workspace", "monitoring", "webhooks")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_layer_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        (
            "geoconvert/raster/plan.py",
            "from django.conf import settings",
            "The raster engine imports nothing of Django or the project",
        ),
        (
            "tagger/selectors.py",
            "from geoconvert.models import Conversion",
            "The items app imports nothing of the conversion app",
        ),
        (
            "workspace/views.py",
            "from tagger.selectors import item_list",
            "The browser workspace is a client of the API: it imports nothing of the apps",
        ),
        (
            "tagger/models.py",
            "from tagger.services import item_create",
            "Items app: api and admin -> services -> selectors -> models",
        ),
        (
            "geoconvert/services/run.py",
            "from geoconvert.api.views import TaskViewSet",
            "Conversion app: api -> services -> selectors -> models -> engine",
        ),
        (
            "geoconvert/services/run.py",
            "from monitoring.collectors import queue_lengths",
            "Monitoring reads the apps; the apps import nothing of it",
        ),
        (
            "geoconvert/services/transitions.py",
            "from webhooks.services.outbox import webhook_event_record",
            "The conversion and items apps import nothing of webhooks",
        ),
        (
            "webhooks/models.py",
            "from webhooks.services.delivery import webhook_delivery_attempt",
            "Webhooks app: api, admin, tasks and apps -> services -> selectors -> models",
        ),
        (
            "webhooks/selectors.py",
            "from webhooks.api.views import WebhookViewSet",
            "Webhooks app: api, admin, tasks and apps -> services -> selectors -> models",
        ),
        (
            "geoconvert/services/transitions.py",
            "from geoconvert.services.run import RunContext",
            "No import cycles among the project's modules",
        ),
    ],
)
def test_a_broken_layer_fails_the_check(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / module, "a") as source:
        source.write(f"\n{line}  # noqa\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout
