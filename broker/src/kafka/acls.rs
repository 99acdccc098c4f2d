//! ACLs over Kafka's protocol: CreateAcls, DescribeAcls and DeleteAcls (what `kafka-acls`,
//! and the admin clients of confluent-kafka, kafka-python and Java send). Creating and
//! deleting need Alter on the cluster and happen on the controller leader; describing needs
//! Describe on the cluster and reads this broker's copy of the controller state.
//!
//! Kafka's numbering: resource types ANY 1, TOPIC 2, GROUP 3, CLUSTER 4, TRANSACTIONAL_ID 5;
//! pattern types ANY 1, MATCH 2, LITERAL 3, PREFIXED 4; operations ANY 1, ALL 2, READ 3 ...
//! IDEMPOTENT_WRITE 12; permissions ANY 1, DENY 2, ALLOW 3.

use std::collections::BTreeMap;

use kafka_protocol::messages::CreateAclsRequest;
use kafka_protocol::messages::CreateAclsResponse;
use kafka_protocol::messages::DeleteAclsRequest;
use kafka_protocol::messages::DeleteAclsResponse;
use kafka_protocol::messages::DescribeAclsRequest;
use kafka_protocol::messages::DescribeAclsResponse;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::delete_acls_response::DeleteAclsMatchingAcl;
use kafka_protocol::messages::describe_acls_response::AclDescription;
use kafka_protocol::messages::describe_acls_response::DescribeAclsResource;
use kafka_protocol::protocol::StrBytes;

use super::errors;
use super::sasl::Session;
use crate::acl::Acl;
use crate::acl::AclFilter;
use crate::acl::Operation;
use crate::acl::PatternFilter;
use crate::acl::PatternType;
use crate::acl::Permission;
use crate::acl::Resource;
use crate::acl::ResourceType;
use crate::broker::Broker;
use crate::error::Error;
use crate::service::acl;

const ANY: i8 = 1;

fn text(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from(s.into()))
}

fn resource_type_code(t: ResourceType) -> i8 {
    match t {
        ResourceType::Topic => 2,
        ResourceType::Group => 3,
        ResourceType::Cluster => 4,
        ResourceType::TransactionalId => 5,
    }
}

fn resource_type_of(code: i8) -> Option<ResourceType> {
    [ResourceType::Topic, ResourceType::Group, ResourceType::Cluster, ResourceType::TransactionalId]
        .into_iter()
        .find(|t| resource_type_code(*t) == code)
}

fn pattern_code(p: PatternType) -> i8 {
    match p {
        PatternType::Literal => 3,
        PatternType::Prefixed => 4,
    }
}

fn operation_code(o: Operation) -> i8 {
    Operation::EVERY.iter().position(|e| *e == o).expect("every operation") as i8 + 2
}

fn operation_of(code: i8) -> Option<Operation> {
    Operation::EVERY.into_iter().find(|o| operation_code(*o) == code)
}

fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Deny => 2,
        Permission::Allow => 3,
    }
}

fn permission_of(code: i8) -> Option<Permission> {
    match code {
        2 => Some(Permission::Deny),
        3 => Some(Permission::Allow),
        _ => None,
    }
}

/// The ACL a creation asks for, or why it is not one.
fn acl_of(c: &AclCreation) -> Result<Acl, String> {
    let pattern = match c.resource_pattern_type {
        3 => PatternType::Literal,
        4 => PatternType::Prefixed,
        p => return Err(format!("pattern type {p} is not LITERAL (3) or PREFIXED (4)")),
    };
    let acl = Acl {
        resource_type: resource_type_of(c.resource_type)
            .ok_or_else(|| format!("unsupported resource type {}", c.resource_type))?,
        pattern,
        name: c.resource_name.to_string(),
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: operation_of(c.operation)
            .ok_or_else(|| format!("operation {} is not a valid ACL operation", c.operation))?,
        permission: permission_of(c.permission_type)
            .ok_or_else(|| format!("permission {} is not DENY or ALLOW", c.permission_type))?,
    };
    match acl.invalid() {
        Some(why) => Err(why),
        None => Ok(acl),
    }
}

