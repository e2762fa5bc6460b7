pub mod answer;
pub mod snowflake;
