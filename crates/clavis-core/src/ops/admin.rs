//! Clavis's administration operations that are not about identities or the root of trust:
//! LookupEvents (search the audit log) and AdvanceTestClock.

use crate::api::*;
use crate::audit;
use crate::operation::Operation;
use crate::types::secs;
use crate::{Caller, Kms, KmsError, validate};

impl Kms {
    /// ClavisAdmin.LookupEvents: search the audit log (administrators only).
    pub async fn lookup_events(&self, caller: &Caller, req: LookupEventsRequest) -> Result<LookupEventsResponse, KmsError> {
        self.authorize(caller, Operation::LookupEvents)?;
        let max = validate::limit(req.max_results, 50, 50)?;
        let before = match req.next_token.as_deref() {
            None => None,
            Some(t) => Some(t.parse::<u64>().map_err(|_| KmsError::Validation("Invalid NextToken.".into()))?),
        };
        let attrs = req.lookup_attributes.unwrap_or_default();
        if attrs.len() > 1 {
            return Err(KmsError::Validation("LookupAttributes accepts at most one attribute.".into()));
        }
        let mut filter: Option<(String, String)> = None;
        for a in attrs {
            let k = validate::required(a.attribute_key, "lookupAttributes.member.attributeKey")?;
            let v = validate::required(a.attribute_value, "lookupAttributes.member.attributeValue")?;
            validate::one_of(
                &k,
                "lookupAttributes.member.attributeKey",
                &["EventId", "EventName", "ReadOnly", "Username", "ResourceName", "AccessKeyId", "EventSource"],
            )?;
            filter = Some((k, v));
        }
        let start = req.start_time.map(|t| audit::event_time((t * 1000.0) as i64));
        let end = req.end_time.map(|t| audit::event_time((t * 1000.0) as i64));
        let account = caller.account.as_str().to_owned();
        // Unauthenticated requests belong to no account: only the operator's administrators
        // see them (they name claimed access keys and source addresses).
        let operator = self.account_id().await?.is_some_and(|a| a == caller.account);
        let keep = move |e: &serde_json::Value| -> bool {
            let time = e["eventTime"].as_str().unwrap_or_default();
            if start.as_deref().is_some_and(|s| time < s) || end.as_deref().is_some_and(|s| time > s) {
                return false;
            }
            // An account sees its own events, and (as CloudTrail delivers them to the key owner
            // too) other accounts' requests that used one of its keys; unauthenticated ones are
            // the operator's.
            let uses_our_key =
                || e["resources"].as_array().is_some_and(|rs| rs.iter().any(|r| r["accountId"].as_str() == Some(account.as_str())));
            match e["recipientAccountId"].as_str() {
                Some(a) if a != account && !uses_our_key() => return false,
                None if !operator => return false,
                _ => {}
            }
            match &filter {
                None => true,
                Some((k, v)) => match k.as_str() {
                    "EventId" => e["eventID"] == v.as_str(),
                    "EventName" => e["eventName"] == v.as_str(),
                    "ReadOnly" => e["readOnly"].as_bool().map(|b| b.to_string()).as_deref() == Some(v.as_str()),
                    "Username" => e["userIdentity"]["arn"].as_str().is_some_and(|a| a == v || a.ends_with(&format!("/{v}"))),
                    "AccessKeyId" => e["userIdentity"]["accessKeyId"] == v.as_str(),
                    "EventSource" => e["eventSource"] == v.as_str(),
                    _ => e["resources"]
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| r["ARN"].as_str().is_some_and(|a| a == v || a.ends_with(&format!("/{v}"))))),
                },
            }
        };
        let sink = self.audit_sink().ok_or_else(|| KmsError::UnsupportedOperation("Auditing is disabled on this server.".into()))?;
        let (events, next) = sink
            .lookup(audit::LookupQuery { before, max, keep: Box::new(keep) })
            .await
            .map_err(|e| KmsError::AuditUnavailable(e.to_string()))?;
        let events = events
            .into_iter()
            .map(|e| LookupEvent {
                event_id: e["eventID"].as_str().unwrap_or_default().to_owned(),
                event_name: e["eventName"].as_str().unwrap_or_default().to_owned(),
                read_only: e["readOnly"].as_bool().unwrap_or(false).to_string(),
                access_key_id: e["userIdentity"]["accessKeyId"].as_str().map(str::to_owned),
                event_time: audit::parse_event_time(e["eventTime"].as_str().unwrap_or_default()).unwrap_or(0) as f64,
                event_source: e["eventSource"].as_str().unwrap_or_default().to_owned(),
                username: e["userIdentity"]["arn"].as_str().map(|a| a.rsplit(['/', ':']).next().unwrap_or(a).to_owned()),
                resources: e["resources"]
                    .as_array()
                    .map(|rs| {
                        rs.iter()
                            .map(|r| EventResource {
                                resource_type: r["type"].as_str().unwrap_or_default().to_owned(),
                                resource_name: r["ARN"].as_str().unwrap_or_default().to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                cloud_trail_event: e.to_string(),
            })
            .collect();
        Ok(LookupEventsResponse { events, next_token: next.map(|n| n.to_string()) })
    }

    /// ClavisAdmin.AdvanceTestClock: moves the test clock forward and runs the scheduler once.
    /// Refused unless the server was started with the test-only clock.
    pub async fn advance_test_clock(&self, caller: &Caller, req: AdvanceTestClockRequest) -> Result<AdvanceTestClockResponse, KmsError> {
        self.authorize(caller, Operation::AdvanceTestClock)?;
        let Some(clock) = self.test_clock() else {
            return Err(KmsError::UnsupportedOperation("The test clock is not enabled on this server.".into()));
        };
        // The clock is the whole deployment's: only the operator's administrators move it.
        self.require_operator_account(caller, Operation::AdvanceTestClock, "move the clock").await?;
        let seconds = validate::required(req.seconds, "seconds")?;
        validate::int_range(seconds, "seconds", 0, 100 * 365 * 86_400)?;
        clock.advance(seconds * 1000);
        let done = if req.run_scheduler.unwrap_or(true) { self.run_due_work("test-clock").await? } else { crate::DueWork::default() };
        Ok(AdvanceTestClockResponse { now: secs(self.now_ms()), rotated: done.rotated, destroyed: done.destroyed, expired: done.expired })
    }
}