/// The filter Kafka's fields describe, or why they are not one.
#[allow(clippy::too_many_arguments)]
fn filter_of(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let any_or = |code: i8, known: Option<_>, what: &str| match (code, known) {
        (ANY, _) => Ok(None),
        (_, Some(k)) => Ok(Some(k)),
        (c, None) => Err(format!("unsupported {what} {c} in an ACL filter")),
    };
    Ok(AclFilter {
        resource_type: match resource_type {
            ANY => None,
            t => Some(resource_type_of(t).ok_or_else(|| format!("unsupported resource type {t}"))?),
        },
        pattern: match pattern {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Exactly(PatternType::Literal),
            4 => PatternFilter::Exactly(PatternType::Prefixed),
            p => return Err(format!("unsupported pattern type {p} in an ACL filter")),
        },
        name: name.as_ref().map(|s| s.to_string()),
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: any_or(operation, operation_of(operation), "operation")?,
        permission: match permission {
            ANY => None,
            p => Some(permission_of(p).ok_or_else(|| format!("unsupported permission {p}"))?),
        },
    })
}

/// Why the caller may not `op` the ACLs, as (code, message).
fn refusal(b: &Broker, session: &Session, op: Operation) -> Option<(i16, String)> {
    let e = acl::authorize(b, &session.caller(), op, Resource::cluster()).err()?;
    Some((errors::code(&e), e.to_string()))
}

