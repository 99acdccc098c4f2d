//! `rafka user create|delete|list`: SCRAM users (superusers only on a cluster with
//! authentication on). `create` reads the password from the first line of stdin and salts it
//! here: the broker receives SCRAM-SHA-256 and SCRAM-SHA-512 credentials, never the password.
//!
//! # Format
//!
//! `list --output json` prints `[{"user", "mechanisms": ["SCRAM-SHA-256", ...]}]`.

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;
use rafka_client::Admin;
use serde_json::json;

use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::print_json;
use super::output::print_table;

/// `rafka user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or change its password (read from the first line of stdin).
    Create {
        /// The user name.
        name: String,
    },
    /// Delete a user.
    Delete {
        /// The user name.
        name: String,
    },
    /// List users and their SCRAM mechanisms.
    List,
}

/// Runs a `user` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: UserCommand) -> anyhow::Result<i32> {
    match cmd {
        UserCommand::Create { name } => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("reading the password")?;
            let password = password.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "no password on stdin (one line expected)");
            let admin = Admin::new(connect(bootstrap).await?);
            admin
                .set_user_password(&name, password)
                .await
                .with_context(|| format!("creating user {name}"))?;
            if out == Output::Text {
                println!("user {name}: SCRAM-SHA-256 and SCRAM-SHA-512 credentials set");
            }
        }
        UserCommand::Delete { name } => {
            let admin = Admin::new(connect(bootstrap).await?);
            admin.delete_user(&name).await.with_context(|| format!("deleting user {name}"))?;
            if out == Output::Text {
                println!("deleted user {name}");
            }
        }
        UserCommand::List => {
            let admin = Admin::new(connect(bootstrap).await?);
            let users = admin.list_users().await.context("listing users")?;
            match out {
                Output::Text => {
                    let rows: Vec<Vec<String>> = users
                        .iter()
                        .map(|u| vec![u.user.clone(), u.mechanisms.join(",")])
                        .collect();
                    print_table(&["USER", "MECHANISMS"], &rows);
                }
                Output::Json => print_json(&json!(
                    users
                        .iter()
                        .map(|u| json!({"user": u.user, "mechanisms": u.mechanisms}))
                        .collect::<Vec<_>>()
                )),
            }
        }
    }
    Ok(0)
}
