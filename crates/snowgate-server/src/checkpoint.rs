//! Signed checkpoints of the audit chain's head: what anchors the chain outside the database.
//!
//! Whoever can write PostgreSQL can cut records off the end of `audit`, or rewrite it from any
//! record with recomputed hashes, and leave a chain that verifies. A checkpoint defeats both: it
//! is the head (`seq` and `hash` of the last record, and when it was taken) signed with a key
//! that lives in the server's config files, never in the database. A log that ends before a
//! checkpoint's `seq`, or whose record at that `seq` has another hash, is not the log the
//! server signed.
//!
//! A checkpoint is a compact JWS (RS256, header `typ` = [`CHECKPOINT_TYP`], `kid` = the key's
//! RFC 7638 thumbprint) over `{"typ":"snowgate-audit-checkpoint","iss":URL,"seq":N,
//! "hash":HEX,"at":RFC3339}`. The keys are `[audit] checkpoint_key_files` (the `[minting]` keys
//! when none are given), loaded by [`crate::minting`]'s machinery; their public halves are
//! served at `/v1/audit/checkpoint-key`.
//!
//! Each replica makes its own: every `[audit] checkpoint_every` when the head has moved, as
//! soon as the head is `[audit] checkpoint_every_records` records past the newest checkpoint
//! (the head is read every second, so a burst is anchored within about a second), and
//! when an audit reader asks (`POST /v1/audit/checkpoint`). Before signing it checks the
//! records since its previous checkpoint (that record unchanged, every later one linked and
//! hashed right), so it never signs over a rewrite it could have seen; the first checkpoint
//! after a start checks the whole chain. The newest is served at `GET /v1/audit/checkpoint`,
//! announced on every event stream (`event: checkpoint`), and written to the server's log.
//! Desktops keep the newest they have seen, so a copy survives outside the database and the
//! server; see the README's admin guide for where else to keep copies.

use std::sync::Arc;
use std::time::Duration;

use snowgate_grants::audit::chain::record_hash;
use snowgate_grants::audit::ChainHash;
use snowgate_grants::ledger::verify_ledger;
use snowgate_grants::team_api;
use snowgate_grants::{
    AuditCheckError, AuditQuery, ChainHead, Clock, Ledger as _, PgLedger, Timestamp, VerifyError,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::minting::SigningKeys;

pub use snowgate_grants::audit::checkpoint::HEADER_TYP as CHECKPOINT_TYP;
use snowgate_grants::audit::checkpoint::{CheckpointClaims, CLAIM_TYP as CHECKPOINT_CLAIM_TYP};
/// Records read per page while checking the chain since the last checkpoint.
const PAGE: u32 = 1000;

/// A checkpoint's contents: the chain's head at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: ChainHash,
    pub at: Timestamp,
}

impl Checkpoint {
    /// The head it anchors.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash,
        }
    }
}

/// A checkpoint with its signature. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The compact JWS.
    pub token: String,
    /// The id of the key that signed it.
    pub kid: String,
}

impl SignedCheckpoint {
    /// What the API answers with: the JWS and its contents.
    pub fn wire(&self) -> team_api::Checkpoint {
        team_api::Checkpoint {
            checkpoint: self.token.clone(),
            seq: self.checkpoint.seq,
            hash: self.checkpoint.hash.to_string(),
            at: self.checkpoint.at,
            kid: self.kid.clone(),
        }
    }

    /// The contents only, as a verification names them.
    pub fn summary(&self) -> team_api::CheckpointSummary {
        team_api::CheckpointSummary {
            seq: self.checkpoint.seq,
            hash: self.checkpoint.hash.to_string(),
            at: self.checkpoint.at,
            kid: Some(self.kid.clone()),
            from: team_api::CheckpointFrom::Server,
        }
    }
}

/// Why a checkpoint presented to the server was refused. Says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointRefused {
    #[error("`checkpoint` is not a checkpoint (a compact JWS as GET /v1/audit/checkpoint gives it): {0}")]
    Malformed(String),
    #[error("the checkpoint was signed by key {kid:?}, which this server does not have; if the key was rotated out, add it back to [audit] checkpoint_key_files (after the signer) to check old checkpoints")]
    UnknownKey { kid: String },
    #[error("the checkpoint's signature does not verify with the server's checkpoint key {kid:?}: its contents were changed after signing, or another key signed it; it proves nothing")]
    BadSignature { kid: String },
}

