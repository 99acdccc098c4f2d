//! ACLs and filters to and from rafka's protobuf messages (`rafka.v1.AclBinding`,
//! `AclFilter`): one translation shared by the gRPC service and broker-to-broker calls.

use rafka_proto::v1;

use super::Acl;
use super::AclFilter;
use super::Operation;
use super::PatternFilter;
use super::PatternType;
use super::Permission;
use super::ResourceType;

/// The wire form of `a`.
pub fn to_proto(a: &Acl) -> v1::AclBinding {
    v1::AclBinding {
        resource_type: resource_type(a.resource_type) as i32,
        pattern_type: match a.pattern {
            PatternType::Literal => v1::AclPatternType::Literal,
            PatternType::Prefixed => v1::AclPatternType::Prefixed,
        } as i32,
        name: a.name.clone(),
        principal: a.principal.clone(),
        host: a.host.clone(),
        operation: operation(a.operation) as i32,
        permission: permission(a.permission) as i32,
    }
}

/// The ACL `b` describes, or why it is not one.
pub fn from_proto(b: v1::AclBinding) -> Result<Acl, String> {
    let pattern = match v1::AclPatternType::try_from(b.pattern_type) {
        Ok(v1::AclPatternType::Literal) => PatternType::Literal,
        Ok(v1::AclPatternType::Prefixed) => PatternType::Prefixed,
        _ => return Err(format!("pattern type {} is not LITERAL or PREFIXED", b.pattern_type)),
    };
    let need = |what: &str, v: i32| format!("ACL without a valid {what} ({v})");
    Ok(Acl {
        resource_type: resource_type_of(b.resource_type)
            .ok_or_else(|| need("resource type", b.resource_type))?,
        pattern,
        name: b.name,
        principal: b.principal,
        host: b.host,
        operation: operation_of(b.operation).ok_or_else(|| need("operation", b.operation))?,
        permission: permission_of(b.permission).ok_or_else(|| need("permission", b.permission))?,
    })
}

/// The wire form of `f`.
pub fn filter_to_proto(f: &AclFilter) -> v1::AclFilter {
    v1::AclFilter {
        resource_type: f.resource_type.map_or(0, |t| resource_type(t) as i32),
        pattern_type: match f.pattern {
            PatternFilter::Any => v1::AclPatternType::Unspecified,
            PatternFilter::Match => v1::AclPatternType::Match,
            PatternFilter::Exactly(PatternType::Literal) => v1::AclPatternType::Literal,
            PatternFilter::Exactly(PatternType::Prefixed) => v1::AclPatternType::Prefixed,
        } as i32,
        name: f.name.clone(),
        principal: f.principal.clone(),
        host: f.host.clone(),
        operation: f.operation.map_or(0, |o| operation(o) as i32),
        permission: f.permission.map_or(0, |p| permission(p) as i32),
    }
}

/// `None` for 0 (any), the value `known` if the number was one, else an error.
fn optional<T>(v: i32, known: Option<T>, what: &str) -> Result<Option<T>, String> {
    match (v, known) {
        (0, _) => Ok(None),
        (_, Some(k)) => Ok(Some(k)),
        (v, None) => Err(format!("unknown {what} {v} in an ACL filter")),
    }
}

/// The filter `f` describes, or why it is not one (a number no version knows).
pub fn filter_from_proto(f: v1::AclFilter) -> Result<AclFilter, String> {
    let pattern = match v1::AclPatternType::try_from(f.pattern_type) {
        Ok(v1::AclPatternType::Unspecified) => PatternFilter::Any,
        Ok(v1::AclPatternType::Match) => PatternFilter::Match,
        Ok(v1::AclPatternType::Literal) => PatternFilter::Exactly(PatternType::Literal),
        Ok(v1::AclPatternType::Prefixed) => PatternFilter::Exactly(PatternType::Prefixed),
        Err(_) => return Err(format!("unknown pattern type {} in an ACL filter", f.pattern_type)),
    };
    Ok(AclFilter {
        resource_type: optional(
            f.resource_type,
            resource_type_of(f.resource_type),
            "resource type",
        )?,
        pattern,
        name: f.name,
        principal: f.principal,
        host: f.host,
        operation: optional(f.operation, operation_of(f.operation), "operation")?,
        permission: optional(f.permission, permission_of(f.permission), "permission")?,
    })
}

