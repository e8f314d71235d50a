//! The periodic jobs of a serving instance (audit chaining, alert and
//! reminder delivery, the purge of expired credentials, the audit trail's
//! monthly partitions), all run by one
//! runner: [`Job::run`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use carapace_auth::local::SessionLimits;
use carapace_infra::alerts::{AlertDeliverer, WebhookTarget};
use carapace_infra::audit::AuditChainer;
use carapace_infra::keys::KeyRing;
use carapace_infra::kill_switch::SeaKillSwitch;
use carapace_infra::mail::LettreMailer;
use carapace_infra::outbound::SafeHttp;
use carapace_infra::purge::purge_expired;
use carapace_infra::sms::TwilioSms;
use carapace_infra::{Channels, Database, ReminderDeliverer, ReminderReport, SeaPatients};
use carapace_tenancy::StorageError;
use tokio::task::JoinHandle;

use super::secrets::{audit_signing_key, mailer, sealer};
use crate::metrics::Metrics;
use crate::settings::{AsConfig, Config};

/// Tells a job to stop between passes (see [`Job::run`]).
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// A periodic job: the lock it runs under, how often, and what its
/// failures are logged as.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// The lock each pass holds (`Database::exclusively`): one instance
    /// at a time runs it; the others skip that pass.
    pub lock: &'static str,
    /// Time between passes.
    pub every: Duration,
    /// Whether the first pass waits one interval (else it runs at once).
    pub wait_first: bool,
    /// Logged, with the error, when a pass fails.
    pub failed: &'static str,
    /// Logged, with the error, when taking the lock fails.
    pub not_elected: &'static str,
}

impl Job {
    /// Runs `pass` every [`Self::every`] under [`Self::lock`], handing each
    /// report to `done`, until `stop` changes (never, without one: the
    /// task is aborted instead). A pass under way always finishes.
    pub async fn run<T, F>(
        self,
        db: Database,
        mut pass: impl FnMut() -> F,
        mut done: impl FnMut(T),
        mut stop: Option<Stop>,
    ) where
        F: Future<Output = Result<T, StorageError>>,
    {
        let mut ticker = tokio::time::interval(self.every);
        if self.wait_first {
            ticker.tick().await; // the first tick is immediate; let start-up finish
        }
        loop {
            // A stop that came during the last pass wins over the tick
            // missed meanwhile: no pass starts after a stop.
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                _ = ticker.tick() => {}
            }
            match db.exclusively(self.lock, pass()).await {
                Ok(Some(Ok(report))) => done(report),
                Ok(Some(Err(e))) => tracing::error!(error = %e, "{}", self.failed),
                Err(e) => tracing::error!(error = %e, "{}", self.not_elected),
                // Another instance holds the lock.
                Ok(None) => {}
            }
        }
    }

    /// [`Self::run`] on its own task, until aborted.
    pub fn spawn<T, F>(
        self,
        db: Database,
        pass: impl FnMut() -> F + Send + 'static,
        done: impl FnMut(T) + Send + 'static,
    ) -> JoinHandle<()>
    where
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(self.run(db, pass, done, None))
    }
}

/// Resolves when `stop` changes (or its sender is gone); never without one.
async fn stopped(stop: &mut Option<Stop>) {
    match stop {
        Some(stop) => {
            let _ = stop.changed().await;
        }
        None => std::future::pending().await,
    }
}

/// Links new audit events into their chains.
const CHAIN: Job = Job {
    lock: "audit.chain",
    every: Duration::from_secs(1),
    wait_first: false,
    failed: "chaining audit events failed",
    not_elected: "electing the audit chainer failed",
};

/// Sends due alerts.
const ALERTS: Job = Job {
    lock: "alerts.deliver",
    every: Duration::from_secs(2),
    wait_first: false,
    failed: "delivering alerts failed",
    not_elected: "electing the alert deliverer failed",
};

/// Sends due reminders.
const REMINDERS: Job = Job {
    lock: "reminders.deliver",
    every: Duration::from_secs(30),
    wait_first: false,
    failed: "delivering reminders failed",
    not_elected: "electing the reminder deliverer failed",
};

/// Deletes expired sessions, refresh tokens and reset codes.
const PURGE: Job = Job {
    lock: "credentials.purge",
    every: Duration::from_secs(600),
    wait_first: true,
    failed: "purging expired credentials failed",
    not_elected: "purging expired credentials failed",
};

