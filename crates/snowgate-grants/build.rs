// `sqlx::migrate!` embeds the migrations at compile time, and Cargo does not know it reads
// them: without this, a new migration file is left out of an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
