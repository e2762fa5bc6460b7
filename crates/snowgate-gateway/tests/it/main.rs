//! The gateway with real drivers (snowflake-connector-python 5.x and 4.x, the Node.js
//! snowflake-sdk) against the rig's Snowflake front, with real tokens from the rig's IdP.

mod audited;
mod common;
mod cut;
mod end_of_access;
mod node;
mod peer_lookup;
mod python;
mod raw;
mod refusals;
mod rig_authorizer;
