//! Limits that involve the server: the defaults of both daemons agree.

/// One client at its default `--max-connections`, behind one address, is
/// not refused by a server at its default `--max-connections-per-source`.
#[test]
fn server_per_source_default_admits_one_client_at_its_default_connection_cap() {
    let client_total = sixpath_client::config::DEFAULT_MAX_CONNECTIONS;
    let server_per_source = sixpath_server::config::DEFAULT_MAX_PER_SOURCE;
    assert!(
        server_per_source >= client_total,
        "server --max-connections-per-source {server_per_source} < client --max-connections {client_total}"
    );
    assert!(sixpath_server::config::DEFAULT_MAX_CONNECTIONS >= server_per_source);
}