/// CreateAcls 1-3: each valid creation is stored; invalid ones answer INVALID_REQUEST.
pub async fn create(b: &Broker, session: &Session, req: CreateAclsRequest) -> CreateAclsResponse {
    let result = |code: i16, message: Option<String>| {
        AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(message.map(Into::into))
    };
    if let Some((code, message)) = refusal(b, session, Operation::Alter) {
        let results = req.creations.iter().map(|_| result(code, Some(message.clone()))).collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<Acl, String>> = req.creations.iter().map(acl_of).collect();
    let valid: Vec<Acl> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let stored = acl::create(b, valid).await;
    let results = parsed
        .into_iter()
        .map(|p| match (p, &stored) {
            (Err(why), _) => result(errors::INVALID_REQUEST, Some(why)),
            (Ok(_), Ok(())) => result(errors::NONE, None),
            (Ok(_), Err(e)) => result(errors::code(e), Some(e.to_string())),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// DescribeAcls 1-3: the ACLs the filter selects, grouped by resource pattern.
pub fn describe(b: &Broker, session: &Session, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let resp = DescribeAclsResponse::default();
    if let Some((code, message)) = refusal(b, session, Operation::Describe) {
        return resp.with_error_code(code).with_error_message(text(message));
    }
    let filter = filter_of(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    let filter = match filter {
        Ok(f) => f,
        Err(why) => {
            return resp.with_error_code(errors::INVALID_REQUEST).with_error_message(text(why));
        }
    };
    let mut by_resource: BTreeMap<(ResourceType, PatternType, String), Vec<AclDescription>> =
        BTreeMap::new();
    for a in acl::list(b, &filter) {
        by_resource.entry((a.resource_type, a.pattern, a.name.clone())).or_default().push(
            AclDescription::default()
                .with_principal(StrBytes::from(a.principal))
                .with_host(StrBytes::from(a.host))
                .with_operation(operation_code(a.operation))
                .with_permission_type(permission_code(a.permission)),
        );
    }
    let resources = by_resource
        .into_iter()
        .map(|((kind, pattern, name), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type_code(kind))
                .with_resource_name(StrBytes::from(name))
                .with_pattern_type(pattern_code(pattern))
                .with_acls(acls)
        })
        .collect();
    resp.with_error_code(errors::NONE).with_resources(resources)
}

/// DeleteAcls 1-3: what each filter deleted.
pub async fn delete(b: &Broker, session: &Session, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let failed = |code: i16, message: String| {
        DeleteAclsFilterResult::default().with_error_code(code).with_error_message(text(message))
    };
    if let Some((code, message)) = refusal(b, session, Operation::Alter) {
        let results = req.filters.iter().map(|_| failed(code, message.clone())).collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let parsed: Vec<Result<AclFilter, String>> = req.filters.iter().map(filter_of_delete).collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let deleted: Result<Vec<Vec<Acl>>, Error> = acl::delete(b, &valid).await;
    let mut deleted_each = deleted.as_ref().ok().map(|d| d.iter());
    let results = parsed
        .into_iter()
        .map(|p| match (p, &deleted) {
            (Err(why), _) => failed(errors::INVALID_REQUEST, why),
            (Ok(_), Err(e)) => failed(errors::code(e), e.to_string()),
            (Ok(_), Ok(_)) => {
                let acls =
                    deleted_each.as_mut().and_then(|i| i.next()).cloned().unwrap_or_default();
                DeleteAclsFilterResult::default()
                    .with_error_code(errors::NONE)
                    .with_matching_acls(acls.into_iter().map(matching).collect())
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn filter_of_delete(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter_of(
        f.resource_type_filter,
        &f.resource_name_filter,
        f.pattern_type_filter,
        &f.principal_filter,
        &f.host_filter,
        f.operation,
        f.permission_type,
    )
}

fn matching(a: Acl) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_error_code(errors::NONE)
        .with_resource_type(resource_type_code(a.resource_type))
        .with_resource_name(StrBytes::from(a.name))
        .with_pattern_type(pattern_code(a.pattern))
        .with_principal(StrBytes::from(a.principal))
        .with_host(StrBytes::from(a.host))
        .with_operation(operation_code(a.operation))
        .with_permission_type(permission_code(a.permission))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_round_trip() {
        assert_eq!(operation_code(Operation::All), 2);
        assert_eq!(operation_code(Operation::Read), 3);
        assert_eq!(operation_code(Operation::Describe), 8);
        assert_eq!(operation_code(Operation::IdempotentWrite), 12);
        for o in Operation::EVERY {
            assert_eq!(operation_of(operation_code(o)), Some(o));
        }
        assert_eq!(operation_of(1), None, "ANY is for filters");
        assert_eq!(operation_of(13), None);
        assert_eq!(resource_type_of(2), Some(ResourceType::Topic));
        assert_eq!(resource_type_of(5), Some(ResourceType::TransactionalId));
        assert_eq!(resource_type_of(7), None, "USER resources are not supported");
    }

    #[test]
    fn creations_and_filters_are_checked() {
        let c = AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("t"))
            .with_resource_pattern_type(3)
            .with_principal(StrBytes::from_static_str("User:alice"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(4)
            .with_permission_type(3);
        let a = acl_of(&c).unwrap();
        assert_eq!((a.operation, a.permission), (Operation::Write, Permission::Allow));
        assert!(acl_of(&c.clone().with_resource_pattern_type(2)).unwrap_err().contains("pattern"));
        assert!(acl_of(&c.clone().with_operation(1)).is_err());
        assert!(acl_of(&c.clone().with_permission_type(1)).is_err());
        assert!(acl_of(&c.clone().with_principal(StrBytes::from_static_str("x"))).is_err());
        let f = filter_of(1, &None, 2, &None, &None, 1, 1).unwrap();
        assert_eq!(f.pattern, PatternFilter::Match);
        assert_eq!((f.resource_type, f.operation, f.permission), (None, None, None));
        assert!(filter_of(9, &None, 1, &None, &None, 1, 1).is_err());
        assert!(filter_of(1, &None, 0, &None, &None, 1, 1).is_err());
        assert!(filter_of(1, &None, 1, &None, &None, 0, 1).is_err());
    }
}
