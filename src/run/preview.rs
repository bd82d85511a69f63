//! `ccci overlay <recipe>`: the overlay a run would deploy with, computed in a scratch clone
//! without touching the swarm.

use std::path::Path;

use crate::config::{Config, Env};
use crate::driver;
use crate::error::{Error, Result};
use crate::labels::RunLabels;
use crate::recipe::compose::Compose;
use crate::recipe::envfile::EnvFile;
use crate::recipe::git;
use crate::recipe::overlay::{self, OverlayInput};
use crate::recipe::suite::{self, TestTrees};
use crate::sys::cancel::Cancel;
use crate::sys::process::Runner;

/// `ccci overlay <recipe>`: the overlay a run would deploy with the recipe's `.env.sample`, for
/// the ref asked for, without touching the swarm. Works in a scratch directory that is removed
/// afterwards.
pub fn preview_overlay(
    config: &Config,
    env: &Env,
    recipe_name: &str,
    source: Option<&str>,
    git_ref: Option<&str>,
    tests_dir: Option<&Path>,
) -> Result<String> {
    crate::naming::validate_recipe(recipe_name)?;
    // A private scratch directory (mode 0700, unpredictable name), removed when dropped.
    let scratch = tempfile::Builder::new()
        .prefix("ccci-overlay-")
        .tempdir()
        .map_err(|e| Error::io("create a scratch directory in", std::env::temp_dir(), e))?;
    let runner = Runner::new(Cancel::new());
    let dir = scratch.path().join(recipe_name);
    let source = git::source_for(recipe_name, source, &config.recipe_base_url);
    git::clone(&runner, &source, &dir)?;
    let commit = git::resolve(&runner, &dir, git_ref)?;
    git::checkout(&runner, &dir, &commit)?;
    let sample = EnvFile::read(&dir.join(".env.sample")).map_err(|_| {
        Error::Config(format!(
            "recipe {recipe_name} has no .env.sample: is it a Co-op Cloud recipe?"
        ))
    })?;
    let run_id = "preview";
    let domain = crate::naming::test_domain(recipe_name, &commit, run_id, &config.domain_zone);
    let stack = crate::naming::stack_name(&domain);
    let mut vars = driver::stack::abra_sh_exports(&dir);
    vars.extend(sample.vars());
    vars.insert("STACK_NAME".into(), stack.clone());
    vars.insert("DOMAIN".into(), domain.clone());
    let compose = Compose::load(
        &dir,
        &overlay::without_overlay(&sample.compose_files()),
        &vars,
    )?;
    let roots = suite::roots(
        tests_dir,
        config,
        Config::config_dir(env).as_deref(),
        suite::bundled_root(env).as_deref(),
    );
    let trees = TestTrees::find(recipe_name, &roots);
    let tests = trees.config()?;
    let template = trees.file(overlay::TEMPLATE_FILE);
    overlay::generate(&OverlayInput {
        compose: &compose,
        min_start_period: tests.min_start_period.unwrap_or(config.min_start_period),
        stack: &stack,
        domain: &domain,
        recipe: recipe_name,
        run_id,
        run_labels: &RunLabels {
            run_id: run_id.to_string(),
            domain: domain.clone(),
            setup: crate::labels::setup_id(&config.lock_dir),
            deadline_unix: None,
            keep_until: None,
        }
        .pairs(),
        chaos_version: Some(git::short(&commit)),
        dnsrr: !crate::docker::host::has_ipvs(),
        template: template.as_deref(),
        template_vars: &vars,
    })
}