fn resource_type(t: ResourceType) -> v1::AclResourceType {
    match t {
        ResourceType::Topic => v1::AclResourceType::Topic,
        ResourceType::Group => v1::AclResourceType::Group,
        ResourceType::Cluster => v1::AclResourceType::Cluster,
        ResourceType::TransactionalId => v1::AclResourceType::TransactionalId,
    }
}

fn resource_type_of(v: i32) -> Option<ResourceType> {
    Some(match v1::AclResourceType::try_from(v).ok()? {
        v1::AclResourceType::Topic => ResourceType::Topic,
        v1::AclResourceType::Group => ResourceType::Group,
        v1::AclResourceType::Cluster => ResourceType::Cluster,
        v1::AclResourceType::TransactionalId => ResourceType::TransactionalId,
        v1::AclResourceType::Unspecified => return None,
    })
}

fn operation(o: Operation) -> v1::AclOperation {
    use v1::AclOperation as W;
    match o {
        Operation::All => W::All,
        Operation::Read => W::Read,
        Operation::Write => W::Write,
        Operation::Create => W::Create,
        Operation::Delete => W::Delete,
        Operation::Alter => W::Alter,
        Operation::Describe => W::Describe,
        Operation::ClusterAction => W::ClusterAction,
        Operation::DescribeConfigs => W::DescribeConfigs,
        Operation::AlterConfigs => W::AlterConfigs,
        Operation::IdempotentWrite => W::IdempotentWrite,
    }
}

fn operation_of(v: i32) -> Option<Operation> {
    Operation::EVERY.into_iter().find(|o| operation(*o) as i32 == v)
}

fn permission(p: Permission) -> v1::AclPermission {
    match p {
        Permission::Allow => v1::AclPermission::Allow,
        Permission::Deny => v1::AclPermission::Deny,
    }
}

fn permission_of(v: i32) -> Option<Permission> {
    match v1::AclPermission::try_from(v).ok()? {
        v1::AclPermission::Allow => Some(Permission::Allow),
        v1::AclPermission::Deny => Some(Permission::Deny),
        v1::AclPermission::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_and_filters_survive_the_wire() {
        for (i, op) in Operation::EVERY.into_iter().enumerate() {
            let a = Acl {
                resource_type: [ResourceType::Topic, ResourceType::Group][i % 2],
                pattern: [PatternType::Literal, PatternType::Prefixed][i % 2],
                name: format!("n{i}"),
                principal: "User:x".into(),
                host: "*".into(),
                operation: op,
                permission: [Permission::Allow, Permission::Deny][i % 2],
            };
            assert_eq!(from_proto(to_proto(&a)).unwrap(), a);
            let f = AclFilter { operation: Some(op), ..AclFilter::any() };
            assert_eq!(filter_from_proto(filter_to_proto(&f)).unwrap(), f);
        }
        let f = AclFilter {
            resource_type: Some(ResourceType::Cluster),
            pattern: PatternFilter::Match,
            name: Some("kafka-cluster".into()),
            permission: Some(Permission::Deny),
            ..AclFilter::any()
        };
        assert_eq!(filter_from_proto(filter_to_proto(&f)).unwrap(), f);
        let mut bad = to_proto(&Acl {
            resource_type: ResourceType::Topic,
            pattern: PatternType::Literal,
            name: "t".into(),
            principal: "User:x".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        });
        bad.operation = 99;
        assert!(from_proto(bad.clone()).unwrap_err().contains("operation"));
        bad.operation = 2;
        bad.pattern_type = 3;
        assert!(from_proto(bad).unwrap_err().contains("pattern"));
    }
}
