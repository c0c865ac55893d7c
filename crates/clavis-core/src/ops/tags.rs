//! Tags: TagResource, UntagResource, ListResourceTags.

use crate::api::*;
use crate::kernel::{Access, request_tag_params};
use crate::operation::Operation;
use crate::paging::{self, Page};
use crate::types::KeyState;
use crate::{Caller, Kms, KmsError, validate};
use clavis_store::StoreError;

impl Kms {
    /// TagResource.
    pub async fn tag_resource(&self, caller: &Caller, req: TagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::TagResource)?;
        let tags = validate::tags(&validate::required(req.tags, "tags")?)?;
        let params = request_tag_params(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
        let key = self.key_for_no_alias(caller, Access::to("TagResource").with_params(&params), req.key_id.as_deref(), "keyId").await?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        match self.tags().put_tags(&key.rec.key_id, &tags, validate::MAX_TAGS_PER_KEY).await {
            Ok(()) => Ok(Empty {}),
            Err(StoreError::LimitExceeded) => {
                Err(KmsError::LimitExceeded(format!("A key can have at most {} tags.", validate::MAX_TAGS_PER_KEY)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// UntagResource.
    pub async fn untag_resource(&self, caller: &Caller, req: UntagResourceRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, Operation::UntagResource)?;
        let tag_keys = validate::required(req.tag_keys, "tagKeys")?;
        for k in &tag_keys {
            validate::str_len(k, "tagKeys.member", 1, 128)?;
        }
        let params = [("aws:tagkeys".to_owned(), tag_keys.clone())];
        let key = self.key_for_no_alias(caller, Access::to("UntagResource").with_params(&params), req.key_id.as_deref(), "keyId").await?;
        if key.state == KeyState::PendingDeletion {
            return Err(key.invalid_state(key.state));
        }
        self.tags().delete_tags(&key.rec.key_id, &tag_keys).await?;
        Ok(Empty {})
    }

    /// ListResourceTags.
    pub async fn list_resource_tags(&self, caller: &Caller, req: ListForKeyRequest) -> Result<ListResourceTagsResponse, KmsError> {
        self.authorize(caller, Operation::ListResourceTags)?;
        let limit = validate::limit(req.limit, 50, 50)?;
        let marker = validate::marker(req.marker.as_deref())?;
        let key = self.key_for_no_alias(caller, Access::to("ListResourceTags"), req.key_id.as_deref(), "keyId").await?;
        let tags = self.tags().list_tags(&key.rec.key_id, marker, paging::fetch_len(limit)).await?;
        let Page { items, next_marker, truncated } = Page::cut(tags, limit, |t| t.key.clone());
        let tags = items.into_iter().map(|t| TagEntry { tag_key: Some(t.key), tag_value: Some(t.value) }).collect();
        Ok(ListResourceTagsResponse { tags, next_marker, truncated })
    }
}
