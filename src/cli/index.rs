//! `earshot index`: create or update an Azure AI Search index for a profile, upload its normal
//! embeddings, or `--check` that the remote index matches the profile.
//!
//! The index settings come from a TOML file (`--config`: the `index` table of the `[[monitor]]`
//! named by `--monitor`, or a top-level `[index]` table) and/or flags, flags winning. The api-key
//! is read from the environment variable or file the settings name, never from the command line.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use earshot::index::azure::{AzureClient, IndexSchema};
use earshot::index::config::DEFAULT_API_VERSION;
use earshot::index::manage::{EnsureOutcome, check_index, ensure_index};
use earshot::index::upload::{UploadOptions, upload_embeddings};
use earshot::index::{AzureConfig, IndexConfig};
use earshot::score::Profile;

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Profile directory written by `earshot learn`.
    #[arg(long)]
    profile: PathBuf,
    /// TOML file with the index settings (a monitor's `index` table or a top-level `[index]`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which `[[monitor]]` of the config file (by `name`) to take the index settings from.
    #[arg(long)]
    monitor: Option<String>,
    /// Only verify the remote index (exists, dimensions, metric, per-machine document counts).
    #[arg(long)]
    check: bool,
    /// Delete and recreate the index before uploading (removes every machine's documents).
    #[arg(long, conflicts_with = "check")]
    recreate: bool,
    /// Azure AI Search endpoint, e.g. https://<service>.search.windows.net
    #[arg(long)]
    endpoint: Option<String>,
    /// Index name (lowercase letters, digits, dashes); one index may hold several machines.
    #[arg(long)]
    index_name: Option<String>,
    /// Environment variable holding the admin api-key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// File holding the admin api-key.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// REST api-version to pin (default: the latest stable, 2025-09-01).
    #[arg(long)]
    api_version: Option<String>,
}

pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.profile)?;
    let cfg = resolve_config(&args)?;
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_async(&args, &cfg, &profile))
}

async fn run_async(args: &IndexArgs, cfg: &AzureConfig, profile: &Profile) -> anyhow::Result<()> {
    let client = AzureClient::from_config(cfg)?;
    let where_ = format!("index `{}` at {}", client.index_name(), client.endpoint());
    if args.check {
        let expected = vec![(profile.machine.clone(), profile.ids.len() as u64)];
        let report = check_index(&client, profile.dim(), &profile.model, &expected)
            .await
            .with_context(|| format!("checking {where_}"))?;
        println!(
            "ok: {where_}: {} dims, {} ({}), {} documents in total",
            report.schema.dim, report.schema.metric, report.schema.algorithm, report.total
        );
        for m in &report.machines {
            println!(
                "ok: machine `{}`: {} documents, as in the profile",
                m.machine, m.found
            );
        }
        return Ok(());
    }
    let schema = IndexSchema::from_config(cfg, profile.dim());
    let outcome = ensure_index(&client, &schema, &profile.model, args.recreate)
        .await
        .with_context(|| format!("preparing {where_}"))?;
    match outcome {
        EnsureOutcome::Created => eprintln!("created {where_}"),
        EnsureOutcome::Recreated => {
            eprintln!("recreated {where_} (all previous documents removed)")
        }
        EnsureOutcome::Existing => {
            eprintln!("{where_} exists and fits the profile; updating documents")
        }
    }
    let opts = UploadOptions::from_config(cfg);
    let report = upload_embeddings(
        &client,
        &profile.machine,
        &profile.model,
        profile.embeddings.view(),
        &profile.ids,
        &opts,
    )
    .await
    .with_context(|| format!("uploading to {where_} (re-running resumes without duplicates)"))?;
    println!(
        "uploaded {} documents for machine `{}` to {where_} in {} requests ({} items resent, {} batches split); \
         verify with `earshot index --check` once the service has indexed them",
        report.documents, profile.machine, report.requests, report.retried_items, report.splits
    );
    Ok(())
}

/// Index settings from the config file (if any) with flags applied on top.
fn resolve_config(args: &IndexArgs) -> anyhow::Result<AzureConfig> {
    let from_file = match &args.config {
        Some(p) => Some(index_table(p, args.monitor.as_deref())?),
        None => None,
    };
    let mut cfg = match from_file {
        Some(IndexConfig::Azure(a)) => a,
        Some(IndexConfig::Embedded(_)) => bail!(
            "the index settings in {} are `kind = \"embedded\"`: the embedded index needs no upload \
             (`earshot index` manages Azure AI Search indexes)",
            args.config
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        ),
        None => {
            let (Some(endpoint), Some(name)) = (&args.endpoint, &args.index_name) else {
                bail!(
                    "say which index: --config FILE (with an `index` table) or --endpoint URL --index-name NAME"
                );
            };
            let mut c = AzureConfig::new(endpoint, name, "EARSHOT_AZURE_KEY");
            c.api_version = DEFAULT_API_VERSION.to_string();
            c
        }
    };
    if let Some(e) = &args.endpoint {
        cfg.endpoint = e.clone();
    }
    if let Some(n) = &args.index_name {
        cfg.index_name = n.clone();
    }
    if let Some(v) = &args.api_version {
        cfg.api_version = v.clone();
    }
    if let Some(v) = &args.api_key_env {
        cfg.api_key_env = Some(v.clone());
        cfg.api_key_file = None;
    }
    if let Some(f) = &args.api_key_file {
        cfg.api_key_file = Some(f.display().to_string());
        cfg.api_key_env = None;
    }
    Ok(cfg)
}

/// Finds the index settings in a TOML file: the `index` of the named `[[monitor]]`, else a
/// top-level `[index]`, else the only monitor's `index`.
fn index_table(path: &Path, monitor: Option<&str>) -> anyhow::Result<IndexConfig> {
    let text = earshot::files::read_regular_string(path)?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let monitors: Vec<&toml::Table> = doc
        .get("monitor")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_table).collect())
        .unwrap_or_default();
    let table = match monitor {
        Some(name) => {
            let m = monitors
                .iter()
                .find(|m| m.get("name").and_then(toml::Value::as_str) == Some(name))
                .with_context(|| {
                    format!("{}: no [[monitor]] with name = \"{name}\"", path.display())
                })?;
            m.get("index").with_context(|| {
                format!(
                    "{}: monitor `{name}` has no `index` settings",
                    path.display()
                )
            })?
        }
        None => match doc.get("index") {
            Some(t) => t,
            None => {
                let with_index: Vec<&toml::Value> =
                    monitors.iter().filter_map(|m| m.get("index")).collect();
                if with_index.len() > 1 {
                    bail!(
                        "{}: several monitors have `index` settings; pick one with --monitor NAME",
                        path.display()
                    );
                }
                match with_index.first().copied() {
                    Some(one) => one,
                    None => bail!(
                        "{}: no `[index]` table and no monitor with `index` settings",
                        path.display()
                    ),
                }
            }
        },
    };
    let cfg: IndexConfig = table
        .clone()
        .try_into()
        .with_context(|| format!("{}: invalid index settings", path.display()))?;
    Ok(cfg)
}
