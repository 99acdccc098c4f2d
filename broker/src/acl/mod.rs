//! Authorization: Kafka's ACL model, as plain data and one decision function.
//!
//! An [`Acl`] lets (or forbids) a principal (`User:<name>`, or `User:*` for everyone) from a
//! host (`*` for any) one [`Operation`] on resources of one [`ResourceType`] whose name is
//! `name` (literal; the literal `*` is every resource of the type) or starts with `name`
//! (prefixed). [`allows`] decides as Kafka's authorizer does:
//!
//! - a matching `Deny` of the operation (or of `All`) wins over any `Allow`;
//! - else a matching `Allow` of the operation, of `All`, or of an operation that implies it:
//!   Read, Write, Delete and Alter imply Describe; AlterConfigs implies DescribeConfigs;
//! - else the request is denied (no ACL, no access).
//!
//! Superusers and brokers are never checked (the service layer decides that); with
//! authentication off nothing is checked. The ACLs live in the replicated controller state.
//! [`wire`] translates them to and from rafka's protobuf messages.

pub mod wire;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::Serialize;

/// The one cluster resource's name, as Kafka names it.
pub const CLUSTER: &str = "kafka-cluster";

/// The principal that stands for every principal in an ACL.
pub const ANY_PRINCIPAL: &str = "User:*";

/// The host that stands for every host in an ACL.
pub const ANY_HOST: &str = "*";

/// Longest principal, host or resource name an ACL may hold.
pub const MAX_NAME: usize = 1024;

/// What kind of thing an ACL is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How an ACL's resource name matches names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The name itself; `*` matches every name.
    Literal,
    /// Every name starting with it.
    Prefixed,
}

/// What a request does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    /// Every operation, in Kafka's order.
    pub const EVERY: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    /// Whether an `Allow` of `self` allows `wanted`.
    fn grants(self, wanted: Operation) -> bool {
        use Operation as O;
        self == wanted
            || self == O::All
            || (wanted == O::Describe && matches!(self, O::Read | O::Write | O::Delete | O::Alter))
            || (wanted == O::DescribeConfigs && self == O::AlterConfigs)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One access control entry bound to a resource pattern.
///
/// # Format
///
/// Stored in the controller state as JSON: `{"resource_type":"topic","pattern":"literal",
/// "name":"orders","principal":"User:alice","host":"*","operation":"write",
/// "permission":"allow"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    pub resource_type: ResourceType,
    pub pattern: PatternType,
    pub name: String,
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    /// Why the ACL cannot be stored, if it cannot.
    pub fn invalid(&self) -> Option<String> {
        let Some((kind, user)) = self.principal.split_once(':') else {
            return Some(format!("principal {:?} is not of the form User:<name>", self.principal));
        };
        if kind.is_empty() || user.is_empty() {
            return Some(format!("principal {:?} is not of the form User:<name>", self.principal));
        }
        if self.name.is_empty() {
            return Some("empty resource name".into());
        }
        if self.host != ANY_HOST && self.host.parse::<std::net::IpAddr>().is_err() {
            return Some(format!("host {:?} is not an IP address or * (any host)", self.host));
        }
        if [&self.name, &self.principal, &self.host].iter().any(|s| s.len() > MAX_NAME) {
            return Some(format!("a name is longer than {MAX_NAME} bytes"));
        }
        if self.resource_type == ResourceType::Cluster
            && (self.name != CLUSTER || self.pattern != PatternType::Literal)
        {
            return Some(format!("the cluster resource is the literal name {CLUSTER}"));
        }
        None
    }

    /// Whether the ACL's resource pattern covers `resource`.
    fn covers(&self, resource: &Resource<'_>) -> bool {
        self.resource_type == resource.kind
            && match self.pattern {
                PatternType::Literal => self.name == resource.name || self.name == "*",
                PatternType::Prefixed => resource.name.starts_with(&self.name),
            }
    }

    /// Whether the ACL is about `caller`.
    fn concerns(&self, caller: &Caller) -> bool {
        (self.principal == *caller.principal || self.principal == ANY_PRINCIPAL)
            && (self.host == ANY_HOST || self.host == *caller.host)
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} {:?} on {:?} {:?} ({:?}) from host {}",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.name,
            self.pattern,
            self.host
        )
    }
}

