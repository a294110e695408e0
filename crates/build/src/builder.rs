//! [`Builder`]: discovers modules and builds them, one [`Report`] per module.

use std::time::Duration;

use crate::config::Config;
use crate::discover::{self, Language, Module};
use crate::error::Error;
use crate::report::{Outcome, Report};
use crate::{c, cargo, go};

/// Builds modules as its [`Config`] says. Cheap to clone; holds no state between builds
/// (cargo's target dir is the cache).
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// A builder for `config`.
    pub fn new(config: Config) -> Builder {
        Builder { config }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every module in the modules directory, sorted by name (see [`discover::discover`]).
    pub fn discover(&self) -> Result<Vec<Module>, Error> {
        discover::discover(&self.config.modules_dir)
    }

    /// The modules called `names` (all of them when `names` is empty), sorted by name; an
    /// unknown name is an error listing the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<Module>, Error> {
        let modules = self.discover()?;
        if let Some(unknown) = names
            .iter()
            .find(|name| !modules.iter().any(|module| &module.name == *name))
        {
            return Err(Error::UnknownModule {
                name: unknown.clone(),
                dir: self.config.modules_dir.clone(),
                known: modules.into_iter().map(|module| module.name).collect(),
            });
        }
        Ok(modules
            .into_iter()
            .filter(|module| names.is_empty() || names.contains(&module.name))
            .collect())
    }

    /// Builds every module.
    pub fn build_all(&self) -> Result<Vec<Report>, Error> {
        Ok(self.build(&self.discover()?))
    }

    /// Builds `modules` and returns one report per module, in the same order.
    ///
    /// Rust modules of the modules workspace compile in one `cargo build --keep-going` run
    /// (so they share dependencies and both cores); a module that fails doesn't stop the
    /// others, and its last good `dist/<name>.wasm` stays in place. Each success is copied to
    /// `dist/<name>.wasm` atomically, and only if its bytes changed. Go and C modules build
    /// after them, one by one; a missing Go or clang fails those modules, saying what to
    /// install.
    pub fn build(&self, modules: &[Module]) -> Vec<Report> {
        let mut reports: Vec<Option<Report>> = vec![None; modules.len()];
        let (valid, invalid): (Vec<usize>, Vec<usize>) =
            (0..modules.len()).partition(|index| discover::valid_name(&modules[*index].name));
        for index in invalid {
            let name = &modules[index].name;
            reports[index] = Some(Report {
                module: name.clone(),
                language: modules[index].language,
                elapsed: Duration::ZERO,
                outcome: Outcome::Failed(format!("module \"{name}\": {}", discover::NAME_RULE)),
            });
        }
        let rust: Vec<usize> = valid
            .iter()
            .copied()
            .filter(|index| modules[*index].language == Language::Rust)
            .collect();
        let rust_modules: Vec<&Module> = rust.iter().map(|index| &modules[*index]).collect();
        for report in cargo::build(&self.config, &rust_modules) {
            if let Some(index) = rust
                .iter()
                .find(|index| modules[**index].name == report.module)
            {
                reports[*index] = Some(report);
            }
        }
        for index in valid {
            match modules[index].language {
                Language::Go => reports[index] = Some(go::build(&self.config, &modules[index])),
                Language::C => reports[index] = Some(c::build(&self.config, &modules[index])),
                Language::Rust => {}
            }
        }
        reports.into_iter().flatten().collect()
    }
}
