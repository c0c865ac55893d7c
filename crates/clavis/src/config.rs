//! `clavis serve --config FILE` and `clavis config check FILE`: every `clavis serve` flag from a
//! TOML file.
//!
//! A key is a flag's long name with `_` for `-` (`data_dir = "/var/lib/clavis"` is
//! `--data-dir`), at the top level or in a table named after its first word(s): in `[tls]`,
//! `cert` is `tls_cert`; in `[audit]`, `durability` is `audit_durability`; a key that is a flag
//! name by itself is accepted in any table (`[limits] account_requests_per_second`). Precedence:
//! command line, then environment, then the file, then the default. An unknown key, a value of
//! the wrong type, or a flag that is not for files (`config`, hidden test flags) is an error that
//! names the key, so a typo never silently falls back to a default.
//!
//! How: the command line is parsed once to find the file and which flags the command line or
//! environment already set; every other key in the file becomes a `--flag=value` argument, and
//! the result is parsed again. clap validates every value exactly as it does on the command line.

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::Path;

/// The largest configuration file read (a real one is a few kilobytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// One flag set by the file: its arguments to add, unless the command line or the
/// environment set the flag already.
struct Setting {
    id: String,
    args: Vec<OsString>,
}

/// Reads `path` and turns every key into the `clavis serve` arguments it stands for. `serve` is
/// clap's `serve` subcommand (to look flags up by name).
fn settings(path: &Path, serve: &Command) -> anyhow::Result<Vec<Setting>> {
    // Read at most one byte past the limit: a device or pipe reports no size.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?, MAX_CONFIG_BYTES + 1),
        &mut text,
    )
    .with_context(|| format!("reading {} (a TOML file of UTF-8 text)", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!("{}: larger than {MAX_CONFIG_BYTES} bytes; not a configuration file", path.display());
    }
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                for (k, v) in inner {
                    let name = format!("{key}.{k}");
                    if matches!(v, toml::Value::Table(_)) {
                        bail!("{}: `{name}` is a table; tables nest one level (`[tls]` then `cert = ...`)", path.display());
                    }
                    let id = [format!("{key}_{k}"), k.clone()].into_iter().find(|id| flag(serve, id).is_some());
                    let Some(id) = id else {
                        bail!(
                            "{}: unknown key `{name}`: no `clavis serve` flag --{}-{} or --{}",
                            path.display(),
                            dashed(key),
                            dashed(k),
                            dashed(k)
                        );
                    };
                    out.push(setting(path, serve, &name, &id, v)?);
                }
            }
            v => {
                if flag(serve, key).is_none() {
                    bail!("{}: unknown key `{key}`: no `clavis serve` flag --{}", path.display(), dashed(key));
                }
                out.push(setting(path, serve, key, key, v)?);
            }
        }
    }
    Ok(out)
}

fn dashed(s: &str) -> String {
    s.replace('_', "-")
}

/// The `clavis serve` flag whose id is `id`, if files may set it. Not `config`, hidden flags,
/// or the `dangerous_*` ones: a flag that weakens a guarantee (serving without an audit log) is
/// typed where it is seen, never left in a file.
fn flag<'a>(serve: &'a Command, id: &str) -> Option<&'a clap::Arg> {
    serve.get_arguments().find(|a| {
        a.get_id() == id && a.get_long().is_some() && !a.is_hide_set() && id != "config" && id != "help" && !id.starts_with("dangerous")
    })
}

/// The arguments for flag `id` (named `name` in the file) set to `value`.
fn setting(path: &Path, serve: &Command, name: &str, id: &str, value: &toml::Value) -> anyhow::Result<Setting> {
    let arg = flag(serve, id).ok_or_else(|| anyhow::anyhow!("{}: unknown key `{name}`", path.display()))?;
    let long = arg.get_long().unwrap_or(id);
    let scalar = |v: &toml::Value| -> anyhow::Result<String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => bail!("{}: `{name}` must be a string, number or boolean", path.display()),
        })
    };
    let args = match (arg.get_action(), value) {
        (ArgAction::SetTrue, toml::Value::Boolean(true)) => vec![format!("--{long}").into()],
        (ArgAction::SetTrue, toml::Value::Boolean(false)) => Vec::new(),
        (ArgAction::SetTrue, _) => bail!("{}: `{name}` must be true or false", path.display()),
        (ArgAction::Append, toml::Value::Array(items)) => {
            items.iter().map(|v| scalar(v).map(|s| OsString::from(format!("--{long}={s}")))).collect::<anyhow::Result<_>>()?
        }
        (_, toml::Value::Array(_)) => bail!("{}: `{name}` takes one value, not a list", path.display()),
        (_, v) => vec![format!("--{long}={}", scalar(v)?).into()],
    };
    Ok(Setting { id: id.to_owned(), args })
}

/// The `serve` subcommand of `cli`.
fn serve_command(cli: &Command) -> anyhow::Result<&Command> {
    cli.find_subcommand("serve").ok_or_else(|| anyhow::anyhow!("no serve subcommand"))
}