/// A resource a request touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Resource<'a> {
        Resource { kind: ResourceType::Topic, name }
    }

    pub fn group(name: &'a str) -> Resource<'a> {
        Resource { kind: ResourceType::Group, name }
    }

    pub fn transactional_id(name: &'a str) -> Resource<'a> {
        Resource { kind: ResourceType::TransactionalId, name }
    }

    pub fn cluster() -> Resource<'static> {
        Resource { kind: ResourceType::Cluster, name: CLUSTER }
    }
}

/// Who makes a request, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `User:<name>`.
    pub principal: Arc<str>,
    /// The client's IP address (no port), as ACL hosts name it.
    pub host: Arc<str>,
    /// The connection proved it is a broker's (by certificate or cluster secret): no ACL
    /// applies.
    pub broker: bool,
}

impl Caller {
    /// The caller `principal` connecting from `peer` (an address, maybe with a port).
    pub fn new(principal: Arc<str>, peer: Option<std::net::SocketAddr>) -> Caller {
        let host =
            peer.map_or_else(|| Arc::from(""), |a| Arc::from(a.ip().to_canonical().to_string()));
        Caller { principal, host, broker: false }
    }
}

/// `host` as callers' hosts are written: an IP address in its canonical form (IPv4-mapped
/// IPv6 as IPv4, IPv6 compressed), anything else (`*`) as it is.
pub fn canonical_host(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => host.to_string(),
    }
}

/// Whether `acls` let `caller` do `op` on `resource` (see the module doc).
pub fn allows<'a>(
    acls: impl IntoIterator<Item = &'a Acl> + Clone,
    caller: &Caller,
    op: Operation,
    resource: &Resource<'_>,
) -> bool {
    let relevant = |a: &&Acl| a.concerns(caller) && a.covers(resource);
    let denied = acls.clone().into_iter().filter(relevant).any(|a| {
        a.permission == Permission::Deny && (a.operation == op || a.operation == Operation::All)
    });
    !denied
        && acls
            .into_iter()
            .filter(relevant)
            .any(|a| a.permission == Permission::Allow && a.operation.grants(op))
}

/// Whether `acls` let `caller` do `op` on some resource of type `kind` — what Kafka asks
/// before idempotent produce (Write on any topic allows it): an `Allow` that no `Deny` of
/// every resource of the type (`*` or the empty prefix) overrides.
pub fn allows_some<'a>(
    acls: impl IntoIterator<Item = &'a Acl> + Clone,
    caller: &Caller,
    op: Operation,
    kind: ResourceType,
) -> bool {
    let of_type = |a: &&Acl| a.resource_type == kind && a.concerns(caller);
    let everything_denied = acls.clone().into_iter().filter(of_type).any(|a| {
        a.permission == Permission::Deny
            && (a.operation == op || a.operation == Operation::All)
            && match a.pattern {
                PatternType::Literal => a.name == "*",
                PatternType::Prefixed => a.name.is_empty(),
            }
    });
    !everything_denied
        && acls
            .into_iter()
            .filter(of_type)
            .any(|a| a.permission == Permission::Allow && a.operation.grants(op))
}

/// How a filter matches resource names (Kafka's pattern type filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// Any pattern type, the name compared as is.
    Any,
    /// Every ACL that would apply to the named resource: literal equal or `*`, prefixed
    /// prefixes of it.
    Match,
    /// This pattern type, the name compared as is.
    Exactly(PatternType),
}

