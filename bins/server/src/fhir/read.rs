//! Reading a FHIR JSON resource element by element, every problem named
//! by its FHIRPath (`Patient.name[0].family`), so an `OperationOutcome`
//! can point at it.

use carapace_clinical::FieldError;
use serde_json::{Map, Value};

/// Problems found so far.
#[derive(Debug, Default)]
pub struct Reader {
    /// Every problem, by element.
    pub errors: Vec<FieldError>,
}

impl Reader {
    /// Records a problem with `path`.
    pub fn fail(&mut self, path: &str, message: &str) {
        self.errors
            .push(FieldError::new(path.to_owned(), message.to_owned()));
    }

    /// `value` as an object, or a problem.
    pub fn object<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(m) => Some(m),
            _ => {
                self.fail(path, "must be an object");
                None
            }
        }
    }

    /// `body` as a `kind` resource: an object whose `resourceType` is
    /// `kind`, every member refused but those in `allowed` and the
    /// `resourceType`, `meta` and `text` any resource may carry.
    pub fn resource<'v>(
        &mut self,
        body: &'v Value,
        kind: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let map = self.object(body, kind)?;
        let allowed: Vec<&str> = ["resourceType", "meta", "text"]
            .into_iter()
            .chain(allowed.iter().copied())
            .collect();
        self.known(map, &allowed, kind);
        if map.get("resourceType").and_then(Value::as_str) != Some(kind) {
            self.fail(
                &format!("{kind}.resourceType"),
                &format!("must be \"{kind}\""),
            );
        }
        Some(map)
    }

    /// Refuses members of `map` not in `allowed` (elements Carapace does
    /// not keep are refused, never silently dropped).
    pub fn known(&mut self, map: &Map<String, Value>, allowed: &[&str], path: &str) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.fail(
                    &format!("{path}.{key}"),
                    "this element is not supported by this server",
                );
            }
        }
    }

    /// The string member `key`, if present.
    pub fn string(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        match map.get(key) {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                self.fail(&format!("{path}.{key}"), "must be a non-empty string");
                None
            }
        }
    }

    /// The array member `key` (empty when absent); at most `max` items.
    pub fn array<'v>(
        &mut self,
        map: &'v Map<String, Value>,
        key: &str,
        path: &str,
        max: usize,
    ) -> &'v [Value] {
        match map.get(key) {
            None => &[],
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= max => items,
            Some(Value::Array(items)) if items.is_empty() => {
                self.fail(
                    &format!("{path}.{key}"),
                    "must not be empty (omit it instead)",
                );
                &[]
            }
            Some(Value::Array(_)) => {
                self.fail(
                    &format!("{path}.{key}"),
                    &format!("this server keeps at most {max}"),
                );
                &[]
            }
            Some(_) => {
                self.fail(&format!("{path}.{key}"), "must be an array");
                &[]
            }
        }
    }
}
