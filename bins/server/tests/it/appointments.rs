//! Appointments over HTTP: booking with the care team, the overlap rule as
//! a 409 even under concurrent requests, bad input as a 422 that writes
//! nothing, the state machine, listings and their cursors, free slots, and
//! patients' reminder preferences.

use carapace_auth::Role;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::on_both_backends;
use crate::support::{Backend, Org, TestApp, problem, send, spawn_app};

/// Tomorrow (or `days` ahead) at `hour`:`minute` UTC.
fn at(days: i64, hour: u8, minute: u8) -> OffsetDateTime {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .replace_time(time::Time::from_hms(hour, minute, 0).unwrap_or_else(|e| panic!("{e}")))
}

fn text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn booking(patient: &str, practitioner: &str, start: OffsetDateTime, minutes: i64) -> Value {
    json!({
        "patient_id": patient,
        "practitioner": practitioner,
        "start": text(start),
        "end": text(start + Duration::minutes(minutes)),
        "time_zone": "Europe/Berlin",
        "reason": "Vexillary tremor follow-up",
    })
}

async fn book(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/appointments"))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

async fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await
}

async fn json_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status);
    res.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// How many appointments the org's staff can list.
async fn count(app: &TestApp, org: &Org) -> usize {
    let staff = app.token(org, Role::Staff);
    let page = json_of(app.get("/api/v1/appointments?limit=100", &staff).await, 200).await;
    page["items"].as_array().map_or(0, Vec::len)
}

