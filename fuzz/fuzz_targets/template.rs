//! Loading a template never panics, whatever the JSON or YAML; a template that loads
//! extracts from a small page without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scraperv4::extract::Template;

const PAGE: &str = r#"<html><head><title>t</title></head><body>
<div class="card"><h2><a href="/p/1">One</a></h2><span class="price">$1.50</span></div>
<div class="card"><h2><a href="/p/2">Two</a></h2></div><a class="next" href="?page=2">next</a>
</body></html>"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for template in [Template::from_json(text, "fuzz"), Template::from_yaml(text, "fuzz")]
        .into_iter()
        .flatten()
    {
        let _ = template.analyse(PAGE, "https://shop.example/");
    }
});
