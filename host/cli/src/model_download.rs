//! Downloading a model from the Hugging Face Hub (or a mirror: `--endpoint`,
//! or `HF_ENDPOINT`) into the local Hugging Face cache, with `hf-hub`. Only
//! the files the engine reads are fetched.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

/// Whether the engine needs this file of a model repository.
fn wanted(name: &str) -> bool {
    matches!(
        name,
        "config.json"
            | "generation_config.json"
            | "preprocessor_config.json"
            | "tokenizer.json"
            | "tokenizer_config.json"
            | "chat_template.json"
            | "chat_template.jinja"
            | "model.safetensors.index.json"
    ) || (name.ends_with(".safetensors") && !name.contains('/'))
}

/// Downloads `id` at `revision` into the Hugging Face cache `cache`;
/// returns the snapshot directory. (`hf-hub` reads `HF_TOKEN` and
/// `HF_ENDPOINT` itself.)
pub fn download(cache: &Path, id: &str, revision: &str, endpoint: Option<&str>) -> Result<PathBuf> {
    let mut builder = ApiBuilder::from_env()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(true);
    if let Some(e) = endpoint {
        builder = builder.with_endpoint(e.trim_end_matches('/').to_string());
    }
    let api = builder
        .build()
        .context("setting up the Hugging Face client")?;
    let repo = api.repo(Repo::with_revision(
        id.to_string(),
        RepoType::Model,
        revision.to_string(),
    ));
    let info = repo
        .info()
        .with_context(|| format!("looking up {id} (revision {revision}) on the Hub"))?;
    let files: Vec<String> = info
        .siblings
        .iter()
        .map(|s| s.rfilename.clone())
        .filter(|f| wanted(f))
        .collect();
    if !files.iter().any(|f| f == "config.json")
        || !files.iter().any(|f| f.ends_with(".safetensors"))
    {
        bail!(
            "{id} has no config.json and safetensors weights: it is not a model this engine can run"
        );
    }
    let mut dir = None;
    for f in &files {
        eprintln!("fetching {id}/{f}");
        let path = repo
            .get(f)
            .with_context(|| format!("downloading {id}/{f}"))?;
        dir = path.parent().map(PathBuf::from);
    }
    let dir = dir.expect("at least config.json was fetched");
    eprintln!("{id} is in {}", dir.display());
    Ok(dir)
}