/// Why no checkpoint was made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the audit chain does not verify, so no checkpoint is signed over it: {0}")]
    Broken(VerifyError),
    #[error("reading the audit log: {0}")]
    Database(String),
    #[error("signing the checkpoint failed: {0}")]
    Sign(String),
}

/// Makes, holds and checks one replica's checkpoints.
pub struct Checkpointer {
    keys: Arc<SigningKeys>,
    issuer: String,
    ledger: PgLedger,
    clock: Arc<dyn Clock>,
    newest: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    /// One checkpoint is made at a time.
    making: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    pub fn new(
        keys: Arc<SigningKeys>,
        issuer: String,
        ledger: PgLedger,
        clock: Arc<dyn Clock>,
    ) -> Checkpointer {
        Checkpointer {
            keys,
            issuer,
            ledger,
            clock,
            newest: watch::channel(None).0,
            making: tokio::sync::Mutex::new(()),
        }
    }

    /// The public keys, as a JWKS.
    pub fn jwks(&self) -> team_api::Jwks {
        self.keys.jwks()
    }

    /// The newest checkpoint this replica made, if any.
    pub fn newest(&self) -> Option<Arc<SignedCheckpoint>> {
        self.newest.borrow().clone()
    }

    /// Follows the newest checkpoint.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.newest.subscribe()
    }

    /// How many records the chain's head is past the newest checkpoint (all of them before the
    /// first); 0 when the head can't be read, so a database outage waits for the timer.
    pub async fn records_past_newest(&self) -> u64 {
        let signed = self.newest().map_or(0, |p| p.checkpoint.seq);
        match self.ledger.chain_head().await {
            Ok(Some(head)) => head.seq.saturating_sub(signed),
            Ok(None) | Err(_) => 0,
        }
    }

    /// Checks the chain since the previous checkpoint and signs its head. With `force`, signs
    /// even when the head has not moved (a fresh `at`). `Ok(None)` for an empty log.
    pub async fn make(
        &self,
        force: bool,
    ) -> Result<Option<Arc<SignedCheckpoint>>, CheckpointError> {
        let _one = self.making.lock().await;
        let previous = self.newest();
        let head = match &previous {
            None => match verify_ledger(&self.ledger, None).await {
                Ok(head) => head,
                Err(AuditCheckError::Broken(e)) => return Err(CheckpointError::Broken(e)),
                Err(e) => return Err(CheckpointError::Database(e.to_string())),
            },
            Some(p) => Some(self.check_since(p.checkpoint.head()).await?),
        };
        let Some(head) = head else { return Ok(None) };
        if !force
            && previous
                .as_ref()
                .is_some_and(|p| p.checkpoint.seq == head.seq)
        {
            return Ok(previous);
        }
        let checkpoint = Checkpoint {
            seq: head.seq,
            hash: head.hash,
            at: Timestamp::from(self.clock.now()),
        };
        let signed = Arc::new(self.sign(checkpoint)?);
        tracing::info!(
            seq = checkpoint.seq,
            hash = %checkpoint.hash,
            at = %checkpoint.at.to_rfc3339(),
            kid = %signed.kid,
            checkpoint = %signed.token,
            "audit checkpoint signed"
        );
        self.newest.send_replace(Some(signed.clone()));
        Ok(Some(signed))
    }

    fn sign(&self, c: Checkpoint) -> Result<SignedCheckpoint, CheckpointError> {
        let claims = CheckpointClaims {
            typ: CHECKPOINT_CLAIM_TYP.to_string(),
            iss: Some(self.issuer.clone()),
            seq: c.seq,
            hash: c.hash.to_string(),
            at: c.at.to_rfc3339(),
        };
        let token = self
            .keys
            .sign_typed(
                &serde_json::to_value(&claims).expect("claims serialize"),
                CHECKPOINT_TYP,
            )
            .map_err(|e| CheckpointError::Sign(e.to_string()))?;
        Ok(SignedCheckpoint {
            checkpoint: c,
            token,
            kid: self.keys.kids()[0].to_string(),
        })
    }

    /// The records from `from` on: `from` itself unchanged, each later one linked and hashed
    /// right. Returns the head.
    async fn check_since(&self, from: ChainHead) -> Result<ChainHead, CheckpointError> {
        let db = |e: snowgate_grants::LedgerError| CheckpointError::Database(e.to_string());
        let mut after = from.seq.checked_sub(1);
        let mut head: Option<ChainHead> = None;
        loop {
            let page = self
                .ledger
                .audit(&AuditQuery {
                    after_seq: after,
                    limit: Some(PAGE),
                    ..AuditQuery::default()
                })
                .await
                .map_err(db)?;
            for r in &page {
                let computed = record_hash(r)
                    .map_err(|_| CheckpointError::Broken(VerifyError::BrokenLink { seq: r.seq }))?;
                if r.hash != computed.to_string() {
                    return Err(CheckpointError::Broken(VerifyError::Altered { seq: r.seq }));
                }
                match head {
                    None => {
                        if r.seq != from.seq || computed != from.hash {
                            return Err(CheckpointError::Broken(VerifyError::AnchorMismatch {
                                seq: from.seq,
                            }));
                        }
                    }
                    Some(h) => {
                        if r.seq != h.seq + 1 {
                            return Err(CheckpointError::Broken(VerifyError::Missing {
                                first: h.seq + 1,
                                last: r.seq.saturating_sub(1).max(h.seq + 1),
                            }));
                        }
                        if r.prev_hash != h.hash.to_string() {
                            return Err(CheckpointError::Broken(VerifyError::BrokenLink {
                                seq: r.seq,
                            }));
                        }
                    }
                }
                head = Some(ChainHead {
                    seq: r.seq,
                    hash: computed,
                });
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.seq),
                _ => break,
            }
        }
        head.ok_or(CheckpointError::Broken(VerifyError::Truncated {
            last: from.seq.saturating_sub(1),
            anchored: from.seq,
        }))
    }

    /// Checks a presented checkpoint's signature with this server's checkpoint keys.
    pub fn verify(&self, token: &str) -> Result<Checkpoint, CheckpointRefused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| CheckpointRefused::Malformed(e.to_string()))?;
        if header.typ.as_deref() != Some(CHECKPOINT_TYP) {
            return Err(CheckpointRefused::Malformed(format!(
                "its header says typ {:?}, not {CHECKPOINT_TYP:?}",
                header.typ.unwrap_or_default()
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self
            .keys
            .decoding_key(&kid)
            .ok_or_else(|| CheckpointRefused::UnknownKey { kid: kid.clone() })?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<CheckpointClaims>(token, &key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    CheckpointRefused::BadSignature { kid: kid.clone() }
                }
                _ => CheckpointRefused::Malformed(e.to_string()),
            },
        )?;
        let c = data.claims;
        if c.typ != CHECKPOINT_CLAIM_TYP {
            return Err(CheckpointRefused::Malformed(format!(
                "its claims say typ {:?}, not {CHECKPOINT_CLAIM_TYP:?}",
                c.typ
            )));
        }
        let hash = c
            .hash
            .parse::<ChainHash>()
            .map_err(|e| CheckpointRefused::Malformed(format!("`hash`: {e}")))?;
        let at = Timestamp::parse_rfc3339(&c.at).ok_or_else(|| {
            CheckpointRefused::Malformed(format!("`at`: {:?} is not a time", c.at))
        })?;
        if c.seq == 0 {
            return Err(CheckpointRefused::Malformed("`seq` is 0".into()));
        }
        Ok(Checkpoint {
            seq: c.seq,
            hash,
            at,
        })
    }
}

/// How often the chain's head is read to see how far it has moved past the newest checkpoint.
const HEAD_POLL: Duration = Duration::from_secs(1);

/// Makes a checkpoint now, then every `every` when the head has moved, and at once whenever the
/// head is `every_records` or more records past the newest checkpoint, until aborted. A chain
/// that does not verify is reported in the log at error level each time, and nothing is signed
/// over it.
pub fn spawn(
    checkpoints: Arc<Checkpointer>,
    every: Duration,
    every_records: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = checkpoints.make(false).await {
                match e {
                    CheckpointError::Broken(_) => tracing::error!(error = %e, "audit checkpoint"),
                    _ => tracing::warn!(error = %e, "audit checkpoint; trying again later"),
                }
            }
            let next = checkpoints.clock.now() + every;
            loop {
                tokio::select! {
                    _ = checkpoints.clock.sleep_until(next) => break,
                    _ = tokio::time::sleep(HEAD_POLL) => {
                        if checkpoints.records_past_newest().await >= every_records {
                            break;
                        }
                    }
                }
            }
        }
    })
}
