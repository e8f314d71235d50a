//! Every request runs with one budget for all its waits for a database
//! connection: the acquire timeout (`carapace_infra::Database::with_wait_budget`).
//! However many steps touch the database, a request that cannot get a
//! connection answers 503 `storage_unavailable` within that timeout.

use actix_web::Error;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::state::State;

/// Middleware: runs the rest of the request inside its wait budget.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<State>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let res = state.db.with_wait_budget(next.call(req)).await?;
    Ok(res.map_into_boxed_body())
}
