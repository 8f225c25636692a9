//! The JSON Schema of lifeboat.yaml, generated from the serde structs in `raw` (their doc
//! comments become the descriptions) and committed as config/lifeboat.schema.json for editors.
//! Strings that carry a syntax (durations, cron expressions, URLs) get a named definition here.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// Where the generated schema is committed, relative to the repository root; the examples in
/// config/ refer to it as `./lifeboat.schema.json`.
pub const COMMITTED_PATH: &str = "config/lifeboat.schema.json";

/// The schema as committed: pretty JSON with a trailing newline.
pub fn generate() -> String {
    let schema = SchemaSettings::default()
        .with_transform(RecursiveTransform(unwrap_description))
        .into_generator()
        .into_root_schema_for::<super::raw::RawConfig>();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    text.push('\n');
    text
}

/// Joins the lines of each paragraph of a description: doc comments are wrapped at 100
/// columns, an editor's hover should wrap at its own width.
fn unwrap_description(schema: &mut Schema) {
    if let Some(serde_json::Value::String(text)) = schema.get_mut("description") {
        *text = text
            .split("\n\n")
            .map(|paragraph| paragraph.replace('\n', " "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
}

/// What humantime (and so lifeboat) accepts as a duration: numbers, each with a unit.
const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)\s*)+$";

/// A cron expression's shape: a macro, or 5 or 6 whitespace-separated fields.
const CRON_PATTERN: &str = r"^\s*(@[A-Za-z]+|\S+(\s+\S+){4,5})\s*$";

/// Defines a schema-only type: a string with a description and a pattern.
macro_rules! text_schema {
    ($type:ident, $name:literal, $schema:tt) => {
        pub(crate) struct $type;

        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

text_schema!(DurationText, "Duration", {
    "type": "string",
    "description": "A positive duration: numbers with units, e.g. 30s, 5m, 2h, 7d, 1h 30m (s, m, h, d, w, M for months, y; ms, us, ns).",
    "pattern": DURATION_PATTERN,
    "examples": ["30s", "5m", "2h", "7d"]
});

text_schema!(CronText, "Cron", {
    "type": "string",
    "description": "A cron expression: 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly. A field is *, or a comma list of values, ranges a-b and steps */n; names such as SUN and JAN are accepted. Check with `lifeboat schedule --next 5`.",
    "pattern": CRON_PATTERN,
    "examples": ["0 */6 * * *", "30 4 * * SUN", "@daily"]
});

text_schema!(TimeZoneText, "TimeZone", {
    "type": "string",
    "description": "An IANA time zone name from the tz database, e.g. Europe/Berlin, America/New_York or UTC.",
    "examples": ["UTC", "Europe/Berlin"]
});

text_schema!(SocketAddrText, "SocketAddr", {
    "type": "string",
    "description": "An IP address and port, e.g. 0.0.0.0:9464 or [::]:9464 (not a host name).",
    "pattern": r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):\d{1,5}$",
    "examples": ["0.0.0.0:9464", "127.0.0.1:9464", "[::]:9464"]
});

text_schema!(StorageUrlText, "StorageUrl", {
    "type": "string",
    "format": "uri",
    "description": "s3://bucket/optional/prefix (any S3-compatible server) or file:///absolute/path (three slashes), without credentials.",
    "pattern": r"^(s3://[^/@]+(/.*)?|file:///.+)$",
    "examples": ["s3://platform-backups/lifeboat", "file:///var/backups/lifeboat"]
});

text_schema!(EndpointUrlText, "EndpointUrl", {
    "type": "string",
    "format": "uri",
    "description": "An http(s) URL of an S3-compatible server; plain http needs allow_http: true.",
    "pattern": r"^https?://",
    "examples": ["https://s3.example.com", "http://127.0.0.1:9000"]
});

text_schema!(EtcdUrlText, "EtcdUrl", {
    "type": "string",
    "format": "uri",
    "description": "An etcd client URL with host and port, without credentials; https needs etcd.tls.",
    "pattern": r"^https?://[^/@]+",
    "examples": ["https://10.0.0.1:2379", "http://127.0.0.1:2379"]
});
