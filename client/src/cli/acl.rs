//! `rafka acl create|list|delete`: Kafka's ACLs. A resource is chosen with `--topic T`,
//! `--group G`, `--transactional-id I` or `--cluster`, literally or (`--prefixed`) every
//! name starting with it; `--principal User:NAME` (`User:*` for everyone), `--operation
//! OP` (Kafka's names, any case: Read, Write, Create, Delete, Alter, Describe,
//! ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All), `--host` (default
//! `*`), and `--deny` for a deny ACL.
//!
//! `create` needs a resource, a principal and an operation. `list` and `delete` take the
//! same selectors, each optional (left out, it matches anything; `delete` needs at least a
//! resource or a principal, so one command never deletes every ACL by accident).
//!
//! # Format
//!
//! `list --output json` (and `delete --output json`) print `[{"principal", "host",
//! "operation", "permission", "resource_type", "name", "pattern_type"}]`, with Kafka's
//! names in upper snake case (`READ`, `ALLOW`, `TOPIC`, `LITERAL`).

use anyhow::Context;
use clap::Args;
use clap::Subcommand;
use rafka_client::AclBinding;
use rafka_client::AclFilter;
use rafka_client::Admin;
use rafka_proto::v1::AclOperation;
use rafka_proto::v1::AclPatternType;
use rafka_proto::v1::AclPermission;
use rafka_proto::v1::AclResourceType;
use serde_json::json;

use super::output::Output;
use super::output::Target;
use super::output::connect;
use super::output::print_json;
use super::output::print_table;

/// `rafka acl ...`
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create an ACL.
    Create(Selectors),
    /// List the ACLs the selectors match (every ACL without selectors).
    List(Selectors),
    /// Delete the ACLs the selectors match.
    Delete(Selectors),
}

/// Which ACL (create) or ACLs (list, delete).
#[derive(Debug, Args)]
pub struct Selectors {
    /// The principal, `User:NAME` (`User:*`: everyone).
    #[arg(long)]
    principal: Option<String>,
    /// The operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All).
    #[arg(long)]
    operation: Option<String>,
    /// A topic (`*`: every topic).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group (`*`: every group).
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// A transactional id.
    #[arg(long, group = "resource")]
    transactional_id: Option<String>,
    /// The cluster.
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix: every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
    /// A deny ACL (create); only deny ACLs (list, delete).
    #[arg(long, conflicts_with = "allow")]
    deny: bool,
    /// Only allow ACLs (list, delete).
    #[arg(long)]
    allow: bool,
    /// The client host the ACL applies to (`*`: any; create's default).
    #[arg(long)]
    host: Option<String>,
}

/// The operation `name` means, in any case, with or without `-`/`_` between words.
fn operation(name: &str) -> anyhow::Result<AclOperation> {
    let wanted: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    (1..=11)
        .filter_map(|v| AclOperation::try_from(v).ok())
        .find(|o| {
            let n = o.as_str_name().trim_start_matches("ACL_OPERATION_").replace('_', "");
            n.eq_ignore_ascii_case(&wanted)
        })
        .with_context(|| {
            format!(
                "unknown operation {name:?}: one of Read, Write, Create, Delete, Alter, \
                 Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All"
            )
        })
}

impl Selectors {
    /// The resource type and name chosen, if one was.
    fn resource(&self) -> Option<(AclResourceType, String)> {
        if self.cluster {
            return Some((AclResourceType::Cluster, "kafka-cluster".into()));
        }
        let named = [
            (AclResourceType::Topic, &self.topic),
            (AclResourceType::Group, &self.group),
            (AclResourceType::TransactionalId, &self.transactional_id),
        ];
        named.into_iter().find_map(|(t, n)| n.clone().map(|n| (t, n)))
    }

    fn pattern(&self) -> AclPatternType {
        if self.prefixed { AclPatternType::Prefixed } else { AclPatternType::Literal }
    }

    /// The ACL `create` makes.
    fn binding(&self) -> anyhow::Result<AclBinding> {
        let (kind, name) = self.resource().context(
            "choose a resource: --topic T, --group G, --transactional-id I or --cluster",
        )?;
        anyhow::ensure!(!(self.cluster && self.prefixed), "--cluster cannot be --prefixed");
        let principal = self.principal.clone().context("--principal User:NAME is required")?;
        let op = self.operation.as_deref().context("--operation is required")?;
        anyhow::ensure!(!self.allow || !self.deny, "--allow and --deny exclude each other");
        Ok(AclBinding {
            resource_type: kind as i32,
            pattern_type: self.pattern() as i32,
            name,
            principal,
            host: self.host.clone().unwrap_or_else(|| "*".into()),
            operation: operation(op)? as i32,
            permission: if self.deny { AclPermission::Deny } else { AclPermission::Allow } as i32,
        })
    }