/// `argv` with the file's settings added, when it runs `clavis serve --config FILE` (or with
/// `CLAVIS_CONFIG`); otherwise `argv` unchanged (clap then reports any command-line error).
pub fn expand(cli: Command, argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let Ok(matches) = cli.clone().try_get_matches_from(&argv) else { return Ok(argv) };
    let Some(("serve", serve_matches)) = matches.subcommand() else { return Ok(argv) };
    let Some(path) = serve_matches.get_one::<std::path::PathBuf>("config") else { return Ok(argv) };
    let serve = serve_command(&cli)?;
    let mut expanded = argv;
    expanded.extend(unset_args(serve_matches, settings(path, serve)?));
    // The command line alone parsed: an error now is a value from the file.
    if let Err(e) = cli.try_get_matches_from(&expanded) {
        bail!("{}: {}", path.display(), first_line(&e));
    }
    Ok(expanded)
}

/// clap's error message without its usage lines.
fn first_line(e: &clap::Error) -> String {
    e.render().to_string().lines().next().unwrap_or("invalid").trim_start_matches("error: ").to_owned()
}

/// The arguments of `settings` whose flags neither the command line nor the environment set.
fn unset_args(matches: &ArgMatches, settings: Vec<Setting>) -> Vec<OsString> {
    settings
        .into_iter()
        .filter(|s| !matches!(matches.value_source(&s.id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)))
        .flat_map(|s| s.args)
        .collect()
}

/// `clavis config check FILE`: the file as `clavis serve --config FILE` would read it, with
/// every value validated, without starting anything. Prints the effective settings' sources.
pub fn check(cli: Command, path: &Path) -> anyhow::Result<()> {
    let serve = serve_command(&cli)?;
    let settings = settings(path, serve)?;
    let count = settings.len();
    let mut argv: Vec<OsString> = vec!["clavis".into(), "serve".into(), "--config".into(), path.into()];
    argv.extend(settings.into_iter().flat_map(|s| s.args));
    if let Err(e) = cli.try_get_matches_from(&argv) {
        bail!("{}: {}", path.display(), first_line(&e));
    }
    println!("{}: OK ({count} settings)", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failure should stop the test loudly")]
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Serve(Args),
    }

    #[derive(Debug, clap::Args)]
    struct Args {
        #[arg(long, env = "CLAVIS_TEST_CONFIG_FILE")]
        config: Option<std::path::PathBuf>,
        #[arg(long, env = "CLAVIS_TEST_CONFIG_LISTEN", default_value = "127.0.0.1:8484")]
        listen: String,
        #[arg(long)]
        tls_cert: Option<String>,
        #[arg(long)]
        insecure_http: bool,
        #[arg(long, value_delimiter = ',')]
        allowed_regions: Option<Vec<String>>,
        #[arg(long, default_value_t = 0.0)]
        account_requests_per_second: f64,
        #[arg(long, hide = true)]
        dangerous_thing: bool,
    }

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("clavis-config-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn parsed(path: &Path, extra: &[&str]) -> anyhow::Result<Args> {
        let mut argv: Vec<OsString> = vec!["clavis".into(), "serve".into(), "--config".into(), path.into()];
        argv.extend(extra.iter().map(OsString::from));
        let argv = expand(Cli::command(), argv)?;
        let Sub::Serve(a) = Cli::try_parse_from(argv)?.command;
        Ok(a)
    }

    #[test]
    fn file_values_apply_and_the_command_line_wins() {
        let p = file(
            "apply",
            "listen = \"0.0.0.0:9000\"\ninsecure_http = true\nallowed_regions = [\"eu-west-1\", \"us-east-1\"]\n\
             [tls]\ncert = \"/etc/c.pem\"\n[limits]\naccount_requests_per_second = 50\n",
        );
        let a = parsed(&p, &[]).unwrap();
        assert_eq!(a.listen, "0.0.0.0:9000");
        assert!(a.insecure_http);
        assert_eq!(a.tls_cert.as_deref(), Some("/etc/c.pem"));
        assert_eq!(a.allowed_regions, Some(vec!["eu-west-1".to_owned(), "us-east-1".to_owned()]));
        assert!((a.account_requests_per_second - 50.0).abs() < f64::EPSILON);
        let a = parsed(&p, &["--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:1");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (text, needle) in [
            ("listne = \"x\"\n", "listne"),
            ("[tls]\ncertt = \"x\"\n", "tls.certt"),
            ("dangerous_thing = true\n", "dangerous_thing"),
            ("[dangerous]\nthing = true\n", "dangerous.thing"),
            ("config = \"x\"\n", "config"),
            ("insecure_http = \"yes\"\n", "insecure_http"),
            ("listen = [\"a\"]\n", "listen"),
            ("account_requests_per_second = \"fast\"\n", "account-requests-per-second"),
            ("listen = \n", "clavis-config"),
        ] {
            let p = file("bad", text);
            let err = parsed(&p, &[]).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            let err = check(Cli::command(), &p).unwrap_err().to_string();
            assert!(err.contains(needle), "check {text:?}: {err}");
        }
    }
}
