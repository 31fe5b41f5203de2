"""Lab results in real Chromium: a doctor opens a patient's history ("antériorités"), sees an
abnormal value flagged (in words, not colour alone) and its earlier values, and the page, like
a lab report's table, passes axe-core with no serious or critical violation (issue 20)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.axe import serious_violations
from tests.browser.live import Installation, Live
from tests.browser.pages import Shot, log_in, path_of

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

_MARK = "@@VIGIE-LAB@@"
# Read in the installation's own environment (a test script, not a view): the patient of this
# doctor with an analyte flagged abnormal in their latest report and measured before.
_SCRIPT = """
import json
from vigie.records.models import CareRelationship, Document
from vigie.records.results_store import open_results
found = None
relations = CareRelationship.objects.active().filter(doctor__username={username!r})
for relation in relations.select_related("patient"):
    documents = Document.objects.filter(patient=relation.patient, kind="lab_result").order_by(
        "-clinical_date", "-received_at"
    )
    series = {{}}
    for document in documents:
        results = open_results(document)
        if results is None:
            continue
        for o in results.observations:
            series.setdefault((o.analyte_key, o.unit), []).append(
                (o.value, o.flag, o.abnormal, o.label, document.pk)
            )
    for (key, unit), values in series.items():
        if len(values) >= 2 and values[0][2]:
            label = values[0][3]
            found = dict(
                public_id=relation.patient.public_id, label=label, unit=unit,
                values=[v[0] for v in values], flag=values[0][1], document=values[0][4],
            )
            break
    if found:
        break
print({mark!r} + json.dumps(found))
"""


def _patient_with_history(installation: Installation, username: str) -> dict[str, Any] | None:
    script = _SCRIPT.format(username=username, mark=_MARK)
    found: dict[str, Any] | None = installation.shell_json(script, _MARK)
    return found


def test_a_doctor_reads_a_patients_lab_history_with_the_abnormal_value_flagged(
    page: Page, live: Live, shot: Shot
) -> None:
    installation = live.installation
    found = None
    doctor = None
    for index in range(3):
        doctor = installation.login("doctor", index)
        found = _patient_with_history(installation, doctor.username)
        if found is not None:
            break
    assert found is not None, "the demo has a patient with a history"
    assert doctor is not None

    log_in(page, live, doctor)
    page.goto(f"{live.base_url}/patients/{found['public_id']}/")
    page.click("main a[href$='/results/']")
    page.wait_for_load_state()
    assert path_of(page) == f"/patients/{found['public_id']}/results/"
    shot("history")

    row = page.locator("table.lab-history tbody tr").filter(
        has=page.locator("th", has_text=found["label"])
    )
    if found["unit"]:
        row = row.filter(has_text=found["unit"])
    expect(row.first).to_be_visible()
    cells = row.first.locator("td.lab-cell .lab-value")
    shown = [text.strip() for text in cells.all_inner_texts() if text.strip()]
    # The newest value first, then every earlier one, as the lab sent them.
    assert shown[: len(found["values"])] == found["values"]
    newest = row.first.locator("td.lab-cell:not(.lab-empty)").first
    expect(newest).to_have_class(re.compile(r"\blab-abnormal\b"))
    flag = newest.locator(".lab-flag")
    expect(flag).to_contain_text(found["flag"])
    # Said in words (French UI), not only in red.
    assert re.search(r"\((haut|bas|critique|anormal)", flag.inner_text())
    expect(row.first.locator("svg[role=img]")).to_have_count(1)

    assert serious_violations(page) == []

    # The report with that abnormal value, as a table, passes too.
    page.locator(f"table.lab-history thead a[href='/documents/{found['document']}/']").click()
    page.wait_for_load_state()
    assert path_of(page).startswith("/documents/")
    expect(page.locator("table.lab-table").first).to_be_visible()
    expect(page.locator("table.lab-table tr.lab-abnormal").first).to_be_visible()
    shot("report")
    assert serious_violations(page) == []