/// Creates the audit trail's monthly partitions ahead (PostgreSQL; a
/// no-op on SQLite). The first pass runs at start-up.
const PARTITIONS: Job = Job {
    lock: "audit.partitions",
    every: carapace_infra::audit_partitions::MAINTAIN_EVERY,
    wait_first: false,
    failed: "creating audit event partitions failed",
    not_elected: "electing the audit partition maintainer failed",
};

/// The jobs of a serving instance.
pub(super) struct Jobs {
    purge: JoinHandle<()>,
    partitions: JoinHandle<()>,
    chaining: JoinHandle<()>,
    stop_chaining: tokio::sync::watch::Sender<bool>,
    alerting: Option<JoinHandle<()>>,
    reminding: JoinHandle<()>,
    stop_reminding: tokio::sync::watch::Sender<bool>,
}

impl Jobs {
    /// Starts every job of `settings` on `db`.
    pub(super) fn start(
        settings: &Config,
        db: &Database,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let purge = PURGE.spawn(
            db.clone(),
            {
                let db = db.clone();
                move || {
                    let db = db.clone();
                    async move {
                        purge_expired(
                            &db,
                            time::OffsetDateTime::now_utc(),
                            SessionLimits::default(),
                        )
                        .await
                    }
                }
            },
            |r| {
                tracing::info!(
                    sessions = r.sessions,
                    reset_codes = r.resets,
                    bulk_exports = r.exports,
                    "purged expired credentials"
                );
            },
        );
        let partitions = PARTITIONS.spawn(
            db.clone(),
            {
                let db = db.clone();
                move || {
                    let db = db.clone();
                    async move { carapace_infra::audit_partitions::add_partitions(&db).await }
                }
            },
            |created| {
                if created > 0 {
                    tracing::info!(created, "audit event partitions created");
                }
            },
        );
        let chainer = Arc::new(audit_chainer(settings, db, None)?);
        let (stop_chaining, chaining_stopped) = tokio::sync::watch::channel(false);
        let chaining = tokio::spawn({
            let metrics = metrics.clone();
            CHAIN.run(
                db.clone(),
                move || {
                    let chainer = chainer.clone();
                    async move { chainer.run_once().await }
                },
                move |chained| metrics.audit_pass(chained),
                Some(chaining_stopped),
            )
        });
        let alerting = alert_deliverer(settings, db).map(|d| {
            let d = Arc::new(d);
            let metrics = metrics.clone();
            ALERTS.spawn(
                db.clone(),
                move || {
                    let d = d.clone();
                    async move { d.run_once().await }
                },
                move |r| metrics.alerts_pass(r.delivered, r.failed),
            )
        });
        let reminders = Arc::new(reminder_deliverer(settings, db)?);
        let switch = SeaKillSwitch::new(db.clone());
        // A reminder pass sends its batch and marks it sent in one
        // transaction: one cut short would send the batch again next time.
        // So it is stopped between passes, never aborted.
        let (stop_reminding, reminding_stopped) = tokio::sync::watch::channel(false);
        let reminding = tokio::spawn(REMINDERS.run(
            db.clone(),
            move || {
                let (reminders, switch) = (reminders.clone(), switch.clone());
                let now = time::OffsetDateTime::now_utc();
                async move { remind_unless_suspended(&reminders, &switch, now).await }
            },
            |r| {
                if r != ReminderReport::default() {
                    tracing::info!(
                        sent = r.sent,
                        skipped = r.skipped,
                        failed = r.failed,
                        "reminders delivered"
                    );
                }
            },
            Some(reminding_stopped),
        ));
        Ok(Self {
            purge,
            partitions,
            chaining,
            stop_chaining,
            alerting,
            reminding,
            stop_reminding,
        })
    }

    /// Before the drain: no more purging (a purge is one transaction,
    /// safe to cut) and no new reminder pass (the one under way goes on).
    pub(super) fn stop_before_drain(&self) {
        self.purge.abort();
        self.partitions.abort();
        let _ = self.stop_reminding.send(true);
    }

    /// After the drain: the reminder and chaining passes under way finish
    /// (within `timeout` each), no new ones start; alerting stops.
    pub(super) async fn finish(self, timeout: Duration) {
        let _ = self.stop_chaining.send(true);
        let _ = tokio::time::timeout(timeout, self.reminding).await;
        let _ = tokio::time::timeout(timeout, self.chaining).await;
        if let Some(a) = self.alerting {
            a.abort();
        }
    }
}

