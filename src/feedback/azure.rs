//! Feedback on a monitor whose normal memory is in Azure AI Search: the windows `--normal`
//! added to the profile go to the index too, under the keys `earshot index` gives them
//! ([`crate::index::keys::doc_key`] of the profile's machine and the row id), and `--undo`
//! deletes exactly those keys. Both are idempotent, so a command cut short by an outage is
//! finished by running it again.

use crate::index::IndexError;
use crate::index::azure::AzureClient;
use crate::index::keys::doc_key;
use crate::index::upload::{UploadOptions, UploadReport, delete_documents, upload_embeddings};
use crate::score::profile::Profile;
use ndarray::Axis;

/// Uploads the profile's rows with these ids (what one feedback added).
pub async fn upload_rows(
    client: &AzureClient,
    profile: &Profile,
    ids: &[String],
    opts: &UploadOptions,
) -> Result<UploadReport, IndexError> {
    let rows: Vec<usize> = ids
        .iter()
        .map(|id| {
            profile.ids.iter().position(|x| x == id).ok_or_else(|| {
                IndexError::Config(format!(
                    "row {id:?} of the feedback record is not in the profile {}",
                    profile.dir.display()
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let e = profile.embeddings.select(Axis(0), &rows);
    upload_embeddings(
        client,
        &profile.machine,
        &profile.model,
        e.view(),
        ids,
        opts,
    )
    .await
}

/// Deletes the documents of these row ids of `machine` (a missing one is not an error).
pub async fn delete_rows(
    client: &AzureClient,
    machine: &str,
    ids: &[String],
    opts: &UploadOptions,
) -> Result<UploadReport, IndexError> {
    let keys: Vec<String> = ids.iter().map(|id| doc_key(machine, id)).collect();
    delete_documents(client, &keys, opts).await
}
