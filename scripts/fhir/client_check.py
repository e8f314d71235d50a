"""A real FHIR client (fhirpy) drives Carapace's FHIR R4 API, and an
independent validator (fhir.resources 6.4.0 R4 models + the HL7 FHIR 4.0.1
JSON schema, see validate.py) checks every resource, Bundle,
OperationOutcome and CapabilityStatement it answers.

    python client_check.py BASE_URL TOKEN      (BASE_URL ends in /fhir/R4)
"""
import json
import sys

import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

from validate import validate

CHECKED = 0


def valid(resource):
    global CHECKED
    problems = validate(json.loads(json.dumps(resource)))
    assert not problems, f"{resource.get('resourceType')}: {problems}\n{json.dumps(resource)[:2000]}"
    CHECKED += 1
    return resource


class Last:
    def __init__(self):
        self.r = None

    def __call__(self, r, *args, **kwargs):
        self.r = r
        return r


def client(base, token, last, extra=None):
    return SyncFHIRClient(
        base,
        authorization=f"Bearer {token}",
        extra_headers={"Content-Type": "application/fhir+json", **(extra or {})},
        requests_config={"timeout": 10, "hooks": {"response": [last]}},
    )


def main(base, token):
    last = Last()
    fhir = client(base, token, last)

    # The capability statement and SMART configuration, without a token.
    cap = requests.get(f"{base}/metadata", timeout=10)
    assert cap.status_code == 200 and cap.headers["content-type"].startswith("application/fhir+json")
    valid(cap.json())
    smart = requests.get(f"{base}/.well-known/smart-configuration", timeout=10).json()
    assert "permission-v2" in smart["capabilities"], smart

    # Create five patients; read one back.
    ids = []
    for given in ["Ada", "Ben", "Cy", "Di", "Ed"]:
        p = fhir.resource(
            "Patient",
            identifier=[{"system": "urn:carapace:member-id", "value": f"M-{given}"}],
            name=[{"family": "Client", "given": [given]}],
            gender="female",
            birthDate="1970-05-06",
            telecom=[{"system": "phone", "value": "+1 555 010 0199"}],
        )
        p.save()
        assert last.r.status_code == 201, last.r.status_code
        assert "/_history/" in last.r.headers["Location"]
        valid(last.r.json())
        ids.append(p.id)
    read = fhir.get("Patient", ids[0])
    valid(read)
    etag = last.r.headers["ETag"]
    assert etag == f'W/"{read["meta"]["versionId"]}"', etag

    # Search: every page through the next links, each Bundle valid.
    search = fhir.resources("Patient").search(family="Client", birthdate="1970-05-06").limit(2)
    found = [r.id for r in search.fetch_all()]
    assert sorted(found) == sorted(ids), found
    bundle = search.fetch_raw()
    pages = 0
    while True:
        valid(bundle)
        pages += 1
        nxt = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
        if not nxt:
            break
        bundle = fhir.execute(nxt, method="get")
    assert pages == 3, pages
    by_member = fhir.resources("Patient").search(identifier="urn:carapace:member-id|M-Cy").fetch_all()
    assert [r.id for r in by_member] == [ids[2]]

    # Versioned update, then a stale one: 412 with an OperationOutcome.
    read["name"][0]["family"] = "Client-Updated"
    updated = client(base, token, last, {"If-Match": etag}).update(read)
    assert last.r.status_code == 200
    valid(last.r.json())
    assert updated.meta.versionId != read["meta"]["versionId"]
    try:
        client(base, token, last, {"If-Match": etag}).update(read)
        raise AssertionError("a stale If-Match must fail")
    except MultipleResourcesFound as exc:  # fhirpy raises this for every 412
        assert last.r.status_code == 412
        valid(json.loads(str(exc)))

    # A bad resource: 422, the OperationOutcome naming the element.
    try:
        fhir.resource("Patient", name=[{"family": "X", "given": ["Y"]}], birthDate="1990-13-45").save()
        raise AssertionError("an impossible birth date must fail")
    except OperationOutcome as exc:
        assert last.r.status_code == 422
        oo = valid(exc.resource)
        assert oo["issue"][0]["expression"] == ["Patient.birthDate"], oo

    # Delete, then the read is 404 with an OperationOutcome.
    fhir.delete("Patient", ids[4])
    assert last.r.status_code == 204
    try:
        fhir.get("Patient", ids[4])
        raise AssertionError("a deleted patient must be gone")
    except ResourceNotFound as exc:
        assert last.r.status_code == 404
        valid(json.loads(str(exc)))

    # Book two appointments with the patient's clinician (the token's
    # subject, dev-user, joined the care team by registering the patient),
    # the second overlapping the first: 409 with an OperationOutcome.
    from datetime import datetime, timedelta, timezone

    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)

    def visit(start):
        return fhir.resource(
            "Appointment",
            status="booked",
            start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            end=(start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            participant=[
                {"actor": {"reference": f"Patient/{ids[1]}"}, "status": "accepted"},
                {"actor": {"identifier": {"system": "urn:carapace:subject", "value": "dev-user"}}, "status": "accepted"},
            ],
        )

    booked = visit(tomorrow)
    booked.save()
    assert last.r.status_code == 201, last.r.text
    valid(last.r.json())
    try:
        visit(tomorrow + timedelta(minutes=15)).save()
        raise AssertionError("an overlapping booking must fail")
    except OperationOutcome as exc:
        assert last.r.status_code == 409
        valid(exc.resource)
    valid(fhir.get("Appointment", booked.id))
    version = last.r.json()["meta"]["versionId"]
    valid(fhir.execute(f"Appointment/{booked.id}/_history/{version}", method="get"))
    with_patient = (
        fhir.resources("Appointment").search(patient=f"Patient/{ids[1]}").include("Appointment", "patient").fetch_raw()
    )
    valid(with_patient)
    modes = sorted(e["search"]["mode"] for e in with_patient["entry"])
    assert modes == ["include", "match"], modes
    # Cancel it by an update of its status (fhirpy's save is a PUT).
    booked.status = "cancelled"
    booked.save()
    assert last.r.status_code == 200, last.r.text
    assert valid(last.r.json())["status"] == "cancelled"

    # A medication and a side effect through the REST API, then the care
    # team, MedicationStatement and AdverseEvent through FHIR.
    rest = base.replace("/fhir/R4", "/api/v1")
    auth = {"Authorization": f"Bearer {token}"}
    r = requests.post(f"{rest}/patients/{ids[0]}/medications", headers=auth, timeout=10, json={
        "drug_name": "Lisinopril", "dose": "10 mg", "schedule": "once daily", "started_on": "2026-10-01"})
    assert r.status_code == 201, r.text
    r = requests.post(f"{rest}/patients/{ids[0]}/side-effects", headers=auth, timeout=10, json={
        "symptom": "Dry cough", "severity": "mild", "onset_on": "2026-10-05"})
    assert r.status_code == 201, r.text
    for kind, param in [("CareTeam", "patient"), ("MedicationStatement", "patient"), ("AdverseEvent", "subject")]:
        found = fhir.resources(kind).search(**{param: f"Patient/{ids[0]}"}).fetch_raw()
        valid(found)
        assert len(found["entry"]) == 1, (kind, found)
        if kind != "CareTeam":
            valid(fhir.get(kind, found["entry"][0]["resource"]["id"]))
    # And recorded through FHIR.
    statin = fhir.resource(
        "MedicationStatement", status="active", medicationCodeableConcept={"text": "Atorvastatin"},
        subject={"reference": f"Patient/{ids[1]}"}, effectivePeriod={"start": "2026-10-01"},
        dosage=[{"text": "20 mg", "timing": {"code": {"text": "at night"}}}])
    statin.save()
    assert last.r.status_code == 201, last.r.text
    valid(last.r.json())
    ache = fhir.resource(
        "AdverseEvent", actuality="actual", event={"text": "Muscle ache"}, subject={"reference": f"Patient/{ids[1]}"},
        date="2026-10-08", severity={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-severity", "code": "mild"}]})
    ache.save()
    assert last.r.status_code == 201, last.r.text
    valid(last.r.json())
    valid(fhir.get("CareTeam", ids[0]))
    r = requests.post(f"{rest}/verification-tasks", headers=auth, timeout=10, json={
        "patient_id": ids[0], "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199",
        "plan": "Gold PPO", "procedure_codes": ["99213"]})
    assert r.status_code == 201, r.text
    task = r.json()["id"]
    valid(fhir.get("Task", task))
    valid(fhir.resources("Task").fetch_raw())
    # The calling bot's minimal view, with its own key.
    key = requests.post(f"{rest}/service-keys", headers=auth, timeout=10,
                        json={"name": "voice bot", "roles": ["service"]}).json()["key"]
    bot = {"Authorization": f"Bearer {key}"}
    assert requests.post(f"{rest}/verification-tasks/{task}/claim", headers=bot, timeout=10, json={}).status_code == 204
    view = requests.get(f"{base}/Task/{task}/$bot-view", headers=bot, timeout=10)
    assert view.status_code == 200, view.text
    valid(view.json())
    assert view.json()["contained"][0]["resourceType"] == "Patient"

    # A clinician's account as a Practitioner.
    r = requests.post(f"{rest}/users", headers=auth, timeout=10,
                      json={"email": "doc@example.org", "roles": ["clinician"]})
    assert r.status_code == 201, r.text
    valid(fhir.get("Practitioner", r.json()["id"]))
    valid(fhir.resources("Practitioner").search(active="true").fetch_raw())

    # A consent and a referral under it, made through FHIR.
    from datetime import datetime as _dt, timedelta as _td, timezone as _tz

    until = (_dt.now(_tz.utc) + _td(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    consent = fhir.resource(
        "Consent", status="active", patient={"reference": f"Patient/{ids[0]}"},
        scope={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        category=[{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        policyRule={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        provision={"type": "permit", "period": {"end": until},
                   "actor": [{"reference": {"identifier": {"system": "urn:carapace:subject", "value": "clinician-bob"}}}],
                   "code": [{"coding": [{"system": "urn:carapace:consent-section", "code": "medications"}]}]})
    consent.save()
    assert last.r.status_code == 201, last.r.text
    valid(last.r.json())
    found = fhir.resources("Consent").search(patient=f"Patient/{ids[0]}").fetch_raw()
    valid(found)
    assert [e["resource"]["id"] for e in found["entry"]] == [consent.id], found
    valid(fhir.get("Consent", consent.id))
    referral = fhir.resource(
        "ServiceRequest", status="active", intent="order", subject={"reference": f"Patient/{ids[0]}"},
        supportingInfo=[{"reference": f"Consent/{consent.id}"}])
    referral.save()
    assert last.r.status_code == 201, last.r.text
    valid(last.r.json())
    made = fhir.resources("ServiceRequest").fetch_raw()
    valid(made)
    assert [e["resource"]["id"] for e in made["entry"]] == [referral.id], made
    valid(fhir.get("ServiceRequest", referral.id))
    # Withdrawn by an update of its status.
    current = fhir.get("Consent", consent.id)
    current["status"] = "inactive"
    assert valid(fhir.update(current))["status"] == "inactive"

    # The patient's audit trail as AuditEvents (the token holds admin).
    trail = fhir.resources("AuditEvent").search(patient=f"Patient/{ids[0]}").limit(2).fetch_raw()
    valid(trail)
    assert len(trail["entry"]) == 2, trail
    valid(fhir.get("AuditEvent", trail["entry"][0]["resource"]["id"]))

    # A bulk export (Flat FHIR): kick-off, poll, download, every line valid.
    import time as _time

    kick = requests.get(f"{base}/Patient/$export", timeout=10,
                        headers={**auth, "Accept": "application/fhir+json", "Prefer": "respond-async"})
    assert kick.status_code == 202, kick.text
    status_url = kick.headers["Content-Location"]
    for _ in range(200):
        polled = requests.get(status_url, headers=auth, timeout=10)
        if polled.status_code != 202:
            break
        _time.sleep(0.05)
    assert polled.status_code == 200, polled.text
    manifest = polled.json()
    assert manifest["requiresAccessToken"] is True and manifest["output"], manifest
    lines = 0
    for out in manifest["output"]:
        got = requests.get(out["url"], headers=auth, timeout=10)
        assert got.status_code == 200 and got.headers["content-type"] == "application/fhir+ndjson"
        for line in got.text.splitlines():
            assert json.loads(line)["resourceType"] == out["type"]
            valid(json.loads(line))
            lines += 1
    assert lines == sum(o["count"] for o in manifest["output"]), manifest
    assert requests.delete(status_url, headers=auth, timeout=10).status_code == 202

    # No token: 401 OperationOutcome.
    anon = requests.get(f"{base}/Patient", timeout=10)
    assert anon.status_code == 401
    valid(anon.json())
    print(f"fhir client check: ok ({CHECKED} answers validated against FHIR R4 4.0.1)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
