//! The research cohort: what de-identified aggregates are computed from,
//! read in one tenant transaction with one audit event.

use carapace_audit::{Access, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::appointment::AppointmentStatus;
use carapace_clinical::research::{Cohort, ResearchRepository};
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QuerySelect as _};
use time::OffsetDateTime;

use crate::db::Database;
use crate::db::Fetch as _;
use crate::entity::appointment;
use crate::scope::Live as _;
use crate::{SeaMedications, SeaPatients};

/// [`ResearchRepository`] over patients, medications and appointments.
#[derive(Clone, Debug)]
pub struct SeaResearch {
    db: Database,
    patients: SeaPatients,
    medications: SeaMedications,
}

impl SeaResearch {
    /// The cohort in `db`.
    pub fn new(db: Database, patients: SeaPatients, medications: SeaMedications) -> Self {
        Self {
            db,
            patients,
            medications,
        }
    }
}

impl ResearchRepository for SeaResearch {
    async fn cohort(
        &self,
        access: &Access,
        since: OffsetDateTime,
    ) -> Result<Cohort, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let (birth_dates, sexes): (Vec<_>, Vec<_>) = self
            .patients
            .birth_dates_and_sexes(&tx, ctx)
            .await?
            .into_iter()
            .unzip();
        let timelines = self.medications.timelines_in(&tx, ctx).await?;
        let appointment_starts: Vec<OffsetDateTime> = appointment::Entity::find()
            .select_only()
            .column(appointment::Column::StartsAt)
            .live(ctx)
            .filter(appointment::Column::StartsAt.gte(since))
            .filter(appointment::Column::Status.ne(AppointmentStatus::Cancelled.as_str()))
            .limit(100_000)
            .into_tuple()
            .all_in(&tx)
            .await?;
        let read = access
            .event(
                "research.aggregate",
                "organization",
                Some(ctx.org().to_string()),
                Outcome::Allowed,
            )
            .with_phi_fields(&["birth_date", "sex", "drug_name", "symptom", "slot"])
            .with_detail(format!("{} patients", birth_dates.len()));
        crate::audit::commit_with(tx, &[read]).await?;
        Ok(Cohort {
            birth_dates,
            sexes,
            timelines,
            appointment_starts,
        })
    }
}
