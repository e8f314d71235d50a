//! The audit trail over HTTP: every PHI endpoint leaves exactly its events,
//! the trail and each patient's accounting of disclosures can be read by
//! the right people (and reading is recorded), and a PHI request whose
//! event cannot be written fails without PHI.

use carapace_auth::Role;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Backend, Org, TestApp, patient, problem, send, spawn_app, spawn_app_with};

mod phi_table;

use phi_table::every_phi_endpoint_leaves_exactly_its_events;
mod log;

/// Every event of the org, as compliance reads it (all pages).
async fn trail(app: &TestApp, org: &Org, filter: &str) -> Vec<Value> {
    let compliance = app.token_as(org, Role::Compliance, "compliance-officer");
    let mut items = Vec::new();
    let mut path = format!("/api/v1/audit-events?limit=500{filter}");
    loop {
        let res = app.get(&path, &compliance).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/audit-events?limit=500{filter}&cursor={c}"),
            None => break,
        }
    }
    // The trail's own reads are not what these tests look at.
    items.retain(|e| e["action"] != "audit.read");
    items
}

/// The (action, outcome) of the events of one request.
async fn events_of(app: &TestApp, org: &Org, request_id: &str) -> Vec<(String, String)> {
    trail(app, org, "")
        .await
        .iter()
        .filter(|e| e["origin"]["request_id"] == request_id)
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

mod every_phi_endpoint_leaves_exactly_its_events_on {
    use super::*;

    /// The local AI provider and the deployment's BAA, so the assistant's
    /// endpoints are in the table too.
    fn with_assistant(s: &mut carapace_server::settings::Settings) {
        s.ai_provider = "local".into();
        s.ai_baa_signed = true;
    }

    #[tokio::test]
    async fn sqlite() {
        if let Some(app) =
            spawn_app_with(Backend::Sqlite, "audit_table::sqlite", with_assistant).await
        {
            every_phi_endpoint_leaves_exactly_its_events(&app).await;
            app.stop().await;
        }
    }

    #[tokio::test]
    async fn postgres() {
        if let Some(app) =
            spawn_app_with(Backend::Postgres, "audit_table::postgres", with_assistant).await
        {
            every_phi_endpoint_leaves_exactly_its_events(&app).await;
            app.stop().await;
        }
    }
}
