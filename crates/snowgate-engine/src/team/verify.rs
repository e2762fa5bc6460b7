//! Reading the team server's audit log, and verifying it against what this desktop kept.
//!
//! [`TeamClient::audit`] reads a page (`GET /v1/audit`), [`TeamClient::export_audit`] the whole
//! log as JSON Lines. [`TeamClient::note_checkpoint`] takes a checkpoint the server signed
//! (announced on the event stream, or made on demand): it checks the signature with the key
//! kept for its `kid`, or else the one the server publishes, and keeps it in the data dir
//! ([`super::checkpoint`]) when it is newer, but only after the server's record at the kept
//! `seq` still has the kept hash. [`TeamClient::verify_audit`] has the server sign its head,
//! presents the kept checkpoint to `GET /v1/audit/verify`, and checks the answer against it
//! here too, so a log rewritten or cut short below a checkpoint this desktop saw is reported
//! not intact whatever the server says.

use std::path::PathBuf;

use snowgate_grants::team_api::{
    AuditPage, AuditParams, Checkpoint, Empty, Jwks, Verification, VerifyParams,
};
use snowgate_grants::{AuditRecord, Timestamp};

use super::checkpoint;
use super::transport::with_query;
use super::{TeamClient, TeamError};
use reqwest::Method;

impl TeamClient {
    /// Audit records (`GET /v1/audit`).
    pub async fn audit(
        &self,
        since: Option<Timestamp>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>, TeamError> {
        let query = AuditParams {
            since: since.map(Timestamp::to_rfc3339),
            limit,
            ..AuditParams::default()
        };
        let page: AuditPage = self.get_json(&with_query("/v1/audit", &query)).await?;
        Ok(page.records)
    }

    /// Keeps the newest audit checkpoint seen in `path` (in the data dir).
    pub fn set_checkpoint_file(&self, path: PathBuf) {
        *self.inner.checkpoint_file.write().unwrap() = Some(path);
    }

    /// The kept checkpoint, if a file is set and holds one.
    pub fn kept_checkpoint(&self) -> Result<Option<checkpoint::KeptCheckpoint>, String> {
        let path = self.inner.checkpoint_file.read().unwrap().clone();
        match path {
            Some(p) => checkpoint::load(&p),
            None => Ok(None),
        }
    }

    /// A checkpoint the server announced or made: checked with the server's checkpoint key
    /// and kept when it is newer than the kept one.
    pub async fn note_checkpoint(&self, data: &Checkpoint) -> Result<checkpoint::Kept, String> {
        let Some(path) = self.inner.checkpoint_file.read().unwrap().clone() else {
            return Ok(checkpoint::Kept::NotNewer);
        };
        let token = data.checkpoint.as_str();
        let kid = checkpoint::kid_of(token)?;
        let kept = checkpoint::load(&path)?;
        // The key kept with the last checkpoint, or else the one the server publishes.
        let key = match kept.as_ref().filter(|k| k.kid == kid) {
            Some(k) => k.key.clone(),
            None => {
                let jwks: Jwks = self
                    .get_json("/v1/audit/checkpoint-key")
                    .await
                    .map_err(|e| format!("the server's checkpoint key can't be read: {e}"))?;
                jwks.key(&kid).cloned().ok_or_else(|| {
                    format!("the server does not publish the key {kid:?} its checkpoint names")
                })?
            }
        };
        let new = checkpoint::check(token, &key)?;
        // Before moving past the kept checkpoint, check that the log still holds its record
        // (when this person may read the log): a replica restarted over a rewritten database
        // signs the rewritten head, and that must not replace the anchor that proves it.
        if let Some(old) = kept.as_ref().filter(|k| k.seq < new.seq) {
            match self.record_hash(old.seq).await {
                Ok(Some(hash)) if hash == old.hash => {}
                Ok(_) => {
                    tracing::error!(
                        seq = old.seq,
                        "the team server's audit log no longer holds the record this desktop's checkpoint anchors; the checkpoint is kept, and `snowgate audit verify` reports it"
                    );
                    return Ok(checkpoint::Kept::Conflict);
                }
                // Not an audit reader: nothing to check it with.
                Err(TeamError::Refused { status: 403, .. }) => {}
                Err(e) => return Err(format!("the kept audit checkpoint can't be checked: {e}")),
            }
        }
        let kept = checkpoint::keep(&path, &new)?;
        match kept {
            checkpoint::Kept::Newer => {
                tracing::debug!(seq = new.seq, "kept the team server's audit checkpoint")
            }
            checkpoint::Kept::Conflict => tracing::error!(
                seq = new.seq,
                "the team server signed another hash for audit record {} than the checkpoint this desktop kept: its audit log was rewritten",
                new.seq
            ),
            checkpoint::Kept::NotNewer => {}
        }
        Ok(kept)
    }

    /// The hash of the server's audit record `seq`, if it has one.
    async fn record_hash(&self, seq: u64) -> Result<Option<String>, TeamError> {
        let query = AuditParams {
            after_seq: Some(seq.saturating_sub(1)),
            limit: Some(1),
            ..AuditParams::default()
        };
        let page: AuditPage = self.get_json(&with_query("/v1/audit", &query)).await?;
        Ok(page
            .records
            .into_iter()
            .next()
            .filter(|r| r.seq == seq)
            .map(|r| r.hash))
    }

    /// `GET /v1/audit/verify`, presenting the newest checkpoint this desktop kept, and the
    /// answer checked here against that checkpoint too: a log the server says is intact but
    /// that ends before the kept `seq`, or has another record there, is reported not intact.
    pub async fn verify_audit(&self) -> Result<Verification, TeamError> {
        // Have the server sign its head now (it checks the records since its last
        // checkpoint first), so what is kept is as new as it can be.
        if let Ok(c) = self
            .post_json::<Checkpoint>("/v1/audit/checkpoint", &Empty {})
            .await
        {
            if let Err(e) = self.note_checkpoint(&c).await {
                tracing::warn!(error = %e, "the team server's audit checkpoint was not kept");
            }
        }
        let kept = self.kept_checkpoint().map_err(|e| TeamError::Refused {
            status: 0,
            code: "checkpoint".into(),
            message: e,
        })?;
        let Some(kept) = kept else {
            return self.get_json("/v1/audit/verify").await;
        };
        let query = VerifyParams {
            checkpoint: Some(kept.checkpoint.clone()),
        };
        let answer: Verification = self
            .get_json(&with_query("/v1/audit/verify", &query))
            .await?;
        let record = if answer.ok && answer.records.unwrap_or(0) >= kept.seq {
            self.record_hash(kept.seq).await?
        } else {
            None
        };
        Ok(
            match checkpoint::problem(&kept, &answer, record.as_deref()) {
                Some(problem) => Verification {
                    ok: false,
                    records: None,
                    head: None,
                    problem: Some(problem),
                    checkpoint: None,
                    checkpoints: None,
                },
                None => answer,
            },
        )
    }

    /// The whole audit log as JSON Lines (`GET /v1/audit/export`).
    pub async fn export_audit(&self) -> Result<(usize, String), TeamError> {
        let text = self
            .call_text(
                &self.inner.sse_http,
                Method::GET,
                "/v1/audit/export",
                None::<&Empty>,
            )
            .await?;
        Ok((text.lines().filter(|l| !l.trim().is_empty()).count(), text))
    }
}