    /// The filter `list` and `delete` use.
    fn filter(&self) -> anyhow::Result<AclFilter> {
        let resource = self.resource();
        let pattern = match (&resource, self.prefixed) {
            (_, true) => AclPatternType::Prefixed,
            (Some(_), false) => AclPatternType::Literal,
            (None, false) => AclPatternType::Unspecified,
        };
        let permission = match (self.allow, self.deny) {
            (true, _) => AclPermission::Allow,
            (_, true) => AclPermission::Deny,
            _ => AclPermission::Unspecified,
        };
        let operation = match &self.operation {
            Some(op) => operation(op)? as i32,
            None => 0,
        };
        Ok(AclFilter {
            resource_type: resource.as_ref().map_or(0, |(t, _)| *t as i32),
            pattern_type: pattern as i32,
            name: resource.map(|(_, n)| n),
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation,
            permission: permission as i32,
        })
    }
}

/// `name` of a wire enum value without its prefix.
fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_string()
}

fn row(a: &AclBinding) -> [String; 7] {
    let kind = AclResourceType::try_from(a.resource_type).unwrap_or_default();
    let pattern = AclPatternType::try_from(a.pattern_type).unwrap_or_default();
    let op = AclOperation::try_from(a.operation).unwrap_or_default();
    let permission = AclPermission::try_from(a.permission).unwrap_or_default();
    [
        a.principal.clone(),
        a.host.clone(),
        short(op.as_str_name(), "ACL_OPERATION_"),
        short(permission.as_str_name(), "ACL_PERMISSION_"),
        short(kind.as_str_name(), "ACL_RESOURCE_TYPE_"),
        a.name.clone(),
        short(pattern.as_str_name(), "ACL_PATTERN_TYPE_"),
    ]
}

fn print(out: Output, acls: &[AclBinding]) {
    match out {
        Output::Text => {
            let rows: Vec<Vec<String>> = acls.iter().map(|a| row(a).to_vec()).collect();
            print_table(
                &["PRINCIPAL", "HOST", "OPERATION", "PERMISSION", "RESOURCE", "NAME", "PATTERN"],
                &rows,
            );
        }
        Output::Json => print_json(&json!(
            acls.iter()
                .map(|a| {
                    let [principal, host, operation, permission, resource_type, name, pattern] =
                        row(a);
                    json!({
                        "principal": principal,
                        "host": host,
                        "operation": operation,
                        "permission": permission,
                        "resource_type": resource_type,
                        "name": name,
                        "pattern_type": pattern,
                    })
                })
                .collect::<Vec<_>>()
        )),
    }
}

/// Runs an `acl` command; returns the exit status.
pub async fn run(bootstrap: &Target, out: Output, cmd: AclCommand) -> anyhow::Result<i32> {
    match cmd {
        AclCommand::Create(s) => {
            let acl = s.binding()?;
            let admin = Admin::new(connect(bootstrap).await?);
            admin.create_acls(vec![acl.clone()]).await.context("creating the ACL")?;
            if out == Output::Text {
                let [principal, host, op, permission, kind, name, pattern] = row(&acl);
                println!(
                    "created: {permission} {principal} {op} on {kind} {name} ({pattern}) from \
                     host {host}"
                );
            }
        }
        AclCommand::List(s) => {
            let filter = s.filter()?;
            let admin = Admin::new(connect(bootstrap).await?);
            let acls = admin.list_acls(filter).await.context("listing ACLs")?;
            print(out, &acls);
        }
        AclCommand::Delete(s) => {
            anyhow::ensure!(
                s.resource().is_some() || s.principal.is_some(),
                "choose what to delete: a resource (--topic, --group, --transactional-id, \
                 --cluster) or a --principal"
            );
            let filter = s.filter()?;
            let admin = Admin::new(connect(bootstrap).await?);
            let deleted = admin.delete_acls(vec![filter]).await.context("deleting ACLs")?;
            let deleted: Vec<AclBinding> = deleted.into_iter().flatten().collect();
            match out {
                Output::Text => println!("deleted {} ACL(s)", deleted.len()),
                Output::Json => print(out, &deleted),
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_read_as_kafka_names_them() {
        assert_eq!(operation("Read").unwrap(), AclOperation::Read);
        assert_eq!(operation("idempotent-write").unwrap(), AclOperation::IdempotentWrite);
        assert_eq!(operation("DESCRIBE_CONFIGS").unwrap(), AclOperation::DescribeConfigs);
        assert_eq!(operation("all").unwrap(), AclOperation::All);
        assert!(operation("fly").unwrap_err().to_string().contains("unknown operation"));
    }
}
