//! [`HasError`]: the `Error` every rafka response carries, read the same way for all of
//! them.

use rafka_proto::ErrorExt;
use rafka_proto::v1::CreateTopicResponse;
use rafka_proto::v1::DescribeClusterResponse;
use rafka_proto::v1::DescribeTopicResponse;
use rafka_proto::v1::Error;
use rafka_proto::v1::ErrorCode;
use rafka_proto::v1::FetchResponse;
use rafka_proto::v1::InitProducerResponse;
use rafka_proto::v1::ListOffsetsResponse;
use rafka_proto::v1::ListTopicsResponse;
use rafka_proto::v1::MetadataResponse;
use rafka_proto::v1::ProduceResponse;
use rafka_proto::v1::TopicMetadata;

/// Responses that carry an `Error`.
pub trait HasError {
    /// The response's error; an absent one means success.
    fn error(&self) -> Error;
}

macro_rules! has_error {
    ($($t:ty),* $(,)?) => {$(
        impl HasError for $t {
            fn error(&self) -> Error {
                self.error.clone().unwrap_or_else(Error::none)
            }
        }
    )*};
}

has_error!(
    rafka_proto::v1::GroupHeartbeatResponse,
    rafka_proto::v1::CommitOffsetsResponse,
    rafka_proto::v1::FetchOffsetsResponse,
    rafka_proto::v1::DescribeGroupResponse,
    rafka_proto::v1::ListGroupsResponse,
    rafka_proto::v1::DeleteGroupResponse,
    rafka_proto::v1::ResetOffsetsResponse,
    rafka_proto::v1::CreatePartitionsResponse,
    ProduceResponse,
    FetchResponse,
    ListOffsetsResponse,
    InitProducerResponse,
    CreateTopicResponse,
    MetadataResponse,
    ListTopicsResponse,
    DescribeClusterResponse,
    DescribeTopicResponse,
    TopicMetadata,
);

/// The error code of a response (`NONE` on success).
pub fn code_of(resp: &impl HasError) -> ErrorCode {
    resp.error().error_code()
}