/// Which ACLs DescribeAcls lists or DeleteAcls deletes; `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub pattern: PatternFilter,
    pub name: Option<String>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// The filter that matches every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            pattern: PatternFilter::Any,
            name: None,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Whether the filter selects `acl`.
    pub fn matches(&self, acl: &Acl) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let name_matches = match (self.pattern, &self.name) {
            (PatternFilter::Any, name) => same(name, &acl.name),
            (PatternFilter::Exactly(p), name) => p == acl.pattern && same(name, &acl.name),
            (PatternFilter::Match, None) => true,
            (PatternFilter::Match, Some(name)) => match acl.pattern {
                PatternType::Literal => acl.name == *name || acl.name == "*",
                PatternType::Prefixed => name.starts_with(&acl.name),
            },
        };
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && name_matches
            && same(&self.principal, &acl.principal)
            && same(&self.host, &acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }

    /// The ACLs of `acls` the filter selects.
    pub fn select<'a>(&self, acls: &'a BTreeSet<Acl>) -> Vec<&'a Acl> {
        acls.iter().filter(|a| self.matches(a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(kind: ResourceType, pattern: PatternType, name: &str, op: Operation) -> Acl {
        Acl {
            resource_type: kind,
            pattern,
            name: name.into(),
            principal: "User:alice".into(),
            host: ANY_HOST.into(),
            operation: op,
            permission: Permission::Allow,
        }
    }

    fn alice() -> Caller {
        Caller { principal: Arc::from("User:alice"), host: Arc::from("127.0.0.1"), broker: false }
    }

    fn topic_acl(name: &str, op: Operation) -> Acl {
        acl(ResourceType::Topic, PatternType::Literal, name, op)
    }

    #[test]
    fn no_acl_no_access() {
        let none: Vec<Acl> = vec![];
        assert!(!allows(&none, &alice(), Operation::Read, &Resource::topic("t")));
    }

    #[test]
    fn an_allow_grants_its_operation_and_the_ones_it_implies() {
        let acls = [topic_acl("t", Operation::Write)];
        assert!(allows(&acls, &alice(), Operation::Write, &Resource::topic("t")));
        assert!(allows(&acls, &alice(), Operation::Describe, &Resource::topic("t")));
        assert!(!allows(&acls, &alice(), Operation::Read, &Resource::topic("t")));
        assert!(!allows(&acls, &alice(), Operation::Write, &Resource::topic("u")));
        assert!(!allows(&acls, &alice(), Operation::Write, &Resource::group("t")));
        let configs = [topic_acl("t", Operation::AlterConfigs)];
        assert!(allows(&configs, &alice(), Operation::DescribeConfigs, &Resource::topic("t")));
        assert!(!allows(&configs, &alice(), Operation::Describe, &Resource::topic("t")));
        let all = [topic_acl("t", Operation::All)];
        for op in Operation::EVERY {
            assert!(allows(&all, &alice(), op, &Resource::topic("t")), "{op:?}");
        }
    }

    #[test]
    fn a_deny_wins_and_denies_only_its_operation() {
        let mut deny = topic_acl("t", Operation::Write);
        deny.permission = Permission::Deny;
        let acls = [topic_acl("t", Operation::All), deny.clone()];
        assert!(!allows(&acls, &alice(), Operation::Write, &Resource::topic("t")));
        assert!(allows(&acls, &alice(), Operation::Read, &Resource::topic("t")));
        // A denied Write does not deny the Describe it would imply.
        assert!(allows(&acls, &alice(), Operation::Describe, &Resource::topic("t")));
        deny.operation = Operation::All;
        let acls = [topic_acl("t", Operation::Read), deny];
        assert!(!allows(&acls, &alice(), Operation::Read, &Resource::topic("t")));
    }

    #[test]
    fn patterns_principals_and_hosts_match_as_kafka_does() {
        let prefixed = [acl(ResourceType::Topic, PatternType::Prefixed, "ord", Operation::Read)];
        assert!(allows(&prefixed, &alice(), Operation::Read, &Resource::topic("orders")));
        assert!(!allows(&prefixed, &alice(), Operation::Read, &Resource::topic("or")));
        let wildcard = [topic_acl("*", Operation::Read)];
        assert!(allows(&wildcard, &alice(), Operation::Read, &Resource::topic("anything")));
        let mut everyone = topic_acl("t", Operation::Read);
        everyone.principal = ANY_PRINCIPAL.into();
        let bob =
            Caller { principal: Arc::from("User:bob"), host: Arc::from("10.0.0.1"), broker: false };
        assert!(allows([&everyone], &bob, Operation::Read, &Resource::topic("t")));
        let mut from_host = topic_acl("t", Operation::Read);
        from_host.host = "127.0.0.1".into();
        assert!(allows([&from_host], &alice(), Operation::Read, &Resource::topic("t")));
        let elsewhere = Caller { host: Arc::from("127.0.0.2"), ..alice() };
        assert!(!allows([&from_host], &elsewhere, Operation::Read, &Resource::topic("t")));
        assert!(!allows([&from_host], &bob, Operation::Read, &Resource::topic("t")));
    }

    #[test]
    fn write_on_some_topic_allows_idempotent_writes_unless_all_topics_are_denied() {
        let acls = vec![topic_acl("t", Operation::Write)];
        assert!(allows_some(&acls, &alice(), Operation::Write, ResourceType::Topic));
        assert!(!allows_some(&acls, &alice(), Operation::Read, ResourceType::Topic));
        let mut deny = topic_acl("*", Operation::Write);
        deny.permission = Permission::Deny;
        let denied = vec![topic_acl("t", Operation::Write), deny];
        assert!(!allows_some(&denied, &alice(), Operation::Write, ResourceType::Topic));
    }

    #[test]
    fn filters_select_like_describe_acls() {
        let acls: BTreeSet<Acl> = [
            topic_acl("orders", Operation::Read),
            topic_acl("*", Operation::Read),
            acl(ResourceType::Topic, PatternType::Prefixed, "ord", Operation::Write),
            acl(ResourceType::Group, PatternType::Literal, "orders", Operation::Read),
        ]
        .into();
        let mut f = AclFilter::any();
        assert_eq!(f.select(&acls).len(), 4);
        f.resource_type = Some(ResourceType::Topic);
        assert_eq!(f.select(&acls).len(), 3);
        f.name = Some("orders".into());
        assert_eq!(f.select(&acls).len(), 1);
        f.pattern = PatternFilter::Match;
        assert_eq!(f.select(&acls).len(), 3);
        f.pattern = PatternFilter::Exactly(PatternType::Prefixed);
        assert_eq!(f.select(&acls).len(), 0);
        f.name = Some("ord".into());
        assert_eq!(f.select(&acls).len(), 1);
        f.operation = Some(Operation::Read);
        assert_eq!(f.select(&acls).len(), 0);
    }

    #[test]
    fn invalid_acls_are_named() {
        let mut a = topic_acl("t", Operation::Read);
        assert_eq!(a.invalid(), None);
        a.principal = "alice".into();
        assert!(a.invalid().unwrap().contains("User:<name>"));
        let mut c = acl(ResourceType::Cluster, PatternType::Literal, "x", Operation::Alter);
        assert!(c.invalid().unwrap().contains(CLUSTER));
        c.name = CLUSTER.into();
        assert_eq!(c.invalid(), None);
        let mut e = topic_acl("", Operation::Read);
        assert!(e.invalid().is_some());
        e.name = "t".into();
        e.host = String::new();
        assert!(e.invalid().is_some());
        e.host = "broker.example".into();
        assert!(e.invalid().unwrap().contains("IP address"));
    }

    #[test]
    fn hosts_are_compared_in_canonical_form() {
        assert_eq!(canonical_host("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(canonical_host("0:0:0:0:0:0:0:1"), "::1");
        assert_eq!(canonical_host("*"), "*");
        let mapped: std::net::SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        let caller = Caller::new(Arc::from("User:alice"), Some(mapped));
        assert_eq!(&*caller.host, "10.0.0.1");
        let mut deny = topic_acl("t", Operation::Read);
        deny.permission = Permission::Deny;
        deny.host = canonical_host("::ffff:10.0.0.1");
        let acls = [topic_acl("t", Operation::Read), deny];
        assert!(!allows(&acls, &caller, Operation::Read, &Resource::topic("t")));
    }
}
