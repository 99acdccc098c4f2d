//! ACLs, as Kafka models them: who (`User:<name>`, `User:*` for everyone) may or may not do
//! which operation to which topics, groups, transactional ids or the cluster. Changed and
//! listed on the controller leader; only superusers (or principals with Alter / Describe
//! on the cluster) may.
//!
//! The wire types are used as they are: [`AclBinding`] and [`AclFilter`] (unset fields of a
//! filter match anything), with `rafka_proto::v1`'s enums for resource types, pattern
//! types, operations and permissions.

use rafka_proto::v1;

use crate::Admin;
use crate::client::admin;
use crate::error::Result;

/// One ACL.
pub type AclBinding = v1::AclBinding;

/// Which ACLs to list or delete.
pub type AclFilter = v1::AclFilter;

impl Admin {
    /// Stores `acls`: all of them, or none if one is invalid.
    pub async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<()> {
        let req = v1::CreateAclsRequest { acls };
        self.client
            .call_any(|ch| {
                let req = req.clone();
                async move { admin(ch).create_acls(req).await }
            })
            .await?;
        Ok(())
    }

    /// The ACLs `filter` selects.
    pub async fn list_acls(&self, filter: AclFilter) -> Result<Vec<AclBinding>> {
        let req = v1::ListAclsRequest { filter: Some(filter) };
        let resp = self
            .client
            .call_any(|ch| {
                let req = req.clone();
                async move { admin(ch).list_acls(req).await }
            })
            .await?;
        Ok(resp.acls)
    }

    /// Deletes the ACLs each filter selects; what each deleted, in the filters' order.
    pub async fn delete_acls(&self, filters: Vec<AclFilter>) -> Result<Vec<Vec<AclBinding>>> {
        let req = v1::DeleteAclsRequest { filters };
        let resp = self
            .client
            .call_any(|ch| {
                let req = req.clone();
                async move { admin(ch).delete_acls(req).await }
            })
            .await?;
        Ok(resp.results.into_iter().map(|r| r.acls).collect())
    }
}
