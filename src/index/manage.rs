//! Index life cycle for `earshot index`: create if missing, refuse an incompatible index, and
//! check that a remote index holds what the profile says it should.

use super::IndexError;
use super::azure::{
    AzureClient, IndexSchema, MACHINE_FIELD, MODEL_FIELD, RemoteSchema, check_definition,
};
use super::keys::odata_string;

/// What [`ensure_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    Created,
    /// Already there with a compatible vector field: left as is (changing algorithm parameters of
    /// a filled index is not allowed by every service; use `--recreate`).
    Existing,
    /// Deleted and created again (`--recreate`).
    Recreated,
}

/// Creates the index if missing; refuses an existing one that does not fit `schema`.
pub async fn ensure_index(
    client: &AzureClient,
    schema: &IndexSchema,
    model: &str,
    recreate: bool,
) -> Result<EnsureOutcome, IndexError> {
    let definition = schema.definition(client.index_name());
    if recreate {
        client.delete_index().await?;
        client.put_index(&definition).await?;
        return Ok(EnsureOutcome::Recreated);
    }
    match client.get_index().await? {
        None => {
            client.put_index(&definition).await?;
            Ok(EnsureOutcome::Created)
        }
        Some(def) => {
            check_definition(&def, schema.dim, model)?;
            Ok(EnsureOutcome::Existing)
        }
    }
}

/// Documents found for one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineCount {
    pub machine: String,
    pub expected: u64,
    pub found: u64,
    /// Of `found`, how many carry the profile's model name.
    pub same_model: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub schema: RemoteSchema,
    pub total: u64,
    pub machines: Vec<MachineCount>,
}

impl CheckReport {
    /// Human-readable problems; empty when the index matches the profile.
    pub fn problems(&self, model: &str) -> Vec<String> {
        let mut p = Vec::new();
        for m in &self.machines {
            if m.found != m.expected {
                p.push(format!(
                    "machine `{}`: the index holds {} documents but the profile has {} windows; run \
                     `earshot index` again to finish or redo the upload (counts can lag a few seconds \
                     right after an upload)",
                    m.machine, m.found, m.expected
                ));
            }
            if m.same_model != m.found {
                p.push(format!(
                    "machine `{}`: {} of {} documents come from another model than `{model}`; rebuild \
                     with `earshot index --recreate`",
                    m.machine,
                    m.found - m.same_model.min(m.found),
                    m.found
                ));
            }
        }
        p
    }
}

/// Verifies existence, dimensions, metric and per-machine document counts.
pub async fn check_index(
    client: &AzureClient,
    dim: usize,
    model: &str,
    expected: &[(String, u64)],
) -> Result<CheckReport, IndexError> {
    let def = client
        .get_index()
        .await?
        .ok_or_else(|| client.not_found())?;
    let schema = check_definition(&def, dim, model)?;
    let total = client.count_all().await?;
    let mut machines = Vec::new();
    for (machine, exp) in expected {
        let f = format!("{MACHINE_FIELD} eq {}", odata_string(machine));
        let found = client.count_filtered(&f).await?;
        let same_model = client
            .count_filtered(&format!("{f} and {MODEL_FIELD} eq {}", odata_string(model)))
            .await?;
        machines.push(MachineCount {
            machine: machine.clone(),
            expected: *exp,
            found,
            same_model,
        });
    }
    let report = CheckReport {
        schema,
        total,
        machines,
    };
    let problems = report.problems(model);
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(IndexError::Check(problems.join("; ")))
    }
}
