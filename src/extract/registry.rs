//! A directory of templates, looked up by the `template_id` jobs carry.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::template::{Template, TemplateError, TemplateResult};

/// Templates by id, loaded from `*.json`, `*.yaml` and `*.yml` files of one directory.
#[derive(Debug, Clone, Default)]
pub struct TemplateRegistry {
    templates: HashMap<String, Arc<Template>>,
}

impl TemplateRegistry {
    /// Loads every template file of `dir`; any broken file or duplicate id is an error.
    pub fn load(dir: &Path) -> TemplateResult<Self> {
        let origin = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| TemplateError {
            template: origin.clone(),
            field: None,
            message: format!("cannot read the template directory: {e}"),
        })?;
        let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        let mut registry = Self::default();
        for path in paths {
            let Some(extension) = path.extension().and_then(|e| e.to_str()) else {
                continue;
            };
            let name = path.display().to_string();
            let read = || {
                std::fs::read_to_string(&path).map_err(|e| TemplateError {
                    template: name.clone(),
                    field: None,
                    message: format!("cannot read: {e}"),
                })
            };
            let template = match extension {
                "json" => Template::from_json(&read()?, &name)?,
                "yaml" | "yml" => Template::from_yaml(&read()?, &name)?,
                _ => continue,
            };
            registry.insert(template, &name)?;
        }
        Ok(registry)
    }

    /// Adds one template; an id already present is an error naming both.
    pub fn insert(&mut self, template: Template, origin: &str) -> TemplateResult<()> {
        if self.templates.contains_key(&template.id) {
            return Err(TemplateError {
                template: template.id.clone(),
                field: None,
                message: format!("duplicate template id (again in {origin})"),
            });
        }
        self.templates
            .insert(template.id.clone(), Arc::new(template));
        Ok(())
    }

    /// The template with `id`.
    pub fn get(&self, id: &str) -> TemplateResult<Arc<Template>> {
        self.templates.get(id).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.templates.keys().map(String::as_str).collect();
            known.sort_unstable();
            TemplateError {
                template: id.to_owned(),
                field: None,
                message: format!(
                    "no template with this id among the worker's templates (known: {}); add \
                     it to the templates directory or submit the jobs with a known template id",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            }
        })
    }

    /// The ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.templates.keys().cloned().collect();
        ids.sort();
        ids
    }
}