/// One pass of `reminders` at `now`, unless the kill switch is on: read
/// afresh from the database, so no pass starts on a stale "off", and a
/// switch that cannot be read fails the pass. Nothing is sent to patients
/// (text, e-mail, calls) while it is on; the due reminders wait for its
/// release, and those past their window are skipped as always.
pub async fn remind_unless_suspended(
    reminders: &Reminders,
    switch: &SeaKillSwitch,
    now: time::OffsetDateTime,
) -> Result<ReminderReport, StorageError> {
    if switch.status().await?.engaged {
        tracing::info!("kill switch engaged: no reminders sent this pass");
        return Ok(ReminderReport::default());
    }
    reminders.run_once(now).await
}

/// The audit chainer of these settings: a checkpoint at most every
/// `CARAPACE_AUDIT_ANCHOR_EVERY_SECS` per organization (`every` overrides
/// it: zero for the last pass), each anchored in the witness when one is
/// configured.
pub fn audit_chainer(
    settings: &impl AsConfig,
    db: &Database,
    every: Option<Duration>,
) -> anyhow::Result<AuditChainer> {
    let settings = settings.as_config();
    let settings: &Config = &settings;
    let every = every.unwrap_or_else(|| settings.audit.anchor_every());
    let chainer = AuditChainer::new(db.clone(), audit_signing_key(settings)?, every);
    Ok(match crate::witness::audit_witness(settings)? {
        Some(w) => chainer.with_witness(w),
        None => chainer,
    })
}

/// The alert deliverer, when a webhook is configured.
pub fn alert_deliverer(settings: &impl AsConfig, db: &Database) -> Option<AlertDeliverer> {
    let settings = settings.as_config();
    let settings: &Config = &settings;
    let url = settings.alerts.webhook_url.clone()?;
    let secret = settings.alerts.webhook_secret.clone()?;
    Some(AlertDeliverer::new(
        db.clone(),
        SafeHttp::new(settings.alerts.policy(settings.profile)),
        WebhookTarget { url, secret },
    ))
}

/// The reminder deliverer: e-mail through the mailer, SMS and calls when
/// configured.
pub type Reminders = ReminderDeliverer<
    Channels<LettreMailer, TwilioSms, carapace_infra::reminder_calls::VoiceReminders>,
>;

/// The reminder deliverer of these settings.
pub fn reminder_deliverer(settings: &Config, db: &Database) -> anyhow::Result<Reminders> {
    let keys = Arc::new(KeyRing::new(db.clone(), sealer(settings)?));
    let sms = settings
        .sms
        .adapter(settings.profile)
        .map(|(sms, policy)| TwilioSms::new(SafeHttp::new(policy), sms));
    Ok(ReminderDeliverer::new(
        db.clone(),
        SeaPatients::new(db.clone(), keys.clone()),
        Channels {
            email: Some(mailer(settings)?),
            sms,
            voice: settings
                .voice
                .provider(settings.profile)
                .map(|(api, public_url)| {
                    carapace_infra::reminder_calls::VoiceReminders::new(
                        api,
                        carapace_infra::calls::SeaCalls::new(db.clone(), keys.clone()),
                        public_url,
                    )
                }),
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A stop that arrives while a pass is under way lets it finish (a
    /// reminder pass cut short would send its batch again) and starts no
    /// other.
    #[tokio::test]
    async fn a_stop_waits_for_the_pass_under_way_and_starts_no_other() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}/jobs.db", dir.path().display());
        let db = Database::connect(&carapace_infra::DbSettings::new(url.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (started, finished) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let job = Job {
            lock: "test.job",
            every: Duration::from_millis(50),
            wait_first: false,
            failed: "failed",
            not_elected: "not elected",
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(job.run(
            db,
            {
                let (started, finished) = (started.clone(), finished.clone());
                move || {
                    let (started, finished) = (started.clone(), finished.clone());
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, StorageError>(())
                    }
                }
            },
            |()| {},
            Some(stopped),
        ));
        while started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap_or_else(|_| panic!("the job did not stop"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(finished.load(Ordering::SeqCst), 1, "the pass finished");
        assert_eq!(started.load(Ordering::SeqCst), 1, "no pass after the stop");
    }
}