async fn lifecycle(app: &TestApp) {
    let org = app.org().await;
    let other = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let p = app.new_patient(&ada, "Booked").await;
    let q = app.new_patient(&ada, "Second").await;
    let start = at(1, 9, 0);

    let res = book(app, &ada, &booking(&p, "clinician-ada", start, 30)).await;
    assert!(res.headers().contains_key("location"));
    let a = json_of(res, 201).await;
    assert_eq!(a["status"], "booked");
    assert_eq!(a["start"], text(start));
    assert_eq!(a["time_zone"], "Europe/Berlin");
    assert!(
        a["local_start"]
            .as_str()
            .is_some_and(|s| s.ends_with("10:00")),
        "{a}"
    );
    let id = a["id"].as_str().unwrap_or_default().to_owned();
    let read = json_of(
        app.get(&format!("/api/v1/appointments/{id}"), &ada).await,
        200,
    )
    .await;
    assert_eq!(read["reason"], "Vexillary tremor follow-up");

    // The practitioner is busy: another patient cannot have the overlap.
    let clash = problem(
        book(
            app,
            &ada,
            &booking(&q, "clinician-ada", start + Duration::minutes(15), 30),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(clash["code"], "slot_taken");
    // Bad input: a clear 422 naming the field, and nothing written.
    let bad: Vec<(Value, &str)> = vec![
        (json!({"end": text(start - Duration::minutes(30))}), "end"),
        (json!({"end": text(start + Duration::hours(9))}), "end"),
        (json!({"time_zone": "Mars/Olympus_Mons"}), "time_zone"),
        (
            json!({"start": text(at(-1, 9, 0)), "end": text(at(-1, 10, 0))}),
            "start",
        ),
        (json!({"practitioner": "clinician-bob"}), "practitioner"),
        (json!({"reason": "x".repeat(501)}), "reason"),
    ];
    let base = booking(&q, "clinician-ada", at(2, 9, 0), 30);
    for (change, field) in bad {
        let mut body = base.clone();
        if let (Some(b), Some(c)) = (body.as_object_mut(), change.as_object()) {
            b.extend(c.clone());
        }
        let refused = problem(book(app, &ada, &body).await, 422).await;
        assert_eq!(refused["errors"][0]["field"], field, "{change}");
    }
    let foreign = app
        .new_patient(&app.token(&other, Role::Admin), "Elsewhere")
        .await;
    let unknown = book(
        app,
        &ada,
        &booking(&foreign, "clinician-ada", at(2, 9, 0), 30),
    )
    .await;
    problem(unknown, 404).await;
    assert_eq!(count(app, &org).await, 1, "nothing else was written");

    // Schedules: one's own and org-wide roles, not a colleague's.
    let own = json_of(app.get("/api/v1/appointments", &ada).await, 200).await;
    assert_eq!(own["items"].as_array().map(Vec::len), Some(1));
    let peek = app
        .get("/api/v1/appointments?practitioner=clinician-ada", &bob)
        .await;
    assert_eq!(problem(peek, 403).await["code"], "no_relationship");
    let theirs = app
        .get(&format!("/api/v1/appointments?patient_id={p}"), &bob)
        .await;
    problem(theirs, 403).await;

    // Free slots around the booking, in the practitioner's day.
    let day = start.date();
    let free = json_of(
        app.get(
            &format!("/api/v1/practitioners/clinician-ada/free-slots?date={day}&time_zone=UTC&from=08:00&to=10:30&length=30"),
            &ada,
        )
        .await,
        200,
    )
    .await;
    let starts: Vec<String> = free["slots"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| s["start"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expect: Vec<String> = [(8, 0), (8, 30), (9, 30), (10, 0)]
        .iter()
        .map(|(h, m)| text(at(1, *h, *m)))
        .collect();
    assert_eq!(starts, expect);
    let bad_day = app
        .get(
            "/api/v1/practitioners/clinician-ada/free-slots?date=tomorrow&time_zone=UTC",
            &ada,
        )
        .await;
    problem(bad_day, 422).await;

    // The state machine: move, refuse to complete early, cancel once.
    let moved = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{id}/reschedule"),
        &json!({"start": text(at(1, 11, 0)), "end": text(at(1, 11, 45))}),
    )
    .await;
    assert_eq!(json_of(moved, 200).await["start"], text(at(1, 11, 0)));
    let early = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{id}/complete"),
        &json!({}),
    )
    .await;
    assert_eq!(problem(early, 409).await["code"], "not_started");
    let cancelled = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(json_of(cancelled, 200).await["status"], "cancelled");
    let again = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(problem(again, 409).await["code"], "invalid_transition");
    let revive = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{id}/reschedule"),
        &json!({"start": text(at(1, 12, 0)), "end": text(at(1, 12, 30))}),
    )
    .await;
    assert_eq!(problem(revive, 409).await["code"], "invalid_transition");
    // The cancelled slot is free again.
    book(app, &ada, &booking(&q, "clinician-ada", at(1, 11, 0), 30)).await;

    // An appointment under way can be completed or marked no-show.
    let soon = OffsetDateTime::now_utc() + Duration::seconds(3);
    let soon = soon.replace_nanosecond(0).unwrap_or(soon);
    let running = json_of(
        book(app, &ada, &booking(&p, "clinician-ada", soon, 10)).await,
        201,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let rid = running["id"].as_str().unwrap_or_default();
    let done = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{rid}/complete"),
        &json!({}),
    )
    .await;
    assert_eq!(json_of(done, 200).await["status"], "completed");
    let missing = post(
        app,
        &ada,
        &format!("/api/v1/appointments/{}/no-show", uuid::Uuid::new_v4()),
        &json!({}),
    )
    .await;
    problem(missing, 404).await;
}
on_both_backends!(
    appointments_book_move_cancel_and_refuse_bad_input,
    lifecycle
);

async fn pages(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let p = app.new_patient(&ada, "Regular").await;
    for day in 1..=5 {
        let res = book(app, &ada, &booking(&p, "clinician-ada", at(day, 9, 0), 30)).await;
        assert_eq!(res.status(), 201);
    }
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/appointments?patient_id={p}&limit=2");
    loop {
        let page = json_of(app.get(&path, &ada).await, 200).await;
        for a in page["items"].as_array().cloned().unwrap_or_default() {
            seen.push(a["start"].as_str().unwrap_or_default().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/appointments?patient_id={p}&limit=2&cursor={c}"),
            None => break,
        }
    }
    let expect: Vec<String> = (1..=5).map(|d| text(at(d, 9, 0))).collect();
    assert_eq!(seen, expect, "every appointment once, by start");
    // A day range.
    let range = format!(
        "/api/v1/appointments?practitioner=clinician-ada&from={}&to={}",
        urlencode(&text(at(2, 0, 0))),
        urlencode(&text(at(4, 0, 0)))
    );
    let days = json_of(app.get(&range, &ada).await, 200).await;
    assert_eq!(days["items"].as_array().map(Vec::len), Some(2));
    let other = app.org().await;
    let foreign = app.token_as(&other, Role::Clinician, "clinician-ada");
    let cursor = json_of(
        app.get(
            &format!("/api/v1/appointments?patient_id={p}&limit=2"),
            &ada,
        )
        .await,
        200,
    )
    .await["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let stolen = app
        .get(
            &format!("/api/v1/appointments?limit=2&cursor={cursor}"),
            &foreign,
        )
        .await;
    problem(stolen, 400).await;
    let backwards = app
        .get(
            &format!(
                "/api/v1/appointments?from={}&to={}",
                urlencode(&text(at(4, 0, 0))),
                urlencode(&text(at(2, 0, 0)))
            ),
            &ada,
        )
        .await;
    problem(backwards, 422).await;
}
on_both_backends!(appointment_listings_page_by_start, pages);

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn race(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let mut patients = Vec::new();
    for i in 0..12 {
        patients.push(app.new_patient(&ada, &format!("Racer {i}")).await);
    }
    let start = at(3, 14, 0);
    let bodies: Vec<Value> = patients
        .iter()
        .map(|p| booking(p, "clinician-ada", start, 30))
        .collect();
    let requests: Vec<_> = bodies.iter().map(|b| book(app, &ada, b)).collect();
    let answers = futures_util::future::join_all(requests).await;
    let mut won = 0;
    for res in answers {
        match res.status().as_u16() {
            201 => won += 1,
            409 => assert_eq!(problem(res, 409).await["code"], "slot_taken"),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1, "exactly one of twelve concurrent bookings wins");
    assert_eq!(count(app, &org).await, 1);
}
on_both_backends!(concurrent_bookings_of_one_slot_have_one_winner, race);

async fn preferences(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let p = app.new_patient(&admin, "Quiet").await;
    let link = send(
        app.http
            .put(app.url(&format!("/api/v1/patients/{p}/account")))
            .bearer_auth(&admin)
            .json(&json!({"subject": "patient-quiet"})),
    )
    .await;
    assert_eq!(link.status(), 204);
    let me = app.token_as(&org, Role::Patient, "patient-quiet");
    let path = format!("/api/v1/patients/{p}/reminder-preferences");
    let before = json_of(app.get(&path, &me).await, 200).await;
    assert_eq!(before, json!({"email": true, "sms": true, "voice": true}));
    let set = send(
        app.http
            .put(app.url(&path))
            .bearer_auth(&me)
            .json(&json!({"email": false, "sms": true})),
    )
    .await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        json_of(app.get(&path, &me).await, 200).await,
        json!({"email": false, "sms": true, "voice": true})
    );
    // Someone else's record, a viewer's write, a malformed body.
    let q = app.new_patient(&admin, "Other").await;
    let not_mine = app
        .get(&format!("/api/v1/patients/{q}/reminder-preferences"), &me)
        .await;
    problem(not_mine, 403).await;
    let viewer = app.token(&org, Role::Viewer);
    let refused = send(
        app.http
            .put(app.url(&path))
            .bearer_auth(&viewer)
            .json(&json!({"email": true, "sms": true})),
    )
    .await;
    problem(refused, 403).await;
    let malformed = send(
        app.http
            .put(app.url(&path))
            .bearer_auth(&me)
            .json(&json!({"email": "no"})),
    )
    .await;
    assert!(malformed.status().is_client_error());
    assert_eq!(
        json_of(app.get(&path, &me).await, 200).await,
        json!({"email": false, "sms": true, "voice": true})
    );
}
on_both_backends!(patients_choose_their_reminder_channels, preferences);

async fn feeds(app: &TestApp) {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let p = app.new_patient(&ada, "Feedable").await;
    for day in [1, 2] {
        let res = book(app, &ada, &booking(&p, "clinician-ada", at(day, 9, 0), 30)).await;
        assert_eq!(res.status(), 201);
    }
    let made = json_of(
        post(app, &ada, "/api/v1/calendar-feeds", &json!({})).await,
        201,
    )
    .await;
    let url = made["url"].as_str().unwrap_or_default().to_owned();
    assert!(url.starts_with("/api/v1/calendar.ics?token=caf_"), "{made}");
    let ics = app.get_public(&url).await;
    assert_eq!(ics.status(), 200);
    assert!(
        ics.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/calendar"))
    );
    let body = ics.text().await.unwrap_or_default();
    assert_eq!(body.matches("BEGIN:VEVENT").count(), 2, "{body}");
    assert!(body.contains("SUMMARY:Appointment\r\n"), "{body}");
    for secret in ["Vexillary", "Feedable", "Roe", &p, "Europe"] {
        assert!(!body.contains(secret), "{secret} in the feed");
    }
    // The organization may allow initials; nothing more.
    let settings = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(&admin)
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "calendar_detail": "initials"})),
    )
    .await;
    assert_eq!(settings.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let body = app.get_public(&url).await.text().await.unwrap_or_default();
    assert!(body.contains("SUMMARY:Appointment (F. R.)"), "{body}");
    assert!(!body.contains("Feedable") && !body.contains("Vexillary"));
    // Listed without the token; revoked, the URL is dead at once.
    let listed = json_of(app.get("/api/v1/calendar-feeds", &ada).await, 200).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert!(listed[0].get("url").is_none());
    let id = made["id"].as_str().unwrap_or_default();
    let not_bobs = send(
        app.http
            .delete(app.url(&format!("/api/v1/calendar-feeds/{id}")))
            .bearer_auth(&bob),
    )
    .await;
    problem(not_bobs, 404).await;
    let revoked = send(
        app.http
            .delete(app.url(&format!("/api/v1/calendar-feeds/{id}")))
            .bearer_auth(&ada),
    )
    .await;
    assert_eq!(revoked.status(), 204);
    problem(app.get_public(&url).await, 404).await;
    problem(
        app.get_public("/api/v1/calendar.ics?token=caf_forged.token")
            .await,
        404,
    )
    .await;
    // Bob's feed shows Bob's (empty) schedule, not Ada's.
    let bobs = json_of(
        post(app, &bob, "/api/v1/calendar-feeds", &json!({})).await,
        201,
    )
    .await;
    let body = app
        .get_public(bobs["url"].as_str().unwrap_or_default())
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(
        body.contains("BEGIN:VCALENDAR") && !body.contains("BEGIN:VEVENT"),
        "{body}"
    );
}
on_both_backends!(calendar_feeds_show_times_only_until_revoked, feeds);
